"""The numbers the notebooks glue beyond the paper's claim records: the questions of our own (E1–E6 of the
claims page) and the notes on GPU timing that the deviations page quotes.

Each function reduces rows to {key: text}; `perfmamba.artifact.notebooks.publish` glues them.
"""
from __future__ import annotations

import math

import pandas as pd

from .. import experiments
from ..experiments.gpu_goals import GOALS, PAPER_KEPT, pruned_decode_speedups, ratio_table
from ..profiling.attribution import AGREEMENT_PP, AGREEMENT_REL
from ..profiling.flops import COMPONENTS, roofline_points
from ..profiling.sweep import CALL as CALL_METHOD  # rows of a call timed whole, no range instrumented
from .records import NOT_MEASURED, judge
from .table1 import PAPER_BATCH, spearman

# "Uneven" activity (§5, Fig. 3): the mean over layers of std/mean of activity(l, ·) above this.
MIN_CV = 0.05
# On a GPU an eager call whose kernels are short is bound by the host launching them: the timers then see the
# GPU idle between kernels ("other", time outside every component) and every component's time includes launch
# gaps. GPU claims on component shares use only the points where "other" is at most this share of the call.
GPU_MAX_OTHER = 0.15
WHO = ["machine", "model", "path", "batch"]  # what tells points apart, named where the rows hold several


def _need(rows, what: str) -> None:
    if rows is None or rows.empty:
        raise experiments.ExperimentError(f"no {what} rows")


def _points(rows, among=None):
    """(label, rows) per machine, model, path and batch; a label names only what varies `among` these rows."""
    several = {k: (rows if among is None else among)[k].nunique() > 1 for k in WHO}
    for key, g in rows.groupby(WHO, sort=True):
        yield experiments.point_label(dict(zip(WHO, key)), several), g


def host_bound(rows, results_root=None, max_other: float = GPU_MAX_OTHER) -> dict:
    """How much of an eager call is the device waiting for the host, by the timers: "other" (time outside every
    component) of the prefill points where it exceeds `max_other`, per model (and batch, path, machine where the
    rows hold several) with their lengths ("host_bound_prefill"), and of the eager decode steps
    ("host_bound_decode"); and the time per output token of an eager decode step ("decode_eager_ms": the step
    timed whole where the rows have it, method "call", else the timers' total, which says so) against the step
    replayed as one CUDA graph ("decode_graph_ms")."""
    _need(rows, "profiling")
    rows = rows.reset_index(drop=True).assign(**{k: "" for k in ("machine", "path") if k not in rows})
    rows = rows.assign(_graph=experiments.graphed(rows))
    t = rows[(rows["method"] == "timers") & ~rows["_graph"]]
    other = t[(t["metric"] == "share") & (t["component"] == "other")]
    other = other.groupby(WHO + ["phase", "seqlen"])["value"].median().reset_index()
    if other.empty:
        raise experiments.ExperimentError("no timer rows with the share of 'other'")
    pre = other[(other["phase"] == "prefill") & (other["value"] > max_other)]
    parts = [f"{label} L = {experiments.span_text([int(x) for x in g['seqlen']], 'd')}: "
             f"{experiments.span_text(g['value'] * 100, '.0f')} %" for label, g in _points(pre, among=t)]
    dec = other[other["phase"] == "decode"]["value"]
    total = rows[(rows["metric"] == "time") & (rows["component"] == "total") & (rows["phase"] == "decode")]
    eager, how = total[(total["method"] == CALL_METHOD) & ~total["_graph"]]["value"], "timed whole"
    if not len(eager):
        eager, how = total[(total["method"] == "timers") & ~total["_graph"]]["value"], "with the timers"
    graphed = total[total["_graph"]]["value"]
    return {"host_bound_prefill": "; ".join(parts) or f"none above {max_other:.0%}",
            "host_bound_decode": f"{experiments.span_text(dec * 100, '.0f')} %" if len(dec) else "not measured",
            "decode_eager_ms": f"{experiments.span_text(eager, '.1f')} ms {how}" if len(eager) else "not measured",
            "decode_graph_ms": f"{experiments.span_text(graphed, '.2f')} ms" if len(graphed) else "not measured"}


