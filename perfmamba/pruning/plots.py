"""Figures of the pruning part: the Fig. 3 state-activity heatmap (layers × states)."""
from __future__ import annotations

import math


def _matrix(act):
    """(layers × max N) array of activity with NaN padding, from an Activity or tidy rows."""
    import numpy as np

    from .activity import Activity

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
    import numpy as np
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
    ax.set_xlabel("state s")
    ax.set_ylabel("layer l")
    ax.set_title(title if title is not None else f"State activity per layer and state{f' ({arch})' if arch else ''}")
    return ax.figure
