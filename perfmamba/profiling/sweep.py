"""Profiling sweeps: models × code paths × phases × batches × sequence lengths → tidy rows (`sweep`).

Each point is measured by the requested attribution methods and counted analytically (method "analytic":
FLOPs, bytes, resident memory); running out of memory is a row of metric "oom", and the sweep goes on. On a
GPU every call is also timed whole with no range instrumented (method "call": the timers' CUDA events around
each of a few hundred ranges are host work an eager GPU call can wait on, so their total is not the call's
time; on CPU they cost microseconds and "call" is off unless asked for), and decode also with the step
captured in a CUDA graph (``cuda_graph=True``, the total only: a graph has no component ranges).

On CPU, denormal floats are flushed to zero during the sweep (`timing.set_flush_denormal`; recorded in
env.json): the scans' decays exp(ΔA) underflow into denormals, which x86 cores process many times slower,
a cost GPUs do not have (mamba-130m random init, prefill B=1 L=64, one thread: 522 ms → 380 ms).

CPU timings are only as good as the machine is quiet: with more runnable processes than cores, torch's
intra-op threads wait for each other at every parallel op and small-op workloads slow down by 10–100×.
env.json records the load average at the start.
"""
from __future__ import annotations

import gc
import itertools
import math
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import results
from ..checkpoints import load
from ..config import PRESETS
from ..errors import PerfmambaError
from ..models.graphs import GraphedStep
from ..ops.backends import BackendUnavailable, get_ops
from ..provenance import default_device
from . import attribution, flops, memory
from .flops import ProfilingError
from .timing import Summary, set_flush_denormal, sync, time_call

# the sweep's file (latency, profile, pruning_efficiency, …): one measurement = one (setting, method), whose rows
# share the key columns
PROFILE_COLUMNS = list(results.SCHEMAS["profile"].columns)
KEY_COLUMNS = list(results.SCHEMAS["profile"].key)

# the paper's grid (§4: sequence lengths 64–16384, batch 8), and a small CPU grid that runs in about a minute
GRIDS = {
    "cuda": dict(models=("mamba-130m", "mamba2-130m"), seqlens=(64, 512, 1024, 2048, 4096, 8192, 16384),
                 batches=(1, 8, 64), warmup=3, iters=10),
    "cpu": dict(models=("mamba-small", "mamba2-small", "mamba-130m", "mamba2-130m"), seqlens=(64, 128),
                batches=(1,), warmup=2, iters=5),
}
CPU_MODELS = GRIDS["cpu"]["models"]
PHASES = flops.PHASES
PATHS = ("ref", "triton", "mamba_ssm")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "float64": torch.float64, "fp64": torch.float64}


def default_grid(device) -> dict:
    """Models, sequence lengths, batches, warmup and iterations suited to the device."""
    return dict(GRIDS["cuda" if torch.device(device).type == "cuda" else "cpu"])


def parse_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ProfilingError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _values(name: str, values, allowed=None) -> tuple:
    """`values` as a non-empty tuple of positive integers, or of members of `allowed` where given."""
    values = tuple(values)
    if not values:
        raise ProfilingError(f"{name}: need at least one value")
    for v in values:
        if allowed is None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise ProfilingError(f"{name} must be positive integers, got {v!r}")
        if allowed is not None and v not in allowed:
            raise ProfilingError(f"unknown {name[:-1]} {v!r}; expected one of {', '.join(allowed)}")
    return values


def load_model(spec, device, dtype):
    """(name, model) from a preset name, a checkpoint directory or a model object."""
    name = spec
    if isinstance(spec, torch.nn.Module):
        name = getattr(spec, "source", None) or type(spec).__name__
    return Path(str(name)).name, load(spec, device=device, dtype=dtype)


