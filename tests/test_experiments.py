"""The experiment functions behind the notebooks: rows land under <results_root>/<device-slug>/, a second call
with the same arguments reads them back and recomputes nothing, and the analytic numbers match hand counts."""
from __future__ import annotations

import importlib
import json
import sys

import pandas as pd
import pytest
import torch

from perfmamba import experiments, results
from perfmamba.config import preset
from perfmamba.models.lm import MambaLM
from perfmamba.pruning.selection import n_keep

from helpers import _share_rows, instrumentation_rows, trace_gap_rows


def forbid(monkeypatch, target: str):
    """Make `target` (module.attribute, the name as the calling module holds it) raise if called: proof that a
    cached call computes nothing. The module is looked up by its name, since a package may export a function of
    the same name (experiments.activity)."""
    module, name = target.rsplit(".", 1)
    importlib.import_module(module)

    def fail(*a, **k):
        raise AssertionError(f"{target} was called: rows were recomputed")
    monkeypatch.setattr(sys.modules[module], name, fail)


def n_lines(path) -> int:
    return len(path.read_text().splitlines())


def test_latency_is_cached_and_resumable(tmp_path, monkeypatch):
    kw = dict(phases=("prefill", "decode"), warmup=0, iters=1, results_root=tmp_path, progress=False)
    rows = experiments.latency(["mamba-tiny"], [17], [1], **kw)
    path = results.results_path("latency", root=tmp_path)
    assert path.is_file() and (path.parent / "env.json").is_file()
    assert set(rows["phase"]) == {"prefill", "decode"} and set(rows["machine"]) == {path.parent.name}
    assert {"device", "path"} <= set(rows.columns) and set(rows["path"]) == {"ref"}
    before = n_lines(path)
    forbid(monkeypatch, "perfmamba.profiling.attribution.attribute")
    again = experiments.latency(["mamba-tiny"], [17], [1], **kw)
    assert n_lines(path) == before
    pd.testing.assert_frame_equal(rows, again)
    # a new point is measured, the old ones are not (attribute is still forbidden → it must fail)
    with pytest.raises(AssertionError, match="recomputed"):
        experiments.latency(["mamba-tiny"], [17, 19], [1], **kw)


def test_activity_rows_per_layer_and_state(tmp_path, monkeypatch):
    rows = experiments.activity({"mamba2": "mamba2-tiny"}, n_tokens=96, seq_len=32, results_root=tmp_path,
                                progress=False)
    cfg = preset("mamba2-tiny")
    assert len(rows) == cfg.n_layer * cfg.d_state
    assert set(rows["model_sha"]) == {"preset"} and (rows["activity"] > 0).all()
    forbid(monkeypatch, "perfmamba.experiments.activity.collect_activity")
    assert len(experiments.activity(["mamba2-tiny"], n_tokens=96, seq_len=32, results_root=tmp_path)) == len(rows)


def test_checkpoint_fingerprint_follows_the_weights(tmp_path):
    model = MambaLM.from_config(preset("mamba-tiny"))
    model.save(tmp_path / "m", overwrite=True)
    name, sha = experiments.model_ref(tmp_path / "m")
    assert name == "m" and sha.startswith("sha256:") and len(sha) == len("sha256:") + 12
    with torch.no_grad():
        model.backbone.norm_f.weight.add_(1.0)
    model.save(tmp_path / "m", overwrite=True)
    assert experiments.model_ref(tmp_path / "m")[1] != sha


def test_pruning_quality_dense_and_pruned_rows_are_cached(tmp_path, monkeypatch):
    kw = dict(criteria=("delta", "random"), seeds=(0, 1), splits=(), tasks=(), recall=(1, 2), recall_seqs=16,
              calib_tokens=64, calib_seq_len=32, results_root=tmp_path, progress=False)
    rows = experiments.pruning_quality(["mamba2-tiny"], [0.5], **kw)
    # dense + delta + two random seeds, each at two n_pairs
    pts = rows.groupby(["ratio", "criterion", "seed"]).size()
    assert dict(pts) == {(0.0, "none", 0): 2, (0.5, "delta", 0): 2, (0.5, "random", 0): 2, (0.5, "random", 1): 2}
    kept = rows.loc[rows["criterion"] != "none", "d_state_kept"]
    assert (kept == n_keep(13, 0.5)).all()
    assert ((rows["value"] >= 0) & (rows["value"] <= 1)).all() and set(rows["path"]) == {"ref"}
    forbid(monkeypatch, "perfmamba.experiments.quality.evaluate_model")
    forbid(monkeypatch, "perfmamba.experiments.quality.collect_activity")
    again = experiments.pruning_quality(["mamba2-tiny"], [0.5], **kw)
    pd.testing.assert_frame_equal(rows, again)
    # another evaluation setting is another key: it must compute
    with pytest.raises(AssertionError, match="recomputed"):
        experiments.pruning_quality(["mamba2-tiny"], [0.5], **dict(kw, recall=(1, 2, 4)))


