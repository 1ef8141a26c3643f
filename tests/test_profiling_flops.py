"""Analytic FLOPs and bytes: hand counts for the paper's 130M shapes, torch's FlopCounterMode on tiny models,
parameter and cache sizes as independent ground truth, roofline coordinates."""
import math

import pandas as pd
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import perfmamba
from perfmamba.models.cache import MambaCache
from perfmamba.profiling import flops as F
from perfmamba.profiling.memory import weight_bytes

M1, M2 = perfmamba.preset("mamba-130m"), perfmamba.preset("mamba2-130m")


def test_mamba_130m_prefill_hand_counts():
    # mamba-130m: D=768, 24 layers, E=1536, N=16, R=ceil(768/16)=48, W=4, V=50280 (50277 padded to 8)
    # prefill B=1, L=2048: T=2048 tokens
    assert (M1.d_model, M1.n_layer, M1.d_inner, M1.dt_rank_value, M1.padded_vocab_size) == (768, 24, 1536, 48, 50280)
    args = (M1, 1, 2048, "prefill")
    assert F.FLOPS["in_proj"](*args) == 24 * 2 * 2048 * 768 * 3072 == 231_928_233_984  # [x; z] = W_in u, 2E outputs
    assert F.FLOPS["conv1d"](*args) == 24 * 2048 * 1536 * (2 * 4 + 1 + 2) == 830_472_192  # 4 MACs, bias, SiLU
    assert F.FLOPS["ssm.x_proj"](*args) == 24 * 2 * 2048 * 1536 * (48 + 2 * 16) == 12_079_595_520
    assert F.FLOPS["ssm.dt_proj"](*args) == 24 * 2 * 2048 * 48 * 1536 == 7_247_757_312
    assert F.FLOPS["ssm.scan"](*args) == 24 * 2048 * (7 * 1536 * 16 + 8 * 1536) == 9_059_696_640
    assert F.FLOPS["ssm"](*args) == 12_079_595_520 + 7_247_757_312 + 9_059_696_640
    assert F.FLOPS["out_proj"](*args) == 24 * 2 * 2048 * 1536 * 768 == 115_964_116_992
    assert F.FLOPS["rmsnorm"](*args) == 25 * (4 * 768 + 3) * 2048 == 157_440_000
    assert F.FLOPS["lm_head"](*args) == 2 * 1 * 768 * 50280 == 77_230_080  # last position only
    assert F.FLOPS["gated_norm"](*args) == 0 and F.FLOPS["embedding"](*args) == 0


def test_mamba2_130m_prefill_and_decode_hand_counts():
    # mamba2-130m: D=768, 24 layers, E=1536, N=128, H=24, P=64, G=1, Q=256, W=4
    args = (M2, 1, 2048, "prefill")
    assert M2.in_proj_dim(0) == 1536 + (1536 + 2 * 128) + 24 == 3352  # [z, xBC, dt]
    assert F.FLOPS["in_proj"](*args) == 24 * 2 * 2048 * 768 * 3352 == 253_067_526_144
    assert F.FLOPS["conv1d"](*args) == 24 * 2048 * 1792 * 11 == 968_884_224  # conv over xBC: 1536 + 2·128
    # chunked SSD, c = 2048/256 = 8 chunks:
    per_chunk = (2 * 1 * 256 * 256 * 128  # C Bᵀ
                 + 2 * 24 * 256 * 256  # exp(segsum) and mask
                 + 2 * 24 * 256 * 256 * 64  # (C Bᵀ ∘ L) X
                 + 4 * 24 * 256 * 64 * 128  # chunk states, and state → outputs
                 + 2 * 24 * 64 * 128)  # state passing
    assert F.FLOPS["ssm.scan"](*args) == 24 * (8 * per_chunk + 2048 * (3 * 1536 + 4 * 24))
    assert F.FLOPS["ssm"](*args) == F.FLOPS["ssm.scan"](*args)  # Mamba-2 has no x_proj / dt_proj
    assert F.FLOPS["ssm.x_proj"](*args) == 0 and F.FLOPS["ssm.dt_proj"](*args) == 0
    assert F.FLOPS["gated_norm"](*args) == 24 * (7 * 1536 + 3) * 2048 == 528_629_760
    # decode, B=8: one recurrent step per sequence
    assert F.FLOPS["ssm.scan"](M2, 8, 2048, "decode") == 24 * 8 * (5 * 1536 * 128 + 3 * 1536 + 4 * 24) == 189_646_848
    assert F.FLOPS["in_proj"](M2, 8, 2048, "decode") == 24 * 2 * 8 * 768 * 3352


