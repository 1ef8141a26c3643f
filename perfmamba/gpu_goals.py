"""The GPU kernel goals of benchmarks/README.md and the ratios that check them, computed from the tidy rows of
`benchmarks/gpu_kernels.py` (a list of dicts, or the DataFrame of a committed ``gpu_kernels.csv``).

Each ratio is (label, measured, goal or None, higher_is_better). Latencies are matched on the row fields
model, path, component, phase, batch, seqlen, d_state and metric ("latency" unless told).
"""
from __future__ import annotations

# kept states k = floor(128 (1 - r)) for the paper's ratios: N' = 128, 115, 89, 64, 38, 12
PAPER_KEPT = {0.0: 128, 0.1: 115, 0.3: 89, 0.5: 64, 0.7: 38, 0.9: 12}
GOALS = {  # benchmarks/README.md
    "mamba2_prefill_vs_mamba_ssm": 2.0,
    "decode_2.7b_b8_over_floor": 1.3,
    "prune_decode_b64": 1.5,
    "prune_prefill": 1.15,
    "mamba1_prefill_vs_transformers": 50.0,
}


def _records(rows) -> list[dict]:
    if hasattr(rows, "to_dict"):  # a DataFrame: NaN cells become None, integral floats ints
        out = []
        for rec in rows.to_dict("records"):
            r = {}
            for k, v in rec.items():
                if isinstance(v, float) and v != v:
                    v = None
                elif isinstance(v, float) and k in ("batch", "seqlen", "d_state") and v.is_integer():
                    v = int(v)
                r[k] = v
            out.append(r)
        return out
    return list(rows)


def find(rows, **kv):
    """Value of the first row matching all of kv (metric defaults to latency)."""
    kv.setdefault("metric", "latency")
    for r in rows:
        if all(r.get(k) == v for k, v in kv.items()) and r.get("value") is not None:
            return float(r["value"])
    return None


def ratios(rows):
    """(label, measured, goal, higher_is_better) for the goals of benchmarks/README.md, from one run's rows."""
    rows = _records(rows)
    out = []

    def add(label, num, den, goal=None, higher=True):
        if num is not None and den is not None and den > 0:
            out.append((label, num / den, goal, higher))

    pre = dict(model="mamba2-130m", component="model", phase="prefill", d_state=128)
    for L in (8192, 2048):
        ours = find(rows, path="triton", batch=8, seqlen=L, **pre)
        add(f"Mamba2-130M prefill B=8 L={L}: mamba-ssm model / ours (triton)",
            find(rows, path="mamba_ssm", batch=8, seqlen=L, **pre), ours, GOALS["mamba2_prefill_vs_mamba_ssm"] if L == 8192 else None)
        add(f"Mamba2-130M prefill B=8 L={L}: ours on mamba_ssm kernels / ours (triton)",
            find(rows, path="mamba_ssm_backend", batch=8, seqlen=L, **pre), ours)
        add(f"Mamba2-130M prefill B=8 L={L}: transformers / ours (triton)",
            find(rows, path="transformers", batch=8, seqlen=L, **pre), ours)
    ours8k = find(rows, path="triton", batch=8, seqlen=8192, **pre)
    if ours8k:
        out.append(("Mamba2-130M prefill B=8 L=8192: 115.7 ms (README baseline, H100) / ours", 115.7 / ours8k,
                    None, True))
    dec = dict(component="model", phase="decode", d_state=128)
    for name, B in (("mamba2-2.7b", 8), ("mamba2-130m", 8), ("mamba2-130m", 64)):
        ours = find(rows, model=name, path="triton", batch=B, **dec)
        add(f"{name} decode B={B}: ours / bandwidth floor", ours, find(rows, model=name, path="floor", batch=B, **dec),
            GOALS["decode_2.7b_b8_over_floor"] if name == "mamba2-2.7b" else None, higher=False)
        add(f"{name} decode B={B}: mamba-ssm / ours", find(rows, model=name, path="mamba_ssm", batch=B, **dec), ours)
    decode = pruned_decode_speedups(rows)
    for r, N in PAPER_KEPT.items():
        if r == 0.0:
            continue
        if r in decode:
            out.append((f"pruned r={r} (N'={N}) / dense decode B=64, throughput", decode[r],
                        GOALS["prune_decode_b64"] if N == 64 else None, True))
        for L in (2048, 8192):
            pp = dict(model="mamba2-130m", path="triton", component="model", phase="prefill", batch=8, seqlen=L)
            add(f"pruned r={r} (N'={N}) / dense prefill B=8 L={L}, speed", find(rows, d_state=128, **pp),
                find(rows, d_state=N, **pp), GOALS["prune_prefill"] if N == 64 else None)
    m1 = dict(model="mamba-130m", component="model", phase="prefill", batch=8, seqlen=512)
    add("Mamba-1 130M prefill B=8 L=512: transformers / ours", find(rows, path="transformers", **m1),
        find(rows, path="triton", **m1), GOALS["mamba1_prefill_vs_transformers"])
    return out


def pruned_decode_speedups(rows, model: str = "mamba2-130m", batch: int = 64) -> dict:
    """{r: dense time / pruned time} of the graph-replayed decode step on our path, for each of the paper's kept
    counts (`PAPER_KEPT`) measured beside the dense model."""
    rows = _records(rows)
    kw = dict(model=model, path="triton", component="model", phase="decode", batch=batch)
    dense = find(rows, d_state=PAPER_KEPT[0.0], **kw)
    out = {}
    for r, n in PAPER_KEPT.items():
        t = find(rows, d_state=n, **kw) if r > 0 else None
        if dense and t:
            out[r] = dense / t
    return out


def verdict(value: float, goal: float | None, higher: bool = True) -> tuple[str, str]:
    """(the goal as text, "met" / "NOT met"); ("", "") for a ratio without a goal."""
    if goal is None:
        return "", ""
    met = value >= goal if higher else value <= goal
    return (f"≥ {goal:g}" if higher else f"≤ {goal:g}"), ("met" if met else "NOT met")


def ratio_table(rows):
    """`ratios` as a DataFrame: ratio, measured (×), goal ("≥ 2" / "≤ 1.3" / ""), verdict ("met", "NOT met",
    "")."""
    import pandas as pd

    out = []
    for label, value, goal, higher in ratios(rows):
        g, v = verdict(value, goal, higher)
        out.append({"ratio": label, "measured (×)": round(value, 3), "goal": g, "verdict": v})
    return pd.DataFrame(out, columns=["ratio", "measured (×)", "goal", "verdict"])