def test_pruning_quality_refuses_unknown_criterion(tmp_path):
    with pytest.raises(experiments.ExperimentError, match="unknown criterion 'deltaa'"):
        experiments.pruning_quality(["mamba-tiny"], [0.5], criteria=["deltaa"], recall=[1], results_root=tmp_path)
    with pytest.raises(experiments.ExperimentError, match="unknown model"):
        experiments.pruning_quality(["no-such-model"], [0.5], recall=[1], results_root=tmp_path)


def test_pruning_efficiency_state_bytes_and_cache(tmp_path, monkeypatch):
    kw = dict(batches=(2,), seqlens=(16,), phases=("decode",), warmup=0, iters=1, results_root=tmp_path,
              progress=False)
    rows = experiments.pruning_efficiency(["mamba2-tiny"], [0.5, 0.9], **kw)
    s = experiments.efficiency_summary(rows).set_index("ratio")
    cfg = preset("mamba2-tiny")
    assert s.loc[0.0, "speedup"] == 1.0
    for r in (0.5, 0.9):  # SSM state bytes: b · nheads · headdim · N′ · n_layer · 4
        assert s.loc[r, "ssm_state"] == 2 * cfg.nheads * cfg.headdim * n_keep(13, r) * cfg.n_layer * 4
        assert s.loc[r, "weights_reduction"] > 0 and s.loc[r, "state_reduction"] > 0
    forbid(monkeypatch, "perfmamba.profiling.attribution.attribute")
    again = experiments.pruning_efficiency(["mamba2-tiny"], [0.5, 0.9], **kw)
    assert len(again) == len(rows)
    with pytest.raises(experiments.ExperimentError, match="needs no calibration"):
        experiments.pruning_efficiency(["mamba2-tiny"], [0.5], criterion="delta", **kw)


def test_efficiency_summary_times_decode_by_its_cuda_graph_where_there_is_one():
    # GPU-shaped rows: eager decode is launch-bound (the same 60 ms dense and pruned), the graphed step is not
    def rows(ratio, eager, graph=None, phase="decode"):
        base = dict(model="m", arch="mamba2", phase=phase, batch=8, seqlen=1024, ratio=ratio, machine="gpu",
                    path="triton", method="timers", component="total", metric="time", unit="ms",
                    mode="dense" if ratio == 0 else "removed", d_state=128 if ratio == 0 else 64)
        out = [dict(base, cuda_graph=False, value=eager)]
        if graph is not None:
            out.append(dict(base, cuda_graph=True, value=graph))
        return out

    df = pd.DataFrame(rows(0.0, 60.0, 2.0) + rows(0.5, 60.0, 1.6) + rows(0.0, 10.0, phase="prefill")
                      + rows(0.5, 8.0, phase="prefill"))
    s = experiments.efficiency_summary(df).set_index(["phase", "ratio"])
    assert s.loc[("decode", 0.5), "time_ms"] == 1.6 and s.loc[("decode", 0.5), "timing"] == "cuda graph"
    assert s.loc[("decode", 0.5), "speedup"] == pytest.approx(1.25)
    assert s.loc[("prefill", 0.5), "timing"] == "eager" and s.loc[("prefill", 0.5), "speedup"] == 1.25
    # without graph rows (a CPU) the eager step is the decode time
    s = experiments.efficiency_summary(df[df["cuda_graph"] == False]).set_index(["phase", "ratio"])  # noqa: E712
    assert s.loc[("decode", 0.5), "time_ms"] == 60.0 and s.loc[("decode", 0.5), "timing"] == "eager"
    # a call timed whole (method "call") replaces the timers' total, which carries the cost of their events
    whole = [dict(r, method="call", value=v) for r, v in zip(rows(0.0, 0.0, phase="prefill")
                                                          + rows(0.5, 0.0, phase="prefill"), (4.0, 3.2))]
    s = experiments.efficiency_summary(pd.concat([df, pd.DataFrame(whole)])).set_index(["phase", "ratio"])
    assert s.loc[("prefill", 0.5), "time_ms"] == 3.2 and s.loc[("prefill", 0.5), "timing"] == "eager, whole call"
    assert s.loc[("prefill", 0.5), "speedup"] == pytest.approx(1.25) and s.loc[("decode", 0.5), "time_ms"] == 1.6
    # where only some ratios of a point were timed whole (a resumed sweep), the point keeps the timers for all:
    # a whole-call time is never divided by a timers time
    part = experiments.efficiency_summary(pd.concat([df, pd.DataFrame(whole[:1])])).set_index(["phase", "ratio"])
    assert (part.xs("prefill")["timing"] == "eager").all() and part.loc[("prefill", 0.5), "speedup"] == 1.25
    # a key column left empty (NaN) still makes one point, not one per timing
    nan = experiments.efficiency_summary(pd.concat([df, pd.DataFrame(whole)]).assign(arch=None))
    assert len(nan) == 4 and nan["speedup"].notna().all()


