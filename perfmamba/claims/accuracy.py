"""Claims of the pruning half of the paper on accuracy (§6.2, §6.4): Fig. 4, the accuracy zones, Fig. 6 and the
marginal drop.

The paper's tasks (PIQA, ARC-Easy, HellaSwag, OpenBookQA) and checkpoint cannot be had on the machines this
artifact runs on, so Fig. 4's cells are "not measured here", with the command that measures them. The paper's
text is checked against its own figures, and its accuracy zones are computed the way its numbers are
reproduced: the mean *relative* loss over the four tasks and the ratios of a zone. The same statistics on our
trained small models are shown beside them with their standard errors.
"""
from __future__ import annotations

import math

import pandas as pd

from . import paper
from .records import (CONFIRMED, INCONSISTENT, NOT_MEASURED, REFUTED, UNDECIDABLE, Claim, Value, decided, judge,
                      judge_decided, n_to_decide, stated)
from .speed import _r

ZONES = {"r ≤ 0.3": (0.0, 0.3), "0.3 < r ≤ 0.7": (0.3, 0.7), "r > 0.7": (0.7, 1.0)}  # (low, high]
ZONE_TOL_PP = 1.5
ACCURACY_COMMAND = ("perfmamba lm-eval --model perfmamba --model_args pretrained=<mamba2-130m>,prune_ratio=R "
                    "--tasks piqa,arc_easy,hellaswag,openbookqa (needs the checkpoint and the datasets from a hub)")

def _fig4() -> dict[tuple[str, float], float]:
    f = paper.table("fig4_read")
    return {(t, _r(r)): paper.number(v) for t, r, v in zip(f["task"], f["ratio"], f["accuracy_approx"])}


def _slopes(acc: dict) -> dict:
    """{(r, r'): (acc(r') − acc(r)) / (r' − r)} over consecutive ratios of {r: accuracy}."""
    rs = sorted(acc)
    return {(a, b): (acc[b] - acc[a]) / (b - a) for a, b in zip(rs, rs[1:])}


def zone_losses(acc: dict, tasks, stderr: dict | None = None) -> dict:
    """Mean relative accuracy loss (%) per zone over `tasks` and the measured ratios in the zone (low, high]: mean
    of (acc(0) − acc(r)) / acc(0); with `stderr` ({(task, r): se}), its standard error (independent cells)."""
    out = {}
    for z, (lo, hi) in ZONES.items():
        # a relative loss needs a dense accuracy above zero (a model at 0 has nothing to lose)
        cells = [(t, r) for (t, r) in sorted(acc) if t in tasks and lo < r <= hi and acc.get((t, 0.0), 0) > 0]
        if not cells:
            continue
        losses = [(acc[(t, 0.0)] - acc[(t, r)]) / acc[(t, 0.0)] for t, r in cells]
        mean = 100 * sum(losses) / len(losses)
        se = math.nan
        if stderr is not None:
            var = sum((stderr.get((t, r), math.nan) ** 2 + stderr.get((t, 0.0), math.nan) ** 2) / acc[(t, 0.0)] ** 2
                      for t, r in cells)
            se = 100 * math.sqrt(var) / len(cells)
        out[z] = (mean, se)
    return out


SETTINGS = ["model_sha", "calib_tokens", "calib_seq_len", "eval_tokens", "eval_seq_len", "limit"]


def _our_accuracy(src):
    """{(model, task): {ratio: (acc, stderr, n)}} of this run's quality rows (criterion Δ, mode removed, the paper's
    uniform selection). Where the rows hold several evaluation settings of a model, the one with the most ratios
    (e.g. fig4_accuracy's, not a smaller one of another notebook) is used, never a mix."""
    q = src.quality
    if q.empty:
        return {}
    q = q[(q["metric"] == "acc") & q["criterion"].isin(["none", "delta"]) & q["mode"].isin(["dense", "removed"])]
    if "selection" in q:
        q = q[q["selection"].isin(["none", "uniform"])]
    keys = [c for c in SETTINGS if c in q]
    if keys:
        q = q.assign(**{c: q[c].astype(str) for c in keys})
        best = []
        for m, g in q.groupby("model"):
            sizes = g.groupby(keys)["ratio"].nunique()
            best.append(g.set_index(keys).loc[sizes.idxmax()].reset_index())
        q = pd.concat(best) if best else q
    out = {}
    for (m, t, r), g in q.groupby(["model", "task", "ratio"]):
        out.setdefault((m, t), {})[_r(r)] = (float(g["value"].mean()), float(g["stderr"].astype(float).mean()),
                                             int(float(g["n"].iloc[0])) if "n" in g and pd.notna(g["n"].iloc[0]) else 0)
    return out