def is_oom(exc: BaseException) -> bool:
    """Out of memory on a GPU or a failed CPU allocation."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(s in msg for s in (
        "out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory",
        "failed to allocate"))


def sig(x, digits: int = 6):
    """Floats to `digits` significant digits (timings are not more precise; keeps result files small);
    integers (FLOP and byte counts) unchanged."""
    if isinstance(x, float) and math.isfinite(x) and x != 0:
        return float(f"{x:.{digits}g}")
    return x


class _Point:
    """The columns one measurement's rows share, and its key."""

    def __init__(self, **cols):
        self.cols = cols
        self.key = results.row_key(cols, KEY_COLUMNS)

    def row(self, component, metric, value, unit, **extra):
        return dict(self.cols, component=component, metric=metric, value=sig(value), unit=unit, **extra)

    def time_row(self, component, s: Summary, warmup):
        """A timing in ms: the median as the value, with its spread and repetitions."""
        return self.row(component, "time", s.median * 1e3, "ms", median=sig(s.median * 1e3),
                        p10=sig(s.p10 * 1e3), p90=sig(s.p90 * 1e3), n_iter=s.n, warmup=warmup)


def analytic_rows(point: _Point, counts: dict, resident: dict) -> list[dict]:
    """FLOPs, bytes and intensity per component (`flops.component_counts`); weights and cache bytes."""
    rows = []
    for comp, c in counts.items():
        intensity = flops.arithmetic_intensity(c["flops"], c["bytes"])
        rows += [point.row(comp, "flops", c["flops"], "flop"), point.row(comp, "bytes", c["bytes"], "byte"),
                 point.row(comp, "intensity", intensity, "flop/byte")]
    return rows + [point.row(k, "memory", v, "byte") for k, v in resident.items()]


def attribution_rows(point: _Point, att: attribution.Attribution, counts: dict, resident: dict) -> list[dict]:
    """Time (ms), share, achieved FLOP/s and bandwidth per component; memory where the method measured it
    (the peak of the call: weights, caches and inputs, plus the call's rise)."""
    rows = []
    shares, mem, n = att.shares(), att.memory, att.n_iter
    for comp, s in att.summary().items():
        rows.append(point.time_row(comp, s, att.warmup))
        rows.append(point.row(comp, "share", shares[comp], "fraction", n_iter=n, warmup=att.warmup))
        if comp in counts and s.median > 0:
            rows.append(point.row(comp, "achieved_flops", counts[comp]["flops"] / s.median, "flop/s"))
            rows.append(point.row(comp, "achieved_bandwidth", counts[comp]["bytes"] / s.median, "byte/s"))
    rows += [point.row(c, "activation_peak", v, "byte") for c, v in mem.get("activation_peak", {}).items()]
    if "sum_of_allocations" in mem:  # per call, inclusive like the times
        allocs = dict(mem["sum_of_allocations"], total=mem["sum_of_allocations_total"])
        rows += [point.row(c, "sum_of_allocations", v / n, "byte") for c, v in allocs.items()]
    if "call_peak" in mem:
        rows.append(point.row("total", "activation_peak", mem["call_peak"], "byte"))
        inputs = memory.input_bytes(*(point.cols[k] for k in ("batch", "seqlen", "phase")))
        static = sum(resident.values()) + inputs
        rows.append(point.row("total", "peak_memory", static + mem["call_peak"], "byte"))
    return rows


CALL = "call"  # the method of the whole-call timings


def whole_call_times(model, phase, batch, seqlen, graphed: bool, warmup, iters, state_dtype) -> list[float]:
    """Seconds per call timed whole (`timing.time_call`, no range instrumented): the call the attribution
    methods time (`attribution.make_call`), or a decode step captured in a CUDA graph."""
    dev = next(model.parameters()).device
    if not graphed:
        fn, setup = attribution.make_call(model, phase, batch, seqlen, state_dtype=state_dtype)
        with torch.inference_mode():
            return time_call(fn, dev, warmup=warmup, iters=iters, setup=setup)
    step = GraphedStep(model, model.allocate_cache(batch, dtype=state_dtype))
    ids = torch.randint(0, model.config.vocab_size, (batch,), device=dev)
    return time_call(lambda: step(ids), dev, warmup=warmup, iters=iters)