def test_pruning_efficiency_modes_zeroed_and_bridge_keep_the_dense_state(tmp_path):
    kw = dict(batches=(2,), seqlens=(16,), phases=("decode",), warmup=0, iters=1, results_root=tmp_path,
              progress=False)
    rows = experiments.pruning_efficiency(["mamba2-tiny"], [0.5], modes=("zeroed", "bridge", "removed"), **kw)
    assert set(rows["mode"]) == {"dense", "zeroed", "bridge", "removed"}
    t = experiments.mode_comparison(rows).set_index("ratio")
    # masked states keep the dense shapes, so no state is saved; removed states shrink the SSM state (by
    # 1 − N′/N) and the conv cache (its B and C channels)
    assert t.loc[0.5, "state reduction zeroed"] == 0.0 and t.loc[0.5, "state reduction bridge"] == 0.0
    assert 0.3 < t.loc[0.5, "state reduction removed"] < 1 - n_keep(13, 0.5) / 13
    assert {"speedup zeroed", "speedup bridge", "speedup removed"} <= set(t.columns)
    # the removed-only views are unchanged by the extra modes
    s = experiments.efficiency_summary(rows).set_index("ratio")
    assert len(s) == 2 and s.loc[0.5, "state_reduction"] > 0
    with pytest.raises(experiments.ExperimentError):
        experiments.mode_comparison(rows[rows["mode"] == "dense"])


def test_tradeoff_joins_quality_and_efficiency(tmp_path):
    q = experiments.pruning_quality(["mamba2-tiny"], [0.5], splits=(), tasks=(), recall=(1,), recall_seqs=16,
                                    calib_tokens=64, calib_seq_len=32, results_root=tmp_path, progress=False)
    e = experiments.pruning_efficiency(["mamba2-tiny"], [0.5], seqlens=(16,), phases=("decode",), warmup=0, iters=1,
                                       results_root=tmp_path, progress=False)
    t = experiments.tradeoff(q, e)
    assert list(t["ratio"]) == [0.0, 0.5]
    assert {"recall1_acc", "speedup_decode", "state_reduction"} <= set(t.columns)
    with pytest.raises(experiments.ExperimentError):
        experiments.tradeoff(q, e.iloc[:0])


def test_decode_state_traffic_matches_hand_counts(tmp_path):
    rows = experiments.decode_state_traffic(["mamba2-tiny"], [3], [0.5], dtype="bfloat16", results_root=tmp_path)
    a = rows[rows["source"] == "analytic"].pivot_table(index="ratio", columns="metric", values="value")
    cfg = preset("mamba2-tiny")
    params = MambaLM.from_config(cfg).num_parameters()
    assert a.loc[0.0, "weights_bytes"] == 2 * params
    for r in (0.0, 0.5):
        assert a.loc[r, "ssm_state_bytes"] == 3 * cfg.nheads * cfg.headdim * n_keep(13, r) * cfg.n_layer * 2
    assert a.loc[0.0, "ideal_speedup"] == 1.0 and a.loc[0.5, "ideal_speedup"] > 1.0
    frac = a.loc[0.0, "state_traffic_fraction"]
    assert frac == 2 * (a.loc[0.0, "ssm_state_bytes"] + a.loc[0.0, "conv_state_bytes"]) / a.loc[0.0, "step_bytes"]
    with pytest.raises(experiments.ExperimentError, match="preset names"):
        experiments.decode_state_traffic(["./dir"], [1], [0.5], results_root=tmp_path)


def test_gpu_results_empty_and_committed(tmp_path):
    empty = experiments.gpu_results(tmp_path)
    assert empty.empty and "No GPU results" in empty.attrs["message"]
    results.append_rows(tmp_path / "cpu-some-cpu" / "gpu_kernels.csv", [{"metric": "time", "value": 1.0}])
    assert experiments.gpu_results(tmp_path).empty  # a CPU's directory is not a GPU run
    gpu = tmp_path / "nvidia-h100-80gb-hbm3"
    results.append_rows(gpu / "gpu_kernels.csv", [{"section": "decode", "metric": "time", "value": 1.18, "unit": "ms"}])
    (gpu / "env.json").write_text(json.dumps({"gpu_name": "NVIDIA H100 80GB HBM3"}))
    rows = experiments.gpu_results(tmp_path)
    assert list(rows["device_name"]) == ["NVIDIA H100 80GB HBM3"] and list(rows["experiment"]) == ["gpu_kernels"]


