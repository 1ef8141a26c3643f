"""Figures of the pruning half and the extensions: Fig. 3–6, Table 2, criteria, recall, decode traffic, the
measured roofline (`perfmamba.plots` lists them all)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import PlotError
from ..experiments import efficiency_summary, recall_probe_pairs
from ..pruning.activity import Activity
from .profile import COLORS, LENGTH, finish, panels, plot_roofline, stacked_bars

CRITERION_COLORS = {"delta": "#e15759", "random": "#9c9c9c", "magnitude": "#4e79a7", "energy": "#59a14f",
                    "decay": "#f28e2b", "sparsessm": "#b07aa1", "none": "#000000"}


def _need(rows, what: str, cols=()):
    if rows is None or len(rows) == 0:
        raise PlotError(f"no {what} rows to plot")
    missing = [c for c in cols if c not in rows]
    if missing:
        raise PlotError(f"{what} rows lack column(s) {', '.join(missing)}")


def _mean_band(ax, rows, color, label, alpha, band=True, **line):
    """The mean value per ratio as a line and, where `band` and the values spread (random seeds), min–max."""
    st = rows.groupby("ratio")["value"].agg(["mean", "min", "max"]).sort_index()
    ax.plot(st.index, st["mean"], marker="o", color=color, label=label, **line)
    if band and (st["max"] > st["min"]).any():
        ax.fill_between(st.index, st["min"], st["max"], color=color, alpha=alpha)


def plot_fig3_state_activity(rows, *, models=None, log: bool = False):
    """Fig. 3: activity(l, s) heatmaps (layers × states), one panel per model. Returns the Figure."""
    _need(rows, "activity", ("model", "layer", "state", "activity"))
    models = list(models) if models is not None else list(dict.fromkeys(rows["model"]))
    fig, axes = panels(1, len(models), 6.5, 3.8)
    for ax, m in zip(axes[0], models):
        sub = rows[rows["model"] == m]
        if sub.empty:
            raise PlotError(f"no activity rows for model {m!r}")
        arch = sub["arch"].iloc[0] if "arch" in sub else ""
        plot_fig3_activity(sub, ax=ax, log=log, title=f"{m} ({arch}), {int(sub['n_tokens'].iloc[0])} tokens"
                           if "n_tokens" in sub else m)
    return finish(fig)


def plot_fig4_accuracy(rows, *, criterion: str = "delta", mode: str | None = None):
    """Fig. 4: each quality metric (perplexity, task accuracies, recall) against the pruning ratio r, one line
    per model, the dense model at r = 0. Returns the Figure."""
    _need(rows, "quality", ("model", "ratio", "criterion", "task", "metric", "value"))
    d = rows[rows["metric"].isin(["ppl", "acc", "acc_norm"])].copy()
    if d.empty:
        raise PlotError("no rows with metric in ppl, acc, acc_norm")
    n_pairs = d.get("n_pairs", [None] * len(d))
    d["panel"] = [f"perplexity ({s})" if t == "perplexity" else (f"recall {int(n)} pairs {m}" if t == "recall"
                                                                 else f"{t} {m}")
                  for t, s, m, n in zip(d["task"], d["split"], d["metric"], n_pairs)]
    d["ratio"] = d["ratio"].astype(float)
    d = d[d["criterion"].isin(["none", criterion])]
    if mode is not None:
        d = d[d["mode"].isin(["dense", mode])]
    if d.empty or (d["criterion"] == criterion).sum() == 0:
        raise PlotError(f"no pruned rows with criterion {criterion!r}")
    names = list(dict.fromkeys(d["panel"]))
    fig, axes = panels(1, len(names), 4.2, 3.4)
    for ax, name in zip(axes[0], names):
        for m, g in d[d["panel"] == name].groupby("model", sort=False):
            g = g.groupby("ratio")["value"].mean().sort_index()
            ax.plot(g.index, g.to_numpy(), marker="o", label=m)
        ax.set_xlabel("pruning ratio r")
        ax.set_title(name, fontsize=10)
        if name.startswith("perplexity"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return finish(fig, f"quality of pruned models (criterion {criterion}; r = 0 is the dense model)")


def table2_efficiency(rows):
    """Table 2: per model, phase, batch, L and ratio: kept states, total time (ms), speed-up against r = 0, and
    weights / recurrent state / peak memory (MB) with their reduction."""
    _need(rows, "efficiency", ("metric", "component", "ratio"))
    s = efficiency_summary(rows)
    if s.empty or s["time_ms"].isna().all():
        raise PlotError("no efficiency rows with timings")
    out = pd.DataFrame({"model": s["model"], "phase": s["phase"], "B": s["batch"].astype(int),
                        "L": s["seqlen"].astype(int), "r": s["ratio"].astype(float), "N′ (mean)": s["d_state"],
                        "time (ms)": s["time_ms"], "timing": s["timing"], "speed-up": s["speedup"]})
    mb = {"weights": "weights (MB)", "state_bytes": "state (MB)", "peak_bytes": "peak (MB)"}
    reductions = {"weights_reduction": "weights −", "state_reduction": "state −", "peak_reduction": "peak −"}
    for col, label in {**mb, **reductions}.items():
        if col in s:
            out[label] = s[col] / 2**20 if col in mb else s[col]
    out.attrs["machine"] = ", ".join(sorted(set(s["machine"])))
    return out.reset_index(drop=True)


def plot_fig5_efficiency(rows):
    """Fig. 5: speed-up of the pruned models against sequence length (one line per ratio), prefill and decode,
    and the reduction of the recurrent state and of the peak memory against r. Returns the Figure."""
    _need(rows, "efficiency", ("metric", "component", "ratio"))
    s = efficiency_summary(rows)
    s = s[s["ratio"].astype(float) > 0].dropna(subset=["speedup"])
    if s.empty:
        raise PlotError("no pruned model with timings to compare against dense")
    models = list(dict.fromkeys(s["model"]))
    phases = [p for p in ("prefill", "decode") if p in set(s["phase"])]
    fig, axes = panels(len(models), len(phases) + 1, 4.3, 3.2)
    for i, m in enumerate(models):
        sm = s[s["model"] == m]
        for j, ph in enumerate(phases):
            ax = axes[i][j]
            for r, g in sm[sm["phase"] == ph].groupby("ratio"):
                g = g.groupby("seqlen")["speedup"].median().sort_index()
                ax.plot([str(x) for x in g.index], g.to_numpy(), marker="o", label=f"r = {float(r):g}")
            ax.axhline(1.0, color="k", lw=0.8, ls="--")
            ax.set_title(f"{m} — {ph}", fontsize=10)
            ax.set(xlabel=LENGTH[ph], ylabel="speed-up vs dense")
            ax.legend(fontsize=7)
        ax = axes[i][-1]
        g = sm.groupby("ratio").max(numeric_only=True).sort_index()
        for col, label in (("state_reduction", "recurrent state"), ("weights_reduction", "weights"),
                           ("peak_reduction", "peak (measured)")):
            if col in g and g[col].notna().any():
                ax.plot(g.index.astype(float), 100 * g[col], marker="o", label=label)
        ax.set(xlabel="pruning ratio r", ylabel="memory reduction (%)")
        ax.set_title(f"{m} — memory", fontsize=10)
        ax.legend(fontsize=7)
    return finish(fig)


def plot_fig6_tradeoff(table, *, quality: str | None = None, speed: str | None = None):
    """Fig. 6: a quality metric (default the first perplexity column) against speed-up, one point per ratio
    (labelled), one line per model. `table`: `experiments.tradeoff(...)`. Returns the Figure."""
    _need(table, "trade-off", ("model", "ratio"))
    quality = quality or next((c for c in table.columns if str(c).startswith("ppl_")), None)
    speeds = [speed] if speed else [c for c in ("speedup_prefill", "speedup_decode") if c in table.columns]
    if quality is None or quality not in table or not speeds:
        raise PlotError("trade-off rows need a quality column (ppl_*) and a speed-up column")
    fig, axes = panels(1, len(speeds), 5.2, 3.8)
    for ax, sp in zip(axes[0], speeds):
        for m, g in table.groupby("model", sort=False):
            g = g.sort_values("ratio")
            ax.plot(g[sp], g[quality], marker="o", label=m)
            for x, y, r in zip(g[sp], g[quality], g["ratio"]):
                ax.annotate(f"{float(r):g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=f"{sp.replace('_', ' ')} (× dense)", ylabel=quality.replace("_", " "))
        if quality.startswith("ppl"):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig, "accuracy–efficiency trade-off (labels: pruning ratio r)")


def plot_criteria(rows, *, metric: str = "ppl"):
    """Perplexity (or another metric) against r for every criterion, per model; random seeds as a band (min–max)
    around their mean, the dense model as a dashed line. Returns the Figure."""
    _need(rows, "criteria", ("model", "ratio", "criterion", "metric", "value"))
    d = rows[(rows["metric"] == metric) & ((rows["task"] == "perplexity") if metric == "ppl" else True)].copy()
    if d.empty:
        raise PlotError(f"no rows with metric {metric!r}")
    d["ratio"] = d["ratio"].astype(float)
    models = list(dict.fromkeys(d["model"]))
    fig, axes = panels(1, len(models), 5.5, 3.8)
    for ax, m in zip(axes[0], models):
        sub = d[d["model"] == m]
        dense = sub[sub["criterion"] == "none"]["value"]
        if len(dense):
            ax.axhline(float(dense.mean()), color="k", ls="--", lw=0.8, label="dense")
        for c, g in sub[sub["criterion"] != "none"].groupby("criterion"):
            lw = 2.2 if c == "delta" else 1.2
            _mean_band(ax, g, CRITERION_COLORS.get(c), c, 0.25, band=c == "random", lw=lw)
        ax.set(yscale="log", xlabel="pruning ratio r", ylabel=metric)
        ax.set_title(m, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return finish(fig)


def plot_roofline_measured(rows):
    """`plot_roofline` with the ceilings carried by the rows (component "machine", `experiments.roofline`)."""
    _need(rows, "roofline", ("component", "metric", "value"))
    pk = rows[rows["component"] == "machine"]
    flops = pk.loc[pk["metric"] == "peak_flops", "value"]
    bw = pk.loc[pk["metric"] == "peak_bandwidth", "value"]
    if flops.empty or bw.empty:
        raise PlotError("roofline rows carry no machine ceilings (use experiments.roofline)")
    fig = plot_roofline(rows[rows["component"] != "machine"], float(flops.iloc[0]), float(bw.iloc[0]))
    fig.axes[0].set_title(fig.axes[0].get_title() + f" ({pk['method'].iloc[0]})", fontsize=9)
    return fig


def plot_decode_state_traffic(rows, *, batch: int | None = None):
    """Left: what one dense decode step moves, as shares of its bytes — weights (read once), recurrent state
    (conv + SSM cache, read and written) and activations — per preset at `batch` (default 8 if present, else the
    largest). Right: the bandwidth-bound ideal speed-up (dense bytes / pruned bytes) against r for every preset at
    that batch, with the speed-ups measured on this machine (dashed). Returns the Figure."""
    _need(rows, "decode traffic", ("model", "batch", "ratio", "metric", "value", "source"))
    a = rows[rows["source"] == "analytic"].copy()
    if a.empty:
        raise PlotError("no analytic decode traffic rows")
    a["ratio"] = a["ratio"].astype(float)
    batches = sorted({int(b) for b in a["batch"]})
    batch = batch if batch is not None else (8 if 8 in batches else batches[-1])
    d = a[(a["batch"].astype(int) == batch) & (a["ratio"] == 0.0)]
    if d.empty:
        raise PlotError(f"no dense decode traffic rows at batch {batch}")
    w = d.pivot_table(index="model", columns="metric", values="value", aggfunc="first")
    w = w.reindex([m for m in dict.fromkeys(a["model"]) if m in w.index])
    step, weights = w["step_bytes"], w["weights_bytes"]
    state = 2 * (w["ssm_state_bytes"] + w["conv_state_bytes"])
    fig, ((ax0, ax1),) = panels(1, 2, 6.25, 4.2)
    x = np.arange(len(w))
    parts = (("weights (read)", weights, COLORS["in_proj"]),
             ("recurrent state (read + write)", state, COLORS["ssm"]),
             ("activations", (step - weights - state).clip(lower=0), COLORS["other"]))
    stacked_bars(ax0, x, [(label, 100 * (part / step).to_numpy(), color) for label, part, color in parts])
    for xi, total in zip(x, step):
        ax0.annotate(f"{total / 2**20:.0f} MB", (xi, 100), ha="center", va="bottom", fontsize=7)
    ax0.set_xticks(x, list(w.index), rotation=30, ha="right", fontsize=8)
    ax0.set(ylim=(0, 112), ylabel="share of a decode step's bytes (%)")
    ax0.set_title(f"dense, batch {batch}, {d['dtype'].iloc[0]} weights, {d['state_dtype'].iloc[0]} state",
                  fontsize=10)
    ax0.legend(fontsize=7, loc="lower right")
    ideal = a[(a["metric"] == "ideal_speedup") & (a["batch"].astype(int) == batch)]
    for m, g in ideal.groupby("model", sort=False):
        g = g.sort_values("ratio")
        ax1.plot(g["ratio"], g["value"], marker=".", lw=1, label=f"{m} (ideal)")
    meas = rows[(rows["source"] == "measured") & (rows["metric"] == "measured_speedup")]
    for (m, b), g in meas.groupby(["model", "batch"], sort=False):
        g = g.sort_values("ratio")
        ax1.plot(g["ratio"].astype(float), g["value"], marker="s", ls="--", lw=1.8,
                 label=f"{m} B={int(b)} (measured, {g['machine'].iloc[0] if 'machine' in g else 'here'})")
    ax1.axhline(1.0, color="k", lw=0.8)
    ax1.set(xlabel="pruning ratio r", ylabel="decode speed-up vs dense")
    ax1.set_title(f"bandwidth-bound ideal (batch {batch}) and measured", fontsize=10)
    ax1.legend(fontsize=6, ncol=2)
    return finish(fig)


def plot_recall(rows):
    """Left: associative-recall accuracy against the number of key–value pairs, one line per (criterion, ratio),
    the dense model in black, chance dotted. Right: accuracy against r at the probe size
    (`experiments.recall_probe_pairs`), random seeds as a band. Returns the Figure."""
    _need(rows, "recall", ("ratio", "criterion", "n_pairs", "value"))
    fig, ((ax, ax1),) = panels(1, 2, 5.5, 3.8)
    d = rows.copy()
    d["ratio"] = d["ratio"].astype(float)
    crits = [c for c in dict.fromkeys(d["criterion"]) if c != "none"]
    dense = d[d["criterion"] == "none"].groupby("n_pairs")["value"].mean()
    if len(dense):
        ax.plot(dense.index, dense.to_numpy(), color="k", marker="o", label="dense")
    for c in crits:
        for r, g in d[d["criterion"] == c].groupby("ratio"):
            g = g.groupby("n_pairs")["value"].mean()
            ax.plot(g.index, g.to_numpy(), marker=".", color=CRITERION_COLORS.get(c),
                    alpha=0.35 + 0.65 * float(r), label=f"{c} r = {float(r):g}")
    if "chance" in d:
        ax.axhline(float(d["chance"].iloc[0]), color="k", ls=":", lw=0.8, label="chance")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="key–value pairs", ylabel="recall accuracy")
    ax.legend(fontsize=6, ncol=2)
    n = recall_probe_pairs(d)
    sub = d[d["n_pairs"].astype(int) == n]
    for c in crits:
        _mean_band(ax1, sub[sub["criterion"].isin([c, "none"])], CRITERION_COLORS.get(c), c, 0.2)
    ax1.set(xlabel="pruning ratio r", ylabel=f"accuracy at {n} pairs")
    ax1.legend(fontsize=8)
    return finish(fig)


# The kernel goals of benchmarks/README.md: (goal, benchmarks/gpu_kernels.py section).
KERNEL_GOALS = [
    ("Mamba2-130M prefill B=8 L=8192: ≥ 2.0× faster than mamba-ssm as installable", "prefill"),
    ("Mamba2-2.7B-shaped decode B=8: ≤ 1.3× the memory-bandwidth floor", "decode"),
    ("pruning r = 0.5: decode throughput at B=64 ≥ 1.5× dense", "prune"),
    ("pruning r = 0.5: prefill (L ≥ 2048) ≥ 1.15× faster than dense", "prune"),
    ("Mamba-1 130M prefill B=8 L=512: ≥ 50× faster than transformers' torch path", "mamba1"),
]


def table_kernels(rows):
    """The GPU kernel results committed under data/results/<gpu>/ (one row per machine, experiment, section,
    model, path and metric, median value), or — when no GPU has run — the kernel goals with "no GPU run yet"."""
    if rows is None or rows.empty:
        return pd.DataFrame(KERNEL_GOALS, columns=["goal", "section"]).assign(measured="no GPU run yet")
    cols = [c for c in ("device_name", "experiment", "section", "model", "path", "phase", "batch", "seqlen",
                        "d_state", "metric", "unit") if c in rows]
    d = rows.copy()
    d[cols] = d[cols].astype(object).where(d[cols].notna(), "")
    return d.groupby(cols, sort=False)["value"].median().reset_index()


def _matrix(act):
    """(layers × max N) array of activity with NaN padding, from an Activity or tidy rows."""
    if isinstance(act, Activity):
        return act.matrix().numpy(), act.arch
    rows = act.to_dict("records") if hasattr(act, "to_dict") else list(act)
    if not rows:
        raise ValueError("no activity rows to plot")
    n_layer = max(int(r["layer"]) for r in rows) + 1
    n_state = max(int(r["state"]) for r in rows) + 1
    m = np.full((n_layer, n_state), math.nan)
    for r in rows:
        m[int(r["layer"]), int(r["state"])] = float(r["activity"])
    return m, rows[0].get("arch", "")


def plot_fig3_activity(act, *, ax=None, title: str | None = None, cmap: str = "viridis", log: bool = False):
    """Heatmap of activity(l, s) = E[Δ_t] (PerfMamba Fig. 3): one row per layer, one column per state.

    act: an `Activity` or tidy rows (list of dicts / DataFrame with layer, state, activity). Layers with
    fewer states (after pruning) leave blank cells. log: colour by log10(activity). Returns the Figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    m, arch = _matrix(act)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            m = np.log10(m)
    if ax is None:
        n_layer, n_state = m.shape
        _, ax = plt.subplots(figsize=(min(14, 3 + 0.08 * n_state + 2), min(10, 1.5 + 0.25 * n_layer + 1)))
    label = "log10 E[Δ]" if log else "activity E[Δ]"
    sns.heatmap(m, ax=ax, cmap=cmap, cbar_kws={"label": label}, mask=np.isnan(m),
                xticklabels=max(1, m.shape[1] // 16), yticklabels=max(1, m.shape[0] // 24))
    ax.set(xlabel="state s", ylabel="layer l")
    ax.set_title(title if title is not None else f"State activity per layer and state{f' ({arch})' if arch else ''}")
    return ax.figure
