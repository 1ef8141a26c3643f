"""Every goal of "GPU fast path, round two" in one prepared call: measures, prints the goal table (ours, mamba-ssm,
floor, ratio, goal, met?) and writes tidy rows with the device and versions to data/results/<device>/gpu_goals.csv.

    python3 benchmarks/gpu_goals.py                        # the GPU machine: ≈ 4 min (--budget-s, default 240)
    python3 benchmarks/gpu_goals.py --dry-run              # any machine: tiny shapes, < 1 min on 2 CPU cores
                                                           # (Triton interpreted there), rows to a temporary folder

Sections, highest priority first (one that would end past the budget is skipped and named; rows are appended
after every section and a rerun skips the sections already in the file, so a second call finishes a cut one):

    calibrate      device-to-device copy bandwidth (bytes read + written) and bf16 matmul throughput: the floors'
                   denominators, measured in the same process
    prefill        Mamba2-130M B=8 L=8192: ours (backend triton, its default SSD: mamba-ssm's where importable), ours
                   with our own chunked SSD kernel, mamba-ssm's own model (its Triton path, torch conv1d), the
                   roofline floor Σ_component max(FLOPs / matmul peak, bytes / bandwidth)
    decode         Mamba2-130M B=8 and B=64, one CUDA graph per step: ours (fused step), ours op by op
                   (fused_decode off), mamba-ssm captured the same way, the HBM floor (weights + 2 × cache) / bw
    decode_big     Mamba2-2.7B B=8: ours and the HBM floor
    prune_decode   Mamba2-130M B=64, N′ = ⌊128(1 − r)⌋ for r = 0.1 … 0.9 (115, 89, 64, 38, 12) and those counts
                   aligned to multiples of 8 (120, 96, 40, 16), against dense N = 128: ours and floors
    prune_prefill  the same kept counts, prefill B=8 L=2048
    mamba1         Mamba-1 130M (B=8 L=512) and 2.8B (B=1 L=512): ours beside transformers' torch path (in a child
                   process that cannot import mamba-ssm); mamba-ssm's Mamba-1 needs its CUDA extension, absent

Pruned models are random-init models with d_state = N′: a model with states removed is that network, and the timing
does not depend on the weights. `perfmamba.experiments.gpu_goals.goal_table` turns the rows into the table (the book renders
it). Timing: triton.testing.do_bench medians (p10/p90) for calls, median of 5 × 100 graph replays for decode; on
the CPU (dry run) wall-clock medians of a few calls and eager decode steps — a check that everything runs, not
timings.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package (the GPU machine)
    sys.path.insert(0, str(ROOT))
_DRY = "--dry-run" in sys.argv[1:]

import torch  # noqa: E402

if _DRY and not torch.cuda.is_available():  # before any Triton kernel is defined: interpret them on the CPU
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("PERFMAMBA_NO_MAMBA_SSM", "1")

from perfmamba import results  # noqa: E402
from perfmamba.config import preset  # noqa: E402
from perfmamba.experiments.gpu_goals import PAPER_KEPT, goal_table  # noqa: E402
from perfmamba.models.lm import MambaLM  # noqa: E402
from perfmamba.pruning.selection import align_count, n_keep  # noqa: E402

EXPERIMENT = "gpu_goals"
COLUMNS = list(results.SCHEMAS[EXPERIMENT].columns)
VOCAB = 50277
ALIGN_ROUNDING = "up"
RATIOS = tuple(r for r in PAPER_KEPT if r > 0)  # 0.1, 0.3, 0.5, 0.7, 0.9

# (preset, overrides) per measured shape; the dry run swaps in tiny models of the same kinds
FULL = dict(
    prefill=(("mamba2-130m", {}), 8, 8192),
    decode=(("mamba2-130m", {}), (8, 64)),
    decode_big=(("mamba2-2.7b", {}), 8),
    prune=(("mamba2-130m", {}), 64, (8, 2048)),  # model, decode batch, (prefill batch, length)
    mamba1=[(("mamba-130m", {}), 8, 512), (("mamba-2.8b", {}), 1, 512)],
    hf_reps=3,
    align=8,  # multiples of 8 keep in_proj's rows and the B/C slices 16-byte aligned in bf16
)
_T2 = {"d_model": 16, "n_layer": 1, "headdim": 16, "d_state": 16}  # 2 heads: few programs for the interpreter
TINY = dict(
    prefill=(("mamba2-tiny", _T2), 1, 8),
    decode=(("mamba2-tiny", _T2), (1, 2)),
    decode_big=(("mamba2-tiny", {**_T2, "d_model": 32}), 1),
    prune=(("mamba2-tiny", _T2), 1, (1, 8)),  # N = 16: kept 14, 11, 8, 4, 1 and, aligned to 4, 12
    mamba1=[(("mamba-tiny", {"d_model": 16, "n_layer": 1}), 1, 8),
            (("mamba-tiny", {"d_model": 24, "n_layer": 1}), 2, 8)],
    hf_reps=1,
    align=4,
)
# section → rough seconds on an H200 including Triton compilation (the budget's estimates)
ESTIMATE = {"calibrate": 5, "prefill": 55, "decode": 40, "decode_big": 25, "prune_decode": 45, "prune_prefill": 40,
            "mamba1": 60}
SECTIONS = tuple(ESTIMATE)


# rows ------------------------------------------------------------------------------------------------------------
def row(ctx, model, arch, path, phase, batch, seqlen, d_state, value, unit, *, metric="latency", component="model",
        ratio=0.0, impl="", spread=(None, None), note=""):
    return {"model": model, "arch": arch, "path": path, "component": component, "phase": phase, "batch": batch,
            "seqlen": seqlen, "d_state": d_state, "ratio": ratio, "metric": metric, "value": value, "unit": unit,
            "spread_lo": spread[0], "spread_hi": spread[1], "impl": impl,
            "dtype": str(ctx.dtype).replace("torch.", ""), "note": note}


class Ctx:
    """Where and how this run measures: device, dtype, shapes, and the two floors' denominators."""

    def __init__(self, dry: bool):
        self.cuda = torch.cuda.is_available()
        self.device = torch.device("cuda" if self.cuda else "cpu")
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.shapes = TINY if dry else FULL
        self.dry = dry
        self.bandwidth = None  # bytes/s, read + written
        self.peak_flops = None  # matmul FLOP/s in self.dtype

    def build(self, spec, d_state=None, backend="triton"):
        name, over = spec
        cfg = preset(name, **({**over, "d_state": d_state} if d_state is not None else over))
        with torch.device(self.device):  # random init on the device: a 2.7B model is minutes of CPU init
            model = MambaLM.from_config(cfg)
        model = model.to(self.dtype).eval()
        model.backend = backend
        return model

    def ids(self, batch, seqlen, vocab, seed=0):
        g = torch.Generator(device=self.device).manual_seed(seed)
        return torch.randint(0, vocab, (batch, seqlen), device=self.device, generator=g)

    def time_call(self, fn) -> dict:
        """Median ms of fn() with p10/p90 (`perfmamba.profiling.timing.bench`: do_bench on a GPU, a few timed calls on
        the CPU; one untimed-warm-up-free call in a dry run, where the interpreter has nothing to warm up)."""
        from perfmamba.profiling.timing import bench

        with torch.inference_mode():
            if self.cuda:
                return bench(fn, "cuda")
            return bench(fn, "cpu", warmup=0 if self.dry else 1, iters=1 if self.dry else 5)

    def decode(self, model, batch) -> dict:
        """ms per token of the decode step: one CUDA graph per step on a GPU, eager `decode_body` on the CPU."""
        if self.cuda:
            from perfmamba.profiling.timing import decode_latency

            return decode_latency(model, batch)
        from perfmamba.models.graphs import decode_body

        cache = model.allocate_cache(batch, dtype=self.dtype)
        ids = self.ids(batch, 2, model.config.vocab_size)
        with torch.inference_mode():
            model(ids, cache)
            step = ids[:, -1].clone()
            t = self.time_call(lambda: decode_body(model, step, cache))
        nb = cache.nbytes()
        return {"ms_per_token": t["ms"], "p10": t["p10"], "p90": t["p90"], "ssm_state_bytes": nb["ssm_state"],
                "conv_state_bytes": nb["conv_state"]}

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def release(self):
        import gc

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()


