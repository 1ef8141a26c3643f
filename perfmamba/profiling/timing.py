"""Timing: a synchronised wall clock or CUDA events (`Stopwatch`), timed calls (`timed_calls`, `time_call`),
summary statistics, the benchmarks' timer (`bench`: `triton.testing.do_bench` on a GPU) and CUDA-graph decode.

On CPU a call is timed with `time.perf_counter` (CPU ops return when done); on a GPU with CUDA events recorded
on the current stream around it, read after one synchronisation. One spread convention everywhere: the median
with the 10th and 90th percentiles, whichever timer produced the samples.
"""
from __future__ import annotations

import gc
import io
import os
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch.profiler import record_function

from ..models.graphs import GraphedStep


def sync(device) -> None:
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@contextmanager
def no_gc():
    """Python's cyclic garbage collector off while timing (as `timeit` does): a collection landing in one
    repetition would be charged to whatever component was running."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def quiet_native_stderr():
    """Silence file descriptor 2 inside the block, where native code writes below Python (torch.profiler's
    tracer announces every start and stop there), while Python's own stderr (warnings, progress bars) keeps
    writing where it did. Where fd 2 cannot be redirected, nothing changes."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    old = sys.stderr
    try:
        on_fd2 = old.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        on_fd2 = False  # e.g. a notebook kernel's stream: not written through fd 2
    py = None
    try:
        if on_fd2:
            py = os.fdopen(os.dup(saved), "w", buffering=1, errors="backslashreplace",
                           encoding=getattr(old, "encoding", None) or "utf-8")
            sys.stderr = py
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if py is not None:
            sys.stderr = old
            py.close()


def set_flush_denormal(on: bool = True) -> str:
    """Flush denormal floats to zero on CPU; returns "on", "partial", "off" or "unsupported".

    The flag (x86 FTZ/DAZ) is per thread and torch sets it on the calling thread only; the intra-op worker
    threads inherit it only if they are created afterwards. So call this before the first parallel op of the
    process; "partial" means some worker threads were already running (probed by multiplying 1e-30 by
    1e-10 over a tensor large enough to be split across threads).
    """
    if not torch.set_flush_denormal(on):
        return "unsupported"
    if not on:
        return "off"
    x = torch.full((1 << 20,), 1e-30, dtype=torch.float32)
    return "on" if not bool((x * 1e-10).any()) else "partial"


