"""Pieces shared by the Triton kernels: numerically careful softplus, launch checks, the input error."""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from triton import knobs

from ...errors import KernelInputError

# triton.jit decides at decoration time whether a kernel is compiled or interpreted (TRITON_INTERPRET=1);
# the interpreter runs the same kernels on CPU tensors, which is how CPU CI exercises them.
INTERPRET = bool(knobs.runtime.interpret)


@triton.jit
def softplus(x):
    """torch.nn.functional.softplus (threshold 20) in float32.

    log(1 + e^x) loses e^x below ~1e-7 when computed naively (and ~1e-3 relative accuracy at x = -10), so
    log1p is evaluated with Goldberg's correction log1p(y) = log(1 + y) · y / ((1 + y) - 1), exact to a few ulp.
    """
    e = tl.exp(tl.minimum(x, 20.0))
    u = 1.0 + e
    small = u == 1.0  # e below half an ulp of 1: log1p(e) = e
    log1p_e = tl.where(small, e, tl.log(u) * (e / tl.where(small, 1.0, u - 1.0)))
    return tl.where(x > 20.0, x, log1p_e)


def check_launchable(*tensors):
    """Compiled kernels need CUDA tensors; the interpreter takes CPU tensors. All tensors on one device."""
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise KernelInputError(f"tensors are on several devices: {sorted(map(str, devices))}")
    dev = devices.pop()
    if dev.type != "cuda" and not INTERPRET:
        raise KernelInputError(
            f"triton kernels need CUDA tensors, got {dev.type} (set TRITON_INTERPRET=1 before importing "
            "perfmamba to run them on CPU)"
        )
    return dev


def device_guard(device: torch.device):
    """Launch on the tensors' GPU, not the current one (multi-GPU machines)."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


def strides(t, n):
    """The strides of `t`, or n zeros when t is None (an absent optional input)."""
    return tuple(t.stride()) if t is not None else (0,) * n


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, int(n)))
