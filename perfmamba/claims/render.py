"""The one place where claim records become what the book says: tables and sentences (their figures are in
`perfmamba.plots.claims`). Nothing here decides a status.
"""
from __future__ import annotations

import json
import math

import pandas as pd

from ..io import atomic_write_text
from .records import INCONSISTENT, NOT_MEASURED


def _num(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.4g}"
    return str(v)


def paper_text(r) -> str:
    return "; ".join(f"{k}: {_num(v)}" for k, v in r.paper.items()) + (f" ({r.unit})" if r.unit else "")


def ours_text(r) -> str:
    """Our values grouped by machine and setting, each with the length, ratio or note that tells it apart (at most
    eight per group, then a count)."""
    if not r.ours:
        return "—"
    groups: dict = {}
    for v in r.ours:
        key = (v.machine, v.model, v.batch, v.phase, v.dtype, v.path)
        groups.setdefault(key, []).append(v)
    parts = []
    for (machine, *_), vs in groups.items():
        head = vs[0].setting(("model", "batch", "phase", "dtype", "path"))
        items = []
        for v in vs[:8]:
            se = f" ± {v.stderr:.2g}" if v.stderr is not None and not math.isnan(v.stderr) else ""
            tag = v.setting(("seqlen", "ratio", "note"))
            items.append(f"{_num(v.value)}{se} {v.unit}" + (f" ({tag})" if tag else ""))
        more = f"; +{len(vs) - 8} more" if len(vs) > 8 else ""
        parts.append(f"{machine} [{head}]: " + "; ".join(items) + more)
    return " — ".join(parts)


def sentence(r, table=False) -> str:
    """The verdict of one record as the book says it (in a table: the status in bold)."""
    s = (f"**{r.status}**" if table else r.status) + (f": {r.detail}" if r.detail else "")
    if r.setting:
        s += f" (setting: {r.setting})"
    if r.status == NOT_MEASURED and r.command:
        s += ("; " if table else " — ") + f"measure with `{r.command}`"
    return s


def records_markdown(records, section=None) -> str:
    """The records of sections starting with `section` (a string or a tuple; None: all) as one Markdown table: the
    claim and where, the paper's values, ours with machine and setting, the verdict, and the tolerance (its reason
    given once per table, where it first applies)."""
    rows, said = [], set()
    for r in records:
        if section is not None and not r.section.startswith(section):
            continue
        tol = r.tolerance or "—"
        if r.why and r.why not in said:
            tol += f" ({r.why})"
            said.add(r.why)
        rows.append({"claim": f"{r.asserts} ({r.section}; `{r.id}`)", "the paper": paper_text(r),
                     "ours (machine; setting)": ours_text(r), "verdict": sentence(r, table=True),
                     "tolerance": tol})
    return markdown(pd.DataFrame(rows, columns=["claim", "the paper", "ours (machine; setting)", "verdict",
                                                "tolerance"]))


def markdown(df: pd.DataFrame) -> str:
    """A frame as a Markdown table (pipes escaped), for `IPython.display.Markdown` and glue."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(row[c]).replace("|", "/").replace("\n", " ") for c in cols) + " |")
    return "\n".join(lines)


def inconsistencies(records) -> pd.DataFrame:
    """Every place where the paper disagrees with itself: the claim, the paper's values, what differs, ours."""
    return pd.DataFrame([{"id": r.id, "where": r.section, "claim": r.asserts, "the paper's values": paper_text(r),
                          "what disagrees": r.detail, "ours": ours_text(r)}
                         for r in records if r.status == INCONSISTENT])


def to_json(records, path) -> None:
    """All records, machine-readable (written atomically)."""
    atomic_write_text(path, json.dumps([r.to_dict() for r in records], indent=1, ensure_ascii=False,
                                       default=str) + "\n")