def guarded(ctx, label, fn) -> list[dict]:
    """fn()'s rows, or one error row: a failing case (say, mamba-ssm's graph capture) must not lose the others."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        ctx.release()
        print(f"[{label}] {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr, flush=True)
        return [row(ctx, label, "", "", "", None, None, None, None, "", metric="error",
                    note=f"{type(exc).__name__}: {str(exc)[:300]}")]


def _impl(model, *ops):
    from perfmamba.ops.backends import get_ops

    impl = getattr(get_ops(model.backend), "impl", {})
    return "; ".join(f"{op}={impl.get(op, model.backend)}" for op in ops)


def _upstream():
    """mamba-ssm's model classes (its Triton path), or None off CUDA or where it is not importable."""
    if not torch.cuda.is_available() or os.environ.get("PERFMAMBA_NO_MAMBA_SSM", "") not in ("", "0"):
        return None
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_kernels as gk

    ms = gk.import_mamba_ssm()
    return (gk, ms) if ms is not None else None


# sections ----------------------------------------------------------------------------------------------------------
def calibrate(ctx) -> list[dict]:
    """Copy bandwidth and matmul throughput, the floors' denominators."""
    n = (2 << 30) if ctx.cuda else (32 << 20)
    src = torch.empty(n, dtype=torch.uint8, device=ctx.device)
    dst = torch.empty_like(src)
    t = ctx.time_call(lambda: dst.copy_(src))
    ctx.bandwidth = 2 * n / (t["ms"] * 1e-3)
    m = 8192 if ctx.cuda else 256
    a, b = (torch.randn(m, m, device=ctx.device, dtype=ctx.dtype) for _ in range(2))
    tm = ctx.time_call(lambda: a @ b)
    ctx.peak_flops = 2 * m ** 3 / (tm["ms"] * 1e-3)
    del src, dst, a, b
    ctx.release()
    return [row(ctx, "-", "-", "copy", "-", None, None, None, ctx.bandwidth / 1e9, "GB/s", metric="bandwidth",
                component="copy", note=f"{n} bytes, read + written"),
            row(ctx, "-", "-", "matmul", "-", None, None, None, ctx.peak_flops / 1e12, "TFLOP/s", metric="throughput",
                component="matmul", note=f"{m}x{m}x{m} {ctx.dtype}")]