def accuracy(src) -> list[Claim]:
    fig = _fig4()
    out = []
    for task, name in paper.TASKS.items():
        rs = sorted(r for t, r in fig if t == task)
        out.append(Claim(
            id=f"fig4_{task}", section="Fig. 4", asserts=f"zero-shot {name} accuracy of pruned Mamba2-130M against r",
            paper={f"r = {r:g}": fig[(task, r)] for r in rs}, unit="accuracy", precision="read off the plot, ±0.005",
            refs={("fig4_read", task, f) for f in paper.table("fig4_read").query("task == @task")["ratio"]},
            status=NOT_MEASURED, command=ACCURACY_COMMAND,
            detail="no Mamba2-130M checkpoint and no copy of the task's data can be downloaded here"))

    for tid, ratio in (("accuracy_text_dense", 0.0), ("accuracy_text_r09", 0.9)):
        rows = paper.prose(tid)
        text = {}
        for q, v in zip(rows["quantity"], rows["value"]):
            task = next(k for k, n in paper.TASKS.items() if q.startswith(n))
            text.setdefault(task, []).append(paper.number(v) / 100)
        off = {t: (v, fig[(t, ratio)]) for t, v in text.items()
               if not min(v) - 0.01 <= fig[(t, ratio)] <= max(v) + 0.01}
        out.append(stated(
            tid, f"the text's accuracies at r = {ratio:g}",
            {paper.TASKS[t]: "–".join(f"{x:.2f}" for x in v) for t, v in text.items()}, "accuracy",
            precision="printed (whole percent)", tolerance="the text agrees with Fig. 4 within 0.01",
            why="whole percent in the text, ±0.005 on the plot",
            compared={f"Fig. 4 {paper.TASKS[t]}": fig[(t, ratio)] for t in text},
            status=INCONSISTENT if off else NOT_MEASURED, command=ACCURACY_COMMAND,
            detail=("text against Fig. 4: " + ", ".join(f"{paper.TASKS[t]} {'–'.join(f'{x:.2f}' for x in v)} vs "
                                                         f"{f:.3f}" for t, (v, f) in off.items())
                    if off else "the text agrees with Fig. 4")))

    # zones: the paper's text against its own figure, and ours beside
    text = dict(zip(ZONES, (paper.number(v) for v in paper.prose("accuracy_zones")["value"])))
    from_fig = zone_losses(fig, list(paper.TASKS))
    c = stated("accuracy_zones", "mean accuracy loss: under 1 % for r ≤ 0.3, about 12 % for 0.3 < r ≤ 0.7, "
               "about 22 % beyond", dict(text), "% (relative)",
               tolerance=f"within {ZONE_TOL_PP} pp of the text, and at least two standard errors from zero",
               why="the text's zones are reproduced by the mean relative loss of Fig. 4 within its reading "
                   "error (±0.005 on accuracies near 0.3–0.6 is about ±1.5 % relative)",
               compared={f"Fig. 4 {z} (%)": v for z, (v, _) in from_fig.items()}, command=ACCURACY_COMMAND,
               setting="ours: the trained small models on the offline corpus tasks (not Mamba2-130M on the "
                       "paper's four tasks)")
    fig_ok = all(abs(from_fig[z][0] - text[z]) <= ZONE_TOL_PP for z in text)
    ours = _our_accuracy(src)
    statuses, needs = [], []
    for (m, t), accs in sorted(ours.items()):
        acc = {(t, r): v[0] for r, v in accs.items()}
        se = {(t, r): v[1] for r, v in accs.items()}
        n = max(v[2] for v in accs.values())
        for z, (mean, s) in zone_losses(acc, [t], stderr=se).items():
            c.ours.append(Value(mean, "% (relative)", "any machine", m, stderr=s, n=n, path=t, note=z))
            if not decided(mean, s):
                statuses.append(UNDECIDABLE)
                need = n_to_decide(mean, s, n)
                needs += [need] if need else []
                c.compared[f"{m} {t} {z}"] = f"{mean:.1f} ± {s:.1f} %: undecidable at n = {n}" + (
                    f" (n ≈ {need} would decide it)" if need else "")
            else:
                ok = abs(mean - text[z]) <= max(ZONE_TOL_PP, 2 * s)
                statuses.append(CONFIRMED if ok else REFUTED)
                c.compared[f"{m} {t} {z}"] = f"{mean:.1f} ± {s:.1f} %"
    n_dec = len(statuses) - statuses.count(UNDECIDABLE)
    c.status = judge_decided(statuses.count(CONFIRMED), n_dec, len(statuses)) if fig_ok else INCONSISTENT
    c.detail = ("the text matches Fig. 4's mean relative loss (" + ", ".join(
        f"{z}: {text[z]:g} vs {from_fig[z][0]:.1f} %" for z in text) + ")") + (
        f"; ours: {statuses.count(CONFIRMED)} confirmed, {statuses.count(REFUTED)} refuted, "
        f"{statuses.count(UNDECIDABLE)} undecidable (model × task × zone)" if statuses else "") + (
        f"; deciding them would take {min(needs)}–{max(needs)} items per task instead of "
        f"{max(v.n for v in c.ours if v.n)}" if needs else "")
    out.append(c)
    return out


