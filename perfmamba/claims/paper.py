"""The paper's own numbers, read from ``data/paper/`` (one CSV per table or figure, `prose.csv` for the
quantitative sentences; `data/paper/README.md` cites the source and the precision of each file). The paper:
PerfMamba: Performance Analysis and Pruning of Selective State Space Models, arXiv 2511.22849v1 (28 Nov 2025),
CC BY 4.0.

Every comparison of the claims table reads its paper value from here, never from a literal in the code.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import pandas as pd

from ..errors import PaperError

PAPER_DIR = Path(__file__).resolve().parents[2] / "data" / "paper"
# file → (what it holds, how it was obtained, the key columns of one value)
FILES = {
    "table1": ("Table 1, per-component FLOPs, memory, I/O and latency", "printed", ["seqlen", "component", "metric"]),
    "table2": ("Table 2, speed-up and memory reduction of pruned Mamba2-130M", "printed", ["seqlen", "ratio"]),
    "fig2_read": ("Fig. 2, latency per component", "read off the plot, about ±5 %", ["arch", "phase", "component",
                                                                                      "seqlen"]),
    "fig4_read": ("Fig. 4, zero-shot accuracy against the pruning ratio", "read off the plot, about ±0.005",
                  ["task", "ratio"]),
    "fig5a_read": ("Fig. 5a, latency against the pruning ratio", "read off the plot, about ±2 ms", ["seqlen", "ratio"]),
    "fig5b_read": ("Fig. 5b, latency reduction against the dense model", "read off the plot", ["ratio", "seqlen"]),
    "fig6": ("Fig. 6, labelled trade-off points", "printed labels", ["ratio"]),
    "prose": ("quantitative statements of the text", "printed", ["id"]),
}
# the setting as far as the paper states it (§4, §5, §6): not values to compare, the conditions of the comparison
SETTING = "setting"
# Table 1's component names → ours. Mamba-2's gated RMSNorm (`gated_norm`) has no row of its own in the paper;
# see COMPONENT_MAPS in perfmamba.claims.table1 for where it goes.
TABLE1_COMPONENTS = {"RMSNorm": "rmsnorm", "Gated MLP": "in_proj", "Conv. Transform": "conv1d",
                     "State Space": "ssm", "Final Linear": "out_proj"}
FIG2_COMPONENTS = {"RMSNorm": "rmsnorm", "Gated MLP": "in_proj", "Convolution": "conv1d", "SSM": "ssm",
                   "Final Linear": "out_proj"}
TASKS = {"piqa": "PIQA", "arc_easy": "ARC-Easy", "hellaswag": "HellaSwag", "openbookqa": "OpenBookQA"}


@functools.lru_cache(maxsize=None)
def _read(name: str, root: str) -> pd.DataFrame:
    path = Path(root) / f"{name}.csv"
    if not path.is_file():
        raise PaperError(f"{path}: missing (data/paper/ holds the paper's values)")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def table(name: str, root=None) -> pd.DataFrame:
    """One of the paper's files as text columns (values exactly as printed; `number` converts)."""
    if name not in FILES and name != SETTING:
        raise PaperError(f"unknown paper file {name!r}; known: {', '.join(FILES)}")
    return _read(name, str(root or PAPER_DIR)).copy()


def setting(key: str, root=None):
    """One entry of `setting.csv`: a number, or a tuple of numbers for a space-separated list."""
    t = table(SETTING, root)
    row = t[t["key"] == key]
    if row.empty:
        raise PaperError(f"setting.csv has no {key!r}")
    v = row["value"].iloc[0]
    parts = v.split()
    if len(parts) > 1 and all(not math.isnan(number(p)) for p in parts):
        return tuple(int(p) if p.isdigit() else float(p) for p in parts)
    x = number(v)
    return v if math.isnan(x) else (int(x) if v.isdigit() else x)


def number(text) -> float:
    """A printed value as a float ("0.06" → 0.06); NaN for a range or a bound ("22-23", "<=5")."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def half_unit(text: str) -> float:
    """Half a unit of the last printed digit ("0.06" → 0.005): how far a printed value can sit from the number
    it rounds."""
    text = str(text).strip()
    return 0.5 * 10 ** -(len(text.split(".", 1)[1]) if "." in text else 0)


def span(text: str) -> tuple[float, float]:
    """(low, high) of a read value: "22-23" → (22, 23), "<=5" → (0, 5), "90" → (90, 90)."""
    t = str(text).strip()
    if t.startswith("<="):
        return 0.0, float(t[2:])
    dash = t.find("-", 1)  # a leading minus is a sign
    return (float(t[:dash]), float(t[dash + 1:])) if dash > 0 else (float(t), float(t))


def prose(claim_id: str, root=None) -> pd.DataFrame:
    """The rows of `prose.csv` of one statement."""
    p = table("prose", root)
    rows = p[p["id"] == claim_id]
    if rows.empty:
        raise PaperError(f"prose.csv has no statement {claim_id!r}")
    return rows


def prose_value(claim_id: str, quantity: str | None = None, *, arch: str | None = None, seqlen=None,
                ratio=None, root=None) -> float:
    """One number of a statement, selected by its quantity text (a prefix) and setting."""
    rows = prose(claim_id, root)
    if quantity is not None:
        rows = rows[rows["quantity"].str.startswith(quantity)]
    for col, v in (("arch", arch), ("seqlen", seqlen), ("ratio", ratio)):
        if v is not None:
            rows = rows[rows[col] == str(v)]
    if len(rows) != 1:
        raise PaperError(f"prose.csv: {len(rows)} values for {claim_id!r} {quantity!r} {arch} {seqlen} {ratio}")
    return number(rows["value"].iloc[0])


def keys(name: str, root=None) -> set[tuple]:
    """Every value of a paper file as a key (file, key columns…[, column for Table 1's two architectures])."""
    archs = [("mamba1",), ("mamba2",)] if name == "table1" else [()]
    return {(name, *[r[c] for c in FILES[name][2]], *a)
            for _, r in table(name, root).iterrows() for a in archs}


def all_keys(root=None) -> set[tuple]:
    return set().union(*(keys(n, root) for n in FILES))
