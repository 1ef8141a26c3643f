"""Plots and tables of profiling rows (`perfmamba.plots` lists them: Fig. 2, Table 1, the SSM's memory, the
roofline). The paper's own values are compared in `perfmamba.claims`, not here."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..config import PRESETS
from ..errors import ProfilingError
from ..profiling.flops import COMPONENTS, roofline_points

# Order and colours shared by every figure.
STACK = list(COMPONENTS) + ["other"]
COLORS = {"embedding": "#bab0ac", "rmsnorm": "#76b7b2", "in_proj": "#4e79a7", "conv1d": "#f28e2b",
          "ssm": "#e15759", "gated_norm": "#59a14f", "out_proj": "#edc948", "lm_head": "#b07aa1",
          "other": "#d4d4d4"}
PATH_PREFERENCE = ("mamba_ssm", "triton", "ref", "sequential")
LENGTH = {"prefill": "sequence length", "decode": "context length"}  # the x axis of a phase


def panels(n_rows: int, n_cols: int, width: float, height: float):
    """A figure of n_rows × n_cols panels, each `width` × `height` inches: (figure, 2-D array of axes)."""
    import matplotlib.pyplot as plt

    return plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False)


def finish(fig, title: str | None = None):
    """`fig` laid out, under `title` where given."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def stacked_bars(ax, x, parts):
    """Bars at `x` stacked in the order of `parts`, [(label, heights, colour)], from 0."""
    bottom = 0.0
    for label, heights, color in parts:
        ax.bar(x, heights, bottom=bottom, label=label, color=color)
        bottom = bottom + heights


def _pick(df: pd.DataFrame, col: str, value, prefer=None):
    """Filter df on col == value; with value None, on the single value present (or the preferred one)."""
    if col not in df or df.empty:
        return df, value
    present = list(dict.fromkeys(df[col].dropna().tolist()))
    if value is None:
        if len(present) <= 1:
            return df, (present[0] if present else None)
        value = ([p for p in prefer or () if p in present] or sorted(present, key=str))[0]
    if value not in present:
        raise ProfilingError(f"no rows with {col}={value!r}; present: {', '.join(map(str, present))}")
    return df[df[col] == value], value


def _times(df: pd.DataFrame, method: str | None, path: str | None, batch: int | None, cuda_graph=False):
    if df is None or df.empty or "metric" not in df:
        raise ProfilingError("no profiling rows to plot")
    d = df[df["metric"] == "time"]
    if "cuda_graph" in d:
        d = d[d["cuda_graph"].astype(str).str.lower() == str(bool(cuda_graph)).lower()]
    d, method = _pick(d, "method", method, ("timers", "profiler"))
    d, path = _pick(d, "path", path, PATH_PREFERENCE)
    d, batch = _pick(d, "batch", batch, (8, 1))
    if d.empty:
        raise ProfilingError("no time rows to plot")
    return d, dict(method=method, path=path, batch=batch)


