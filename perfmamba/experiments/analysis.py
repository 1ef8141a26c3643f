"""Rows into tables: speed-ups and memory reductions, the trade-off, the two attribution methods side by side,
the cost of the instrumentation, what the trace misses, the recall probe size (read by notebooks and claims)."""
from __future__ import annotations

import math

import pandas as pd

from ..errors import ExperimentError
from ..profiling.attribution import AGREEMENT_REL, shares_agree
from ..profiling.flops import COMPONENTS
from ..profiling.sweep import CALL as CALL_METHOD  # rows of a call timed whole, no range instrumented


def tradeoff(quality, efficiency):
    """One row per (model, ratio): quality metrics beside speed-up and memory reduction against r = 0.

    quality: `pruning_quality` rows; efficiency: `pruning_efficiency` rows of the same models (matched on the
    model name, e.g. the trained mamba2-small). Columns: model, arch, ratio, d_state_kept, the quality metrics
    (``ppl_<split>``, ``<task>_<metric>``), and per phase ``speedup_<phase>`` (dense time / pruned time) and
    ``state_reduction`` (1 − pruned / dense cache bytes), ``weights_reduction``, and ``dense_ms_<phase>``, the
    dense model's time of that phase (the longest of its points).
    """
    if quality is None or quality.empty or efficiency is None or efficiency.empty:
        raise ExperimentError("tradeoff needs both quality and efficiency rows")
    q = quality[quality["metric"].isin(["ppl", "acc", "acc_norm"])].copy()
    q["name"] = [f"ppl_{s}" if t == "perplexity" else (f"recall{int(n)}_{m}" if t == "recall" else f"{t}_{m}")
                 for t, s, n, m in zip(q["task"], q["split"], q["n_pairs"], q["metric"])]
    qw = q.pivot_table(index=["model", "arch", "ratio", "criterion"], columns="name", values="value",
                       aggfunc="mean").reset_index()
    kept = q.groupby(["model", "ratio", "criterion"])["d_state_kept"].first().reset_index()
    qw = qw.merge(kept, on=["model", "ratio", "criterion"])
    e = efficiency_summary(efficiency)
    if e.empty:
        raise ExperimentError("tradeoff: the efficiency rows hold no timings")
    ew = e.pivot_table(index=["model", "ratio"], columns="phase", values="speedup", aggfunc="max")
    dense = e[e["ratio"].astype(float) == 0.0].pivot_table(index="model", columns="phase", values="time_ms",
                                                           aggfunc="max")
    mem = e.groupby(["model", "ratio"])[["state_reduction", "weights_reduction"]].max()
    ew = ew.add_prefix("speedup_").join(dense.add_prefix("dense_ms_"), on="model").join(mem).reset_index()
    for t in (qw, ew):
        t["ratio"] = t["ratio"].astype(float).round(6)
    out = qw.merge(ew, on=["model", "ratio"], how="inner")
    if out.empty:
        raise ExperimentError("tradeoff: no model has both quality and efficiency rows (models: quality "
                              f"{sorted(set(quality['model']))}, efficiency {sorted(set(efficiency['model']))})")
    return out.sort_values(["model", "ratio"]).reset_index(drop=True)


def graphed(rows):
    """Boolean mask of the rows timed as a CUDA graph (the column is read back from CSV as bool or text)."""
    if "cuda_graph" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["cuda_graph"].astype(str).str.lower() == "true"


def both_methods(rows, metric=None):
    """The eager rows of the two attribution methods (optionally of one `metric`), with a `machine` column."""
    if rows is None or rows.empty:
        raise ExperimentError("no profiling rows")
    keep = rows["method"].isin(["timers", "profiler"]) & ~graphed(rows)
    if metric is not None:
        keep &= rows["metric"] == metric
    d = rows[keep]
    return d if "machine" in d else d.assign(machine="")


POINT = ["machine", "model", "path", "phase", "batch", "seqlen"]  # one measured call


def _both_per_point(rows, metric=None):
    """(point, timers rows, profiler rows) per point of `rows` measured by both methods (eager calls)."""
    for key, g in both_methods(rows, metric).groupby(POINT, sort=False):
        by = dict(tuple(g.groupby("method")))
        if set(by) == {"timers", "profiler"}:
            yield dict(zip(POINT, key)), by["timers"], by["profiler"]


