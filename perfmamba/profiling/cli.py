"""`perfmamba profile`: per-component time, memory, FLOPs and bytes of prefill and decode → a tidy CSV."""
from __future__ import annotations

import argparse

from .. import results
from ..config import PRESETS
from .sweep import CPU_MODELS, PATHS, PHASES, ProfilingError, sweep
from .timing import set_flush_denormal

EPILOG = """\
examples:
  perfmamba profile                                   # CPU smoke grid (small and 130M presets), ~1 min
  perfmamba profile -m mamba2-130m --seqlens 64 512 2048 --batches 8 --method both
  perfmamba profile -m ./my-checkpoint --phases decode --backend triton mamba_ssm --device cuda

Rows (model, arch, path, component, phase, batch, seqlen, metric, value, unit, median, p10, p90, …) are
appended to OUT (default data/results/<device-slug>/profile.csv) with env.json beside it; points already
in OUT are skipped, so rerunning a killed command resumes it. Metrics: time (ms), share, flops, bytes,
intensity, achieved_flops, achieved_bandwidth, memory (weights / ssm_state / conv_state bytes),
activation_peak, peak_memory, sum_of_allocations (a sum over all allocations, not a footprint), oom.
"""


def _csv_ints(values):
    out = []
    for v in values:
        for part in str(v).replace(",", " ").split():
            try:
                out.append(int(part))
            except ValueError:
                raise argparse.ArgumentTypeError(f"not an integer: {part!r}") from None
    return out


def register(sub):
    p = sub.add_parser(
        "profile", help="per-component time, memory, FLOPs and bytes of prefill and decode",
        description="Profile Mamba-1 / Mamba-2 models per component (rmsnorm, in_proj = the paper's \"Gated "
                    "MLP\", conv1d, ssm, gated_norm, out_proj, lm_head, embedding) in prefill (time to first "
                    "token) and decode (time per output token), with timers and/or torch.profiler, and write "
                    "tidy rows to a CSV.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", dest="models", nargs="+", metavar="PRESET_OR_DIR",
                   help="preset names (random init, seeded) or checkpoint directories; presets: "
                        + ", ".join(PRESETS) + " (default: CPU " + ", ".join(CPU_MODELS)
                        + "; GPU mamba-130m, mamba2-130m)")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                   help="prefill (forward over the prompt) and/or decode (one step with a cache)")
    p.add_argument("--seqlens", nargs="+", metavar="L",
                   help="prompt / context lengths (default: CPU 64 128; GPU 64 512 1024 2048 4096 8192 16384)")
    p.add_argument("--batches", nargs="+", metavar="B", help="batch sizes (default: CPU 1; GPU 1 8 64)")
    p.add_argument("--backend", dest="paths", nargs="+", choices=PATHS, default=["ref"],
                   help="compute paths to measure (default: ref)")
    p.add_argument("--method", choices=("timers", "profiler", "both"), default="timers",
                   help="timers around components, a torch.profiler trace (also gives memory per component), "
                        "or both (default: timers)")
    p.add_argument("--warmup", type=int, help="untimed calls before timing (default: CPU 2, GPU 3)")
    p.add_argument("--iters", type=int, help="timed calls; median, p10, p90 are reported (default: CPU 5, GPU 10)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16", "float64"), help="model dtype (default: CPU float32, GPU bfloat16)")
    p.add_argument("--state-dtype", choices=("float32", "bfloat16", "float16", "float64"), default="float32", help="cache dtype (default float32)")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="also time decode with the step captured in a CUDA graph (default: on with a GPU)")
    p.add_argument("--call-totals", action=argparse.BooleanOptionalAction, default=None,
                   help="also time every call whole, with no component instrumented (method \"call\"; default: "
                        "on with a GPU, where the timers' events cost host time inside the call)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", help="results CSV (default: data/results/<device-slug>/profile.csv)")
    p.add_argument("--experiment", default="profile", help="file name under data/results/<device-slug>/ when "
                                                           "--out is not given (default: profile)")
    p.add_argument("--flush-denormal", action=argparse.BooleanOptionalAction, default=None,
                   help="flush denormal floats to zero on CPU (default: on for CPU; denormals from underflowing "
                        "decays slow x86 cores down, a cost a GPU does not have)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args):
    cpu = args.device == "cpu" or (args.device is None and not _cuda_available())
    flush = cpu if args.flush_denormal is None else args.flush_denormal
    if flush and cpu:
        set_flush_denormal(True)  # before any parallel op, so that torch's worker threads inherit it
    try:
        seqlens = _csv_ints(args.seqlens) if args.seqlens else None
        batches = _csv_ints(args.batches) if args.batches else None
    except argparse.ArgumentTypeError as e:
        raise ProfilingError(str(e)) from None
    methods = ("timers", "profiler") if args.method == "both" else (args.method,)
    out = args.out or results.results_path(args.experiment, args.device)
    rows = sweep(args.models, seqlens, batches, tuple(args.phases), tuple(args.paths), methods,
                    warmup=args.warmup, iters=args.iters, out=out, device=args.device, dtype=args.dtype,
                    state_dtype=args.state_dtype, cuda_graphs=args.cuda_graphs, call_totals=args.call_totals,
                    threads=args.threads,
                    progress=not args.no_progress, flush_denormal=flush and cpu)
    _print_summary(rows)
    print(f"{len(rows)} new rows in {out}")
    return 0


def _print_summary(rows):
    """Total time per point, and the top components, as a short table."""
    totals = [r for r in rows if r["metric"] == "time" and r["component"] == "total"]
    if not totals:
        return
    shares = {}
    for r in rows:
        if r["metric"] == "share" and r["component"] not in ("total",) and "." not in r["component"]:
            key = tuple(r[c] for c in ("model", "path", "method", "phase", "batch", "seqlen"))
            shares.setdefault(key, []).append((r["value"], r["component"]))
    print(f"{'model':14s} {'path':6s} {'method':8s} {'phase':7s} {'B':>3s} {'L':>6s} {'ms':>10s}  top components")
    for r in totals:
        key = tuple(r[c] for c in ("model", "path", "method", "phase", "batch", "seqlen"))
        top = ", ".join(f"{c} {v:.0%}" for v, c in sorted(shares.get(key, []), reverse=True)[:3])
        graph = " graph" if r.get("cuda_graph") else ""
        print(f"{r['model']:14s} {r['path']:6s} {r['method']:8s} {r['phase']:7s} {r['batch']:3d} {r['seqlen']:6d} "
              f"{r['value']:10.2f}  {top}{graph}")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