# --- rows committed by a GPU machine -------------------------------------------------------------------------

def test_method_agreement_lists_the_components_that_disagree():
    rows = pd.DataFrame(
        _share_rows("a", 512, {"ssm": 0.60, "in_proj": 0.30, "other": 0.10})
        + _share_rows("a", 512, {"ssm": 0.10, "in_proj": 0.80, "other": 0.10}, method="profiler")
        + _share_rows("a", 4096, {"ssm": 0.60, "in_proj": 0.30, "other": 0.10})
        + _share_rows("a", 4096, {"ssm": 0.55, "in_proj": 0.33, "other": 0.12}, method="profiler"))
    t = experiments.method_agreement(rows).set_index("seqlen")
    assert t.loc[4096, "disagree"] == ""
    assert "ssm: 0.600 vs 0.100" in t.loc[512, "disagree"] and "in_proj" in t.loc[512, "disagree"]
    with pytest.raises(experiments.ExperimentError, match="both methods"):
        experiments.method_agreement(rows[rows["method"] == "timers"])


def _ssm_memory_rows(mamba1_gb, mamba2_gb, peak=(1.0, 1.0), seqlen=2048):
    rows = []
    for model, arch, soa, pk in (("mamba-130m", "mamba1", mamba1_gb, peak[0]),
                                 ("mamba2-130m", "mamba2", mamba2_gb, peak[1])):
        base = dict(model=model, arch=arch, path="ref", phase="prefill", batch=1, seqlen=seqlen, component="ssm",
                    method="profiler", unit="byte")
        rows += [dict(base, metric="sum_of_allocations", value=soa * 2**30),
                 dict(base, metric="activation_peak", value=pk * 2**30)]
    return pd.DataFrame(rows)



def test_read_sweep_names_the_machine_of_a_committed_csv(tmp_path):
    d = tmp_path / "cpu-some-cpu"
    results.append_rows(d / "profile_cpu.csv", _ssm_memory_rows(2.0, 2.6).to_dict("records"))
    (d / "env.json").write_text(json.dumps({"cpu_model": "Some CPU", "cpu_count": 2}))
    rows = experiments.read_sweep(d / "profile_cpu.csv")
    assert set(rows["machine"]) == {"cpu-some-cpu"}
    assert experiments.machine_label(rows).startswith("Some CPU CPU (2 cores)")
    assert experiments.read_sweep(None).attrs["message"] == "No committed rows at None."


def test_trace_gap_names_the_components_the_trace_misses_and_how_much_of_the_gap_they_make():
    rows = trace_gap_rows()  # the trace misses the scan and half the conv; the rest agrees within 5 %
    g = experiments.trace_gap(rows, max_other=0.15)
    assert list(g["seqlen"]) == [8192]  # L = 64 is host-bound ("other" 70 %)
    r = g.iloc[0]
    assert r["gap (ms)"] == pytest.approx(56.0) and r["under-counted (ms)"] == pytest.approx(5.0 + 51.0)
    # the embedding (0.5 % of the call) is below TRACE_GAP_MIN and not listed
    assert r["under-counted (timers vs profiler)"] == "conv1d 10.0 vs 5.0 ms, ssm 62.0 vs 11.0 ms (ssm.scan 50.0 vs 0.5)"
    assert r["others max rel. diff"] == pytest.approx(0.05)  # in_proj 20 vs 21; other 8 vs 7.6
    assert len(experiments.trace_gap(rows)) == 2  # without max_other every point
    with pytest.raises(experiments.ExperimentError, match="at most 15%"):
        experiments.trace_gap(rows[rows["seqlen"] == 64], max_other=0.15)


def test_instrumentation_cost_sets_the_timers_total_beside_the_call_timed_whole(tmp_path):
    rows, kernels = instrumentation_rows()
    kernels = pd.concat([kernels, kernels.iloc[:1].assign(seqlen=8192.0, value=50.0)],  # L = 8192 has call rows
                        ignore_index=True)                                               # of its own: not used there
    timers = rows[rows["method"] == "timers"]
    c = experiments.instrumentation_cost(rows, kernels).set_index("seqlen")
    # L = 512: the two dense do_bench latencies (the pruned N = 8 is another model); L = 8192: the call rows
    assert c.loc[512, "whole call (ms)"] == "14.0–16.0" and c.loc[512, "ratio"] == pytest.approx(80 / 15)
    assert c.loc[512, "source"] == "kernel campaign, do_bench"
    assert c.loc[8192, "ratio"] == pytest.approx(1.25) and c.loc[8192, "source"] == "call rows"
    with pytest.raises(experiments.ExperimentError, match="both with the timers and whole"):
        experiments.instrumentation_cost(timers)