def sweep(models=None, seqlens=None, batches=None, phases=PHASES, paths=("ref",), methods=("timers",), *,
          warmup=None, iters=None, out=None, device=None, dtype=None, state_dtype=torch.float32,
          cuda_graphs=None, call_totals=None, threads=None, tags=None, progress=True,
          flush_denormal=None) -> list[dict]:
    """Measure every (model, path, phase, batch, seqlen, method) point; return the new rows.

    models: preset names, checkpoint directories or models (default: `default_grid(device)`).
    paths: compute paths ("ref", "triton", "mamba_ssm"); methods: "timers" and/or "profiler".
    out: results CSV (rows appended point by point; existing points skipped; env.json written beside it);
    None keeps rows in memory only. cuda_graphs: also time CUDA-graph decode (default: on a GPU).
    call_totals: also time each call whole, nothing instrumented (method "call"; default: on a GPU).
    tags: extra column values for every row (e.g. ratio, criterion, mode of a pruned model).
    """
    device = default_device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProfilingError("device 'cuda' requested but no CUDA device is visible")
    grid = default_grid(device)
    given = dict(models=models, seqlens=seqlens, batches=batches, warmup=warmup, iters=iters)
    models, seqlens, batches, warmup, iters = (grid[k] if v is None else v for k, v in given.items())
    models = tuple(models)
    if not models:
        raise ProfilingError("models: need at least one preset or checkpoint directory")
    for m in models:  # a model object passes
        if isinstance(m, str) and m not in PRESETS and not Path(m).expanduser().is_dir():
            raise ProfilingError(f"unknown preset or checkpoint directory {m!r}; "
                                 f"presets: {', '.join(PRESETS)}")
    seqlens, batches = _values("seqlens", seqlens), _values("batches", batches)
    phases = _values("phases", phases, PHASES)
    paths = _values("paths", paths, PATHS)
    methods = _values("methods", methods, attribution.METHODS)
    if not isinstance(warmup, int) or warmup < 0 or not isinstance(iters, int) or iters < 1:
        raise ProfilingError(f"need warmup >= 0 and iters >= 1, got warmup={warmup!r}, iters={iters!r}")
    dtype = parse_dtype(dtype if dtype is not None else ("bfloat16" if device.type == "cuda" else "float32"))
    state_dtype = parse_dtype(state_dtype)
    cuda_graphs = device.type == "cuda" if cuda_graphs is None else bool(cuda_graphs)
    if cuda_graphs and device.type != "cuda":
        raise ProfilingError("CUDA-graph decode needs a CUDA device")
    call_totals = device.type == "cuda" if call_totals is None else bool(call_totals)
    flush_denormal = device.type == "cpu" if flush_denormal is None else bool(flush_denormal)
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ProfilingError(f"threads must be a positive integer, got {threads!r}")
    tags = dict(tags or {})
    unknown = set(tags) - set(PROFILE_COLUMNS)
    if unknown:
        raise ProfilingError(f"tags {', '.join(sorted(unknown))} are not result columns")
    out = Path(out) if out is not None else None
    if out is not None:  # fail early on a file of another schema
        header = results.read_header(out)
        if header is not None and header != PROFILE_COLUMNS:
            raise results.ResultsError(f"results file {out} has schema {','.join(header)}, expected "
                                       f"{','.join(PROFILE_COLUMNS)}")
    try:
        ops = {p: get_ops(p) for p in paths}  # fails early where a path is not available here
    except BackendUnavailable as e:
        raise ProfilingError(str(e)) from None
    impl = {p: getattr(ops[p], "impl", None) or p for p in paths}  # what each operator runs
    # whether the norms run as fused kernels (the ops offer `rmsnorm`): a key column, so rows measured before
    # the norms were fused are not taken for the same point
    fused = {p: getattr(ops[p], "rmsnorm", None) is not None for p in paths}
    names = {"dtype": str(dtype).replace("torch.", ""), "state_dtype": str(state_dtype).replace("torch.", "")}

    prev_threads, bar = torch.get_num_threads(), None
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        done = results.existing_keys(out, KEY_COLUMNS) if out is not None else set()
        ftz = set_flush_denormal(True) if flush_denormal else "off"
        if out is not None:
            results.write_env(out.parent, {"experiment": out.stem, "flush_denormal": ftz, "warmup": warmup,
                                           "iters": iters, "impl": impl}, device=device, dtype=dtype)
        new_rows: list[dict] = []
        per_setting = sum(len(_jobs(p, methods, call_totals, cuda_graphs)) for p in phases)
        total = len(models) * len(paths) * len(batches) * len(seqlens) * per_setting
        bar = tqdm(total=total, desc="profile", disable=not progress, unit="pt")
        for spec in models:
            name, model = load_model(spec, device, dtype)
            cfg = model.config
            n = cfg.uniform_d_state  # the d_state column: N, or its mean over layers after a per-layer prune
            d_state = n if n is not None else round(sum(cfg.d_states) / len(cfg.d_states), 2)
            for path, phase, batch, seqlen in itertools.product(paths, phases, batches, seqlens):
                model.backend = path
                base = dict(model=name, arch=cfg.arch, path=path, fused=fused[path], cuda_graph=False,
                            phase=phase, batch=batch, seqlen=seqlen, d_state=d_state, ratio=0.0,
                            criterion="none", mode="dense", **names, device=results.device_type(device),
                            threads=torch.get_num_threads()) | tags
                counts = flops.component_counts(cfg, batch, seqlen, phase, dtype=dtype,
                                                state_dtype=state_dtype)
                cache = memory.cache_bytes(model, batch, state_dtype)
                resident = {"weights": memory.weight_bytes(model), **cache}
                for method, graphed in _jobs(phase, methods, call_totals, cuda_graphs):
                    point = _Point(**dict(base, method=method, cuda_graph=graphed))
                    bar.set_postfix_str(f"{name} {path} {phase} B={batch} L={seqlen} {method}"
                                        + (" graph" if graphed else ""), refresh=False)
                    if point.key not in done:
                        rows = _measure(point, graphed, model, counts, resident, warmup, iters, state_dtype)
                        if out is not None:
                            results.append_rows(out, rows, PROFILE_COLUMNS)
                        done.add(point.key)
                        new_rows.extend(rows)
                    bar.update()
            del model
            gc.collect()
    finally:
        if bar is not None:
            bar.close()
        torch.set_num_threads(prev_threads)
        if flush_denormal:
            torch.set_flush_denormal(False)  # the calling thread's flag; workers keep theirs
    return new_rows