def claims_on(claims_fn, rows, keys, prefix: str, what: str, results_root=None, **kwargs) -> dict:
    """`claims_fn` on `rows`, every key prefixed with `prefix`; where `rows` is empty, or the rows cannot support
    the claims, each of `keys` says why instead (`what` names the rows in that message)."""
    if rows is None or rows.empty:
        why = (rows.attrs.get("message") if rows is not None else None) or f"no {what}"
    else:
        try:
            return {f"{prefix}{k}": v for k, v in claims_fn(rows, results_root=results_root, **kwargs).items()}
        except experiments.ExperimentError as e:
            why = f"the {what} cannot answer this: {e}"
    return {f"{prefix}{k}": why for k in keys}


def gpu_claims(claims_fn, experiment: str, keys, results_root=None, **kwargs) -> dict:
    """`claims_fn` on the committed GPU rows of `experiment`, every key prefixed with "gpu_"; where there are no
    such rows, or they cannot support the claims, each of `keys` says why instead."""
    return claims_on(claims_fn, experiments.committed(experiment, results_root), keys, "gpu_", "committed GPU rows",
                     results_root=results_root, **kwargs)


def sweep_claims(claims_fn, sweep, keys, **kwargs) -> dict:
    """`claims_fn` on the rows of a committed CPU sweep (`read_sweep`), every key prefixed with "sweep_"."""
    return claims_on(claims_fn, sweep, keys, "sweep_", "committed sweep", **kwargs)


def _pct(x) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f} %"


def _one_batch(rows):
    """Per model, the rows of one batch size: the paper's (`PAPER_BATCH`) where it was measured, else the
    largest; and {model: that batch} when the rows hold more than one batch size (else {})."""
    if "batch" not in rows or rows["batch"].nunique() <= 1:
        return rows, {}
    keep, chosen = [], {}
    for m, g in rows.groupby("model", sort=False):
        sizes = {int(b) for b in g["batch"].dropna()}
        if not sizes:
            continue
        chosen[m] = PAPER_BATCH if PAPER_BATCH in sizes else max(sizes)
        keep.append(g[g["batch"] == chosen[m]])
    return pd.concat(keep), chosen


def _shares(rows, phase, max_other=None):
    """({(model, seqlen): {component: share}}, {model: batch}) of timer rows in `phase`, top-level components
    only (eager calls; a CUDA-graph step has no components), at one batch size per model (`_one_batch`, whose
    {model: batch} comes back with them). With `max_other`, only the points whose "other" share (time outside
    every component) is at most that."""
    rows, batches = _one_batch(rows)
    d = rows[(rows["metric"] == "share") & (rows["phase"] == phase)]
    d = d[~experiments.graphed(d)]
    if "method" in d:
        d = d[d["method"] == "timers"] if (d["method"] == "timers").any() else d
    out: dict = {}
    for (m, L), g in d.groupby(["model", "seqlen"]):
        other = g.loc[g["component"] == "other", "value"].astype(float)
        if max_other is not None and len(other) and float(other.iloc[0]) > max_other:
            continue
        g = g[g["component"].isin(COMPONENTS)]
        out[(m, int(L))] = dict(zip(g["component"], g["value"].astype(float)))
    return out, batches


