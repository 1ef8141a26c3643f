"""`perfmamba claims`: every claim record on the rows at hand, as a summary and a table (or JSON)."""
from __future__ import annotations

from pathlib import Path


def run(args) -> None:
    import pandas as pd

    from . import collect, evaluate, render, summary

    records = evaluate(collect(args.results, args.sweep if args.sweep != "none" else None))
    if args.section:
        records = [r for r in records if r.section.startswith(tuple(args.section))]
    if args.json:
        render.to_json(records, Path(args.json))
        print(f"{len(records)} records → {args.json}")
    with pd.option_context("display.width", 200, "display.max_colwidth", 110, "display.max_rows", None):
        print(summary(records).to_string())
        print()
        for r in records:
            print(f"{r.id:<32} {render.sentence(r)}")


def register(sub):
    from .sources import SWEEP

    p = sub.add_parser("claims", help="judge every claim of the paper on the rows at hand",
                       description="Evaluate every claim record (the paper's values in data/paper/ against the "
                                   "committed GPU rows, the committed CPU sweep and this machine's run) and print "
                                   "how many claims of each status there are per section, then one line per claim.")
    p.add_argument("--results", default=None,
                   help="where committed GPU rows are read (default: $PERFMAMBA_RESULTS or data/results)")
    p.add_argument("--sweep", default=SWEEP, help=f"the committed CPU sweep (default: {SWEEP}; 'none': skip)")
    p.add_argument("--section", action="append", default=None,
                   help="only the sections starting with this text, e.g. 'Table 1' (repeatable)")
    p.add_argument("--json", default=None, help="also write the records as JSON to this file")
    p.set_defaults(func=run)