def _jobs(phase, methods, call_totals: bool, cuda_graphs: bool) -> list[tuple[str, bool]]:
    """(method, CUDA graph) of every measurement of one point, in order."""
    jobs = [("analytic", False)] + [(m, False) for m in methods]
    if call_totals:
        jobs.append((CALL, False))
    if phase == "decode" and cuda_graphs:
        jobs.append(("timers", True))
    return jobs


def _measure(point: _Point, graphed: bool, model, counts, resident, warmup, iters, state_dtype) -> list[dict]:
    """The rows of one measurement; running out of memory is a row of metric "oom"."""
    method, call = point.cols["method"], [point.cols[k] for k in ("phase", "batch", "seqlen")]
    try:
        if method == "analytic":
            return analytic_rows(point, counts, resident)
        if graphed or method == CALL:
            secs = whole_call_times(model, *call, graphed, warmup, iters, state_dtype)
            return [point.time_row("total", Summary.of(secs), warmup)]
        att = attribution.attribute(model, *call, method=method, warmup=warmup, iters=iters,
                                    state_dtype=state_dtype)
        return attribution_rows(point, att, counts, resident)
    except PerfmambaError:
        raise
    except (RuntimeError, MemoryError) as e:
        if not is_oom(e):
            raise
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return [point.row("total", "oom", math.nan, "", n_iter=0, warmup=warmup)]
    finally:
        sync(next(model.parameters()).device)


def to_frame(rows):
    """Rows → DataFrame with the profile columns in order."""
    df = pd.DataFrame(list(rows))
    return df.reindex(columns=PROFILE_COLUMNS) if not df.empty else pd.DataFrame(columns=PROFILE_COLUMNS)
