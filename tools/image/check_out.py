"""Check what a container run left in its /out (tools/image_test.sh); standard library only, runs on the host.

    python3 tools/image/check_out.py OUT [RUN_LOG]

OUT must hold the book (index.html and one page per notebook of notebooks/, without error output), the result
rows the notebooks measured (CSV files with rows, claims.json with the claims page's glued numbers,
claims_records.json with the claim records), the evaluation table of the
trained models, and no temporary leftovers. With RUN_LOG (the container's output), every notebook must have been
executed by that run. Prints one line per problem and exits 1 if there is any.
"""
from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def notebook_names() -> list[str]:
    return sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


def problems(out: Path, log: str | None = None) -> list[str]:
    found = []
    book = out / "book"
    if not (book / "index.html").is_file():
        found.append(f"{book}/index.html is missing")
    for name in notebook_names():
        page = book / "book" / "notebooks" / f"{name}.html"
        if not page.is_file():
            found.append(f"no book page for notebook {name} ({page})")
            continue
        html = page.read_text(encoding="utf-8", errors="replace")
        if "output traceback" in html or "output error" in html:
            found.append(f"{page.name}: the page shows an error output")
        if log is not None and not re.search(rf"^{re.escape(name)}: \d+(\.\d+)? s$", log, re.M):
            found.append(f"the run did not execute notebook {name}")
    devices = [d for d in (out / "results").glob("*") if d.is_dir()]
    if not devices:
        found.append(f"no result rows under {out}/results")
    for d in devices:
        tables = {p.name: p for p in d.glob("*.csv")}
        rows = {n: sum(1 for _ in csv.DictReader(p.open(newline=""))) for n, p in tables.items()}
        if not rows or not any(rows.values()):
            found.append(f"{d}: no CSV file with rows")
        elif empty := [n for n, k in rows.items() if k == 0]:
            found.append(f"{d}: CSV files without rows: {', '.join(sorted(empty))}")
        try:
            claims = json.loads((d / "claims.json").read_text())
        except (OSError, ValueError) as e:
            found.append(f"{d}/claims.json: {e}")
        else:
            unknown = sorted(set(claims) - set(notebook_names()))
            if "claims" not in claims or unknown:
                found.append(f"{d}/claims.json: the claims page's numbers are "
                             + ("missing" if "claims" not in claims else f"beside unknown notebooks {unknown}"))
        try:
            records = json.loads((d / "claims_records.json").read_text())
        except (OSError, ValueError) as e:
            found.append(f"{d}/claims_records.json: {e}")
        else:
            if not records or not all({"id", "status", "paper"} <= set(r) for r in records):
                found.append(f"{d}/claims_records.json holds no claim records")
    evaluations = list((out / "artifacts" / "models").glob("evaluation*.csv"))
    if not evaluations or not all(sum(1 for _ in csv.DictReader(p.open(newline=""))) for p in evaluations):
        found.append(f"no evaluation table with rows under {out}/artifacts/models")
    leftovers = [p for p in out.rglob(".*") if p.name.startswith((".book.", ".tmp", ".ckpt")) or p.suffix == ".tmp"]
    if leftovers:
        found.append(f"temporary leftovers in /out: {', '.join(str(p.relative_to(out)) for p in leftovers[:5])}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    log = Path(argv[2]).read_text(errors="replace") if len(argv) == 3 else None
    found = problems(Path(argv[1]), log)
    for line in found:
        print(f"image-test: {line}", file=sys.stderr)
    if not found:
        n = len(notebook_names())
        print(f"image-test: /out holds the book (index and {n} notebook pages), result rows and the evaluation table")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