def latency(rows, results_root=None, max_other=None) -> dict:
    """Beyond the paper: does the SSM's share of prefill time grow with L (from the shortest to the longest
    length measured; with `max_other`, among the points that are not host-bound, see `_shares`)? The paper
    plots it (Fig. 2) but states no trend."""
    _need(rows, "latency")
    Ls = sorted({int(x) for x in rows["seqlen"]})
    shares, batches = _shares(rows, "prefill", max_other)
    trend, up = [], 0
    for m in dict.fromkeys(k[0] for k in shares):
        ls = sorted(L for (mm, L) in shares if mm == m)
        if len(ls) < 2:
            continue
        a, b = shares[(m, ls[0])].get("ssm", math.nan), shares[(m, ls[-1])].get("ssm", math.nan)
        label = f"{m} (B {batches[m]})" if m in batches else str(m)
        trend.append(f"{label} {_pct(a)} → {_pct(b)} (L {ls[0]} → {ls[-1]})")
        up += b > a
    if not trend:
        c3 = f"{NOT_MEASURED}: one sequence length only"
    else:
        note = "" if max_other is None else \
            f"; only points where time outside every component is at most {max_other * 100:.0f} % of the call"
        c3 = (judge(up, len(trend)) + f" on this machine ({up} of {len(trend)} models{note})"
              + ("" if experiments.is_gpu(rows) else "; on a CPU"))
    return {"fig2_machine": experiments.machine_label(rows, results_root), "fig2_seqlens": f"{Ls[0]}–{Ls[-1]}",
            "fig2_ssm_trend": "; ".join(trend) if trend else "n/a", "fig2_trend_verdict": c3}


def activity(rows) -> dict:
    """C5: is activity uneven across states (coefficient of variation within a layer), and how much of the
    ranking is the state index (Spearman correlation of activity with s, per layer, averaged)."""
    _need(rows, "activity")
    cv, rho = [], []
    for m, g in rows.groupby("model", sort=False):
        cvs = [float(x["activity"].std(ddof=0) / x["activity"].mean()) for _, x in g.groupby("layer")]
        rhos = [spearman(x["state"], x["activity"]) for _, x in g.groupby("layer")
                if x["activity"].nunique() > 1]
        arch = g["arch"].iloc[0]
        cv.append(f"{m} ({arch}) {sum(cvs) / len(cvs):.2f}")
        rho.append(f"{m} {sum(rhos) / len(rhos):+.2f}" if rhos else f"{m} n/a (constant within layers)")
    uneven = [float(s.rsplit(" ", 1)[1]) > MIN_CV for s in cv]
    return {"fig3_cv": "; ".join(cv), "fig3_index_corr": "; ".join(rho),
            "fig3_uneven_verdict": f"{judge(sum(uneven), len(uneven))} ({sum(uneven)} of {len(uneven)} "
                                   "models with a mean within-layer coefficient of variation above "
                                   f"{MIN_CV})"}


def tradeoff(table) -> dict:
    """C10: quality falls and speed rises monotonically in r (Spearman correlation with r per model).

    Speed is judged on the phase whose dense call is the longest (`dense_ms_<phase>`), the best resolved against
    timing noise: a small model's decode step takes a few milliseconds on a CPU, and its speed-ups there move by
    tens of percent from one run to the next. The correlations of every phase are reported."""
    _need(table, "trade-off")
    parts, mono = [], 0
    for m, g in table.groupby("model", sort=False):
        g = g.sort_values("ratio")
        qcol = next((c for c in g.columns if str(c).startswith("ppl_")), None)
        phases = [c[len("speedup_"):] for c in ("speedup_prefill", "speedup_decode") if c in g.columns]
        if qcol is None or not phases or len(g) < 3:
            continue
        judged = max(phases, key=lambda ph: g[f"dense_ms_{ph}"].max() if f"dense_ms_{ph}" in g else -1.0)
        rq = spearman(g["ratio"], g[qcol])
        rs = {ph: spearman(g["ratio"], g[f"speedup_{ph}"]) for ph in phases}
        speeds = ", ".join(f"ρ(r, speedup_{ph}) = {v:+.2f}{' (judged)' if ph == judged and len(rs) > 1 else ''}"
                           for ph, v in rs.items())
        parts.append(f"{m}: ρ(r, {qcol}) = {rq:+.2f}, {speeds}")
        mono += rq > 0.8 and rs[judged] > 0.8
    if not parts:
        return {"fig6_monotone": "n/a (fewer than 3 ratios)", "fig6_trend_verdict": NOT_MEASURED}
    return {"fig6_monotone": "; ".join(parts),
            "fig6_trend_verdict": f"{judge(mono, len(parts))} ({mono} of {len(parts)} models with both rank "
                                  "correlations > 0.8; speed judged on the phase with the longest dense "
                                  "call)"}


