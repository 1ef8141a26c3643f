"""The prepared GPU campaign: one call on a GPU machine (≤ 8 minutes) measures what benchmarks/README.md lists and
writes tidy rows to data/results/<device-slug>/gpu_kernels.csv with env.json beside it.

    python benchmarks/gpu_campaign.py                  # everything that fits in --budget-s (default 420 s)
    python benchmarks/gpu_campaign.py --quick --out /tmp/smoke

Sections run in priority order (the goals first) from benchmarks/gpu_kernels.py; one that would start after the
budget is skipped and named in the output. Rows are appended after every section (perfmamba.results), and a rerun
skips sections whose rows are already in the file, so a killed campaign resumes. The ratio summary at the end is
computed from every row in the file.

Columns: model, arch, path, component, phase, batch, seqlen, d_state, ratio, metric, value, unit, spread_lo,
spread_hi (p10/p90; rows committed before 2026-12-03 hold p20/p80, or min/max of a few calls), impl (the kernels
that ran), dtype, note, section, device (the torch device type, "cuda"; the GPU's name is in env.json), timestamp.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_kernels as gk  # noqa: E402  (also puts the repository root on sys.path)

from perfmamba import results  # noqa: E402

EXPERIMENT = "gpu_kernels"

COLUMNS = list(results.SCHEMAS[EXPERIMENT].columns)

# (section name, function, kwargs, rough seconds on an H100 including compilation) — highest priority first
PLAN = [
    ("bandwidth", gk.bandwidth_rows, {}, 10),
    ("prefill_8k", gk.prefill_rows, dict(seqlens=(8192,), paths=("triton", "mamba_ssm")), 90),
    ("prune_decode", gk.decode_rows, dict(cases=[("mamba2-130m", 768, 24, 64, 128), ("mamba2-130m", 768, 24, 64, 64)]), 40),
    ("prune_prefill", gk.prefill_rows, dict(seqlens=(2048, 8192), d_states=(128, 64), paths=("triton",)), 45),
    ("mamba1", gk.mamba1_rows, {}, 30),
    ("hf", gk.hf_rows, {}, 75),
    ("decode_2.7b", gk.decode_rows, dict(cases=[("mamba2-2.7b", 2560, 64, 8, 128)]), 70),
    ("decode_130m_b8", gk.decode_rows, dict(cases=[("mamba2-130m", 768, 24, 8, 128)]), 20),
    ("kernels", gk.kernel_rows, {}, 40),
    ("prefill_2k_backends", gk.prefill_rows, dict(seqlens=(2048,), paths=("triton", "mamba_ssm_backend", "mamba_ssm")), 45),
    ("odd_states_decode", gk.decode_rows, dict(cases=[("mamba2-130m", 768, 24, 64, n) for n in (115, 89, 38, 12)],
                                                upstream=False), 40),
    ("odd_states_prefill", gk.prefill_rows, dict(seqlens=(8192,), d_states=(115, 89), paths=("triton",)), 60),
]


EXTRA_ENV = {
    "weights": "random init (seeded); timing does not depend on weight values",
    "timing": "triton.testing.do_bench median (p10/p90 spread), CUDA events, L2 flushed; decode: one CUDA graph "
              "per step, median of 5 x 100 replays (p10/p90 spread); transformers: CUDA events, 1 warm-up + 3 runs",
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Sections in order: " + ", ".join(p[0] for p in PLAN))
    ap.add_argument("--out", type=Path, default=None,
                    help="results root: rows go to OUT/<device-slug>/gpu_kernels.csv (default: the repository's "
                         "data/results)")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="skip a section whose estimate would end past this many seconds (default 420)")
    ap.add_argument("--only", default=None, help="comma-separated section names (default: all, in order)")
    ap.add_argument("--quick", action="store_true", help="small shapes, to check the campaign runs end to end")
    ap.add_argument("--fresh", action="store_true", help="re-measure sections already in the CSV")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_campaign.py needs a CUDA GPU; nothing measured", file=sys.stderr)
        return 2
    plan = PLAN
    if args.only:
        names = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(names) - {p[0] for p in PLAN})
        if unknown:
            print(f"unknown sections: {', '.join(unknown)}", file=sys.stderr)
            return 2
        plan = [p for p in PLAN if p[0] in names]
    t0 = time.perf_counter()
    csv_path = results.results_path(EXPERIMENT, device="cuda", root=args.out)
    keys = results.existing_keys(csv_path, results.SCHEMAS[EXPERIMENT].key)
    done = set() if args.fresh else {sec for sec, metric in keys if metric != "error"}
    extra = dict(EXTRA_ENV, quick=args.quick, budget_s=args.budget_s, experiment=EXPERIMENT)
    env = results.write_env(csv_path.parent, extra, device="cuda", dtype=gk.DTYPE)
    print(json.dumps(env, default=str), flush=True)
    skipped, rows = [], []
    for name, fn, kwargs, estimate in plan:
        elapsed = time.perf_counter() - t0
        if name in done:
            print(f"[{name}] already in {csv_path}, skipped (--fresh re-measures)", flush=True)
            continue
        if elapsed + estimate > args.budget_s:
            skipped.append(name)
            print(f"[{name}] skipped: {elapsed:.0f} s used, estimate {estimate} s, budget {args.budget_s:.0f} s",
                  flush=True)
            continue
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        new = gk.guarded(name, name, lambda: fn(args.quick, **kwargs))
        for r in new:
            r.update(section=name, device="cuda", timestamp=stamp)
        results.append_rows(csv_path, new, columns=COLUMNS)
        rows += new
        print(f"[{name}] {len(new)} rows, {time.perf_counter() - t0:.0f} s elapsed", flush=True)
    extra.update(elapsed_s=round(time.perf_counter() - t0, 1), skipped_sections=skipped)
    results.write_env(csv_path.parent, extra, device="cuda", dtype=gk.DTYPE)
    gk.print_summary(file_rows(csv_path))
    print(f"\nappended {len(rows)} rows to {csv_path} (env.json beside it) in {time.perf_counter() - t0:.0f} s")
    return 0


def file_rows(path) -> list[dict]:
    """The rows of a results CSV as dicts, empty cells as None (for `gpu_kernels.ratios`)."""
    df = results.read_rows(path)
    return [{k: (None if v != v else v) for k, v in rec.items()} for rec in df.to_dict("records")]  # NaN -> None


if __name__ == "__main__":
    sys.exit(main())
