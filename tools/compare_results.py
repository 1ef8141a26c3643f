"""Compare two result trees apart from what a clock measures: a change that should not alter any result
(a refactoring) must leave every other cell equal.

    python3 tools/compare_results.py BEFORE AFTER            # two results roots or two <device-slug> folders
    python3 tools/compare_results.py BEFORE AFTER --claims A.json B.json

Every CSV under BEFORE must exist under AFTER with the same header and the same rows once the timing
columns (median, p10, p90, spread, timestamp) and the rows of timed metrics (time, share, achieved and peak
throughput) are set aside; rows are compared as sorted multisets of CSV text, so order does not matter.
`--claims` compares two `perfmamba claims --json` files record by record (status, paper values, ours).
Exit status 0 when equal, 1 with the differences listed, 2 on bad input.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

TIMED_COLUMNS = {"median", "p10", "p90", "spread_lo", "spread_hi", "timestamp", "elapsed_s"}
TIMED_METRICS = {"time", "share", "achieved_bandwidth", "achieved_flops", "peak_bandwidth", "peak_flops"}


def table(path: Path) -> tuple[list[str], list[tuple[str, ...]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    keep = [i for i, c in enumerate(header) if c not in TIMED_COLUMNS]
    metric = header.index("metric") if "metric" in header else None
    body = [r for r in body if metric is None or r[metric] not in TIMED_METRICS]
    return header, sorted(tuple(r[i] for i in keep) for r in body)


def compare_trees(before: Path, after: Path, show: int = 5) -> list[str]:
    problems = []
    for a in sorted(before.rglob("*.csv")):
        rel = a.relative_to(before)
        b = after / rel
        if not b.exists():
            problems.append(f"{rel}: missing after")
            continue
        (ha, ra), (hb, rb) = table(a), table(b)
        if ha != hb:
            problems.append(f"{rel}: header {','.join(ha)} became {','.join(hb)}")
            continue
        if ra != rb:
            gone, new = sorted(set(ra) - set(rb)), sorted(set(rb) - set(ra))
            problems.append(f"{rel}: {len(gone)} rows only before, {len(new)} only after (of {len(ra)})")
            problems += [f"  - {','.join(r)}" for r in gone[:show]] + [f"  + {','.join(r)}" for r in new[:show]]
        else:
            print(f"{rel}: {len(ra)} untimed rows equal")
    return problems


def compare_claims(before: Path, after: Path) -> list[str]:
    def records(p):
        data = json.loads(p.read_text())
        return {r["id"]: r for r in (data["claims"] if isinstance(data, dict) else data)}

    ra, rb = records(before), records(after)
    problems = [f"claim {i}: only {'before' if i in ra else 'after'}" for i in sorted(set(ra) ^ set(rb))]
    for i in sorted(set(ra) & set(rb)):
        for field in sorted(set(ra[i]) | set(rb[i])):
            if ra[i].get(field) != rb[i].get(field):
                problems.append(f"claim {i}: {field} {ra[i].get(field)!r} became {rb[i].get(field)!r}")
    if not problems:
        print(f"claims: {len(ra)} records equal")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--claims", nargs=2, type=Path, metavar=("BEFORE_JSON", "AFTER_JSON"))
    args = p.parse_args(argv)
    for d in (args.before, args.after):
        if not d.is_dir():
            print(f"compare_results: {d} is not a directory", file=sys.stderr)
            return 2
    problems = compare_trees(args.before, args.after)
    if args.claims:
        problems += compare_claims(*args.claims)
    print("\n".join(problems) if problems else "equal apart from timing")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