def plot_fig2_latency(df: pd.DataFrame, *, method: str | None = None, path: str | None = None,
                      batch: int | None = None, models=None, unit: str = "ms"):
    """Fig. 2: stacked bars of per-component time against sequence length; columns prefill / decode,
    one row per model. Picks batch 8 and the fastest available path unless told. Returns the Figure."""
    d, picked = _times(df, method, path, batch)
    models = list(models) if models is not None else list(dict.fromkeys(d["model"]))
    phases = [p for p in ("prefill", "decode") if p in set(d["phase"])]
    scale = {"ms": 1.0, "s": 1e-3, "us": 1e3}[unit]
    fig, axes = panels(len(models), len(phases), 5.5, 3.2)
    for i, m in enumerate(models):
        for j, ph in enumerate(phases):
            ax = axes[i][j]
            sub = d[(d["model"] == m) & (d["phase"] == ph) & d["component"].isin(STACK)]
            if sub.empty:
                ax.set_visible(False)
                continue
            wide = sub.pivot_table(index="seqlen", columns="component", values="value", aggfunc="median") * scale
            wide = wide.reindex(columns=[c for c in STACK if c in wide.columns]).sort_index()
            stacked_bars(ax, [str(s) for s in wide.index],
                         [(comp, wide[comp].fillna(0).to_numpy(), COLORS.get(comp)) for comp in wide.columns])
            ax.set_title(f"{m} — {ph}" + (" (per token)" if ph == "decode" else ""), fontsize=10)
            ax.set(xlabel=LENGTH[ph], ylabel=f"time ({unit})")
    handles = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    labels = [c for c in STACK if c in handles]
    fig.legend([handles[lab] for lab in labels], labels, loc="upper center", ncol=min(len(labels), 9),
               frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(f"batch {picked['batch']}, path {picked['path']}, {picked['method']}", y=1.04, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def share_table(df: pd.DataFrame, component: str = "ssm", *, batch: int | None = None, method: str | None = None,
                path: str | None = None) -> pd.DataFrame:
    """Share of `component` in the measured total time, one row per (model, phase), one column per sequence
    length: how a component's weight moves with L (the paper's claim that the SSM share grows with L)."""
    d, _ = _times(df, method, path, batch)
    tot = d[d["component"] == "total"].groupby(["model", "phase", "seqlen"])["value"].median()
    part = d[d["component"] == component].groupby(["model", "phase", "seqlen"])["value"].median()
    if part.empty:
        raise ProfilingError(f"no time rows for component {component!r}")
    share = (part / tot).rename(f"{component} share").reset_index()
    return share.pivot_table(index=["model", "phase"], columns="seqlen", values=f"{component} share")


def graph_decode_table(df: pd.DataFrame, *, path: str | None = None, batch: int | None = None) -> pd.DataFrame:
    """Time per output token (ms) of the decode step captured in a CUDA graph, one row per model, one column per
    context length (GPU rows; the graph replays the step without the host's launch overhead)."""
    d, picked = _times(df[df["phase"] == "decode"] if "phase" in df else df, "timers", path, batch, cuda_graph=True)
    d = d[d["component"] == "total"]
    if d.empty:
        raise ProfilingError("no CUDA-graph decode rows (measured on a GPU only)")
    table = d.pivot_table(index="model", columns="seqlen", values="value", aggfunc="median")
    table.attrs.update(picked)
    return table


def table1_components(df: pd.DataFrame, *, phase: str = "prefill", seqlen: int | None = None,
                      batch: int | None = None, method: str | None = None, path: str | None = None) -> pd.DataFrame:
    """Table 1: per model and component, time (ms), share of time, activation peak (MB) and the labelled
    sum of allocations (GB) at one length: `seqlen`, by default the only one, else the first of 2048, 1024,
    512 present."""
    d = df[df["phase"] == phase] if "phase" in df else df
    times, picked = _times(d, method, path, batch)
    times, seqlen = _pick(times, "seqlen", seqlen, (2048, 1024, 512))
    d = d[(d["path"] == picked["path"]) & (d["batch"] == picked["batch"]) & (d["seqlen"] == seqlen)]
    mem = d[d["metric"].isin(["activation_peak", "sum_of_allocations"])]
    mem = mem.groupby(["model", "component", "metric"])["value"].max()
    share = d[(d["metric"] == "share") & (d["method"] == picked["method"])] if "method" in d else d.iloc[:0]
    out = []
    for (model, arch), g in times.groupby(["model", "arch"], sort=False):
        total = g.loc[g["component"] == "total", "value"]
        total = float(total.iloc[0]) if len(total) else math.nan
        sg = share[share["model"] == model]
        for comp in STACK:
            t = g.loc[g["component"] == comp, "value"]
            if t.empty:
                continue
            t = float(t.iloc[0])
            s = sg.loc[sg["component"] == comp, "value"]  # median of per-repetition shares, when recorded
            out.append({
                "model": model, "arch": arch, "component": comp, "time_ms": t,
                "time_share": float(s.iloc[0]) if len(s) else (t / total if total else math.nan),
                "activation_peak_MB": mem.get((model, comp, "activation_peak"), math.nan) / 2**20,
                "sum_of_allocations_GB": mem.get((model, comp, "sum_of_allocations"), math.nan) / 2**30,
            })
    table = pd.DataFrame(out)
    table.attrs.update(picked, seqlen=seqlen, phase=phase)
    return table


def preset_shape(model: str):
    """(d_model, n_layer) of a preset name, None for anything else."""
    cfg = PRESETS.get(str(model))
    return (cfg.d_model, cfg.n_layer) if cfg is not None else None


def ssm_memory_table(df: pd.DataFrame, *, seqlen: int = 2048,
                     phase: str = "prefill") -> pd.DataFrame:
    """The SSM component's memory, Mamba-2 against Mamba-1, for every pair of models in `df` with the same
    width and depth (presets, `perfmamba.config.PRESETS`), per batch, path and reading: the activation peak
    and the labelled sum of allocations (`perfmamba.profiling.memory`), in GB (2³⁰ bytes, as everywhere in this
    artifact), and their ratio (the paper's, §4.2, is compared in `perfmamba.claims.profile`)."""
    need = {"model", "arch", "metric", "component", "seqlen", "value"}
    if df is None or df.empty or not need <= set(df.columns):
        raise ProfilingError("no profiling rows with memory readings")
    d = df[df["metric"].isin(["sum_of_allocations", "activation_peak"]) & (df["component"] == "ssm")]
    if "phase" in d:
        d = d[d["phase"] == phase]
    present = sorted({int(x) for x in d["seqlen"]})
    d = d[d["seqlen"] == seqlen]
    if d.empty:
        raise ProfilingError(f"no {phase} memory rows of the SSM at L = {seqlen} (lengths with memory rows: "
                             f"{', '.join(map(str, present)) or 'none'})")
    keys = [c for c in ("batch", "path", "dtype") if c in d] + ["metric"]
    value = d.groupby(["model"] + keys)["value"].max()
    m1 = sorted({m for m in d.loc[d["arch"] == "mamba1", "model"] if preset_shape(m)})
    m2 = sorted({m for m in d.loc[d["arch"] == "mamba2", "model"] if preset_shape(m)})
    out = []
    for a in m1:
        for b in (x for x in m2 if preset_shape(x) == preset_shape(a)):
            both = pd.concat([value.loc[a].rename("va"), value.loc[b].rename("vb")], axis=1, join="inner")
            for key, (va, vb) in both.iterrows():
                out.append({"mamba1": a, "mamba2": b, **dict(zip(keys, key if len(keys) > 1 else (key,))),
                            "mamba1_GB": va / 2**30, "mamba2_GB": vb / 2**30,
                            "ratio": vb / va if va > 0 else math.nan})
    if not out:
        raise ProfilingError(f"no Mamba-1/Mamba-2 pair of the same width and depth has SSM memory rows at L = {seqlen}")
    table = pd.DataFrame(out)
    table.attrs.update(seqlen=seqlen, phase=phase)
    return table


def plot_roofline(df: pd.DataFrame, peak_flops: float, peak_bw: float, *, ax=None, annotate: bool = True):
    """Components on the roofline: arithmetic intensity (FLOP/byte) against achieved FLOP/s, log-log, with
    the bandwidth and compute roofs. Marker per phase. Returns the Figure."""
    import matplotlib.pyplot as plt

    pts = roofline_points(df, peak_flops, peak_bw)
    if pts.empty:
        raise ProfilingError("no rows with time, flops and bytes for the same setting")
    pts = pts[pts["component"].isin(STACK[:-1]) & (pts["flops"].astype(float) > 0)]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    fig = ax.figure
    lo = max(min(pts["intensity"].min(), peak_flops / peak_bw) / 10, 1e-3)
    hi = max(pts["intensity"].max(), peak_flops / peak_bw) * 10
    x = np.logspace(np.log10(lo), np.log10(hi), 200)
    ax.plot(x, np.minimum(peak_flops, x * peak_bw), color="k", lw=1.2, label="roof")
    markers = {"prefill": "o", "decode": "^"}
    for (comp, phase), g in pts.groupby(["component", "phase"]):
        ax.scatter(g["intensity"], g["achieved_flops"], color=COLORS.get(comp), marker=markers.get(phase, "s"),
                   edgecolor="k", linewidth=0.4, s=30, label=f"{comp} ({phase})")
        if annotate:
            i = g["achieved_flops"].astype(float).idxmax()
            ax.annotate(comp, (g.loc[i, "intensity"], g.loc[i, "achieved_flops"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP/byte)", ylabel="achieved FLOP/s")
    ax.set_title(f"roofline: peak {peak_flops / 1e12:.3g} TFLOP/s, {peak_bw / 1e9:.3g} GB/s", fontsize=10)
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    return finish(fig)