def roofline_ms(ctx, cfg, batch, seqlen, phase="prefill") -> float:
    """Σ over top-level components of max(FLOPs / matmul peak, bytes / copy bandwidth), in ms
    (`perfmamba.profiling.flops`: weights once, activations once, last-position logits)."""
    from perfmamba.profiling.flops import component_counts

    counts = component_counts(cfg, batch, seqlen, phase, dtype=ctx.dtype, state_dtype=ctx.dtype)
    return 1e3 * sum(max(c["flops"] / ctx.peak_flops, c["bytes"] / ctx.bandwidth)
                     for k, c in counts.items() if k != "total" and "." not in k)


def _prefill_ours(ctx, spec, batch, seqlen, d_state=None, ops=("conv", "ssd", "gated_rmsnorm", "add_rmsnorm")):
    """Time to first token of our model: the forward, then the LM head on the last position (as mamba-ssm's
    num_last_tokens=1). Returns (timing, config, the kernels that ran)."""
    model = ctx.build(spec, d_state)
    ids = ctx.ids(batch, seqlen, model.config.vocab_size)

    def fn():
        h = model(ids, return_hidden=True)
        return model.lm_head(h[:, -1])
    t = ctx.time_call(fn)
    cfg, impl = model.config, _impl(model, *ops)
    del model
    ctx.release()
    return t, cfg, impl


def prefill(ctx) -> list[dict]:
    spec, B, L = ctx.shapes["prefill"]
    name = spec[0]
    t, cfg, impl = _prefill_ours(ctx, spec, B, L)
    N = cfg.d_states[0]
    rows = [row(ctx, name, "mamba2", "triton", "prefill", B, L, N, t["ms"], "ms", impl=impl,
                spread=(t["p10"], t["p90"])),
            row(ctx, name, "mamba2", "floor", "prefill", B, L, N, roofline_ms(ctx, cfg, B, L), "ms",
                impl="roofline: sum of max(FLOPs / matmul peak, bytes / copy bandwidth) per component")]
    if "chunked_ssd" not in impl:  # the default SSD is mamba-ssm's (or torch's): time our kernel in the same model
        rows += guarded(ctx, "prefill, our SSD", lambda: _prefill_own_ssd(ctx, spec, B, L, N))
    up = _upstream()
    if up is not None:
        gk, ms = up

        def upstream():
            model = gk.build_upstream(ms, cfg.d_model, cfg.n_layer, N)
            tu = gk.prefill_upstream(model, B, L)
            del model
            ctx.release()
            return [row(ctx, name, "mamba2", "mamba_ssm", "prefill", B, L, N, tu["ms"], "ms",
                        impl=f"mamba_ssm {ms.version} MambaLMHeadModel (mamba-ssm's Triton SSD, torch conv1d)",
                        spread=(tu["p10"], tu["p90"]))]
        rows += guarded(ctx, f"mamba_ssm prefill {name}", upstream)
    return rows


