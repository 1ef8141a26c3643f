"""Memory accounting: weights and cache sizes against hand counts, trace replay against known allocations."""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile, record_function

import perfmamba
from perfmamba.profiling.memory import cache_bytes, trace_memory, weight_bytes

MiB = 1 << 20


def test_weight_bytes_counts_tied_embedding_once():
    model = perfmamba.load("mamba-tiny")
    cfg = model.config
    assert model.lm_head.weight is model.backbone.embedding.weight
    assert weight_bytes(model) == 4 * model.num_parameters()
    # hand count, mamba-tiny: D=32, E=64, N=13, R=2, W=4, V=256 (251 padded), 2 layers
    per_layer = (32 * 128  # in_proj
                 + 64 * 4 + 64  # conv1d weight, bias
                 + 64 * (2 + 26)  # x_proj
                 + 2 * 64 + 64  # dt_proj weight, bias
                 + 64 * 13 + 64  # A_log, D
                 + 64 * 32  # out_proj
                 + 32)  # norm
    assert cfg.padded_vocab_size == 256
    assert weight_bytes(model) == 4 * (256 * 32 + 2 * per_layer + 32)
    assert weight_bytes(model.to(torch.bfloat16)) == 2 * model.num_parameters()


def test_cache_bytes_mamba2_130m_hand_count():
    model_cfg = perfmamba.preset("mamba2-130m")
    with torch.device("meta"):
        model = perfmamba.MambaLM(model_cfg, init=False)
    got = cache_bytes(model, 8)
    # per layer: ssm (8, 24 heads, 64, 128) fp32; conv (8, 1536 + 2·128, 4) fp32; 24 layers
    assert got["ssm_state"] == 24 * 8 * 24 * 64 * 128 * 4 == 150_994_944
    assert got["conv_state"] == 24 * 8 * 1792 * 4 * 4
    # in bf16 the 75 MB of ../shared/gpu/README.md ("state 75 MB at N=128", Mamba2-130M, B=8)
    assert cache_bytes(model, 8, torch.bfloat16)["ssm_state"] == 75_497_472


def test_trace_replay_matches_known_allocations():
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        with record_function("outer"):
            a = torch.empty(MiB, dtype=torch.uint8)  # +1 MiB
            with record_function("inner"):
                b = torch.empty(2 * MiB, dtype=torch.uint8)  # +2 MiB: the outer peak is 3 MiB
                del b
            c = torch.empty(MiB // 2, dtype=torch.uint8)  # +0.5 MiB after inner freed its 2 MiB
            del a, c
        d = torch.empty(3 * MiB + 7, dtype=torch.uint8)  # outside every range: "other"
        del d
    tm = trace_memory(prof, ["outer", "inner"])
    assert tm.activation_peak == {"inner": 2 * MiB, "outer": 3 * MiB}
    assert tm.sum_of_allocations == {"outer": MiB + MiB // 2, "inner": 2 * MiB, "other": 3 * MiB + 7}
    assert tm.peak == 3 * MiB + 7  # trace-wide maximum above the starting level


def test_trace_replay_per_iteration_peaks():
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for size in (MiB, 2 * MiB):
            with record_function("iter"):
                x = torch.empty(size, dtype=torch.uint8)
                del x
    tm = trace_memory(prof, ["nothing"], iteration_label="iter")
    assert tm.per_range_peak == [MiB, 2 * MiB]
    assert tm.sum_of_allocations == {"other": 3 * MiB}


@pytest.mark.gpu
def test_cuda_peaks_nest():
    from perfmamba.profiling.memory import CudaPeaks

    dev = torch.device("cuda")
    p = CudaPeaks(dev)
    p.enter("outer")
    a = torch.empty(MiB, dtype=torch.uint8, device=dev)
    p.enter("inner")
    b = torch.empty(4 * MiB, dtype=torch.uint8, device=dev)
    del b
    p.exit("inner")
    p.exit("outer")
    del a
    assert p.peaks["inner"] >= 4 * MiB and p.peaks["outer"] >= 5 * MiB


def _peaks_match(rows):
    import pandas as pd

    from perfmamba.profiling.memory import own_peak

    own = own_peak(rows)
    key = [c for c in own.columns if c != "value"]
    got = rows[rows["metric"] == "peak_memory"][key + ["value"]]
    merged = got.merge(own, on=key, suffixes=("", "_own"))
    assert len(merged) == len(got) > 0
    pd.testing.assert_series_equal(merged["value"].astype(float), merged["value_own"].astype(float),
                                   check_names=False)


def test_own_peak_is_the_peak_the_sweep_writes(tmp_path):
    """The sweep's peak of a call is weights + caches + inputs + the call's rise; `own_peak` rebuilds it from
    the rows alone."""
    import pandas as pd

    from perfmamba.profiling.sweep import sweep

    rows = pd.DataFrame(sweep(["mamba-tiny"], [16], [2], ("prefill", "decode"), methods=("profiler",), warmup=0,
                              iters=1, progress=False))
    _peaks_match(rows)


def test_committed_gpu_peaks_are_own_peak_of_their_rows():
    """data/README.md: the committed GPU timer rows' peak_memory was recomputed with `own_peak` from their own
    allocator rise (the raw process-wide reading is kept as process_peak_memory)."""
    from pathlib import Path

    from perfmamba import results

    files = sorted((Path(__file__).resolve().parents[1] / "data" / "results").glob("nvidia-*/*.csv"))
    files = [f for f in files if f.stem in ("profile", "pruning_efficiency")]
    if not files:
        pytest.skip("no committed GPU profile rows")
    for f in files:
        _peaks_match(results.read_rows(f))
