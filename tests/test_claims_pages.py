"""The numbers the notebooks glue beyond the paper's claim records (`perfmamba.claims.pages`): questions of our
own and the notes on GPU timing, each checked on hand-made rows."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from perfmamba import experiments
from perfmamba.claims import pages
from helpers import TRACE_TIMERS, _ms_rows, _share_rows, instrumentation_rows, trace_gap_rows


def test_kernels_status_without_gpu_rows(tmp_path):
    assert "no GPU run yet" in pages.kernels(experiments.gpu_results(tmp_path))["kernels_status"]


def test_criteria_verdict_is_honest():
    def frame(delta):
        return pd.DataFrame({"model": "m", "ratio": 0.5, "task": "perplexity", "metric": "ppl",
                             "criterion": ["delta", "random", "random", "random"], "value": [delta, 10.0, 11.0, 12.0]})
    assert pages.criteria(frame(9.0))["criteria_verdict"].startswith("confirmed")
    assert pages.criteria(frame(10.5))["criteria_verdict"].startswith("refuted")


def test_activity_claim_sees_uneven_and_index_ordered_states():
    rows = pd.DataFrame({"model": "m", "arch": "mamba1", "layer": [0] * 4 + [1] * 4, "state": [0, 1, 2, 3] * 2,
                         "activity": [1.0, 2.0, 3.0, 4.0, 1.0, 1.5, 2.0, 2.5]})
    c = pages.activity(rows)
    assert c["fig3_uneven_verdict"].startswith("confirmed") and "+1.00" in c["fig3_index_corr"]
    flat = rows.assign(activity=1.0)
    assert pages.activity(flat)["fig3_uneven_verdict"].startswith("refuted")


def test_trend_skips_host_bound_points():
    rows = pd.DataFrame(
        _share_rows("a", 64, {"ssm": 0.10, "in_proj": 0.05, "other": 0.80})        # host-bound: skipped
        + _share_rows("a", 4096, {"ssm": 0.50, "in_proj": 0.40, "other": 0.10})
        + _share_rows("a", 16384, {"ssm": 0.60, "in_proj": 0.30, "other": 0.10})
        + _share_rows("b", 2048, {"ssm": 0.20, "gated_norm": 0.70, "other": 0.10}))
    lat = pages.latency(rows, max_other=0.15)
    # a: 4096 → 16384 rises (the host-bound L = 64 with its 10 % would have made it rise anyway: check the text)
    assert "a 50.0 % → 60.0 % (L 4096 → 16384)" in lat["fig2_ssm_trend"]
    assert lat["fig2_trend_verdict"].startswith("confirmed") and "1 of 1 models" in lat["fig2_trend_verdict"]
    everything = pages.latency(rows)
    assert "a 10.0 % → 60.0 % (L 64 → 16384)" in everything["fig2_ssm_trend"]


def test_committed_reads_gpu_directories_only_and_gpu_claims_say_why_when_there_are_none(tmp_path):
    cpu, gpu = tmp_path / "cpu-some-cpu", tmp_path / "nvidia-test-gpu"
    for d in (cpu, gpu):
        d.mkdir()
    rows = pd.DataFrame(_share_rows("a", 8192, {"ssm": 0.6, "in_proj": 0.3, "other": 0.1}))
    rows.drop(columns="machine").to_csv(cpu / "profile.csv", index=False)
    none = experiments.committed("profile", tmp_path)
    assert none.empty and "nvidia" not in str(none.attrs)
    keys = {"fig2_trend_verdict": "x", "fig2_machine": "y"}
    said = pages.gpu_claims(pages.latency, "profile", keys, results_root=tmp_path)
    assert set(said) == {"gpu_fig2_trend_verdict", "gpu_fig2_machine"}
    assert all("No GPU" in v for v in said.values())
    (gpu / "env.json").write_text(json.dumps({"gpu_name": "Test GPU"}))
    rows.drop(columns="machine").to_csv(gpu / "profile.csv", index=False)
    got = experiments.committed("profile", tmp_path)
    assert set(got["machine"]) == {"nvidia-test-gpu"} and set(got["device_name"]) == {"Test GPU"}
    assert got["seqlen"].dtype.kind == "i"
    said = pages.gpu_claims(pages.latency, "profile", keys, results_root=tmp_path)
    assert said["gpu_fig2_machine"].startswith("Test GPU") and said["gpu_fig2_seqlens"] == "8192–8192"
    assert experiments.committed("pruning_efficiency", tmp_path).attrs["message"].startswith("No GPU machine")


def test_gpu_decode_speedups_put_each_measured_ratio_beside_its_bound():
    def k(n, ms):
        return dict(device_name="Test GPU", model="mamba2-130m", path="triton", component="model", phase="decode",
                    batch=64, seqlen=1, d_state=n, metric="latency", value=ms, unit="ms/token")
    kernels = pd.DataFrame([k(128, 2.0), k(64, 1.6), k(12, 1.0)])
    traffic = pd.DataFrame([dict(source="analytic", metric="ideal_speedup", model="mamba2-130m", batch=64, ratio=r,
                                 value=v) for r, v in ((0.5, 1.6), (0.9, 3.4))])
    line = pages.gpu_decode_speedups(kernels, traffic)
    assert line.startswith("Test GPU, mamba2-130m B = 64")
    assert "r = 0.5 (N′ = 64) 1.25× (bound 1.60×)" in line and "r = 0.9 (N′ = 12) 2.00× (bound 3.40×)" in line
    assert "r = 0.1" not in line  # not measured
    assert pages.gpu_decode_speedups(kernels.iloc[:0], traffic).startswith("no GPU rows")


def test_share_claims_read_one_batch_per_model_the_papers_where_measured():
    rows = pd.DataFrame(
        [dict(r, batch=1) for r in _share_rows("a", 64, {"ssm": 0.9, "in_proj": 0.05, "other": 0.05})
         + _share_rows("a", 4096, {"ssm": 0.1, "in_proj": 0.85, "other": 0.05})]      # batch 1: falls
        + _share_rows("a", 64, {"ssm": 0.3, "in_proj": 0.6, "other": 0.1})             # batch 8: rises
        + _share_rows("a", 4096, {"ssm": 0.6, "in_proj": 0.3, "other": 0.1})
        + [dict(r, batch=1) for r in _share_rows("b", 64, {"ssm": 0.2, "in_proj": 0.7, "other": 0.1})
           + _share_rows("b", 4096, {"ssm": 0.4, "in_proj": 0.5, "other": 0.1})])     # b: batch 1 only
    lat = pages.latency(rows)
    assert "a (B 8) 30.0 % → 60.0 % (L 64 → 4096)" in lat["fig2_ssm_trend"]
    assert "b (B 1) 20.0 % → 40.0 %" in lat["fig2_ssm_trend"]
    assert lat["fig2_trend_verdict"].startswith("confirmed")
    one = pages.latency(rows[rows.batch == 8])
    assert "(B " not in one["fig2_ssm_trend"]  # one batch size: no label


def test_sweep_claims_prefix_their_keys_and_say_why_without_rows():
    rows = pd.DataFrame(_share_rows("a", 64, {"ssm": 0.3, "other": 0.1}) + _share_rows("a", 4096, {"ssm": 0.6}))
    got = pages.sweep_claims(pages.latency, rows, ["fig2_trend_verdict"])
    assert got["sweep_fig2_trend_verdict"].startswith("confirmed") and "sweep_fig2_seqlens" in got
    empty = pages.sweep_claims(pages.latency, experiments.read_sweep(None), ["fig2_trend_verdict"])
    assert empty == {"sweep_fig2_trend_verdict": "No committed rows at None."}


def test_method_agreement_counts_the_points_whose_shares_agree():
    agree = {"ssm": 0.6, "in_proj": 0.3, "other": 0.1}
    rows = pd.DataFrame(_share_rows("a", 64, agree) + _share_rows("a", 64, agree, method="profiler")
                        + _share_rows("a", 512, agree)
                        + _share_rows("a", 512, {"ssm": 0.2, "in_proj": 0.7, "other": 0.1}, method="profiler"))
    got = pages.method_agreement(rows)["methods_agree"]
    assert got.startswith("1 of 2 points")


def test_trace_gap_sentence_names_the_longest_prefill_of_each_model():
    timers = TRACE_TIMERS
    rows = trace_gap_rows()
    line = pages.trace_gap(rows, max_other=0.15)["trace_gap"]
    assert line.startswith("m at L = 8192: the trace sums 44.0 of the timers' 100.0 ms")
    assert "56.0 ms together against a gap of 56.0 ms" in line and line.endswith("agree within 5%")
    agree = pd.DataFrame(_ms_rows("m", 8192, timers, "timers") + _ms_rows("m", 8192, timers, "profiler"))
    assert "under-counts" not in pages.trace_gap(agree)["trace_gap"]
    # a second batch size is named; where every component is under-counted no "agree within" is claimed
    lost = {"total": 100.0, "ssm": 90.0, "other": 10.0}
    b1 = [dict(r, batch=1) for r in _ms_rows("m", 512, lost, "timers")
          + _ms_rows("m", 512, {"total": 1.0, "ssm": 0.5, "other": 0.5}, "profiler")]
    two = pages.trace_gap(pd.concat([rows, pd.DataFrame(b1)]), max_other=0.15)["trace_gap"]
    assert two.startswith("m (B 1) at L = 512: the trace sums 1.0 of the timers' 100.0 ms; it under-counts ssm "
                          "90.0 vs 0.5 ms, other 10.0 vs 0.5 ms, 99.0 ms together against a gap of 99.0 ms; m (B 8)")


def test_host_bound_reports_other_of_host_bound_prefills_and_eager_against_graph_decode():
    rows = pd.DataFrame(
        _share_rows("a", 64, {"ssm": 0.1, "other": 0.60}) + _share_rows("a", 1024, {"ssm": 0.3, "other": 0.40})
        + _share_rows("a", 8192, {"ssm": 0.6, "other": 0.10})          # device-bound: not listed
        + _share_rows("b", 512, {"ssm": 0.2, "other": 0.5})
        + [dict(r, phase="decode") for r in _share_rows("a", 64, {"ssm": 0.1, "other": 0.70})]
        + [dict(r, phase="decode", seqlen=8192) for r in _share_rows("a", 64, {"ssm": 0.1, "other": 0.66})]
        + _ms_rows("a", 64, {"total": 70.0}, "timers", phase="decode")
        + _ms_rows("a", 8192, {"total": 130.2}, "timers", phase="decode")
        + [dict(r, cuda_graph=True) for r in _ms_rows("a", 64, {"total": 1.61}, "timers", phase="decode")])
    c = pages.host_bound(rows, max_other=0.15)
    assert c == {"host_bound_prefill": "a L = 64–1024: 40–60 %; b L = 512: 50 %", "host_bound_decode": "66–70 %",
                 "decode_eager_ms": "70.0–130.2 ms with the timers", "decode_graph_ms": "1.61 ms"}
    # the step timed whole replaces the timers' total; a second batch size is named
    more = pd.concat([rows, pd.DataFrame(_ms_rows("a", 64, {"total": 3.0}, "call", phase="decode")
                                         + [dict(r, batch=64) for r in _share_rows("a", 64, {"other": 0.9})])])
    c = pages.host_bound(more, max_other=0.15)
    assert c["decode_eager_ms"] == "3.0 ms timed whole"
    assert c["host_bound_prefill"] == "a (B 8) L = 64–1024: 40–60 %; a (B 64) L = 64: 90 %; b (B 8) L = 512: 50 %"
    quiet = pd.DataFrame(_share_rows("a", 8192, {"ssm": 0.6, "other": 0.10}))
    assert pages.host_bound(quiet) == {"host_bound_prefill": "none above 15%", "host_bound_decode":
                                                    "not measured", "decode_eager_ms": "not measured",
                                                    "decode_graph_ms": "not measured"}


def test_instrumentation_sentence_reads_the_kernel_rows_of_the_same_machines(tmp_path):
    rows, kernels = instrumentation_rows()
    gpu = tmp_path / "nvidia-test"
    gpu.mkdir()
    kernels.drop(columns="machine").to_csv(gpu / "gpu_kernels.csv", index=False)
    line = pages.instrumentation(rows, results_root=tmp_path)["instrumentation"]
    assert line.startswith("m prefill B = 8 L = 512: 80.0 ms with the timers against 14.0–16.0 ms timed whole "
                           "(5.3×; kernel campaign, do_bench)")
    assert line.endswith("L = 8192: 150.0 ms with the timers against 120.0 ms timed whole (1.2×; call rows)")


def test_tradeoff_trend_judges_speed_on_the_phase_with_the_longest_dense_call():
    t = pd.DataFrame({"model": ["a"] * 4, "ratio": [0.0, 0.3, 0.6, 0.9], "ppl_test": [10.0, 11.0, 12.0, 13.0],
                      "speedup_decode": [1.0, 0.9, 1.2, 0.95], "speedup_prefill": [1.0, 1.1, 1.2, 1.3],
                      "dense_ms_decode": [2.0] * 4, "dense_ms_prefill": [20.0] * 4})
    c = pages.tradeoff(t)
    assert c["fig6_trend_verdict"].startswith("confirmed (1 of 1 models")
    assert "ρ(r, speedup_prefill) = +1.00 (judged), ρ(r, speedup_decode) = +0.00" in c["fig6_monotone"]
    slow_decode = t.assign(dense_ms_decode=200.0)  # now the decode call is the better resolved one
    c = pages.tradeoff(slow_decode)
    assert c["fig6_trend_verdict"].startswith("refuted (0 of 1 models") and "speedup_decode) = +0.00 (judged)" in \
        c["fig6_monotone"]


def test_readme_summary_is_the_committed_books():
    """README's count of statuses is the one the committed claims page glued, so the two cannot drift apart."""
    root = Path(__file__).resolve().parents[1]
    glued = {}
    for cell in json.loads((root / "book" / "notebooks" / "claims.ipynb").read_text())["cells"]:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name in ("summary", "n_records"):
                glued[name] = out["data"]["application/papermill.record/text/plain"].strip("'")
    book_counts = {status: int(n) for status, n in (part.split(": ") for part in glued["summary"].split("; "))}
    line = next(x for x in (root / "README.md").read_text().splitlines() if x.startswith("Summary of the committed"))
    readme_counts = {status: int(n) for n, status in re.findall(r"(\d+) ([a-z][a-z ]*?)(?:,| \(of)", line)}
    assert readme_counts == book_counts
    assert f"(of {glued['n_records']} records" in line