def _prefill_own_ssd(ctx, spec, B, L, N):
    from perfmamba.ops.backends import get_ops
    from perfmamba.ops.triton import use_ssd

    ns = get_ops("triton")
    old = use_ssd(ns, "triton")
    try:
        t, _, impl = _prefill_ours(ctx, spec, B, L)
    finally:
        ns.ssd, ns.impl["ssd"] = old
    return [row(ctx, spec[0], "mamba2", "triton_own_ssd", "prefill", B, L, N, t["ms"], "ms", impl=impl,
                spread=(t["p10"], t["p90"]), note="backend triton with our chunked SSD kernel")]


def _decode_rows(ctx, spec, B, d_state=None, *, r=0.0, note="", unfused=False, upstream=None):
    from perfmamba.profiling.memory import weight_bytes
    from perfmamba.profiling.timing import decode_floor_ms

    model = ctx.build(spec, d_state)
    name, cfg = spec[0], model.config
    N = cfg.d_states[0]
    t = ctx.decode(model, B)
    floor = decode_floor_ms(weight_bytes(model), t["ssm_state_bytes"] + t["conv_state_bytes"], ctx.bandwidth)
    graph = "; CUDA graph per step" if ctx.cuda else "; eager (CPU)"
    out = [row(ctx, name, cfg.arch, "triton", "decode", B, 1, N, t["ms_per_token"], "ms/token", ratio=r, note=note,
               impl=_impl(model, "mamba2_step" if cfg.arch == "mamba2" else "mamba1_step", "add_rmsnorm") + graph,
               spread=(t["p10"], t["p90"])),
           row(ctx, name, cfg.arch, "floor", "decode", B, 1, N, floor, "ms/token", ratio=r, note=note,
               impl="(weights + 2 x cache) / copy bandwidth")]
    if unfused:
        model.fused_decode = False
        tu = ctx.decode(model, B)
        out.append(row(ctx, name, cfg.arch, "triton_unfused", "decode", B, 1, N, tu["ms_per_token"], "ms/token",
                       impl="op by op (fused_decode=False)" + graph, spread=(tu["p10"], tu["p90"])))
    del model
    ctx.release()
    if upstream is not None:
        gk, ms = upstream

        def up():
            m = gk.build_upstream(ms, cfg.d_model, cfg.n_layer, N)
            tu = gk.decode_upstream(ms, m, B)
            del m
            ctx.release()
            return [row(ctx, name, cfg.arch, "mamba_ssm", "decode", B, 1, N, tu["ms_per_token"], "ms/token",
                        impl=f"mamba_ssm {ms.version}; CUDA graph per step", spread=(tu["p10"], tu["p90"]))]
        out += guarded(ctx, f"mamba_ssm decode {name} B={B}", up)
    return out


def decode(ctx) -> list[dict]:
    spec, batches = ctx.shapes["decode"]
    up = _upstream()
    return [r for B in batches
            for r in guarded(ctx, f"decode B={B}", lambda B=B: _decode_rows(ctx, spec, B, unfused=True, upstream=up))]


def decode_big(ctx) -> list[dict]:
    spec, B = ctx.shapes["decode_big"]
    return _decode_rows(ctx, spec, B)


def kept_counts(n_state: int, align: int) -> list[tuple[int, float, str]]:
    """(N′, r, note) for dense, the paper's exact counts and their aligned versions (those not already listed)."""
    out = [(n_state, 0.0, "dense")]
    for r in RATIOS:
        k = n_keep(n_state, r)
        if k not in [o[0] for o in out]:
            out.append((k, r, "exact"))
    for r in RATIOS:
        k = n_keep(n_state, r)
        a = align_count(k, n_state, align, ALIGN_ROUNDING)
        if a not in [o[0] for o in out]:
            out.append((a, r, f"aligned {align} {ALIGN_ROUNDING} (exact {k})"))
    return out


def prune_decode(ctx) -> list[dict]:
    spec, B, _ = ctx.shapes["prune"]
    N = preset(spec[0], **spec[1]).d_states[0]
    return [r for n, ratio, note in kept_counts(N, ctx.shapes["align"])
            for r in guarded(ctx, f"prune decode N'={n}",
                             lambda n=n, ratio=ratio, note=note: _decode_rows(ctx, spec, B, n, r=ratio, note=note))]


