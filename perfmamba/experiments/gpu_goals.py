"""The GPU kernel goals of benchmarks/README.md and the ratios that check them, computed from the tidy rows of
`benchmarks/gpu_kernels.py` (a list of dicts, or the DataFrame of a committed ``gpu_kernels.csv``).

Each ratio is (label, measured, goal or None, higher_is_better). Latencies are matched on the row fields
model, path, component, phase, batch, seqlen, d_state and metric ("latency" unless told).
"""
from __future__ import annotations

import pandas as pd

# kept states k = floor(128 (1 - r)) for the paper's ratios: N' = 128, 115, 89, 64, 38, 12
PAPER_KEPT = {0.0: 128, 0.1: 115, 0.3: 89, 0.5: 64, 0.7: 38, 0.9: 12}
GOALS = {  # benchmarks/README.md
    "mamba2_prefill_vs_mamba_ssm": 2.0,
    "decode_2.7b_b8_over_floor": 1.3,
    "prune_decode_b64": 1.5,
    "prune_prefill": 1.15,
    "mamba1_prefill_vs_transformers": 50.0,
}


def _cell(col, v):
    if isinstance(v, float) and v != v:
        return None
    return int(v) if isinstance(v, float) and col in ("batch", "seqlen", "d_state") and v.is_integer() else v


def _records(rows) -> list[dict]:
    """Rows as dicts; a DataFrame's NaN cells become None, integral floats of batch, seqlen, d_state ints."""
    if hasattr(rows, "to_dict"):
        return [{k: _cell(k, v) for k, v in rec.items()} for rec in rows.to_dict("records")]
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
        for path, who in (("mamba_ssm", "mamba-ssm model"),
                          ("mamba_ssm_backend", "ours on mamba_ssm kernels"),
                          ("transformers", "transformers")):
            goal = GOALS["mamba2_prefill_vs_mamba_ssm"] if path == "mamba_ssm" and L == 8192 else None
            add(f"Mamba2-130M prefill B=8 L={L}: {who} / ours (triton)",
                find(rows, path=path, batch=8, seqlen=L, **pre), ours, goal)
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
    out = []
    for label, value, goal, higher in ratios(rows):
        g, v = verdict(value, goal, higher)
        out.append({"ratio": label, "measured (×)": round(value, 3), "goal": g, "verdict": v})
    return pd.DataFrame(out, columns=["ratio", "measured (×)", "goal", "verdict"])


# round two: the goal table of benchmarks/gpu_goals.py ------------------------------------------------------------
# Rows carry a `section` (which measurement) and, for pruned models, `note` "exact" (k = ⌊N(1 − r)⌋), "dense", or
# "aligned …" (an exact count rounded by `perfmamba.pruning.align_count`). Latencies in ms (decode: ms/token).
GOALS2 = {  # (target, higher_is_better)
    "prefill_vs_mamba_ssm": (2.0, True),  # mamba-ssm / ours
    "prefill_over_floor": (3.0, False),  # ours / roofline floor
    "decode_vs_mamba_ssm": (1.0, True),  # mamba-ssm / ours, CUDA graphs both ("faster than mamba-ssm")
    "decode_big_over_floor": (1.3, False),  # ours / HBM floor
    "prune_half_of_ideal": (0.9, True),  # (dense / N′ = N/2) ÷ (floor dense / floor N/2), decode
    "pruned_no_slower": (1.0, True),  # dense / N′, decode and prefill, every exact N′
    "decode_falls_with_n": (1.0, False),  # max over consecutive N′ of t(smaller N′) / t(larger N′)
}
MAMBA1_UPSTREAM = "n/a: mamba-ssm's Mamba-1 scan needs its CUDA extension (selective_scan_cuda), absent here"


def _sec(rows, section, **kv):
    return [r for r in rows if r.get("section") == section and r.get("metric", "latency") == "latency"
            and r.get("value") is not None and all(r.get(k) == v for k, v in kv.items())]


def _one(rows, section, **kv):
    got = _sec(rows, section, **kv)
    return float(got[0]["value"]) if got else None


def _case(r) -> str:
    return f"{r['model']} B={int(r['batch'])}" + (f" L={int(r['seqlen'])}" if r.get("phase") == "prefill" else "")