def point_label(key: dict, several: dict) -> str:
    """A model's name, with its batch, path and machine where the rows hold several of them."""
    return key["model"] + "".join(f" (B {key[c]})" if c == "batch" else f" ({c} {key[c]})"
                                  for c in ("batch", "path", "machine") if several.get(c))


def method_agreement(rows):
    """The two attribution methods side by side, one row per (machine, model, path, phase, batch, seqlen) measured
    by both (eager calls): each method's total (ms), the SSM and "other" shares, and the components whose shares
    disagree beyond the tolerance of `perfmamba.profiling.attribution.shares_agree` ("" = the methods agree)."""
    def shares_total(h):
        tot = h[(h["metric"] == "time") & (h["component"] == "total")]["value"]
        return (h[h["metric"] == "share"].groupby("component")["value"].median().to_dict(),
                float(tot.median()) if len(tot) else math.nan)

    top = [c for c in COMPONENTS if c not in ("embedding", "lm_head")]
    out = []
    for key, timers, profiler in _both_per_point(rows):
        (a, ta), (b, tb) = shares_total(timers), shares_total(profiler)
        bad = shares_agree({c: a.get(c, 0.0) for c in top}, {c: b.get(c, 0.0) for c in top})
        out.append(dict(key, **{
            "timers total (ms)": ta, "profiler total (ms)": tb, "ssm timers": a.get("ssm", math.nan),
            "ssm profiler": b.get("ssm", math.nan), "other timers": a.get("other", math.nan),
            "disagree": "; ".join(bad)}))
    if not out:
        raise ExperimentError("no point was measured with both methods (methods timers and profiler)")
    return pd.DataFrame(out)


def instrumentation_cost(rows, kernel_rows=None):
    """The timers' total against the same call timed whole, one row per eager point of `rows` (machine, model,
    path, fused, dtype, phase, batch, seqlen) where both exist.

    The whole-call time comes from the rows' own method "call" (the same call, nothing instrumented), else from
    `kernel_rows` (`gpu_kernels.csv`): the dense model's prefill latency on our Triton path at the same shape and
    dtype, timed by `triton.testing.do_bench` in another process. That is a near relative of the call, not the
    call: a forward without a cache, L2 flushed between repetitions. Columns: timers total (ms), whole call (ms;
    min–max where several), ratio (timers / median whole call), source."""
    if rows is None or rows.empty:
        raise ExperimentError("no profiling rows")
    shape = ["machine", "model", "path", "dtype", "phase", "batch", "seqlen"]
    keys = shape[:3] + ["fused"] + shape[3:]
    d = rows.assign(**{k: "" for k in ("machine", "fused", "dtype") if k not in rows})
    d = d[~graphed(d) & (d["metric"] == "time") & (d["component"] == "total")]
    if "ratio" in d:
        d = d[d["ratio"].astype(float) == 0.0]
    timers = d[d["method"] == "timers"].groupby(keys)["value"].median()
    calls = dict(tuple(d[d["method"] == CALL_METHOD].groupby(keys)["value"]))
    bench = {}
    if kernel_rows is not None and not kernel_rows.empty:
        k = kernel_rows.assign(**{c: "" for c in ("machine", "dtype") if c not in kernel_rows})
        k = k[(k["component"] == "model") & (k["metric"] == "latency") & (k["path"] == "triton")
              & (k["phase"] == "prefill")]
        # the dense model, the one with the most states: pruned kept counts are other models
        k = k[k["d_state"] == k.groupby("model")["d_state"].transform("max")]
        bench = dict(tuple(k.assign(batch=k["batch"].astype(int), seqlen=k["seqlen"].astype(int))
                           .groupby(shape)["value"]))
    out = []
    for key, t in timers.items():
        kd = dict(zip(keys, key))
        at = tuple(kd[c] for c in shape)
        if key in calls:
            v, src = calls[key], "call rows"
        elif at in bench:
            v, src = bench[at], "kernel campaign, do_bench"
        else:
            continue
        v = v.astype(float)
        out.append(dict(kd, **{"timers total (ms)": float(t), "whole call (ms)": span_text(v, ".1f"),
                               "ratio": float(t) / float(v.median()), "source": src}))
    if not out:
        raise ExperimentError("no call was timed both with the timers and whole")
    return pd.DataFrame(out).sort_values(keys).reset_index(drop=True)