def percentile(xs, q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty sequence (numpy's default method)."""
    xs = sorted(xs)
    if not xs:
        raise ValueError("percentile of an empty sequence")
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class Summary:
    median: float
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, xs) -> "Summary":
        xs = list(xs)
        return cls(statistics.median(xs), percentile(xs, 10), percentile(xs, 90), len(xs))


class Stopwatch:
    """Elapsed time of a region: CUDA events on a GPU, perf_counter otherwise. Read `.elapsed()` (seconds)
    only after the device has been synchronised."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self._marks = [torch.cuda.Event(enable_timing=True) for _ in range(2)] if self.cuda else [0.0, 0.0]

    def _mark(self, i: int):
        if self.cuda:
            self._marks[i].record()
        else:
            self._marks[i] = time.perf_counter()
        return self

    def start(self):
        return self._mark(0)

    def stop(self):
        return self._mark(1)

    def elapsed(self) -> float:
        start, end = self._marks
        return start.elapsed_time(end) / 1e3 if self.cuda else end - start


def warm_up(fn, setup, warmup: int, device) -> None:
    """`warmup` untimed calls of `fn()`, each after `setup()` (which may restore a cache a call advances)."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    sync(device)


def timed_calls(fn, setup, iters: int, device, label: str | None = None):
    """Seconds of each of `iters` calls of `fn()`, yielded as each finishes. `setup()` (untimed) runs before
    each call, e.g. to reset a cache; with a `label`, each call runs in a `record_function` range of that
    name (one repetition of a trace)."""
    for _ in range(iters):
        if setup is not None:
            setup()
        sync(device)
        with record_function(label) if label else nullcontext():
            sw = Stopwatch(device).start()
            fn()
            sw.stop()
            sync(device)
        yield sw.elapsed()


def time_call(fn, device="cpu", warmup: int = 3, iters: int = 10, setup=None) -> list[float]:
    """Seconds per call of `fn()` for `iters` timed calls after `warmup` untimed ones (`timed_calls`)."""
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got {warmup}, {iters}")
    warm_up(fn, setup, warmup, device)
    with no_gc():
        return list(timed_calls(fn, setup, iters, device))


def bench(fn, device="cuda", *, warmup: int = 1, iters: int = 5, warmup_ms: float = 100,
          rep_ms: float = 500) -> dict:
    """{"ms": median, "p10", "p90", "how"} milliseconds of `fn()`. On a GPU `triton.testing.do_bench` (CUDA
    events, L2 flushed between repetitions, warm-up excluded, as many repetitions as fit in `rep_ms`); on a
    CPU `time_call` with `warmup` and `iters` calls."""
    if torch.device(device).type == "cuda":
        import triton.testing

        med, lo, hi = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.1, 0.9])
        return {"ms": med, "p10": lo, "p90": hi, "how": "triton.testing.do_bench"}
    s = Summary.of(time_call(fn, device, warmup=warmup, iters=iters))
    return {"ms": s.median * 1e3, "p10": s.p10 * 1e3, "p90": s.p90 * 1e3, "how": f"perf_counter, {s.n} calls"}


def copy_bandwidth(nbytes: int = 2 << 30, device="cuda") -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read and written (2 · nbytes per copy)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = bench(lambda: dst.copy_(src), device, warmup_ms=50, rep_ms=300)
    return 2 * nbytes / (t["ms"] * 1e-3)


def decode_floor_ms(weight_bytes: int, state_bytes: int, bandwidth: float) -> float:
    """Lower bound of one decode step: read every weight once, read and write the recurrent state once:
    (weights + 2 · state) / bandwidth (the memory-bound floor of ../shared/gpu/README.md)."""
    return (weight_bytes + 2 * state_bytes) / bandwidth * 1e3


def decode_latency(model, batch_size: int, *, steps: int = 100, repeats: int = 5, prompt_len: int = 16,
                   cache_dtype: torch.dtype | None = None, seed: int = 0) -> dict:
    """Per-token decode latency of `model` with one CUDA graph per step (removing the Python and launch
    overhead that dominates eager decoding of small models), timed with CUDA events.

    A random prompt of `prompt_len` tokens fills the cache (decode cost does not depend on position for an
    SSM), then `repeats` runs of `steps` replays are timed; returns the median and p10/p90 ms per token, plus
    the cache bytes (the state traffic of a step is twice that: read and write).
    """
    p = next(model.parameters())
    cache = model.allocate_cache(batch_size, dtype=cache_dtype or p.dtype)
    g = torch.Generator(device=p.device).manual_seed(seed)
    prompt = torch.randint(0, model.config.vocab_size, (batch_size, prompt_len), device=p.device, generator=g)
    with torch.inference_mode():
        model(prompt, cache)

    step = GraphedStep(model, cache)
    ids = prompt[:, -1].clone()
    for _ in range(10):
        step(ids)

    def replays():  # ids unchanged: the same work as `step(ids)` without the host copy
        for _ in range(steps):
            step.graph.replay()

    s = Summary.of([t * 1e3 / steps for t in time_call(replays, p.device, warmup=0, iters=repeats)])
    nbytes = cache.nbytes()
    return {"ms_per_token": s.median, "p10": s.p10, "p90": s.p90, "steps": steps, "repeats": repeats,
            "ssm_state_bytes": nbytes["ssm_state"], "conv_state_bytes": nbytes["conv_state"]}
