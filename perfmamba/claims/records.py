"""Claim records: the paper's value, ours with the setting that produced it, the tolerance, and a status.
A record is data; `perfmamba.claims.render` alone turns records into sentences.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import pandas as pd

from . import paper

CONFIRMED = "confirmed"          # the paper's value (or direction, where it gives no value) holds here
PARTLY = "partly"                # holds for some of the cells, models or settings, or in direction but not size
REFUTED = "refuted"              # the opposite, or no effect
UNDECIDABLE = "undecidable at this sample size"  # the standard error is larger than the effect
NOT_MEASURED = "not measured here"               # `command` measures it where the means exist
INCONSISTENT = "inconsistent within the paper"   # the paper's own numbers disagree (text, tables, figures, physics)
STATUSES = (CONFIRMED, PARTLY, REFUTED, UNDECIDABLE, NOT_MEASURED, INCONSISTENT)


@dataclass(frozen=True)
class Value:
    """One number of ours and everything that produced it."""

    value: float
    unit: str
    machine: str                   # device that measured it ("analytic": computed, no machine)
    model: str = ""                # preset or checkpoint name (its shape)
    batch: int | None = None
    seqlen: int | None = None
    ratio: float | None = None
    phase: str = ""
    dtype: str = ""
    path: str = ""                 # compute path or counting convention
    stderr: float | None = None
    n: int | None = None           # sample size behind value and stderr
    note: str = ""

    def setting(self, fields=("model", "batch", "seqlen", "ratio", "phase", "dtype", "path")) -> str:
        """The given fields that are set, as the book writes them ("B = 8", "L = 2048", "r = 0.5", …)."""
        form = {"batch": "B = {}", "seqlen": "L = {}", "ratio": "r = {:g}"}
        return ", ".join(form.get(f, "{}").format(getattr(self, f)) for f in fields
                         if getattr(self, f) not in (None, ""))


@dataclass
class Claim:
    """One checkable statement of the paper (a cell, or a group of cells that read better together)."""

    id: str
    section: str                   # where the paper states it: "Table 1", "Fig. 4", "§4.2", "abstract", …
    asserts: str                   # what the paper asserts, in our words
    paper: dict                    # {label: value} as the paper gives them (numbers, or text for a component)
    unit: str
    precision: str                 # printed / read off a plot, with its resolution
    refs: set = field(default_factory=set)        # keys of data/paper values this record covers
    ours: list = field(default_factory=list)      # [Value]
    compared: dict = field(default_factory=dict)  # {label: number} that decided the status (ratios, shares, …)
    tolerance: str = ""            # the rule, with its number
    why: str = ""                  # why that tolerance
    status: str = NOT_MEASURED
    detail: str = ""               # one line of numbers behind the status
    setting: str = ""              # how our setting differs from the paper's ("" = the paper's)
    command: str = ""              # what measures it where it is not measured here
    beyond: bool = False           # a question of ours, not a claim of the paper

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; expected one of {STATUSES}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["refs"] = sorted("/".join(map(str, k)) for k in self.refs)
        d["ours"] = [{k: v for k, v in dataclasses.asdict(o).items() if v not in (None, "")} for o in self.ours]
        d["compared"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.compared.items()}
        return d


def stated(tid: str, asserts: str, values: dict, unit: str, precision="printed", **fields) -> Claim:
    """The record of one quantitative sentence of the paper (statement `tid` of `prose.csv`, where its section
    is)."""
    section = paper.prose(tid)["section"].iloc[0]
    return Claim(id=tid, section=section, asserts=asserts, paper=values, unit=unit, precision=precision,
                 refs={("prose", tid)}, **fields)


def judge(n_ok: int, n: int) -> str:
    """All of n → confirmed, some → partly, none → refuted; nothing to judge → not measured."""
    return grade(n_ok == n, n_ok > 0) if n else NOT_MEASURED


def grade(ok: bool, partly: bool) -> str:
    """Confirmed where `ok`, else partly where `partly`, else refuted."""
    return CONFIRMED if ok else (PARTLY if partly else REFUTED)


def judge_decided(n_ok: int, n_decided: int, n: int) -> str:
    """`judge` over the n_decided of n results decided at their sample size; undecidable where none is."""
    return judge(n_ok, n_decided) if n_decided else (UNDECIDABLE if n else NOT_MEASURED)


def decided(effect: float, stderr: float, z: float = 2.0) -> bool:
    """An effect is decided at this sample size when it is at least z standard errors from zero."""
    return stderr is not None and not math.isnan(stderr) and abs(effect) >= z * stderr


def n_to_decide(effect: float, stderr: float, n: int, z: float = 2.0) -> int | None:
    """Sample size at which `effect` would be z standard errors (stderr ∝ 1/√n): n·(z·se/effect)²."""
    if not effect or stderr is None or math.isnan(stderr) or not n:
        return None
    return int(math.ceil(n * (z * stderr / abs(effect)) ** 2))


def summary(records):
    """Count of records per section (in the records' order) and status (the paper's claims only), with a total row."""
    rows = [(r.section.split(",")[0], r.status) for r in records if not r.beyond]
    df = pd.DataFrame(rows, columns=["section", "status"])
    order = list(dict.fromkeys(df["section"]))  # the order of the records, which follows the paper
    t = pd.crosstab(df["section"], df["status"]).reindex(index=order,
                                                         columns=[s for s in STATUSES if s in set(df["status"])])
    t.loc["all"] = t.sum()
    t.columns.name = None
    return t
