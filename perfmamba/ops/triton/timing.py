"""GPU timing primitives shared by the benchmarks: kernel timing, copy bandwidth, the decode bandwidth floor.

Timings use `triton.testing.do_bench` (CUDA events, L2 flushed between repetitions, warm-up excluded) and
report the median with the 20th/80th percentiles as spread.
"""
from __future__ import annotations

import torch
import triton.testing


def bench(fn, *, warmup_ms: float = 100, rep_ms: float = 500) -> dict:
    """Median, p20, p80 milliseconds of `fn()` on the current CUDA device."""
    med, lo, hi = triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, quantiles=[0.5, 0.2, 0.8])
    return {"ms": med, "p20": lo, "p80": hi, "warmup_ms": warmup_ms, "rep_ms": rep_ms}


def copy_bandwidth(nbytes: int = 2 << 30, device="cuda") -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written (2 · nbytes per copy)."""
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = bench(lambda: dst.copy_(src), warmup_ms=50, rep_ms=300)
    return 2 * nbytes / (t["ms"] * 1e-3)


def decode_floor_ms(weight_bytes: int, state_bytes: int, bandwidth: float) -> float:
    """Lower bound of one decode step: read every weight once, read and write the recurrent state once.

    (weights + 2 · state) / bandwidth, the memory-bound floor used in ../shared/gpu/README.md.
    """
    return (weight_bytes + 2 * state_bytes) / bandwidth * 1e3


def weight_bytes(model) -> int:
    """Bytes of the unique parameters (a tied embedding counted once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())
