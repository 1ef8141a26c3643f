"""The claims table: the paper's values as data, one record per checkable statement, statuses and numbers.

Ground truth here is the paper itself (../shared/paper/, when present), hand counts of FLOPs, and hand-made rows
whose verdict is known. Tests assert statuses and numbers, never sentences.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from perfmamba import claims
from perfmamba.claims import accuracy, paper, records, render, speed, table1
from perfmamba.claims.records import (CONFIRMED, INCONSISTENT, NOT_MEASURED, PARTLY, REFUTED, UNDECIDABLE, Claim,
                                      Value)
from perfmamba.claims.sources import Sources

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PERFMAMBA_SHARED", ROOT.parent / "shared")) / "paper"
needs_shared = pytest.mark.skipif(not (SHARED / "README.md").is_file(), reason="../shared/paper/ is not here")


@pytest.fixture(scope="module")
def empty():
    """Records on no rows at all: everything measured says so, nothing crashes."""
    return {r.id: r for r in claims.evaluate(Sources())}


@pytest.fixture(scope="module")
def committed():
    """Records on the rows committed in the repository (data/results/)."""
    return {r.id: r for r in claims.evaluate(claims.collect(ROOT / "data" / "results",
                                                            ROOT / "data/results/cpu-amd-epyc/profile_cpu.csv",
                                                            run_root=ROOT / "no-run-rows"))}


# --- the paper's values as data ----------------------------------------------------------------------------

@needs_shared
@pytest.mark.parametrize("name", [n for n in paper.FILES if n != "prose"])
def test_paper_files_equal_the_shared_transcription(name):
    ours = pd.read_csv(paper.PAPER_DIR / f"{name}.csv", dtype=str, keep_default_na=False)
    theirs = pd.read_csv(SHARED / f"{name}.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(ours, theirs)


def _bullets(text: str) -> list[str]:
    part = text.split("## Quantitative statements in the prose", 1)[1]
    out, cur = [], None
    for line in part.splitlines():
        if line.startswith("- "):
            cur = line[2:]
            out.append(cur)
        elif line.startswith("  ") and out:
            out[-1] += " " + line.strip()
    return out


# numbers of the shared README's bullets that are its own remarks, not the paper's values: Table 1's "about 12×"
# (checked in test_gated_mlp_flops_text_against_table), the mean relative loss it computed from Fig. 4
# (test_zones_reproduce_the_text_from_fig4) and Fig. 6's point spacing (test_marginal_drop_on_the_papers_points)
REMARKS = {"12", "0.6", "12.4", "23.3", "0.2"}


@needs_shared
def test_prose_csv_holds_every_number_of_the_papers_sentences():
    prose = paper.table("prose")
    bullets = _bullets((SHARED / "README.md").read_text())
    assert len(bullets) == prose["bullet"].astype(int).max()
    for i, text in enumerate(bullets, start=1):
        text = re.sub(r"Mamba-\d|§\d(\.\d)?|Fig\. \d|Table \d|\(ratio 0[^)]*\)", "", text)
        found = {float(x) for x in re.findall(r"(?<![\w.])\d+(?:\.\d+)?", text) if x not in REMARKS}
        rows = prose[prose["bullet"].astype(int) == i]
        have = {paper.number(v) for col in ("value", "seqlen", "ratio") for v in rows[col]}
        have |= {100 * paper.number(v) for v in rows["value"]}
        assert found <= have, f"bullet {i}: {sorted(found - have)} not in prose.csv"


def test_paper_helpers_read_printed_values_and_their_precision():
    assert paper.number("0.0016") == 0.0016 and math.isnan(paper.number("22-23"))
    assert paper.half_unit("0.06") == pytest.approx(0.005) and paper.half_unit("1566.55") == pytest.approx(0.005)
    assert paper.span("22-23") == (22.0, 23.0) and paper.span("<=5") == (0.0, 5.0) and paper.span("90") == (90, 90)
    assert paper.setting("profile_batch") == 8 and paper.setting("table1_seqlens") == (64, 512, 2048)
    with pytest.raises(paper.PaperError, match="no statement"):
        paper.prose("nonsense")


# --- coverage -----------------------------------------------------------------------------------------------

def test_every_paper_value_has_a_claim(empty, committed):
    for recs in (empty, committed):
        unclaimed = paper.all_keys() - claims.covered(recs.values())
        assert not unclaimed, f"paper values without a record: {sorted(unclaimed)[:10]}"
    # Table 1 has two values per row (Mamba-1, Mamba-2); prose.csv is claimed by statement
    assert len(paper.all_keys()) == 60 * 2 + 30 + 39 + 24 + 36 + 20 + 5 + paper.table("prose")["id"].nunique()


def test_every_record_has_a_status_from_the_fixed_set_and_cites_the_paper(committed):
    for r in committed.values():
        assert r.status in records.STATUSES
        assert r.paper and r.section and r.asserts
        assert r.status != NOT_MEASURED or r.command or r.detail, r.id
    with pytest.raises(ValueError, match="unknown status"):
        Claim(id="x", section="x", asserts="x", paper={}, unit="", precision="", status="fine")


def test_without_rows_every_measured_claim_says_not_measured_and_names_the_command(empty):
    for rid in ("table1_latency_mamba2_L2048", "fig2_mamba1_prefill", "table2_speedup_L8192", "fig4_piqa"):
        assert empty[rid].status == NOT_MEASURED and empty[rid].command
        assert "measure with" in render.sentence(empty[rid])


# --- Table 1 ------------------------------------------------------------------------------------------------

def test_table1_flops_readings_against_hand_counts(empty):
    # Mamba-1's Final Linear at L = 64: 2 FLOPs per multiply-add, 8 × 64 tokens, 1536 → 768, 24 layers
    assert 2 * 8 * 64 * 1536 * 768 * 24 / 1e9 == pytest.approx(28.99, abs=0.005)
    r = empty["table1_flops_mamba1_out_proj"]
    assert r.status == CONFIRMED and r.compared["reading"] == "ours"
    assert r.compared["paper/ours L = 2048"] == pytest.approx(1.0, abs=1e-3)
    # Mamba-2's is exactly half: multiply-adds counted once
    r = empty["table1_flops_mamba2_out_proj"]
    assert r.status == PARTLY and r.compared["reading"] == "multiply-adds counted once"
    # Mamba-1's Gated MLP is one layer's: 2 · 8 · 64 · 768 · 3072 = 2.42 G
    assert 2 * 8 * 64 * 768 * 3072 / 1e9 == pytest.approx(2.42, abs=0.005)
    assert empty["table1_flops_mamba1_in_proj"].compared["reading"] == "one layer"
    # Mamba-2's SSM grows linearly in L in the paper, our chunked SSD count does not; its recurrent form does, at
    # about 4× fewer FLOPs per channel, state and token than the paper counts
    r = empty["table1_flops_mamba2_ssm"]
    assert r.status == PARTLY and r.compared["reading"].startswith("recurrent form × 4.0")
    assert r.compared["paper/ours L = 64"] / r.compared["paper/ours L = 2048"] == pytest.approx(1.635, abs=0.01)
    # the RMSNorm column is 6 FLOPs per element and layer of every token: 6 · 8 · 2048 · 768 · 24 = 1.81 G
    assert 6 * 8 * 2048 * 768 * 24 / 1e9 == pytest.approx(1.81, abs=0.005)
    assert empty["table1_flops_mamba1_rmsnorm"].compared["paper FLOPs per element and layer L = 2048"] == \
        pytest.approx(6.0, abs=0.01)


def test_table1_against_physics_and_fig2(empty):
    cap = empty["table1_memory_capacity"]
    assert cap.status == INCONSISTENT and cap.compared["cells above 40 GB"] == 2
    assert set(cap.paper.values()) == {86.64, 115.68}
    assert empty["table1_fig2_latency"].status == INCONSISTENT


def _profile_rows(arch, L, ms: dict, metric="time", method="timers"):
    model = {"mamba1": "mamba-130m", "mamba2": "mamba2-130m"}[arch]
    return [dict(model=model, arch=arch, path="triton", phase="prefill", batch=8, seqlen=L, method=method,
                 cuda_graph=False, metric=metric, component=c, value=v, unit="ms", machine="nvidia-test",
                 device_name="Test GPU") for c, v in ms.items()]


def test_table1_latency_judged_on_the_ranking_of_the_five_components():
    # the paper's Mamba-2 at L = 2048: Gated MLP 109.83 > Final Linear 52.35 > SSM 51.79 > RMSNorm 5.53 > conv 4.78
    same = {"in_proj": 40.0, "out_proj": 20.0, "ssm": 18.0, "rmsnorm": 1.5, "gated_norm": 1.0, "conv1d": 1.0}
    flipped = {"in_proj": 1.0, "out_proj": 2.0, "ssm": 30.0, "rmsnorm": 9.0, "gated_norm": 1.0, "conv1d": 12.0}
    for ms, status in ((same, CONFIRMED), (flipped, REFUTED)):
        src = Sources(gpu_profile=pd.DataFrame(_profile_rows("mamba2", 2048, ms)))
        r = {c.id: c for c in table1.table1_measured(src)}["table1_latency_mamba2_L2048"]
        assert r.status == status
        assert r.compared["paper largest"] == "Gated MLP"
        assert {v.machine for v in r.ours} == {"Test GPU"} and {v.batch for v in r.ours} == {8}
    # the gated norm goes under RMSNorm; under the SSM the shares change, and the record says so
    assert "status with gated norm under SSM" in r.compared
    assert r.compared["ours share RMSNorm"] == pytest.approx(10.0 / 55.0)


def test_section_42_memory_text_against_table(empty):
    r = empty["gated_mlp_memory"]
    assert r.status == INCONSISTENT
    assert (r.paper["Table 1 Mamba-1 (GB)"], r.paper["Table 1 Mamba-2 (GB)"]) == (10.32, 11.52)
    assert r.compared["m1/m2 - 1 (text values)"] == pytest.approx(0.116, abs=5e-4)  # the text's "11.6 %"
    assert empty["ssm_memory_ratio"].paper["more (%)"] == pytest.approx(100 * (115.68 / 86.64 - 1), abs=0.05)


def test_gated_mlp_flops_text_against_table(empty):
    r = empty["gated_mlp_flops"]
    assert r.status == INCONSISTENT and r.compared["Table 1 m2/m1"] == pytest.approx(12.0, abs=0.05)


def test_ssm_share_text_against_the_papers_own_table(empty):
    # §5 says 60–70 % of runtime; Table 1's latencies put the SSM at 29 % for Mamba-1 at L = 2048
    r = empty["ssm_share_s5"]
    assert r.status == INCONSISTENT
    assert r.compared["paper Table 1 latency mamba1 L = 2048"] == pytest.approx(
        74.82 / (7.65 + 98.58 + 12.81 + 74.82 + 59.99), abs=1e-6)


# --- Table 2, Fig. 5 ----------------------------------------------------------------------------------------

def _kernel_rows(L, dense_ms, pruned: dict, phase="prefill", batch=8):
    base = dict(model="mamba2-130m", component="model", metric="latency", phase=phase, batch=batch, seqlen=L,
                impl="conv=ours", unit="ms", section="s", device_name="Test GPU", machine="nvidia-test")
    return [dict(base, ratio=0.0, d_state=128, value=dense_ms)] + \
        [dict(base, ratio=r, d_state=speed.paper.setting("kept_states")[i], value=v)
         for i, (r, v) in enumerate(pruned.items())]


def test_table2_row_judged_on_whole_call_timings_only():
    # Table 2 at L = 2048: 1.04, 1.05, 1.06, 1.12, 1.14
    rows = _kernel_rows(2048, 100.0, {0.1: 100.0 / 1.05, 0.3: 100.0 / 1.2})
    src = Sources(gpu_kernels=pd.DataFrame(rows))
    recs = {r.id: r for r in speed.table2(src)}
    r = recs["table2_speedup_L2048"]
    assert r.status == PARTLY  # r = 0.1 within 0.03 of 1.04, r = 0.3 (1.20 vs 1.05) not
    assert r.compared["prefill B = 8 r = 0.1"] == pytest.approx(0.01, abs=1e-9)
    assert recs["table2_speedup_L512"].status == NOT_MEASURED
    # memory: weights + state of Mamba2-130M, analytic, at every cell
    mem = recs["table2_memory_L2048"]
    assert len([v for v in mem.ours if v.machine == "analytic"]) == 5
    assert mem.ours[-1].value == pytest.approx(100 * speed.analytic_memory_reduction(0.9))


def test_the_zeroed_control_keeps_noisy_points_out_of_the_verdict():
    def pt(mode, ratio, ms):
        return dict(model="mamba2-130m", arch="mamba2", phase="decode", batch=8, seqlen=8192, ratio=ratio, mode=mode,
                    machine="nvidia-test", path="triton", method="timers", component="total", metric="time",
                    value=ms, unit="ms", cuda_graph=True, d_state=128 if mode != "removed" else 64)
    rows = pd.DataFrame([pt("dense", 0.0, 2.0), pt("zeroed", 0.5, 1.5), pt("removed", 0.5, 1.87)])
    sp = speed.whole_call_speedups(Sources(gpu_efficiency=rows))
    assert sp["control"].iloc[0].startswith("zeroed at r = 0.5 timed 1.33× dense")
    r = {c.id: c for c in speed.table2(Sources(gpu_efficiency=rows))}["table2_speedup_L8192"]
    assert r.status == NOT_MEASURED and any(k.startswith("not used") for k in r.compared)
    fine = rows.assign(value=[2.0, 2.02, 1.87])
    r = {c.id: c for c in speed.table2(Sources(gpu_efficiency=fine))}["table2_speedup_L8192"]
    assert r.status == CONFIRMED  # 2.0 / 1.87 = 1.07, Table 2's r = 0.5 at 8192


def test_section_63_text_against_fig5a_and_table2(empty):
    r = empty["latency_text"]
    assert r.status == INCONSISTENT
    assert r.compared["Fig. 5a L = 16384, r = 0"] == 632 and r.paper["L = 16384, r = 0"] == 630  # the pair that agrees
    assert empty["speedup_text_long"].compared["text agrees with Table 2"] is True
    h = empty["headline"]
    assert h.paper["Table 2 cells of the maxima"] == "L = 2048 r = 0.9; L = 8192 r = 0.9; L = 16384 r = 0.9; " \
                                                     "L = 8192 r = 0.9"


def test_fig5_plot_agrees_with_table2_and_5b_with_5a(empty):
    assert all(empty[f"fig5a_L{L}"].compared["cells off Table 2"] == 0 for L in (64, 512, 2048, 4096, 8192, 16384))
    assert all(empty[f"fig5b_r{r}"].status != INCONSISTENT for r in (0.1, 0.3, 0.5, 0.7, 0.9))


# --- accuracy ------------------------------------------------------------------------------------------------

def test_zones_reproduce_the_text_from_fig4():
    z = accuracy.zone_losses(accuracy._fig4(), list(paper.TASKS))
    assert [round(z[k][0], 1) for k in accuracy.ZONES] == [0.6, 12.4, 23.3]


def test_text_accuracies_against_fig4(empty):
    r = empty["accuracy_text_dense"]
    assert r.status == INCONSISTENT and r.compared["Fig. 4 ARC-Easy"] == 0.464 and r.paper["ARC-Easy"] == "0.57"
    assert empty["accuracy_zones"].status == NOT_MEASURED  # no quality rows: ours not measured, paper consistent


def _quality(acc: dict, stderr: float, n=100):
    rows = []
    for (task, r), v in acc.items():
        rows.append(dict(model="m", task=task, ratio=r, criterion="none" if r == 0 else "delta",
                         mode="dense" if r == 0 else "removed", metric="acc", value=v, stderr=stderr, n=n))
    return pd.DataFrame(rows)


def test_accuracy_zones_are_undecidable_when_the_standard_error_exceeds_the_effect():
    acc = {("t", 0.0): 0.50, ("t", 0.1): 0.499, ("t", 0.3): 0.498, ("t", 0.5): 0.44, ("t", 0.7): 0.44,
           ("t", 0.9): 0.39}
    noisy = {c.id: c for c in accuracy.accuracy(Sources(quality=_quality(acc, stderr=0.05)))}["accuracy_zones"]
    assert noisy.status == UNDECIDABLE
    first = noisy.ours[0]
    assert first.value == pytest.approx(100 * (0.001 + 0.002) / 2 / 0.5) and first.n == 100
    assert "n ≈" in noisy.compared["m t r ≤ 0.3"]
    sharp = {c.id: c for c in accuracy.accuracy(Sources(quality=_quality(acc, stderr=0.001)))}["accuracy_zones"]
    # 12 % and 22 % losses at r = 0.5–0.7 and 0.9: the text's 12.2 and 22.3 hold; r ≤ 0.3 stays undecidable
    assert sharp.status == CONFIRMED
    assert records.n_to_decide(0.3, 0.5, 100) == 1112


def test_fig6_points_are_piqa_and_the_4096_savings(empty):
    r = empty["fig6_points"]
    assert r.compared["accuracy is Fig. 4's"] == "PIQA" and r.compared["saving is Fig. 5b's at L"] == 4096


def test_marginal_drop_on_the_papers_points(empty):
    r = empty["marginal_drop"]
    assert r.status == INCONSISTENT
    assert r.compared["Fig. 6 0.3 → 0.5"] == pytest.approx((0.59 - 0.64) / 0.2)
    assert empty["practical_threshold"].compared["paper's steepest step"] == "0.3 → 0.5"


# --- on the committed rows ------------------------------------------------------------------------------------

def test_committed_gpu_rows_give_these_verdicts(committed):
    assert committed["length_range"].status == CONFIRMED
    assert {v.machine for v in committed["length_range"].ours} >= {"NVIDIA H200"}
    t2 = committed["table2_speedup_L2048"]
    assert t2.status == CONFIRMED and t2.ours[0].value == pytest.approx(34.069 / 32.529, abs=1e-3)
    assert t2.ours[0].note == "triton.testing.do_bench"
    assert committed["ssm_memory_ratio"].status == CONFIRMED
    assert committed["ssm_memory_ratio"].ours[0].value == pytest.approx(1.505, abs=0.01)


# --- rendering -----------------------------------------------------------------------------------------------

def test_render_is_the_only_sentence_maker_and_round_trips_json(empty, tmp_path):
    recs = list(empty.values())
    md = render.records_markdown(recs, "Table 2").splitlines()
    assert md[0] == "| claim | the paper | ours (machine; setting) | verdict | tolerance |"
    assert len(md) == 2 + len([r for r in recs if r.section.startswith("Table 2")])
    assert sum(line.count("(repeated whole-call timings") for line in md) == 1  # each reason once per table
    s = records.summary(recs)
    assert s.loc["all"].sum() == len([r for r in recs if not r.beyond])
    render.to_json(recs, tmp_path / "claims.json")
    back = pd.read_json(tmp_path / "claims.json")
    assert len(back) == len(recs) and set(back["status"]) <= set(records.STATUSES)
    inc = render.inconsistencies(recs)
    assert set(inc["id"]) == {r.id for r in recs if r.status == INCONSISTENT}
    v = Value(1.07, "x", "Test GPU", "mamba2-130m", 8, 8192, 0.5, "prefill", "bfloat16", "triton")
    assert v.setting() == "mamba2-130m, B = 8, L = 8192, r = 0.5, prefill, bfloat16, triton"


def test_figures_draw_from_records(empty):
    import matplotlib

    matplotlib.use("Agg")
    from perfmamba import plots

    recs = list(empty.values())
    for fig in (plots.plot_claims_summary(recs), plots.plot_table1_flops(recs), plots.plot_table1_shares(recs),
                plots.plot_table2_claims(recs)):
        assert fig.axes


def test_cli_prints_the_summary_and_one_line_per_claim(capsys, tmp_path):
    from perfmamba.cli import main

    assert main(["claims", "--section", "§4.2", "--sweep", "none", "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "ssm_memory_ratio" in out and "gated_mlp_memory" in out and "table1_flops" not in out
    assert {r["id"] for r in pd.read_json(tmp_path / "c.json").to_dict("records")} == \
        {"ssm_memory_ratio", "gated_mlp_memory", "rmsnorm_memory_growth"}


def test_zones_leave_out_a_task_whose_dense_accuracy_is_zero():
    acc = {("t", 0.0): 0.0, ("t", 0.5): 0.0, ("u", 0.0): 0.5, ("u", 0.5): 0.25}
    z = accuracy.zone_losses(acc, ["t", "u"], stderr={k: 0.01 for k in acc})
    assert z["0.3 < r ≤ 0.7"][0] == pytest.approx(50.0) and "r ≤ 0.3" not in z
    rec = {c.id: c for c in accuracy.accuracy(Sources(quality=_quality({("t", 0.0): 0.0, ("t", 0.5): 0.0},
                                                                       stderr=0.0)))}
    assert rec["accuracy_zones"].status == NOT_MEASURED