def tradeoff(src) -> list[Claim]:
    """Fig. 6's points and §6.4: what the points are (PIQA of Fig. 4, the L = 4096 savings of Fig. 5b), the
    marginal drop Δ_acc = (Acc(r+δ) − Acc(r))/δ against the stated bounds, and the practical threshold r ≈ 0.5."""
    f6 = paper.table("fig6")
    pts = {_r(r): (paper.number(a), paper.number(ms)) for r, a, ms in
           zip(f6["ratio"], f6["accuracy"], f6["latency_reduction_ms"])}
    fig = _fig4()
    b = paper.table("fig5b_read")
    red = {(_r(r), int(L)): paper.number(v)
           for r, L, v in zip(b["ratio"], b["seqlen"], b["latency_reduction_ms_approx"])}
    acc_task = min(paper.TASKS, key=lambda t: max(abs(fig[(t, r)] - a) for r, (a, _) in pts.items()))
    acc_off = max(abs(fig[(acc_task, r)] - a) for r, (a, _) in pts.items())
    lengths = sorted({L for _, L in red})
    L_match = min(lengths, key=lambda L: max(abs(red.get((r, L), math.inf) - ms) for r, (_, ms) in pts.items()))
    ms_off = max(abs(red[(r, L_match)] - ms) for r, (_, ms) in pts.items())
    ours = _our_accuracy(src)
    out = [Claim(
        id="fig6_points", section="Fig. 6", asserts="accuracy against latency saved, one point per r",
        paper={f"r = {r:g}": f"acc {a:g}, −{ms:g} ms" for r, (a, ms) in pts.items()}, unit="accuracy / ms",
        precision="printed labels", refs={("fig6", r) for r in f6["ratio"]},
        compared={"accuracy is Fig. 4's": paper.TASKS[acc_task], "largest difference": acc_off,
                  "saving is Fig. 5b's at L": L_match, "largest difference (ms)": ms_off},
        tolerance="points equal to one task of Fig. 4 (±0.01) and one length of Fig. 5b (±1 ms)",
        why="the labels are printed; the figures they come from are read to ±0.005 and ±1 ms",
        status=NOT_MEASURED if acc_off <= 0.01 and ms_off <= 1.0 else INCONSISTENT, command=ACCURACY_COMMAND,
        detail=f"the accuracies are {paper.TASKS[acc_task]}'s (Fig. 4, within {acc_off:.3f}) and the savings "
               f"Fig. 5b's at L = {L_match} (within {ms_off:.1f} ms): a single task, not the four-task mean")]

    rows = paper.prose("tradeoff_text")
    vals, off = {}, {}
    for q, r, v in zip(rows["quantity"], rows["ratio"], rows["value"]):
        r, v = _r(r), paper.number(v)
        vals[f"{q} (r = {r:g})"] = v
        ref = pts[r][0] if q.startswith("accuracy") else pts[r][1]
        if abs(ref - v) > 0.005:
            off[f"{q} (r = {r:g})"] = (v, ref)
    out.append(stated(
        "tradeoff_text", "the text's two regimes of the trade-off, in Fig. 6's numbers", vals,
        "accuracy / ms", tolerance="the text equals Fig. 6's labels", why="both are printed",
        compared={"differences": len(off)},
        status=INCONSISTENT if off else NOT_MEASURED, command=ACCURACY_COMMAND,
        detail="; ".join(f"{k}: text {v:g}, Fig. 6 {f:g}" for k, (v, f) in off.items()) or "the text equals Fig. 6"))

    # marginal drop with the text's δ, on the paper's own points (0.2 apart) and on ours
    delta = paper.prose_value("marginal_drop", "step")
    below = paper.prose_value("marginal_drop", "marginal accuracy drop bound for r ≤ 0.5")
    above = paper.prose_value("marginal_drop", "marginal accuracy drop bound beyond")
    rs = sorted(pts)
    drops = _slopes({r: a for r, (a, _) in pts.items()})
    bad = {k: v for k, v in drops.items() if (k[1] <= 0.5 and abs(v) >= below) or (k[0] >= 0.5 and abs(v) <= above)}
    c = stated("marginal_drop", f"the marginal accuracy drop (δ = {delta:g}) stays below {below:g} "
               f"up to r = 0.5 and exceeds {above:g} beyond",
               {"δ": delta, "bound r ≤ 0.5": below, "bound beyond": above}, "accuracy per unit r",
               compared={f"Fig. 6 {a:g} → {b_:g}": v for (a, b_), v in drops.items()},
               tolerance="|Δ_acc| below the first bound for steps ending at r ≤ 0.5, above the second beyond",
               why="the bounds are the paper's", command=ACCURACY_COMMAND)
    curves = {key: (accs, _slopes({r: v[0] for r, v in accs.items()})) for key, accs in sorted(ours.items())}
    n_ok = n_dec = 0
    for (m, t), (accs, steps) in curves.items():
        for (a, b_), d in steps.items():
            se = math.hypot(accs[a][1], accs[b_][1]) / (b_ - a)
            c.ours.append(Value(d, "accuracy per unit r", "any machine", m, ratio=b_, stderr=se,
                                n=accs[b_][2], path=t, note=f"step {a:g} → {b_:g}"))
            bound = below if b_ <= 0.5 else above
            if decided(abs(d) - bound, se):
                n_dec += 1
                n_ok += abs(d) < bound if b_ <= 0.5 else abs(d) > bound
    c.compared["ours: steps whose side of the bound is decided"] = n_dec
    c.compared["ours: of those, on the stated side"] = n_ok
    c.status = INCONSISTENT if bad else judge_decided(n_ok, n_dec, len(c.ours))
    c.detail = (("the paper's own points give |Δ_acc| of " + ", ".join(
        f"{abs(v):.2f} ({a:g} → {b_:g})" for (a, b_), v in drops.items())
        + f" with steps of {rs[1] - rs[0]:g}, against the stated {below:g} / {above:g}") if bad else
        "the paper's points respect the bounds") + (
        f"; ours: {len(c.ours)} steps (model × task), {n_dec} decided at this sample size, {n_ok} of them on the "
        "stated side of the bound" if c.ours else "")
    out.append(c)

    th = paper.prose_value("practical_threshold")
    knee = max(drops, key=lambda k: abs(drops[k]))
    c = stated("practical_threshold", "r ≈ 0.5 is the practical threshold: beyond it accuracy falls faster",
               {"r": th}, "ratio", compared={"paper's steepest step": f"{knee[0]:g} → {knee[1]:g}"},
               tolerance="the steepest step of the curve ends at or starts from r = 0.5",
               why="a threshold is where the slope changes", command=ACCURACY_COMMAND,
               setting="ours: the trained small models on the offline corpus tasks")
    n_ok = 0
    for (m, t), (accs, steps) in curves.items():
        if not steps:
            continue
        k = min(steps, key=steps.get)
        se = math.hypot(accs[k[0]][1], accs[k[1]][1])
        c.ours.append(Value(k[1], "ratio", "any machine", m, path=t, stderr=se,
                            note=f"steepest step {k[0]:g} → {k[1]:g} ({steps[k]:+.3f} per unit r)"))
        n_ok += th in k
    c.status = judge(n_ok, len(c.ours)) if th in knee else INCONSISTENT
    c.detail = (f"the paper's steepest step is {knee[0]:g} → {knee[1]:g}; ours at r = 0.5 for {n_ok} of "
                f"{len(c.ours)} (model, task) curves")
    out.append(c)
    return out


def claims(src) -> list[Claim]:
    return [*accuracy(src), *tradeoff(src)]
