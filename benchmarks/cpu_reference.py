"""CPU reference: perfmamba's forward against transformers' torch path, same weights, one process each.

For each architecture a 130M-shaped model (mamba-130m / mamba2-130m, seeded random init) is written once in
our format and once in the transformers format (`model.save(dir, format="transformers")`); then a fresh
subprocess per implementation loads it, runs one warm-up forward on a short prompt and times `--repeats`
forwards of B×L tokens, reporting the median (logits for every position, fp32, `--threads` threads). Memory:
the peak resident set during the timed forwards (the kernel's VmHWM, reset just before them), the resident set
before them (weights, allocator caches), and the process's lifetime peak (`ru_maxrss`, which includes
loading). The last position's logits are compared as a check that both computed the same model.

    python benchmarks/cpu_reference.py                      # both architectures, B=1, L=2048
    python benchmarks/cpu_reference.py --arch mamba2 --seqlen 512 --flush-denormal
    python benchmarks/cpu_reference.py --json data/results/cpu-amd-epyc/cpu_reference.jsonl   # keep the run

Goal on a 2-core machine: perfmamba ≥ 2× faster than transformers for Mamba-2 and ≥ 8× for Mamba-1, with
no higher peak memory. `--flush-denormal` sets FTZ/DAZ in both processes before any parallel op: random
init makes the scans' decays underflow into denormals, which x86 cores process very slowly.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESET = {"mamba1": "mamba-130m", "mamba2": "mamba2-130m"}


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_since_reset() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(impl: str, directory: str, ids_path: str, threads: int, flush: bool, out: str, repeats: int) -> None:
    import torch

    if flush:
        torch.set_flush_denormal(True)  # before the first parallel op: worker threads inherit it
    torch.set_num_threads(threads)
    if impl == "perfmamba":
        import perfmamba

        model = perfmamba.load(directory)
        forward = lambda ids: model(ids)  # noqa: E731
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        forward = lambda ids: model(input_ids=ids, use_cache=False).logits  # noqa: E731
    ids = torch.load(ids_path)  # (b, l), the same tokens for both implementations
    seqlen = ids.shape[1]
    with torch.inference_mode():
        forward(ids[:, : min(seqlen, 64)])  # warm-up: first-call allocations and kernel selection
        rss_loaded = rss_bytes()
        reset = reset_peak_rss()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            logits = forward(ids)
            times.append(time.perf_counter() - t0)
            if len(times) < repeats:
                del logits
        peak_forward = peak_rss_since_reset() if reset else None
        seconds = statistics.median(times)
    torch.save(logits[:, -1].float().clone(), out + ".pt")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux; includes loading
    Path(out).write_text(json.dumps({"impl": impl, "seconds": seconds, "times": times, "peak_rss": peak,
                                     "rss_loaded": rss_loaded,
                                     "peak_forward": peak_forward, "torch": torch.__version__,
                                     "threads": torch.get_num_threads()}))


def run_child(impl, directory, args, tmp) -> dict:
    out = os.path.join(tmp, f"{impl}.json")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--child", impl, directory, "--ids", os.path.join(tmp, "ids.pt"),
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--out", out]
    cmd += ["--flush-denormal"] if args.flush_denormal else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{impl} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(Path(out).read_text())


def matmul_shapes(cfg, batch: int, seqlen: int) -> dict[tuple[int, int, int], int]:
    """The forward's matrix products as {(m, k, n): how many}: per layer in_proj, Mamba-1's x_proj and dt_proj,
    out_proj, over the B·L tokens; and the LM head at every position, as these forwards compute it."""
    T, D, E = batch * seqlen, cfg.d_model, cfg.d_inner
    shapes: dict[tuple[int, int, int], int] = {}
    for layer in range(cfg.n_layer):
        prods = [(T, D, cfg.in_proj_dim(layer)), (T, E, D)]
        if cfg.arch == "mamba1":
            R = cfg.dt_rank_value
            prods += [(T, E, R + 2 * cfg.d_states[layer]), (T, R, E)]
        for shp in prods:
            shapes[shp] = shapes.get(shp, 0) + 1
    shapes[(T, D, cfg.padded_vocab_size)] = shapes.get((T, D, cfg.padded_vocab_size), 0) + 1
    return shapes


def matmul_floor(cfg, batch: int, seqlen: int, threads: int, repeats: int = 3) -> tuple[float, float]:
    """(GFLOP, seconds) of the forward's matrix products (`matmul_shapes`), each shape timed here as one fp32
    `torch.mm` on `threads` threads (best of `repeats`, after one untimed product) and counted as often as the
    forward runs it: the time torch's matrix products alone take in this forward on this machine."""
    import torch

    from perfmamba.profiling.timing import time_call

    torch.set_num_threads(threads)
    gflop = seconds = 0.0
    for (m, k, n), count in matmul_shapes(cfg, batch, seqlen).items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        seconds += count * min(time_call(lambda: torch.mm(a, b), "cpu", warmup=1, iters=repeats))
        gflop += count * 2 * m * k * n / 1e9
    return gflop, seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=("mamba1", "mamba2", "both"), default="both")
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed forwards per implementation; the median is reported")
    p.add_argument("--flush-denormal", action="store_true", help="flush denormals to zero in both processes")
    p.add_argument("--json", metavar="FILE", help="append this run (one JSON object per line: settings, load "
                   "average, per model both implementations' seconds and memory) to FILE")
    p.add_argument("--child", nargs=2, metavar=("IMPL", "DIR"), help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--ids", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.seqlen, args.batch, args.threads, args.repeats) <= 0:
        p.error("--seqlen, --batch, --threads and --repeats must be positive")
    if args.child:
        child(args.child[0], args.child[1], args.ids, args.threads, args.flush_denormal, args.out, args.repeats)
        return 0

    import torch

    import perfmamba

    archs = ("mamba1", "mamba2") if args.arch == "both" else (args.arch,)
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "torch": torch.__version__,
              "batch": args.batch, "seqlen": args.seqlen, "threads": args.threads, "repeats": args.repeats,
              "flush_denormal": args.flush_denormal, "load_average_start": round(os.getloadavg()[0], 2), "models": {}}
    print(f"CPU reference: B={args.batch} L={args.seqlen} fp32, {args.threads} threads, flush denormals "
          f"{'on' if args.flush_denormal else 'off'}; torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.2f}")
    print(f"median of {args.repeats} forwards per implementation, each in its own process")
    print(f"{'model':12s} {'impl':12s} {'forward s':>10s} {'peak RSS MB':>12s} {'forward peak MB':>16s} "
          f"{'before fwd MB':>14s}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            model = perfmamba.load(PRESET[arch])
            g = torch.Generator().manual_seed(0)
            torch.save(torch.randint(0, model.config.vocab_size, (args.batch, args.seqlen), generator=g),
                       os.path.join(tmp, "ids.pt"))
            ours, theirs = os.path.join(tmp, arch + "-perfmamba"), os.path.join(tmp, arch + "-transformers")
            model.save(ours)
            model.save(theirs, format="transformers")
            cfg = model.config
            del model
            res = {impl: run_child(impl, d, args, tmp) for impl, d in (("perfmamba", ours), ("transformers", theirs))}
            for impl, r in res.items():
                fwd = f"{r['peak_forward'] / 2**20:16.0f}" if r["peak_forward"] else f"{'n/a':>16s}"
                print(f"{PRESET[arch]:12s} {impl:12s} {r['seconds']:10.2f} {r['peak_rss'] / 2**20:12.0f} {fwd} "
                      f"{r['rss_loaded'] / 2**20:14.0f}")
            a = torch.load(os.path.join(tmp, "perfmamba.json.pt"))
            b = torch.load(os.path.join(tmp, "transformers.json.pt"))
            n = min(a.shape[-1], b.shape[-1])  # transformers pads the vocabulary in its config
            a, b = a[..., :n], b[..., :n]
            speedup = res["transformers"]["seconds"] / res["perfmamba"]["seconds"]
            key = "peak_forward" if all(r["peak_forward"] for r in res.values()) else "peak_rss"
            mem = res["perfmamba"][key] / res["transformers"][key]
            goal = 8.0 if arch == "mamba1" else 2.0
            print(f"{PRESET[arch]:12s} speedup {speedup:.3f}x (goal >= {goal:g}x: {'met' if speedup >= goal else 'NOT met'}), "
                  f"{key.replace('_', ' ')} ratio perfmamba/transformers {mem:.2f} ({'met' if mem <= 1.0 else 'NOT met'}), "
                  f"last-position logits max |diff| {(a - b).abs().max().item():.2e}")
            gflop, floor = matmul_floor(cfg, args.batch, args.seqlen, args.threads)
            bound = res["transformers"]["seconds"] / floor
            print(f"{PRESET[arch]:12s} matrix products {gflop:.0f} GFLOP, {floor:.2f} s as torch.mm runs them here "
                  f"({gflop / floor:.0f} GFLOP/s): with torch's matrix products no forward is faster, so the "
                  f"speed-up over transformers is at most {bound:.1f}x")
            record["models"][PRESET[arch]] = {
                "matmul_gflop": gflop, "matmul_gflops_rate": gflop / floor, "matmul_floor_s": floor,
                "speedup_bound": bound,
                "speedup": speedup, "memory_ratio": mem, "memory_reading": key,
                "logits_max_abs_diff": (a - b).abs().max().item(),
                **{impl: {k: r[k] for k in ("seconds", "peak_rss", "peak_forward", "rss_loaded")}
                   for impl, r in res.items()}}
    if args.json:
        record["load_average_end"] = round(os.getloadavg()[0], 2)
        append_jsonl(Path(args.json), record)
        print(f"appended to {args.json}")
    return 0


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line to `path` by writing the whole file anew and renaming it into place: an interrupted
    run leaves the previous file as it was."""
    from perfmamba.io import atomic_write_text

    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(path, old + json.dumps(record) + "\n")


if __name__ == "__main__":
    sys.exit(main())