def goal_table(rows) -> list[dict]:
    """One dict per goal of the issue "GPU fast path, round two" from the rows of `benchmarks/gpu_goals.py`:
    goal, case, ours, mamba_ssm, floor (ms), ratio, target ("≥ 2" / "≤ 1.3"), met ("met", "NOT met", or
    "no data" where a measurement is missing, e.g. mamba-ssm on a machine without it)."""
    rows = _records(rows)
    out = []

    def add(goal, key, case, ratio, ours=None, upstream=None, floor=None, note=""):
        target, higher = GOALS2[key] if key else (None, True)
        g, v = verdict(0.0 if ratio is None else ratio, target, higher)
        if ratio is None and key:
            v = "no data"
        out.append({"goal": goal, "case": case, "ours": ours, "mamba_ssm": upstream, "floor": floor,
                    "ratio": None if ratio is None else round(ratio, 3), "target": g, "met": v, "note": note})

    def div(a, b):
        return a / b if a is not None and b else None

    for r in _sec(rows, "prefill", path="triton"):
        kw = dict(batch=r["batch"], seqlen=r["seqlen"], d_state=r["d_state"])
        ours, up = float(r["value"]), _one(rows, "prefill", path="mamba_ssm", **kw)
        floor = _one(rows, "prefill", path="floor", **kw)
        own = _one(rows, "prefill", path="triton_own_ssd", **kw)  # our chunked SSD kernel, not the default
        for who, t, aside, note in (
                ("prefill", ours, " (its Triton path)", r.get("impl", "")),
                ("prefill with our SSD kernel", own, "",
                 own is not None and f"our SSD / default SSD in our model: {own / ours:.2f}× the time")):
            if t is not None:
                add(f"{who}: ≥ 2× faster than mamba-ssm{aside}", "prefill_vs_mamba_ssm", _case(r), div(up, t),
                    t, up, floor, note=note)
                add(f"{who}: within 3× of the roofline floor", "prefill_over_floor", _case(r), div(t, floor),
                    t, up, floor)
    for r in _sec(rows, "decode", path="triton"):
        kw = dict(model=r["model"], batch=r["batch"], d_state=r["d_state"])
        ours, up = float(r["value"]), _one(rows, "decode", path="mamba_ssm", **kw)
        floor = _one(rows, "decode", path="floor", **kw)
        add("decode: faster than mamba-ssm's CUDA-graph decode", "decode_vs_mamba_ssm", _case(r), div(up, ours), ours,
            up, floor)
        unfused = _one(rows, "decode", path="triton_unfused", **kw)
        if unfused is not None:
            add("decode: fused step / op-by-op step (speed-up)", None, _case(r), div(unfused, ours), ours, up, floor)
    for r in _sec(rows, "decode_big", path="triton"):
        kw = dict(model=r["model"], batch=r["batch"], d_state=r["d_state"])
        ours, floor = float(r["value"]), _one(rows, "decode_big", path="floor", **kw)
        add("decode: within 1.3× of the HBM floor", "decode_big_over_floor", _case(r), div(ours, floor), ours,
            _one(rows, "decode_big", path="mamba_ssm", **kw), floor)
    for section, phase in (("prune_decode", "decode"), ("prune_prefill", "prefill")):
        mine = _sec(rows, section, path="triton")
        if not mine:
            continue
        dense_n = max(int(r["d_state"]) for r in mine)
        t = {int(r["d_state"]): float(r["value"]) for r in mine}
        notes = {int(r["d_state"]): r.get("note") or "" for r in mine}
        floors = {int(r["d_state"]): float(r["value"]) for r in _sec(rows, section, path="floor")}
        case = _case(mine[0]) + f", N = {dense_n}"
        exact = sorted((n for n in t if n != dense_n and notes[n] == "exact"), reverse=True)
        if phase == "decode":
            half = dense_n // 2
            if half in t and half in floors and dense_n in floors:
                speed, ideal = t[dense_n] / t[half], floors[dense_n] / floors[half]
                add(f"pruning r = 0.5: decode speed-up ≥ 0.9 of the ideal bandwidth ratio ({ideal:.2f}×)",
                    "prune_half_of_ideal", case + f" → {half}", speed / ideal, t[half], None, floors[half],
                    note=f"speed-up {speed:.2f}×, ideal {ideal:.2f}×")
            chain = [dense_n] + exact
            worst = max((t[b] / t[a], a, b) for a, b in zip(chain, chain[1:])) if len(chain) > 1 else None
            if worst is not None:
                add("pruning: decode time falls with N′ (worst consecutive pair)", "decode_falls_with_n",
                    case + f": {worst[1]} → {worst[2]}", worst[0], t[worst[2]], None, floors.get(worst[2]))
        for n in exact:
            add(f"pruning: {phase} no slower than dense", "pruned_no_slower", case + f" → N′ = {n}", t[dense_n] / t[n],
                t[n], None, floors.get(n))
        for n in sorted((n for n in t if notes[n].startswith("aligned")), reverse=True):
            add(f"pruning: {phase}, hardware-aligned kept count: dense / N′ (speed)", None, case + f" → N′ = {n}",
                t[dense_n] / t[n], t[n], None, floors.get(n), note=notes[n])
    for r in _sec(rows, "mamba1", path="triton"):
        kw = dict(model=r["model"], batch=r["batch"], seqlen=r["seqlen"])
        ours, hf = float(r["value"]), _one(rows, "mamba1", path="transformers", **kw)
        add("Mamba-1: transformers' torch path / ours (speed-up)", None, _case(r), div(hf, ours), ours, None, None,
            note=MAMBA1_UPSTREAM + (f"; transformers {hf:.1f} ms" if hf is not None else "; transformers: no data"))
    return out


def goal_frame(rows):
    """`goal_table` as a DataFrame (what the book's kernels page renders)."""
    cols = ["goal", "case", "ours", "mamba_ssm", "floor", "ratio", "target", "met", "note"]
    return pd.DataFrame(goal_table(rows), columns=cols)