TRACE_GAP_MIN = 0.01  # components below this share of the call are left out of the "others agree" figure


def trace_gap(rows, max_other: float | None = None):
    """Where the profiler's total falls short of the timers', in milliseconds, one row per point measured by
    both methods (eager calls).

    With `max_other`, only the points where "other" (the call's time outside every component, by the timers) is
    at most that share of the call: calls bound by the device, where the timers' CUDA events and the trace's
    kernel times should see the same work. Per point: both totals, the gap, the components the trace
    under-counts (its time below ``1 − AGREEMENT_REL`` of the timers', each with the sub-range that differs
    most) and the time they miss together, and the largest relative difference among the other components.
    Components below `TRACE_GAP_MIN` of the call are left out; "other" is one of the components."""
    out = []
    for key, timers, profiler in _both_per_point(rows, metric="time"):
        t, p = (h.groupby("component")["value"].median().to_dict() for h in (timers, profiler))
        tt, tp = t.get("total", math.nan), p.get("total", math.nan)
        if not (tt > 0 and tp >= 0):
            continue
        other = t.get("other", 0.0) / tt
        if max_other is not None and other > max_other:
            continue
        gap = tt - tp
        under, explained, rel = [], 0.0, math.nan
        for c in [*COMPONENTS, "other"]:
            a, b = t.get(c, 0.0), p.get(c, 0.0)
            if a < TRACE_GAP_MIN * tt:
                continue
            if b < (1 - AGREEMENT_REL) * a:
                subs = {s: t[s] - p.get(s, 0.0) for s in t if s.startswith(c + ".")}
                note = ""
                if subs:
                    s = max(subs, key=subs.get)
                    note = f" ({s} {t[s]:.1f} vs {p.get(s, 0.0):.1f})"
                under.append(f"{c} {a:.1f} vs {b:.1f} ms{note}")
                explained += a - b
            else:
                rel = abs(a - b) / a if math.isnan(rel) else max(rel, abs(a - b) / a)
        out.append(dict(key, **{
            "timers total (ms)": tt, "profiler total (ms)": tp, "gap (ms)": gap, "other timers": other,
            "under-counted (timers vs profiler)": ", ".join(under), "under-counted (ms)": explained,
            "others max rel. diff": rel}))
    if not out:
        why = f" with 'other' at most {max_other:.0%} of the call" if max_other is not None else ""
        raise ExperimentError(f"no point was measured with both methods{why}")
    return pd.DataFrame(out)


