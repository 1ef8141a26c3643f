"""The claims table: every value the paper prints or plots, beside ours, with a status.

`evaluate(collect())` gives every record; tests assert statuses and numbers on them.
"""
from __future__ import annotations

from . import accuracy, paper, profile, render, speed, table1
from .records import (CONFIRMED, INCONSISTENT, NOT_MEASURED, PARTLY, REFUTED, STATUSES, UNDECIDABLE, Claim, Value,
                      summary)
from .sources import SWEEP, Sources, collect

__all__ = ["evaluate", "collect", "Sources", "Claim", "Value", "STATUSES", "CONFIRMED", "PARTLY", "REFUTED",
           "UNDECIDABLE", "NOT_MEASURED", "INCONSISTENT", "summary", "covered", "paper"]


def evaluate(src: Sources | None = None) -> list[Claim]:
    """Every claim record, in the paper's order (Table 1, Fig. 2, §4, Table 2, Fig. 5, §6, Fig. 4, Fig. 6)."""
    src = src if src is not None else collect()
    return [*table1.claims(src), *profile.claims(src), *speed.claims(src), *accuracy.claims(src)]


def covered(records) -> set[tuple]:
    """The keys of the paper's values that some record compares (`paper.all_keys()` minus this is unclaimed)."""
    return set().union(*(r.refs for r in records))


def section_table(*sections: str, results_root=None, sweep=None):
    """The records of the paper's sections starting with any of `sections` ("Table 1", "Fig. 2", "§4", …) as
    the claims page renders them (Markdown to display), for the notebook of that figure or table.
    results_root: where committed GPU rows are read; this run's rows are read where the notebooks write them
    ($PERFMAMBA_RESULTS or data/results)."""
    from IPython.display import Markdown  # the book's extra

    records = evaluate(collect(results_root, sweep if sweep is not None else SWEEP))
    return Markdown(render.records_markdown(records, tuple(sections)))