@pytest.mark.parametrize("cfg", [M1, M2], ids=["mamba-130m", "mamba2-130m"])
def test_projection_flops_are_two_per_weight_per_token(cfg):
    # independent of the formulas: count the weights of every matmul in the real module tree
    with torch.device("meta"):
        model = perfmamba.MambaLM(cfg, init=False)
    mix = model.backbone.layers[0].mixer
    mat = mix.in_proj.weight.numel() + mix.out_proj.weight.numel()
    if cfg.arch == "mamba1":
        mat += mix.x_proj.weight.numel() + mix.dt_proj.weight.numel()
    T = 3 * 37  # B=3, L=37
    proj = sum(F.FLOPS[c](cfg, 3, 37, "prefill") for c in ("in_proj", "out_proj", "ssm.x_proj", "ssm.dt_proj"))
    assert proj == 2 * cfg.n_layer * mat * T
    assert F.FLOPS["lm_head"](cfg, 3, 37, "prefill") == 2 * 3 * model.lm_head.weight.numel()


@pytest.mark.parametrize("name", ["mamba-tiny", "mamba2-tiny"])
def test_matmul_and_conv_flops_match_flop_counter_mode(name):
    model = perfmamba.load(name)
    model.backend = "sequential"  # its conv is torch's conv1d, which FlopCounterMode counts (the ref backend's is
    cfg = model.config            # elementwise multiply-adds, which it does not)
    B, L = 2, 37  # not a multiple of the chunk
    ids = torch.randint(0, cfg.vocab_size, (B, L), generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        h = model(ids, return_hidden=True)
        model.lm_head(h[:, -1:])  # the prefill measured by the profiler: logits of the last position
    counts = {k: {str(op): n for op, n in v.items()} for k, v in fc.get_flop_counts().items()}
    layers = [f"MambaLM.backbone.layers.{i}.mixer" for i in range(cfg.n_layer)]
    T = B * L

    def total(suffix, op="aten.mm"):
        return sum(counts.get(f"{m}.{suffix}" if suffix else m, {}).get(op, 0) for m in layers)

    assert total("in_proj") == F.FLOPS["in_proj"](cfg, B, L, "prefill")
    assert total("out_proj") == F.FLOPS["out_proj"](cfg, B, L, "prefill")
    assert counts["MambaLM.lm_head"]["aten.mm"] == F.FLOPS["lm_head"](cfg, B, L, "prefill")
    # the conv's multiply-adds: analytic minus bias (1) and SiLU (2) per channel and token
    conv_mac = F.FLOPS["conv1d"](cfg, B, L, "prefill") - sum(T * cfg.conv_dim(i) * 3 for i in range(cfg.n_layer))
    assert total("", "aten.convolution") == conv_mac
    if cfg.arch == "mamba1":
        assert total("x_proj") == F.FLOPS["ssm.x_proj"](cfg, B, L, "prefill")
        # dt_proj is a bare matmul inside the mixer: the mixer's mm minus its Linear submodules'
        dt = total("") - total("in_proj") - total("x_proj") - total("out_proj")
        assert dt == F.FLOPS["ssm.dt_proj"](cfg, B, L, "prefill")


@pytest.mark.parametrize("cfg", [M1, M2, perfmamba.preset("mamba2-tiny", d_state=[13, 5])],
                         ids=["mamba-130m", "mamba2-130m", "mamba2-tiny-pruned"])
def test_decode_bytes_weights_and_state_from_independent_counts(cfg):
    # bytes(B) = weights + B·(per-sequence traffic), so weights = 2·bytes(1) − bytes(2); in fp32 this must be
    # every parameter once (a tied embedding once), as the model itself counts them
    with torch.device("meta"):
        model = perfmamba.MambaLM(cfg, init=False)
    b1 = F.component_counts(cfg, 1, 64, "decode")["total"]["bytes"]
    b2 = F.component_counts(cfg, 2, 64, "decode")["total"]["bytes"]
    assert 2 * b1 - b2 == weight_bytes(model)
    # the scan reads and writes the whole recurrent state once per step, the conv its cache: storing them in
    # fp16 instead of fp32 saves 2 passes × half of the fp32 cache = the fp32 cache's size (MambaCache.nbytes)
    cache = MambaCache.allocate(cfg, 3, device="meta").nbytes()
    for fn, key in ((F.BYTES["ssm.scan"], "ssm_state"), (F.BYTES["conv1d"], "conv_state")):
        saved = fn(cfg, 3, 64, "decode") - fn(cfg, 3, 64, "decode", state_dtype=torch.float16)
        assert saved == cache[key], key
    # prefill writes them once
    scan = F.BYTES["ssm.scan"]
    saved = scan(cfg, 3, 64, "prefill") - scan(cfg, 3, 64, "prefill", state_dtype=torch.float16)
    assert saved == cache["ssm_state"] // 2


def test_bf16_halves_activation_and_weight_bytes():
    a = F.BYTES["out_proj"](M2, 8, 512, "prefill", dtype=torch.float32)
    b = F.BYTES["out_proj"](M2, 8, 512, "prefill", dtype=torch.bfloat16)
    assert a == 2 * b == 24 * (1536 * 768 + 8 * 512 * (1536 + 768)) * 4


def test_per_layer_d_state_sums_layers():
    cfg = perfmamba.preset("mamba-tiny", d_state=[13, 4])
    full, pruned = perfmamba.preset("mamba-tiny"), perfmamba.preset("mamba-tiny", d_state=4)
    s = F.FLOPS["ssm.scan"](cfg, 2, 9, "prefill")
    assert s == (F.FLOPS["ssm.scan"](full, 2, 9, "prefill") + F.FLOPS["ssm.scan"](pruned, 2, 9, "prefill")) // 2


def test_component_counts_total_is_sum_of_top_level():
    c = F.component_counts(M1, 8, 512, "prefill")
    assert set(c) == {"embedding", "rmsnorm", "in_proj", "conv1d", "ssm", "out_proj", "lm_head",
                      "ssm.x_proj", "ssm.dt_proj", "ssm.scan", "total"}
    top = ("embedding", "rmsnorm", "in_proj", "conv1d", "ssm", "out_proj", "lm_head")
    assert c["total"]["flops"] == sum(c[k]["flops"] for k in top)
    assert "gated_norm" in F.component_counts(M2, 1, 64, "decode")


@pytest.mark.parametrize("bad", [dict(batch=0), dict(seqlen=-3), dict(phase="train"), dict(batch=1.5)],
                         ids=["batch0", "seqlen-3", "phase", "batch-float"])
def test_bad_shape_arguments_raise_one_line_error(bad):
    kw = dict(batch=1, seqlen=64, phase="prefill") | bad
    with pytest.raises(perfmamba.PerfmambaError) as e:
        F.FLOPS["in_proj"](M1, kw["batch"], kw["seqlen"], kw["phase"])
    assert "\n" not in str(e.value)


def test_roofline_points():
    base = dict(model="m", phase="prefill", batch=1, seqlen=64)
    rows = [dict(base, component="ssm", method="timers", metric="time", value=1.0, median=1.0, unit="ms"),
            dict(base, component="ssm", method="profiler", metric="time", value=9.0, median=9.0, unit="ms"),
            dict(base, component="ssm", method="analytic", metric="flops", value=1e9, unit="flop"),
            dict(base, component="ssm", method="analytic", metric="bytes", value=1e6, unit="byte"),
            dict(base, component="in_proj", method="analytic", metric="flops", value=4e6, unit="flop"),
            dict(base, component="in_proj", method="analytic", metric="bytes", value=4e6, unit="byte"),
            dict(base, component="in_proj", method="timers", metric="time", value=0.01, median=0.01, unit="ms")]
    pts = F.roofline_points(rows, peak_flops=1e12, peak_bw=1e9).set_index("component")
    assert pts.loc["ssm", "intensity"] == 1000.0
    assert pts.loc["ssm", "achieved_flops"] == pytest.approx(1e12)  # 1e9 FLOP in 1 ms (timers, not profiler)
    assert pts.loc["ssm", "achieved_bandwidth"] == pytest.approx(1e9)
    assert pts.loc["ssm", "bound"] == "compute" and pts.loc["ssm", "fraction_of_roof"] == pytest.approx(1.0)
    assert pts.loc["in_proj", "bound"] == "memory"
    assert pts.loc["in_proj", "attainable_flops"] == pytest.approx(1e9)  # intensity 1 × 1 GB/s
    assert pts.loc["in_proj", "achieved_flops"] == pytest.approx(4e11)
    assert F.roofline_points(pd.DataFrame(), 1, 1).empty
    with pytest.raises(perfmamba.PerfmambaError):
        F.roofline_points(rows, 0, 1e9)
    assert math.isnan(F.arithmetic_intensity(1, 0))


def test_cpu_reference_counts_the_forwards_matrix_products_by_hand_and_by_the_flop_functions():
    """benchmarks/cpu_reference.py bounds the speed-up over transformers by the time of the matrix products of a
    forward that computes logits at every position. Hand count, B = 1, L = 2048, no biases: per layer
    in_proj D·I + x_proj E·(R + 2N) + dt_proj R·E + out_proj E·D; the tied head D·V at every position."""
    import importlib.util
    from pathlib import Path

    import perfmamba
    from perfmamba.profiling import flops as F

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_reference.py"
    spec = importlib.util.spec_from_file_location("cpu_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m1 = perfmamba.load("mamba-130m").config
    shapes = mod.matmul_shapes(m1, 1, 2048)
    assert shapes == {(2048, 768, 3072): 24, (2048, 1536, 768): 24, (2048, 1536, 48 + 2 * 16): 24,
                      (2048, 48, 1536): 24, (2048, 768, 50280): 1}
    m2 = perfmamba.load("mamba2-130m").config  # in_proj 2E + 2GN + H outputs, no x_proj / dt_proj
    assert mod.matmul_shapes(m2, 1, 2048) == {(2048, 768, 2 * 1536 + 2 * 128 + 24): 24, (2048, 1536, 768): 24,
                                              (2048, 768, 50280): 1}
    for cfg in (m1, m2):  # the same FLOPs as the analytic functions (LM head: one position's, at every position)
        flop = sum(2 * m * k * n * c for (m, k, n), c in mod.matmul_shapes(cfg, 2, 64).items())
        want = sum(F.FLOPS[c](cfg, 2, 64, "prefill") for c in ("in_proj", "ssm.x_proj", "ssm.dt_proj", "out_proj"))
        assert flop == want + 64 * F.FLOPS["lm_head"](cfg, 2, 64, "prefill")
    gflop, seconds = mod.matmul_floor(m2, 1, 8, threads=1, repeats=1)
    assert gflop * 1e9 == pytest.approx(2 * 8 * (24 * (768 * 3352 + 1536 * 768) + 768 * 50280)) and seconds > 0