def prune_prefill(ctx) -> list[dict]:
    spec, _, (B, L) = ctx.shapes["prune"]
    N = preset(spec[0], **spec[1]).d_states[0]
    rows = []
    for n, ratio, note in kept_counts(N, ctx.shapes["align"]):
        t, cfg, impl = _prefill_ours(ctx, spec, B, L, n)
        rows += [row(ctx, spec[0], "mamba2", "triton", "prefill", B, L, n, t["ms"], "ms", ratio=ratio, note=note,
                     impl=impl, spread=(t["p10"], t["p90"])),
                 row(ctx, spec[0], "mamba2", "floor", "prefill", B, L, n, roofline_ms(ctx, cfg, B, L), "ms",
                     ratio=ratio, note=note, impl="roofline")]
    return rows


def mamba1(ctx) -> list[dict]:
    rows, cases = [], []
    for spec, B, L in ctx.shapes["mamba1"]:
        t, cfg, impl = _prefill_ours(ctx, spec, B, L, ops=("conv", "selective_scan", "add_rmsnorm"))
        rows.append(row(ctx, spec[0], "mamba1", "triton", "prefill", B, L, cfg.d_states[0], t["ms"], "ms",
                        impl=impl, spread=(t["p10"], t["p90"])))
        cases.append(dict(model=spec[0], batch=B, seqlen=L, d_model=cfg.d_model, n_layer=cfg.n_layer,
                          d_state=cfg.d_states[0], vocab=cfg.vocab_size))
    return rows + hf_rows(ctx, cases)