def criteria(rows) -> dict:
    """Does Δ beat random? Per model and ratio, Δ's perplexity against the mean (and range) over random seeds."""
    _need(rows, "criteria")
    d = rows[(rows["task"] == "perplexity") & (rows["metric"] == "ppl") & (rows["ratio"].astype(float) > 0)]
    parts, best, wins = [], [], 0
    for (m, r), g in d.groupby(["model", "ratio"]):
        rnd = g[g["criterion"] == "random"]["value"].astype(float)
        dl = g[g["criterion"] == "delta"]["value"].astype(float)
        if rnd.empty or dl.empty:
            continue
        wins += float(dl.mean()) < float(rnd.min())
        parts.append(f"{m} r = {float(r):g}: Δ {float(dl.mean()):.1f} vs random {float(rnd.mean()):.1f} "
                     f"[{float(rnd.min()):.1f}–{float(rnd.max()):.1f}]")
        means = g.groupby("criterion")["value"].mean()
        best.append(f"{m} r = {float(r):g}: {means.idxmin()}")
    if not parts:
        return {"criteria_delta_vs_random": "n/a (need delta and random)", "criteria_best": "n/a",
                "criteria_verdict": NOT_MEASURED}
    return {"criteria_delta_vs_random": "; ".join(parts), "criteria_best": "; ".join(best),
            "criteria_verdict": f"{judge(wins, len(parts))}: Δ beats every random seed in {wins} of "
                                f"{len(parts)} (model, ratio) cases"}


def roofline(rows) -> dict:
    _need(rows, "roofline")
    pk = rows[rows["component"] == "machine"]
    flops = float(pk.loc[pk["metric"] == "peak_flops", "value"].iloc[0])
    bw = float(pk.loc[pk["metric"] == "peak_bandwidth", "value"].iloc[0])
    pts = roofline_points(rows[rows["component"] != "machine"], flops, bw)
    bound = "n/a"
    if not pts.empty:
        s = pts[pts["component"] == "ssm"]
        bound = "; ".join(f"{ph}: {', '.join(sorted(set(g['bound'])))}-bound, "
                          f"{g['fraction_of_roof'].median() * 100:.0f} % of the roof (median)"
                          for ph, g in s.groupby("phase")) or "n/a"
    return {"roofline_peaks": f"{flops / 1e9:.1f} GFLOP/s, {bw / 1e9:.1f} GB/s ({pk['method'].iloc[0]})",
            "roofline_ssm": bound}


