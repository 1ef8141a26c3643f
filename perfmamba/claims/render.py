"""The one place where claim records become what the book says: tables and sentences (their figures are in
`perfmamba.plots.claims`).

Nothing here decides a status; it only formats records (`perfmamba.claims.records.Claim`).
"""
from __future__ import annotations

import json
import math

import pandas as pd

from .records import INCONSISTENT, summary

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
    """Our values with the machine and setting of each (at most six, then a count)."""
    if not r.ours:
        return "—"
    parts = []
    for v in r.ours[:6]:
        se = f" ± {v.stderr:.2g}" if v.stderr is not None and not math.isnan(v.stderr) else ""
        parts.append(f"{_num(v.value)}{se} {v.unit} [{v.machine}; {v.setting()}{'; ' + v.note if v.note else ''}]")
    more = f" (+{len(r.ours) - 6} more)" if len(r.ours) > 6 else ""
    return "; ".join(parts) + more


def sentence(r) -> str:
    """The verdict of one record as the book says it."""
    s = f"{r.status}: {r.detail}" if r.detail else r.status
    if r.setting:
        s += f" (setting: {r.setting})"
    if r.status == "not measured here" and r.command:
        s += f" — measure with `{r.command}`"
    return s


def table(records, section: str | None = None, *, long: bool = False) -> pd.DataFrame:
    """One row per record (optionally of sections starting with `section`): id, where, what the paper asserts,
    the paper's values, status and the sentence; with `long`, also ours and the tolerance with its reason."""
    rows = []
    for r in records:
        if section is not None and not r.section.startswith(section):
            continue
        row = {"id": r.id, "where": r.section, "claim": r.asserts, "paper": paper_text(r), "status": r.status,
               "verdict": sentence(r)}
        if long:
            row.update({"ours (machine; setting)": ours_text(r),
                        "tolerance": f"{r.tolerance} — {r.why}" if r.why else r.tolerance})
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    """A frame as a Markdown table (pipes escaped), for `IPython.display.Markdown` and glue."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(row[c]).replace("|", "/").replace("\n", " ") for c in cols) + " |")
    return "\n".join(lines)


def status_summary(records) -> pd.DataFrame:
    return summary(records)


def inconsistencies(records) -> pd.DataFrame:
    """Every place where the paper disagrees with itself: the claim, the paper's values, what differs, ours."""
    return pd.DataFrame([{"id": r.id, "where": r.section, "claim": r.asserts, "the paper's values": paper_text(r),
                          "what disagrees": r.detail, "ours": ours_text(r)}
                         for r in records if r.status == INCONSISTENT])


def to_json(records, path) -> None:
    """All records, machine-readable (written atomically)."""
    from ..io import atomic_write_text

    atomic_write_text(path, json.dumps([r.to_dict() for r in records], indent=1, ensure_ascii=False,
                                       default=str) + "\n")
