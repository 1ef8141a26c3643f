"""Profiling sweeps: models × code paths × phases × batches × sequence lengths → tidy rows.

`sweep(...)` measures every point with the requested attribution methods, adds the analytic FLOPs/bytes
and the resident memory (method "analytic"), and appends the rows to a results CSV as each point finishes,
with `env.json` beside it; points already in the file are skipped, so a killed sweep resumes where it
stopped. Running out of memory (GPU or CPU) is a row of metric "oom", and the sweep goes on. On a GPU,
decode is also timed with the step captured in a CUDA graph (``cuda_graph=True``, the total only: a graph
has no component ranges), and every call is also timed whole with no range instrumented (method "call",
the total only): the timers' CUDA events around each of a few hundred ranges are host work that an eager
GPU call can wait on, so their total is not the call's time. On CPU the timers cost a few microseconds per
range and "call" is off unless asked for.

On CPU, denormal floats are flushed to zero during the sweep (`timing.set_flush_denormal`; "on" or
"partial" recorded in env.json): the scans' decays exp(ΔA) underflow into denormals, which x86 cores
process many times slower than normal floats, a cost GPUs do not have (mamba-130m random init, prefill
B=1 L=64, one thread: 522 ms → 380 ms). The flag is per thread; it reaches torch's worker threads only when
set before the process's first parallel op, which the `perfmamba profile` command does.

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
GPU_MODELS = ("mamba-130m", "mamba2-130m")
GPU_SEQLENS = (64, 512, 1024, 2048, 4096, 8192, 16384)
GPU_BATCHES = (1, 8, 64)
CPU_MODELS = ("mamba-small", "mamba2-small", "mamba-130m", "mamba2-130m")
CPU_SEQLENS = (64, 128)
CPU_BATCHES = (1,)
PHASES = flops.PHASES
PATHS = ("ref", "triton", "mamba_ssm")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "float64": torch.float64, "fp64": torch.float64}


def default_grid(device) -> dict:
    """Sequence lengths, batches, models, warmup and iterations suited to the device."""
    if torch.device(device).type == "cuda":
        return dict(models=GPU_MODELS, seqlens=GPU_SEQLENS, batches=GPU_BATCHES, warmup=3, iters=10)
    return dict(models=CPU_MODELS, seqlens=CPU_SEQLENS, batches=CPU_BATCHES, warmup=2, iters=5)


def parse_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ProfilingError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).replace("torch.", "")


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


def _check_model_spec(spec) -> None:
    if isinstance(spec, str) and spec not in PRESETS and not Path(spec).expanduser().is_dir():
        raise ProfilingError(f"unknown preset or checkpoint directory {spec!r}; "
                             f"presets: {', '.join(PRESETS)}")


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


def _d_state_value(cfg):
    n = cfg.uniform_d_state
    return n if n is not None else round(sum(cfg.d_states) / len(cfg.d_states), 2)


def sig(x, digits: int = 6):
    """Floats to `digits` significant digits (timings are not more precise; keeps result files small);
    integers (FLOP and byte counts) unchanged."""
    if isinstance(x, float) and math.isfinite(x) and x != 0:
        return float(f"{x:.{digits}g}")
    return x


class _Point:
    """Shared columns of one measurement."""

    def __init__(self, **cols):
        self.cols = cols

    def row(self, component, metric, value, unit, summary: Summary | None = None, scale=1.0, n_iter=None,
            warmup=None):
        r = dict(self.cols, component=component, metric=metric, value=sig(value), unit=unit)
        if summary is not None:
            r.update(median=sig(summary.median * scale), p10=sig(summary.p10 * scale),
                     p90=sig(summary.p90 * scale), n_iter=summary.n)
        if n_iter is not None:
            r["n_iter"] = n_iter
        if warmup is not None:
            r["warmup"] = warmup
        return r

    def time_row(self, component, summary: Summary, warmup):
        """A timing in ms: the median as the value, with its spread and repetitions."""
        return self.row(component, "time", summary.median * 1e3, "ms", summary, scale=1e3, warmup=warmup)

    def key(self):
        return results.row_key(self.cols, KEY_COLUMNS)


def analytic_rows(point: _Point, model, counts: dict, state_dtype) -> list[dict]:
    """FLOPs, bytes and intensity per component (`flops.component_counts`); weights and cache bytes."""
    rows = []
    for comp, c in counts.items():
        rows.append(point.row(comp, "flops", c["flops"], "flop"))
        rows.append(point.row(comp, "bytes", c["bytes"], "byte"))
        intensity = flops.arithmetic_intensity(c["flops"], c["bytes"])
        rows.append(point.row(comp, "intensity", intensity, "flop/byte"))
    rows.append(point.row("weights", "memory", memory.weight_bytes(model), "byte"))
    for k, v in memory.cache_bytes(model, point.cols["batch"], state_dtype).items():
        rows.append(point.row(k, "memory", v, "byte"))
    return rows


def attribution_rows(point: _Point, att: attribution.Attribution, counts: dict, static_bytes: int
                     ) -> list[dict]:
    """Time (ms), share, achieved FLOP/s and bandwidth per component; memory where the method measured it."""
    rows = []
    summ, shares = att.summary(), att.shares()
    for comp, s in summ.items():
        rows.append(point.time_row(comp, s, att.warmup))
        rows.append(point.row(comp, "share", shares[comp], "fraction", n_iter=att.n_iter, warmup=att.warmup))
        if comp in counts and s.median > 0:
            rows.append(point.row(comp, "achieved_flops", counts[comp]["flops"] / s.median, "flop/s"))
            rows.append(point.row(comp, "achieved_bandwidth", counts[comp]["bytes"] / s.median, "byte/s"))
    mem = att.memory
    for comp, v in mem.get("activation_peak", {}).items():
        rows.append(point.row(comp, "activation_peak", v, "byte"))
    if "sum_of_allocations" in mem:
        n = mem.get("n_iter", att.n_iter)
        for comp, v in mem["sum_of_allocations"].items():  # per call, inclusive like the times
            rows.append(point.row(comp, "sum_of_allocations", v / n, "byte"))
        rows.append(point.row("total", "sum_of_allocations", mem["sum_of_allocations_total"] / n, "byte"))
    if "call_peak" in mem:
        rows.append(point.row("total", "activation_peak", mem["call_peak"], "byte"))
        rows.append(point.row("total", "peak_memory", static_bytes + mem["call_peak"], "byte"))
    elif "peak_memory" in mem:
        rows.append(point.row("total", "peak_memory", mem["peak_memory"], "byte"))
    return rows


def cuda_graph_rows(point: _Point, model, batch, warmup, iters, state_dtype) -> list[dict]:
    """A decode step captured in a CUDA graph, timed whole."""
    cache = model.allocate_cache(batch, dtype=state_dtype)
    dec = GraphedStep(model, cache)
    dev = cache.ssm_states[0].device
    ids = torch.randint(0, model.config.vocab_size, (batch,), device=dev)
    secs = time_call(lambda: dec(ids), dev, warmup=warmup, iters=iters)
    return [point.time_row("total", Summary.of(secs), warmup)]


CALL = "call"  # the method of the whole-call timings


def call_rows(point: _Point, model, phase, batch, seqlen, warmup, iters, state_dtype) -> list[dict]:
    """The call timed whole (`timing.time_call`: CUDA events or the wall clock around it, no range
    instrumented), the same call as the attribution methods time (`attribution.make_call`)."""
    fn, setup, _ = attribution.make_call(model, phase, batch, seqlen, state_dtype=state_dtype)
    with torch.inference_mode():
        secs = time_call(fn, next(model.parameters()).device, warmup=warmup, iters=iters, setup=setup)
    return [point.time_row("total", Summary.of(secs), warmup)]


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
    models = tuple(models) if models is not None else grid["models"]
    if not models:
        raise ProfilingError("models: need at least one preset or checkpoint directory")
    for m in models:
        _check_model_spec(m)  # a model object passes
    seqlens = _values("seqlens", seqlens if seqlens is not None else grid["seqlens"])
    batches = _values("batches", batches if batches is not None else grid["batches"])
    phases = _values("phases", phases, PHASES)
    paths = _values("paths", paths, PATHS)
    methods = _values("methods", methods, attribution.METHODS)
    warmup = grid["warmup"] if warmup is None else warmup
    iters = grid["iters"] if iters is None else iters
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
    impl = {p: getattr(_ops(p), "impl", None) or p for p in paths}  # what each operator runs; fails early

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
            for path in paths:
                model.backend = path
                # whether the norms run as fused kernels (the ops offer `rmsnorm`): a key column, so rows
                # measured before the norms were fused are not taken for the same point
                fused = getattr(_ops(path), "rmsnorm", None) is not None
                for phase, batch, seqlen in itertools.product(phases, batches, seqlens):
                    base = dict(model=name, arch=cfg.arch, path=path, fused=fused, cuda_graph=False,
                                phase=phase, batch=batch, seqlen=seqlen, d_state=_d_state_value(cfg),
                                ratio=0.0, criterion="none", mode="dense", dtype=_dtype_name(dtype),
                                state_dtype=_dtype_name(state_dtype), device=results.device_type(device),
                                threads=torch.get_num_threads())
                    base.update(tags)
                    counts = flops.component_counts(cfg, batch, seqlen, phase, dtype=dtype,
                                                    state_dtype=state_dtype)
                    static = (memory.weight_bytes(model)
                              + sum(memory.cache_bytes(model, batch, state_dtype).values())
                              + memory.input_bytes(batch, seqlen, phase))
                    for method, graphed in _jobs(phase, methods, call_totals, cuda_graphs):
                        point = _Point(**dict(base, method=method, cuda_graph=graphed))
                        bar.set_postfix_str(f"{name} {path} {phase} B={batch} L={seqlen} {method}"
                                            + (" graph" if graphed else ""), refresh=False)
                        if point.key() in done:
                            bar.update()
                            continue
                        rows = _measure(point, graphed, model, counts, static, warmup, iters, state_dtype)
                        if out is not None:
                            results.append_rows(out, rows, PROFILE_COLUMNS)
                        done.add(point.key())
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


def _ops(path):
    """The op namespace of a compute path; ProfilingError where it is not available here."""
    try:
        return get_ops(path)
    except BackendUnavailable as e:
        raise ProfilingError(str(e)) from None


def _jobs(phase, methods, call_totals: bool, cuda_graphs: bool) -> list[tuple[str, bool]]:
    """(method, CUDA graph) of every measurement of one point, in order."""
    jobs = [("analytic", False)] + [(m, False) for m in methods]
    if call_totals:
        jobs.append((CALL, False))
    if phase == "decode" and cuda_graphs:
        jobs.append(("timers", True))
    return jobs


def _measure(point: _Point, graphed: bool, model, counts, static, warmup, iters, state_dtype) -> list[dict]:
    """The rows of one measurement; running out of memory is a row of metric "oom"."""
    method, phase, batch, seqlen = (point.cols[k] for k in ("method", "phase", "batch", "seqlen"))
    try:
        if method == "analytic":
            return analytic_rows(point, model, counts, state_dtype)
        if graphed:
            return cuda_graph_rows(point, model, batch, warmup, iters, state_dtype)
        if method == CALL:
            return call_rows(point, model, phase, batch, seqlen, warmup, iters, state_dtype)
        att = attribution.attribute(model, phase, batch, seqlen, method=method, warmup=warmup, iters=iters,
                                    state_dtype=state_dtype)
        return attribution_rows(point, att, counts, static)
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