def decode_traffic(rows, model: str = "mamba2-130m", batch: int = 8, ratio: float = 0.5) -> dict:
    """The state's share of a decode step's bytes, and the bandwidth-bound ideal speed-up at `ratio`."""
    _need(rows, "decode traffic")
    a = rows[rows["source"] == "analytic"]
    if model not in set(a["model"]):
        model = a["model"].iloc[0]
    bs = sorted({int(b) for b in a.loc[a["model"] == model, "batch"]})
    batch = batch if batch in bs else bs[-1]
    sel = a[(a["model"] == model) & (a["batch"].astype(int) == batch)]
    rs = sorted(r for r in sel["ratio"].astype(float).unique() if r > 0)
    ratio = ratio if ratio in rs else (rs[len(rs) // 2] if rs else 0.0)
    frac = float(sel[(sel["metric"] == "state_traffic_fraction") & (sel["ratio"].astype(float) == 0)]["value"].iloc[0])
    ideal = sel[(sel["metric"] == "ideal_speedup") & (sel["ratio"].astype(float) == ratio)]["value"]
    m = rows[(rows["source"] == "measured") & (rows["metric"] == "measured_speedup")
             & (rows["ratio"].astype(float) == ratio)]
    meas = "; ".join(f"{mm} B = {int(b)}: {float(v):.2f}×" for mm, b, v in zip(m["model"], m["batch"], m["value"]))
    if meas:
        meas = f"at r = {ratio:g}, {m['dtype'].iloc[0]}, path {m['path'].iloc[0]}: {meas}"
        bound = float(ideal.iloc[0]) if len(ideal) else math.inf
        if (m["value"].astype(float) > bound * 1.05).any():
            meas += " (above the bound: that step is not the bandwidth-bound one the bound assumes)"
    else:
        meas = "not measured"
    return {"decode_state_fraction": f"{_pct(frac)} of the bytes of one decode step ({model}, B = {batch}, "
                                     f"{sel['dtype'].iloc[0]})",
            "decode_ideal_speedup": f"{float(ideal.iloc[0]):.2f}× at r = {ratio:g}" if len(ideal) else "n/a",
            "decode_measured_speedup": meas}


def gpu_decode_speedups(kernels, traffic=None, model: str = "mamba2-130m", batch: int = 64) -> str:
    """Measured decode speed-ups of pruned models on committed GPU rows (`gpu_kernels`, the campaign's graph-
    replayed steps at the paper's kept counts), each beside its bandwidth-bound ideal from `traffic` rows (the
    `decode_state_traffic` analytic rows), as one line per machine; a sentence saying so when there are none."""
    if kernels is None or kernels.empty:
        return "no GPU rows committed (benchmarks/gpu_book.sh measures them)"
    ideal = {}
    if traffic is not None and not traffic.empty:
        a = traffic[(traffic["source"] == "analytic") & (traffic["metric"] == "ideal_speedup")
                    & (traffic["model"] == model) & (traffic["batch"].astype(int) == batch)]
        ideal = {round(float(r), 6): float(v) for r, v in zip(a["ratio"], a["value"])}
    lines = []
    for name, g in kernels.groupby("device_name", sort=True):
        parts = []
        for r, speedup in pruned_decode_speedups(g, model, batch).items():
            bound = ideal.get(round(r, 6))
            parts.append(f"r = {r:g} (N′ = {PAPER_KEPT[r]}) {speedup:.2f}×"
                         + (f" (bound {bound:.2f}×)" if bound else ""))
        if parts:
            lines.append(f"{name}, {model} B = {batch}, one CUDA graph per step: " + ", ".join(parts))
    return "; ".join(lines) or f"no pruned {model} decode rows at B = {batch} in the committed GPU rows"


def recall(rows) -> dict:
    """Recall accuracy of the pruned models at `experiments.recall_probe_pairs` pairs against the dense
    model's; the verdict needs a dense accuracy of at least twice chance there."""
    _need(rows, "recall")
    n = experiments.recall_probe_pairs(rows)
    d = rows[rows["n_pairs"].astype(int) == n]
    dense = float(d[d["criterion"] == "none"]["value"].mean())
    pruned = d[d["criterion"] != "none"]
    parts = [f"r = {float(r):g} {c}: {float(g['value'].mean()):.2f}"
             for (r, c), g in pruned.groupby(["ratio", "criterion"])]
    chance = float(rows["chance"].iloc[0])
    if dense <= 2 * chance:
        verdict = f"{NOT_MEASURED}: the recall model is near chance ({dense:.2f} at {n} pairs); train it longer"
    elif pruned.empty:
        verdict = "no pruned model measured"
    else:
        worst = pruned.groupby(["ratio", "criterion"])["value"].mean().min()
        verdict = (f"pruning costs recall at {n} pairs: dense {dense:.2f}, worst pruned {worst:.2f} "
                   f"(chance {chance:.3f})")
    return {"recall_dense": f"{dense:.2f} at {n} pairs (chance {chance:.3f})",
            "recall_pruned": f"at {n} pairs: " + "; ".join(parts), "recall_verdict": verdict}


def kernels(rows) -> dict:
    """E5: per GPU machine, how many of the kernel goals (`perfmamba.experiments.gpu_goals`) its committed gpu_kernels rows
    measured, and how many of those are met."""
    if rows is None or rows.empty:
        return {"kernels_status": "no GPU run yet: " + experiments.NO_GPU_MESSAGE}
    parts = []
    for name, g in rows.groupby("device_name", sort=True):
        t = ratio_table(g)
        goals = t[t["goal"] != ""]
        met = int((goals["verdict"] == "met").sum())
        each = "; ".join(f"{r['ratio']}: {r['measured (×)']:.2f}× ({r['goal']}, {r['verdict']})"
                         for _, r in goals.iterrows())
        parts.append(f"{name}: {met} of the {len(goals)} goal ratios measured are met ({len(GOALS)} goals in "
                     f"benchmarks/README.md; a goal not listed was not measured) — {each or 'none'}")
    return {"kernels_status": " | ".join(parts)}


def instrumentation(rows, results_root=None) -> dict:
    """`instrumentation_cost` as one sentence ("instrumentation"); the kernel rows committed by the same machines
    (`experiments.committed("gpu_kernels", results_root)`) stand in for whole-call timings where `rows` have none."""
    kernels = experiments.committed("gpu_kernels", results_root)
    if not kernels.empty and "machine" in rows:
        kernels = kernels[kernels["machine"].isin(set(rows["machine"]))]
    c = experiments.instrumentation_cost(rows, kernels)
    parts = [f"{r['model']} {r['phase']} B = {r['batch']} L = {r['seqlen']}: {r['timers total (ms)']:.1f} ms with "
             f"the timers against {r['whole call (ms)']} ms timed whole ({r['ratio']:.1f}×; {r['source']})"
             for _, r in c.iterrows()]
    return {"instrumentation": "; ".join(parts)}


def trace_gap(rows, results_root=None, max_other: float | None = None) -> dict:
    """The trace's shortfall at the longest prefill of each model (and batch, path, machine where the rows hold
    several) among the points of `experiments.trace_gap(rows, max_other)`, one sentence each (key "trace_gap")."""
    g = experiments.trace_gap(rows, max_other=max_other)
    g = g[g["phase"] == "prefill"]
    if g.empty:
        raise experiments.ExperimentError("no prefill point was measured with both methods")
    parts = []
    for label, h in _points(g):
        r = h.loc[h["seqlen"].idxmax()]
        s = (f"{label} at L = {int(r['seqlen'])}: the trace sums {r['profiler total (ms)']:.1f} of the "
             f"timers' {r['timers total (ms)']:.1f} ms")
        if r["under-counted (timers vs profiler)"]:
            s += (f"; it under-counts {r['under-counted (timers vs profiler)']}, {r['under-counted (ms)']:.1f} ms "
                  f"together against a gap of {r['gap (ms)']:.1f} ms")
        if not math.isnan(r["others max rel. diff"]):
            s += (f"; the other components above {experiments.TRACE_GAP_MIN:.0%} of the call agree within "
                  f"{r['others max rel. diff']:.0%}")
        parts.append(s)
    return {"trace_gap": "; ".join(parts)}


def method_agreement(rows, results_root=None) -> dict:
    """How many of the points measured with both attribution methods agree (`method_agreement`)."""
    a = experiments.method_agreement(rows)
    ok = int((a["disagree"] == "").sum())
    return {"methods_agree": f"{ok} of {len(a)} points (within {AGREEMENT_PP * 100:.0f} percentage points or "
                             f"{AGREEMENT_REL:.0%})"}