def hf_rows(ctx, cases, timeout=240) -> list[dict]:
    """transformers' torch path for each Mamba-1 case, in a child process where mamba-ssm and causal-conv1d cannot
    be imported (where they can, transformers binds their kernels instead)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_kernels import run_without_mamba_ssm

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hf.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(cases), "--json", str(out)]
        if ctx.dry:
            cmd.append("--dry-run")
        rows, err = run_without_mamba_ssm(cmd, out, timeout)
        if err:
            rows.append(row(ctx, "transformers worker", "mamba1", "transformers", "prefill", None, None, None, None,
                            "", metric="error", note=err))
        return rows


def _hf_worker(cases, out_path, dry):
    sys.modules["mamba_ssm"] = None  # transformers falls back to its torch path when these imports fail
    sys.modules["causal_conv1d"] = None
    import transformers
    from transformers import MambaConfig, MambaForCausalLM

    ctx = Ctx(dry)
    rows = []
    for c in cases:
        cfg = MambaConfig(hidden_size=c["d_model"], num_hidden_layers=c["n_layer"], vocab_size=c["vocab"],
                          state_size=c["d_state"], expand=2, tie_word_embeddings=True)
        torch.manual_seed(0)
        with torch.device(ctx.device):
            model = MambaForCausalLM(cfg)
        model = model.to(ctx.dtype).eval()
        ids = ctx.ids(c["batch"], c["seqlen"], c["vocab"])
        ts = []
        with torch.inference_mode():
            model(ids, use_cache=False, logits_to_keep=1)
            for _ in range(ctx.shapes["hf_reps"]):
                ctx.sync()
                t0 = time.perf_counter()
                model(ids, use_cache=False, logits_to_keep=1)
                ctx.sync()
                ts.append((time.perf_counter() - t0) * 1e3)
        rows.append(row(ctx, c["model"], "mamba1", "transformers", "prefill", c["batch"], c["seqlen"], c["d_state"],
                        statistics.median(ts), "ms", impl=f"transformers {transformers.__version__} torch path",
                        spread=(min(ts), max(ts))))
        Path(out_path).write_text(json.dumps(rows))
        del model
        ctx.release()


FUNCS = {"calibrate": calibrate, "prefill": prefill, "decode": decode, "decode_big": decode_big,
         "prune_decode": prune_decode, "prune_prefill": prune_prefill, "mamba1": mamba1}


# the table ---------------------------------------------------------------------------------------------------------
def _fmt(v):
    return "—" if v is None else f"{v:.4g}"


def print_goal_table(rows, file=sys.stdout):
    table = goal_table(rows)
    head = ("goal", "case", "ours", "mamba-ssm", "floor", "ratio", "target", "met")
    lines = [(t["goal"], t["case"], _fmt(t["ours"]), _fmt(t["mamba_ssm"]), _fmt(t["floor"]),
              "—" if t["ratio"] is None else f"{t['ratio']:.3f}", t["target"], t["met"]) for t in table]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)] if lines else [len(h) for h in head]
    for ln in [head] + lines:
        print("  ".join(str(x).ljust(w) for x, w in zip(ln, widths)).rstrip(), file=file)
    for r in rows:
        if r.get("metric") == "error":
            print(f"error: {r.get('section')} {r.get('model')}: {r.get('note')}", file=file)
    return table


# command line ------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Sections in order: " + ", ".join(SECTIONS))
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny shapes (Triton interpreted on a CPU): checks that every section runs and the table "
                         "renders, in well under a minute; rows go to a temporary folder unless --out is given")
    ap.add_argument("--out", type=Path, default=None,
                    help="results root: rows go to OUT/<device-slug>/gpu_goals.csv (default: the repository's "
                         "data/results; a temporary folder with --dry-run)")
    ap.add_argument("--budget-s", type=float, default=240.0,
                    help="skip a section whose estimate would end past this many seconds (default 240)")
    ap.add_argument("--only", default=None, help="comma-separated sections (default: all, in order)")
    ap.add_argument("--fresh", action="store_true", help="re-measure sections already in the CSV")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker is not None:
        _hf_worker(json.loads(args.worker), args.json, args.dry_run)
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_goals.py needs a CUDA GPU (or --dry-run); nothing measured", file=sys.stderr)
        return 2
    plan = list(SECTIONS)
    if args.only:
        plan = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(plan) - set(SECTIONS))
        if unknown:
            print(f"unknown sections: {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
            return 2
        if "calibrate" not in plan:  # every floor needs it
            plan.insert(0, "calibrate")
    ctx = Ctx(args.dry_run)
    root = args.out if args.out is not None else (Path(tempfile.mkdtemp(prefix="gpu_goals_")) if args.dry_run else None)
    csv_path = results.results_path(EXPERIMENT, device=ctx.device, root=root)
    keys = results.existing_keys(csv_path, results.SCHEMAS[EXPERIMENT].key)
    done = set() if args.fresh else {s for s, m in keys if m != "error"}
    extra = {"experiment": EXPERIMENT, "dry_run": args.dry_run, "budget_s": args.budget_s,
             "weights": "random init (seeded); timing does not depend on weight values",
             "timing": "GPU: do_bench median (p10/p90), decode one CUDA graph per step, median of 5 x 100 replays; "
                       "CPU dry run: wall-clock median of a few calls"}
    env = results.write_env(csv_path.parent, extra, device=ctx.device, dtype=ctx.dtype)
    print(json.dumps({k: env.get(k) for k in ("device", "device_name", "torch", "triton", "mamba_ssm", "transformers",
                                              "git_sha") if k in env}, default=str), flush=True)
    t0 = time.perf_counter()
    skipped = []
    for name in plan:
        elapsed = time.perf_counter() - t0
        if name in done and name != "calibrate":
            print(f"[{name}] already in {csv_path}, skipped (--fresh re-measures)", flush=True)
            continue
        if not args.dry_run and name != "calibrate" and elapsed + ESTIMATE[name] > args.budget_s:
            skipped.append(name)
            print(f"[{name}] skipped: {elapsed:.0f} s used, estimate {ESTIMATE[name]} s, budget {args.budget_s:.0f} s",
                  flush=True)
            continue
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        try:
            new = FUNCS[name](ctx)
        except Exception as exc:  # noqa: BLE001  (one failing section must not lose the others)
            if name == "calibrate":
                raise
            print(f"[{name}] {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr, flush=True)
            new = [row(ctx, name, "", "", "", None, None, None, None, "", metric="error",
                       note=f"{type(exc).__name__}: {str(exc)[:300]}")]
            ctx.release()
        for r in new:
            r.update(section=name, device=ctx.device.type, timestamp=stamp)
        if name != "calibrate" or name not in done:
            results.append_rows(csv_path, new, columns=COLUMNS)
        print(f"[{name}] {len(new)} rows, {time.perf_counter() - t0:.0f} s elapsed", flush=True)
    extra.update(elapsed_s=round(time.perf_counter() - t0, 1), skipped_sections=skipped)
    results.write_env(csv_path.parent, extra, device=ctx.device, dtype=ctx.dtype)
    rows = [{k: (None if v != v else v) for k, v in rec.items()}  # NaN → None
            for rec in results.read_rows(csv_path).to_dict("records")]
    print()
    print_goal_table(rows)
    print(f"\nrows in {csv_path} (env.json beside it); {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
