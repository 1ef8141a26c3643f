"""Figures of the claims page, drawn from claim records (`perfmamba.claims`): the summary of statuses, Table 1 and
Table 2 beside ours."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..claims.records import STATUSES, summary
from ..claims.table1 import FIVE
from .profile import finish, panels

STATUS_COLORS = {"confirmed": "#59a14f", "partly": "#edc948", "refuted": "#e15759",
                 "undecidable at this sample size": "#bab0ac", "not measured here": "#d4d4d4",
                 "inconsistent within the paper": "#b07aa1"}


def plot_claims_summary(records):
    """Stacked bars: how many claims of each status, per paper section."""
    import matplotlib.pyplot as plt

    t = summary(records).drop(index="all")
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(t) + 1.2))
    left = pd.Series(0, index=t.index)
    for s in [s for s in STATUSES if s in t.columns]:
        ax.barh(t.index, t[s], left=left, color=STATUS_COLORS[s], label=s)
        left = left + t[s]
    ax.invert_yaxis()
    ax.set_xlabel("claims")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return finish(fig)


def plot_table1_flops(records):
    """Table 1's FLOPs as a grid of paper / ours ratios (architecture × component, per length); 1 is a match."""
    import matplotlib.pyplot as plt

    recs = [r for r in records if r.id.startswith("table1_flops_")]
    labels = [r.id.replace("table1_flops_", "").replace("_", " ") for r in recs]
    Ls = [k.split(" = ")[1] for k in recs[0].paper] if recs else []
    grid = np.array([[r.compared.get(f"paper/ours L = {L}", np.nan) for L in Ls] for r in recs], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 0.38 * len(recs) + 1.2))
    im = ax.imshow(np.log2(grid), cmap="RdBu_r", vmin=-5, vmax=5, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(Ls)), [f"L = {L}" for L in Ls])
    ax.set_yticks(range(len(labels)), [f"{lab} ({r.status})" for lab, r in zip(labels, recs)], fontsize=8)
    ax.set_title("Table 1 FLOPs: paper / ours (130M shapes, batch 8)", fontsize=10)
    fig.colorbar(im, ax=ax, label="log2(paper / ours)")
    return finish(fig)


def plot_table1_shares(records, metric: str = "latency"):
    """Table 1's shares of one metric, the paper (hatched) beside ours, per architecture and length."""
    import matplotlib.pyplot as plt

    colors = ["#76b7b2", "#4e79a7", "#f28e2b", "#e15759", "#edc948"]
    bars = []  # (label, shares, hatched)
    for r in records:
        if not r.id.startswith(f"table1_{metric}_mamba"):
            continue
        for who in ("paper", "ours"):
            shares = [r.compared.get(f"{who} share {c}", math.nan) for c in FIVE]
            if not all(math.isnan(s) for s in shares):
                bars.append((f"{r.id.split('_')[2]} L{r.id.split('_L')[-1]}\n{who}", shares, who == "paper"))
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for i, (label, shares, hatched) in enumerate(bars):
        bottom = 0.0
        for c, s, col in zip(FIVE, shares, colors):
            ax.bar(i, s, bottom=bottom, color=col, label=c if i == 0 else None, hatch="//" if hatched else None,
                   edgecolor="white")
            bottom += s
    if not bars:
        ax.text(0.5, 0.5, f"no {metric} rows measured", ha="center", transform=ax.transAxes)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
    ax.set_ylabel(f"share of {metric}")
    ax.set_title(f"Table 1 {metric}: the paper (hatched) and ours", fontsize=10)
    if bars:
        ax.legend(fontsize=7, frameon=False, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return finish(fig)


def plot_table2_claims(records):
    """Table 2 beside ours: speed-up (whole calls) and memory reduction against r, one line per length."""
    fig, axes = panels(1, 2, 5, 3.4)
    for ax, kind, unit in zip(axes[0], ("speedup", "memory"), ("×", "%")):
        for r in records:
            if not r.id.startswith(f"table2_{kind}_L"):
                continue
            L = r.id.split("_L")[-1]
            rs = [float(k.split(" = ")[1]) for k in r.paper]
            line, = ax.plot(rs, list(r.paper.values()), "o-", label=f"paper L = {L}", alpha=0.8)
            if kind == "memory" and r.ours and L == "64":
                ax.plot([v.ratio for v in r.ours], [v.value for v in r.ours], "k^--",
                        label="ours: weights + state (any L)")
            elif kind == "speedup":
                for v in r.ours:
                    ax.plot(v.ratio, v.value, "s", color=line.get_color(), markeredgecolor="k",
                            label=f"ours L = {L}, {v.phase} B = {v.batch}")
        ax.set_xlabel("pruning ratio r")
        ax.set_ylabel(f"{'speed-up' if kind == 'speedup' else 'memory reduction'} ({unit})")
        ax.legend(fontsize=6, frameon=False, ncol=2)
    return finish(fig, "Table 2: the paper (circles) and our whole-call measurements (squares)")