def efficiency_summary(rows, mode: str = "removed"):
    """Per (model, phase, batch, seqlen, ratio): total time (ms, timers), speed-up against r = 0, and the memory
    readings (weights, recurrent state = ssm + conv cache, peak) with their reduction against r = 0, for the
    pruned models of one `mode` (default "removed").

    Decode time is the step captured in a CUDA graph where the rows have one (a GPU; `timing` says "cuda graph"),
    else the eager step: eager decoding of a small model on a GPU measures the host's launch overhead. An eager
    time is the call timed whole where the rows have it (method "call", `timing` "eager, whole call"), else the
    timers' total ("eager"), which on a GPU includes the host cost of their events."""
    if rows is None or rows.empty:
        return pd.DataFrame()
    if "mode" in rows:
        rows = rows[rows["mode"].isin(["dense", mode])]
    keys = ["model", "arch", "phase", "batch", "seqlen", "ratio", "machine", "path", "fused"]
    point = [k for k in keys if k != "ratio"]  # the dense model and its pruned versions share these
    rows = rows.assign(**{k: "" for k in ("machine", "fused") if k not in rows})
    rows = rows.assign(**{k: rows[k].fillna("") for k in keys if not pd.api.types.is_numeric_dtype(rows[k])})
    graph = graphed(rows)
    d = rows[~graph]

    def totals(x, method="timers"):
        x = x[(x["metric"] == "time") & (x["component"] == "total") & (x["method"] == method)]
        return x.groupby(keys, dropna=False)["value"].median().rename("time_ms")

    t = pd.DataFrame(totals(d)).assign(timing="eager")
    c = totals(d, CALL_METHOD)
    if len(c):  # the call timed whole (no range instrumented), where every ratio of the point has it
        have = set(c.index)
        whole = {p for p, g in t.groupby(point, dropna=False) if set(g.index) <= have}
        c = c[[tuple(i[keys.index(k)] for k in point) in whole for i in c.index]]
        t = pd.concat([t.drop(index=c.index, errors="ignore"), pd.DataFrame(c).assign(timing="eager, whole call")])
    g = totals(rows[graph & (rows["phase"] == "decode")])
    if len(g):
        t = pd.concat([t.drop(index=g.index, errors="ignore"), pd.DataFrame(g).assign(timing="cuda graph")])
    mem = d[d["metric"] == "memory"].pivot_table(index=keys, columns="component", values="value", aggfunc="max")
    out = t.join(mem, how="outer")
    peak = d[(d["metric"] == "peak_memory") & (d["component"] == "total")]
    if len(peak):
        out = out.join(peak.groupby(keys, dropna=False)["value"].max().rename("peak_bytes"), how="left")
    out = out.reset_index()
    if "ssm_state" in out:
        out["state_bytes"] = out["ssm_state"] + out.get("conv_state", 0)
    base = out[out["ratio"].astype(float) == 0.0].set_index(point)
    ref = base.reindex(pd.MultiIndex.from_frame(out[point]))
    out["d_state"] = rows.groupby(keys, dropna=False)["d_state"].first().reindex(
        pd.MultiIndex.from_frame(out[keys])).to_numpy() if "d_state" in rows else math.nan
    out["speedup"] = ref["time_ms"].to_numpy() / out["time_ms"].to_numpy()
    for col, name in (("weights", "weights_reduction"), ("state_bytes", "state_reduction"),
                      ("peak_bytes", "peak_reduction")):
        if col in out:
            out[name] = 1 - out[col].to_numpy() / ref[col].to_numpy()
    return out.sort_values(["model", "phase", "batch", "seqlen", "ratio"]).reset_index(drop=True)


def mode_comparison(rows):
    """The three pruning modes side by side: per (model, phase, batch, seqlen, ratio), the speed-up against the
    dense model and the recurrent-state reduction of each mode present in `rows` (`pruning_efficiency` rows
    with several `modes`). Zeroed and bridged models keep the dense shapes, so neither number should move."""
    if rows is None or rows.empty or "mode" not in rows:
        raise ExperimentError("no pruning_efficiency rows with a mode column")
    modes = [m for m in ("zeroed", "bridge", "removed") if m in set(rows["mode"])]
    if not modes:
        raise ExperimentError("no pruned rows (modes zeroed, bridge or removed) to compare")
    parts = []
    for mode in modes:
        s = efficiency_summary(rows, mode=mode)
        s = s[s["ratio"].astype(float) > 0]
        cols = {"speedup": f"speedup {mode}"}
        if "state_reduction" in s:
            cols["state_reduction"] = f"state reduction {mode}"
        parts.append(s.set_index(["model", "phase", "batch", "seqlen", "ratio"])[list(cols)].rename(columns=cols))
    return pd.concat(parts, axis=1).reset_index()


def recall_probe_pairs(rows, min_acc: float = 0.5) -> int:
    """The number of pairs at which pruning is judged: the largest n_pairs the dense model still answers with
    accuracy ≥ `min_acc` (a harder probe measures the model's failure, not the pruning), else the smallest."""
    dense = rows[rows["criterion"] == "none"].groupby("n_pairs")["value"].mean()
    ok = [int(n) for n, v in dense.items() if v >= min_acc]
    return max(ok) if ok else int(rows["n_pairs"].min())


def span_text(xs, fmt: str) -> str:
    lo, hi = min(xs), max(xs)
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}–{hi:{fmt}}"
