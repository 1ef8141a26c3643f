"""The experiment functions behind the notebooks: rows land under <results_root>/<device-slug>/, a second call
with the same arguments reads them back and recomputes nothing, and the analytic numbers match hand counts."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from perfmamba import experiments, results
from perfmamba.config import preset
from perfmamba.models.lm import MambaLM
from perfmamba.pruning.selection import n_keep


def forbid(monkeypatch, target: str):
    """Make `target` (module.attribute) raise if called: proof that a cached call computes nothing."""
    def fail(*a, **k):
        raise AssertionError(f"{target} was called: rows were recomputed")
    monkeypatch.setattr(target, fail)


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
    forbid(monkeypatch, "perfmamba.pruning.collect_activity")
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
    forbid(monkeypatch, "perfmamba.evaluation.evaluate_model")
    forbid(monkeypatch, "perfmamba.pruning.collect_activity")
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
    assert "no GPU run yet" in experiments.claims_kernels(empty)["kernels_status"]
    results.append_rows(tmp_path / "cpu-some-cpu" / "gpu_kernels.csv", [{"metric": "time", "value": 1.0}])
    assert experiments.gpu_results(tmp_path).empty  # a CPU's directory is not a GPU run
    gpu = tmp_path / "nvidia-h100-80gb-hbm3"
    results.append_rows(gpu / "gpu_kernels.csv", [{"section": "decode", "metric": "time", "value": 1.18, "unit": "ms"}])
    (gpu / "env.json").write_text(json.dumps({"gpu_name": "NVIDIA H100 80GB HBM3"}))
    rows = experiments.gpu_results(tmp_path)
    assert list(rows["device_name"]) == ["NVIDIA H100 80GB HBM3"] and list(rows["experiment"]) == ["gpu_kernels"]


def test_criteria_verdict_is_honest():
    def frame(delta):
        return pd.DataFrame({"model": "m", "ratio": 0.5, "task": "perplexity", "metric": "ppl",
                             "criterion": ["delta", "random", "random", "random"], "value": [delta, 10.0, 11.0, 12.0]})
    assert experiments.claims_criteria(frame(9.0))["criteria_verdict"].startswith("confirmed")
    assert experiments.claims_criteria(frame(10.5))["criteria_verdict"].startswith("refuted")


def test_activity_claim_sees_uneven_and_index_ordered_states():
    rows = pd.DataFrame({"model": "m", "arch": "mamba1", "layer": [0] * 4 + [1] * 4, "state": [0, 1, 2, 3] * 2,
                         "activity": [1.0, 2.0, 3.0, 4.0, 1.0, 1.5, 2.0, 2.5]})
    c = experiments.claims_activity(rows)
    assert c["fig3_c5_verdict"].startswith("confirmed") and "+1.00" in c["fig3_index_corr"]
    flat = rows.assign(activity=1.0)
    assert experiments.claims_activity(flat)["fig3_c5_verdict"].startswith("refuted")


# --- rows committed by a GPU machine -------------------------------------------------------------------------

def _share_rows(model, seqlen, shares, machine="nvidia-test", method="timers"):
    base = dict(model=model, arch="mamba2", path="triton", phase="prefill", batch=8, seqlen=seqlen, method=method,
                cuda_graph=False, metric="share", unit="fraction", machine=machine)
    return [dict(base, component=c, value=v) for c, v in shares.items()]


def test_gpu_claims_skip_host_bound_points_and_judge_each_model_at_its_longest_length():
    rows = pd.DataFrame(
        _share_rows("a", 64, {"ssm": 0.10, "in_proj": 0.05, "other": 0.80})        # host-bound: skipped
        + _share_rows("a", 4096, {"ssm": 0.50, "in_proj": 0.40, "other": 0.10})
        + _share_rows("a", 16384, {"ssm": 0.60, "in_proj": 0.30, "other": 0.10})
        + _share_rows("b", 2048, {"ssm": 0.20, "gated_norm": 0.70, "other": 0.10}))
    c = experiments.claims_components(rows, max_other=0.15)
    assert "a (L = 16384): ssm 60.0 %, largest ssm" in c["table1_ssm_rank"]
    assert "b (L = 2048): ssm 20.0 %, largest gated_norm 70.0 %" in c["table1_ssm_rank"]
    assert c["table1_c2_verdict"].startswith("partly") and "1 of 2 models" in c["table1_c2_verdict"]
    lat = experiments.claims_latency(rows, max_other=0.15)
    # a: 4096 → 16384 rises (the host-bound L = 64 with its 10 % would have made it rise anyway: check the text)
    assert "a 50.0 % → 60.0 % (L 4096 → 16384)" in lat["fig2_ssm_trend"]
    assert lat["fig2_c3_verdict"].startswith("confirmed") and "1 of 1 models" in lat["fig2_c3_verdict"]
    everything = experiments.claims_latency(rows)
    assert "a 10.0 % → 60.0 % (L 64 → 16384)" in everything["fig2_ssm_trend"]


def test_committed_reads_gpu_directories_only_and_gpu_claims_say_why_when_there_are_none(tmp_path):
    cpu, gpu = tmp_path / "cpu-some-cpu", tmp_path / "nvidia-test-gpu"
    for d in (cpu, gpu):
        d.mkdir()
    rows = pd.DataFrame(_share_rows("a", 8192, {"ssm": 0.6, "in_proj": 0.3, "other": 0.1}))
    rows.drop(columns="machine").to_csv(cpu / "profile.csv", index=False)
    none = experiments.committed("profile", tmp_path)
    assert none.empty and "nvidia" not in str(none.attrs)
    keys = {"fig2_c3_verdict": "x", "fig2_machine": "y"}
    said = experiments.gpu_claims(experiments.claims_latency, "profile", keys, results_root=tmp_path)
    assert set(said) == {"gpu_fig2_c3_verdict", "gpu_fig2_machine"}
    assert all("No GPU" in v for v in said.values())
    (gpu / "env.json").write_text(json.dumps({"gpu_name": "Test GPU"}))
    rows.drop(columns="machine").to_csv(gpu / "profile.csv", index=False)
    got = experiments.committed("profile", tmp_path)
    assert set(got["machine"]) == {"nvidia-test-gpu"} and set(got["device_name"]) == {"Test GPU"}
    assert got["seqlen"].dtype.kind == "i"
    said = experiments.gpu_claims(experiments.claims_latency, "profile", keys, results_root=tmp_path)
    assert said["gpu_fig2_machine"].startswith("Test GPU") and said["gpu_fig2_seqlens"] == "8192–8192"
    assert experiments.committed("pruning_efficiency", tmp_path).attrs["message"].startswith("No GPU machine")


def test_claims_efficiency_skips_points_where_the_zeroed_control_moves():
    def pt(mode, ratio, seqlen, ms):
        return dict(model="mamba2-130m", arch="mamba2", phase="prefill", batch=8, seqlen=seqlen, ratio=ratio,
                    mode=mode, machine="nvidia-test", path="triton", method="timers", component="total",
                    metric="time", value=ms, unit="ms", cuda_graph=False, d_state=128 if mode != "removed" else 64)
    rows = pd.DataFrame([pt("dense", 0.0, 1024, 100.0), pt("zeroed", 0.5, 1024, 70.0), pt("removed", 0.5, 1024, 60.0),
                         pt("zeroed", 0.3, 1024, 110.0), pt("zeroed", 0.1, 1024, 99.0),
                         pt("dense", 0.0, 8192, 100.0), pt("zeroed", 0.5, 8192, 101.0),
                         pt("removed", 0.5, 8192, 98.0)])
    c = experiments.claims_efficiency(rows)
    # at L = 1024 the zeroed model (same shapes as dense) is "1.43× faster": noise, so the 1.67× there is not used;
    # the point names the zeroed ratio furthest from 1 (r = 0.3 at 0.91× is off too, but by less)
    assert c["table2_excluded"] == "mamba2-130m prefill B = 8 L = 1024 (zeroed at r = 0.5: 1.43× dense)"
    assert c["table2_speedup"].startswith("1.02×") and "L = 8192" in c["table2_speedup"]
    assert c["table2_c7_verdict"].startswith("partly")


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


def test_gpu_decode_speedups_put_each_measured_ratio_beside_its_bound():
    def k(n, ms):
        return dict(device_name="Test GPU", model="mamba2-130m", path="triton", component="model", phase="decode",
                    batch=64, seqlen=1, d_state=n, metric="latency", value=ms, unit="ms/token")
    kernels = pd.DataFrame([k(128, 2.0), k(64, 1.6), k(12, 1.0)])
    traffic = pd.DataFrame([dict(source="analytic", metric="ideal_speedup", model="mamba2-130m", batch=64, ratio=r,
                                 value=v) for r, v in ((0.5, 1.6), (0.9, 3.4))])
    line = experiments.gpu_decode_speedups(kernels, traffic)
    assert line.startswith("Test GPU, mamba2-130m B = 64")
    assert "r = 0.5 (N′ = 64) 1.25× (bound 1.60×)" in line and "r = 0.9 (N′ = 12) 2.00× (bound 3.40×)" in line
    assert "r = 0.1" not in line  # not measured
    assert experiments.gpu_decode_speedups(kernels.iloc[:0], traffic).startswith("no GPU rows")


def test_claims_efficiency_says_so_when_every_point_fails_the_control():
    def pt(mode, ratio, ms):
        return dict(model="m", arch="mamba2", phase="decode", batch=1, seqlen=16, ratio=ratio, mode=mode,
                    machine="nvidia-test", path="triton", method="timers", component="total", metric="time",
                    value=ms, unit="ms", cuda_graph=False, d_state=8)
    c = experiments.claims_efficiency(pd.DataFrame([pt("dense", 0.0, 1.0), pt("zeroed", 0.5, 0.5),
                                                    pt("removed", 0.5, 0.4)]))
    assert c["table2_c7_verdict"].startswith("not reproducible here: every timed point fails")
    assert c["table2_c9_verdict"].startswith("not reproducible here: every timed point fails")
    assert "control" not in c["table2_c8_verdict"]  # memory does not depend on timing noise
    assert c["table2_excluded"] == "m decode B = 1 L = 16 (zeroed at r = 0.5: 2.00× dense)"


# --- C11: the SSM's memory, Mamba-2 against Mamba-1 ---------------------------------------------------------

def _ssm_memory_rows(mamba1_gb, mamba2_gb, peak=(1.0, 1.0), seqlen=2048):
    rows = []
    for model, arch, soa, pk in (("mamba-130m", "mamba1", mamba1_gb, peak[0]),
                                 ("mamba2-130m", "mamba2", mamba2_gb, peak[1])):
        base = dict(model=model, arch=arch, path="ref", phase="prefill", batch=1, seqlen=seqlen, component="ssm",
                    method="profiler", unit="byte")
        rows += [dict(base, metric="sum_of_allocations", value=soa * 2**30),
                 dict(base, metric="activation_peak", value=pk * 2**30)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("m1, m2, verdict", [(2.0, 2.6, "confirmed"),   # 1.30×: within 25 % of the paper's 1.335×
                                             (2.0, 4.0, "partly"),      # 2.00×: the direction, not the size
                                             (2.0, 1.8, "refuted")])    # Mamba-2 below Mamba-1
def test_ssm_memory_claim_judges_the_sum_of_allocations_against_the_quoted_ratio(m1, m2, verdict):
    c = experiments.claims_ssm_memory(_ssm_memory_rows(m1, m2, peak=(0.5, 0.4)))
    assert c["table1_c11_verdict"].startswith(verdict)
    want = f"sum of allocations {m2:.3g} / {m1:.3g} GB = {m2 / m1:.2f}×, activation peak 0.80×"
    assert want in c["table1_ssm_memory"]
    assert f"is {86.64 / m1:.0f}× our mamba-130m's" in c["table1_ssm_memory_scale"]


def test_ssm_memory_claim_says_which_lengths_it_has():
    with pytest.raises(experiments.ExperimentError, match="lengths with memory rows: 256"):
        experiments.claims_ssm_memory(_ssm_memory_rows(2.0, 2.6, seqlen=256))


def test_read_sweep_names_the_machine_of_a_committed_csv(tmp_path):
    d = tmp_path / "cpu-some-cpu"
    results.append_rows(d / "profile_cpu.csv", _ssm_memory_rows(2.0, 2.6).to_dict("records"))
    (d / "env.json").write_text(json.dumps({"cpu_model": "Some CPU", "cpu_count": 2}))
    rows = experiments.read_sweep(d / "profile_cpu.csv")
    assert set(rows["machine"]) == {"cpu-some-cpu"}
    assert experiments.machine_label(rows).startswith("Some CPU CPU (2 cores)")
    assert experiments.read_sweep(None).attrs["message"] == "No committed rows at None."


def test_share_claims_read_one_batch_per_model_the_papers_where_measured():
    rows = pd.DataFrame(
        [dict(r, batch=1) for r in _share_rows("a", 64, {"ssm": 0.9, "in_proj": 0.05, "other": 0.05})
         + _share_rows("a", 4096, {"ssm": 0.1, "in_proj": 0.85, "other": 0.05})]      # batch 1: falls
        + _share_rows("a", 64, {"ssm": 0.3, "in_proj": 0.6, "other": 0.1})             # batch 8: rises
        + _share_rows("a", 4096, {"ssm": 0.6, "in_proj": 0.3, "other": 0.1})
        + [dict(r, batch=1) for r in _share_rows("b", 64, {"ssm": 0.2, "in_proj": 0.7, "other": 0.1})
           + _share_rows("b", 4096, {"ssm": 0.4, "in_proj": 0.5, "other": 0.1})])     # b: batch 1 only
    lat = experiments.claims_latency(rows)
    assert "a (B 8) 30.0 % → 60.0 % (L 64 → 4096)" in lat["fig2_ssm_trend"]
    assert "b (B 1) 20.0 % → 40.0 %" in lat["fig2_ssm_trend"]
    assert lat["fig2_c3_verdict"].startswith("confirmed")
    comp = experiments.claims_components(rows)
    assert "a (B 8, L = 4096): ssm 60.0 %, largest ssm" in comp["table1_ssm_rank"]
    one = experiments.claims_latency(rows[rows.batch == 8])
    assert "(B " not in one["fig2_ssm_trend"]  # one batch size: no label


def test_sweep_claims_prefix_their_keys_and_say_why_without_rows():
    rows = pd.DataFrame(_share_rows("a", 64, {"ssm": 0.3, "other": 0.1}) + _share_rows("a", 4096, {"ssm": 0.6}))
    got = experiments.sweep_claims(experiments.claims_latency, rows, ["fig2_c3_verdict"])
    assert got["sweep_fig2_c3_verdict"].startswith("confirmed") and "sweep_fig2_seqlens" in got
    empty = experiments.sweep_claims(experiments.claims_latency, experiments.read_sweep(None), ["fig2_c3_verdict"])
    assert empty == {"sweep_fig2_c3_verdict": "No committed rows at None."}


def test_method_agreement_counts_the_points_whose_shares_agree():
    agree = {"ssm": 0.6, "in_proj": 0.3, "other": 0.1}
    rows = pd.DataFrame(_share_rows("a", 64, agree) + _share_rows("a", 64, agree, method="profiler")
                        + _share_rows("a", 512, agree)
                        + _share_rows("a", 512, {"ssm": 0.2, "in_proj": 0.7, "other": 0.1}, method="profiler"))
    got = experiments.claims_method_agreement(rows)["methods_agree"]
    assert got.startswith("1 of 2 points")


def _ms_rows(model, seqlen, ms, method, phase="prefill"):
    base = dict(model=model, arch="mamba1", path="triton", phase=phase, batch=8, seqlen=seqlen, method=method,
                cuda_graph=False, metric="time", unit="ms", machine="nvidia-test")
    return [dict(base, component=c, value=v) for c, v in ms.items()]


def test_trace_gap_names_the_components_the_trace_misses_and_how_much_of_the_gap_they_make():
    timers = {"total": 100.0, "in_proj": 20.0, "conv1d": 10.0, "ssm": 62.0, "ssm.scan": 50.0, "ssm.x_proj": 6.0,
              "other": 8.0, "embedding": 0.5}
    # the trace misses the scan (a kernel no torch op launched) and half the conv; the rest agrees within 5 %
    trace = {"total": 44.0, "in_proj": 21.0, "conv1d": 5.0, "ssm": 11.0, "ssm.scan": 0.5, "ssm.x_proj": 6.0,
             "other": 7.6, "embedding": 0.1}
    host_bound = {"total": 100.0, "in_proj": 10.0, "ssm": 20.0, "other": 70.0}
    rows = pd.DataFrame(_ms_rows("m", 8192, timers, "timers") + _ms_rows("m", 8192, trace, "profiler")
                        + _ms_rows("m", 64, host_bound, "timers")
                        + _ms_rows("m", 64, {"total": 5.0, "in_proj": 2.0, "ssm": 3.0}, "profiler"))
    g = experiments.trace_gap(rows, max_other=0.15)
    assert list(g["seqlen"]) == [8192]  # L = 64 is host-bound ("other" 70 %)
    r = g.iloc[0]
    assert r["gap (ms)"] == pytest.approx(56.0) and r["under-counted (ms)"] == pytest.approx(5.0 + 51.0)
    # the embedding (0.5 % of the call) is below TRACE_GAP_MIN and not listed
    assert r["under-counted (timers vs profiler)"] == "conv1d 10.0 vs 5.0 ms, ssm 62.0 vs 11.0 ms (ssm.scan 50.0 vs 0.5)"
    assert r["others max rel. diff"] == pytest.approx(0.05)  # in_proj 20 vs 21; other 8 vs 7.6
    assert len(experiments.trace_gap(rows)) == 2  # without max_other every point
    line = experiments.claims_trace_gap(rows, max_other=0.15)["trace_gap"]
    assert line.startswith("m at L = 8192: the trace sums 44.0 of the timers' 100.0 ms")
    assert "56.0 ms together against a gap of 56.0 ms" in line and line.endswith("agree within 5%")
    agree = pd.DataFrame(_ms_rows("m", 8192, timers, "timers") + _ms_rows("m", 8192, timers, "profiler"))
    assert "under-counts" not in experiments.claims_trace_gap(agree)["trace_gap"]
    # a second batch size is named; where every component is under-counted no "agree within" is claimed
    lost = {"total": 100.0, "ssm": 90.0, "other": 10.0}
    b1 = [dict(r, batch=1) for r in _ms_rows("m", 512, lost, "timers")
          + _ms_rows("m", 512, {"total": 1.0, "ssm": 0.5, "other": 0.5}, "profiler")]
    two = experiments.claims_trace_gap(pd.concat([rows, pd.DataFrame(b1)]), max_other=0.15)["trace_gap"]
    assert two.startswith("m (B 1) at L = 512: the trace sums 1.0 of the timers' 100.0 ms; it under-counts ssm "
                          "90.0 vs 0.5 ms, other 10.0 vs 0.5 ms, 99.0 ms together against a gap of 99.0 ms; m (B 8)")
    with pytest.raises(experiments.ExperimentError, match="at most 15%"):
        experiments.trace_gap(rows[rows["seqlen"] == 64], max_other=0.15)


def test_claims_host_bound_reports_other_of_host_bound_prefills_and_eager_against_graph_decode():
    rows = pd.DataFrame(
        _share_rows("a", 64, {"ssm": 0.1, "other": 0.60}) + _share_rows("a", 1024, {"ssm": 0.3, "other": 0.40})
        + _share_rows("a", 8192, {"ssm": 0.6, "other": 0.10})          # device-bound: not listed
        + _share_rows("b", 512, {"ssm": 0.2, "other": 0.5})
        + [dict(r, phase="decode") for r in _share_rows("a", 64, {"ssm": 0.1, "other": 0.70})]
        + [dict(r, phase="decode", seqlen=8192) for r in _share_rows("a", 64, {"ssm": 0.1, "other": 0.66})]
        + _ms_rows("a", 64, {"total": 70.0}, "timers", phase="decode")
        + _ms_rows("a", 8192, {"total": 130.2}, "timers", phase="decode")
        + [dict(r, cuda_graph=True) for r in _ms_rows("a", 64, {"total": 1.61}, "timers", phase="decode")])
    c = experiments.claims_host_bound(rows, max_other=0.15)
    assert c == {"host_bound_prefill": "a L = 64–1024: 40–60 %; b L = 512: 50 %", "host_bound_decode": "66–70 %",
                 "decode_eager_ms": "70.0–130.2 ms with the timers", "decode_graph_ms": "1.61 ms"}
    # the step timed whole replaces the timers' total; a second batch size is named
    more = pd.concat([rows, pd.DataFrame(_ms_rows("a", 64, {"total": 3.0}, "call", phase="decode")
                                         + [dict(r, batch=64) for r in _share_rows("a", 64, {"other": 0.9})])])
    c = experiments.claims_host_bound(more, max_other=0.15)
    assert c["decode_eager_ms"] == "3.0 ms timed whole"
    assert c["host_bound_prefill"] == "a (B 8) L = 64–1024: 40–60 %; a (B 64) L = 64: 90 %; b (B 8) L = 512: 50 %"
    quiet = pd.DataFrame(_share_rows("a", 8192, {"ssm": 0.6, "other": 0.10}))
    assert experiments.claims_host_bound(quiet) == {"host_bound_prefill": "none above 15%", "host_bound_decode":
                                                    "not measured", "decode_eager_ms": "not measured",
                                                    "decode_graph_ms": "not measured"}


def test_instrumentation_cost_sets_the_timers_total_beside_the_call_timed_whole(tmp_path):
    timers = _ms_rows("m", 512, {"total": 80.0}, "timers") + _ms_rows("m", 8192, {"total": 150.0}, "timers")
    call = _ms_rows("m", 8192, {"total": 120.0}, "call")
    rows = pd.DataFrame(timers + call).assign(machine="nvidia-test")
    kernels = pd.DataFrame([dict(model="m", arch="mamba1", path="triton", component="model", phase="prefill",
                                 batch=8.0, seqlen=512.0, d_state=d, metric="latency", value=v, unit="ms",
                                 machine="nvidia-test") for d, v in ((16, 14.0), (16, 16.0), (8, 9.0))]
                           + [dict(model="m", arch="mamba1", path="triton", component="model", phase="prefill",
                                   batch=8.0, seqlen=8192.0, d_state=16, metric="latency", value=50.0, unit="ms",
                                   machine="nvidia-test")])  # L = 8192 has call rows of its own: not used there
    c = experiments.instrumentation_cost(rows, kernels).set_index("seqlen")
    # L = 512: the two dense do_bench latencies (the pruned N = 8 is another model); L = 8192: the call rows
    assert c.loc[512, "whole call (ms)"] == "14.0–16.0" and c.loc[512, "ratio"] == pytest.approx(80 / 15)
    assert c.loc[512, "source"] == "kernel campaign, do_bench"
    assert c.loc[8192, "ratio"] == pytest.approx(1.25) and c.loc[8192, "source"] == "call rows"
    with pytest.raises(experiments.ExperimentError, match="both with the timers and whole"):
        experiments.instrumentation_cost(pd.DataFrame(timers))
    gpu = tmp_path / "nvidia-test"
    gpu.mkdir()
    kernels.drop(columns="machine").to_csv(gpu / "gpu_kernels.csv", index=False)
    line = experiments.claims_instrumentation(rows, results_root=tmp_path)["instrumentation"]
    assert line.startswith("m prefill B = 8 L = 512: 80.0 ms with the timers against 14.0–16.0 ms timed whole "
                           "(5.3×; kernel campaign, do_bench)")
    assert line.endswith("L = 8192: 150.0 ms with the timers against 120.0 ms timed whole (1.2×; call rows)")


def test_claims_tradeoff_judges_speed_on_the_phase_with_the_longest_dense_call():
    t = pd.DataFrame({"model": ["a"] * 4, "ratio": [0.0, 0.3, 0.6, 0.9], "ppl_test": [10.0, 11.0, 12.0, 13.0],
                      "speedup_decode": [1.0, 0.9, 1.2, 0.95], "speedup_prefill": [1.0, 1.1, 1.2, 1.3],
                      "dense_ms_decode": [2.0] * 4, "dense_ms_prefill": [20.0] * 4})
    c = experiments.claims_tradeoff(t)
    assert c["fig6_c10_verdict"].startswith("confirmed (1 of 1 models")
    assert "ρ(r, speedup_prefill) = +1.00 (judged), ρ(r, speedup_decode) = +0.00" in c["fig6_monotone"]
    slow_decode = t.assign(dense_ms_decode=200.0)  # now the decode call is the better resolved one
    c = experiments.claims_tradeoff(slow_decode)
    assert c["fig6_c10_verdict"].startswith("refuted (0 of 1 models") and "speedup_decode) = +0.00 (judged)" in \
        c["fig6_monotone"]
