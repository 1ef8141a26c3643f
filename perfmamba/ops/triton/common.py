"""Pieces shared by the Triton kernels: numerically careful softplus and Δ, launch checks, the input error."""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from triton import knobs

from ...errors import KernelInputError
from ..selective_scan import has_dt_limit

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


@triton.jit
def head_delta(dt, dt_bias_ptr, head, dt_min, dt_max,
               HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, HAS_DT_LIMIT: tl.constexpr):
    """Δ of one head from float32 dt: + dt_bias[head], softplus, clamp to [dt_min, dt_max], each by its
    flag."""
    if HAS_DT_BIAS:
        dt += tl.load(dt_bias_ptr + head).to(tl.float32)
    if DT_SOFTPLUS:
        dt = softplus(dt)
    if HAS_DT_LIMIT:
        dt = tl.minimum(tl.maximum(dt, dt_min), dt_max)
    return dt


@triton.jit
def block_offsets(pid, BLOCK: tl.constexpr, size):
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    return offs, offs < size


@triton.jit
def update_state(s_ptrs, mask, dA, dBx, C):
    """h ← dA ⊙ h + dBx on a (rows, N) state tile, stored in the state's dtype; returns Σ_n h C computed from
    the state as stored, like the references."""
    state = tl.load(s_ptrs, mask=mask, other=0.0).to(tl.float32)
    state = (state * dA + dBx).to(s_ptrs.dtype.element_ty)
    tl.store(s_ptrs, state, mask=mask)
    return tl.sum(state.to(tl.float32) * C, axis=1)


@triton.jit
def skip_gate_store(y, x, D_ptr, z_ptr, out_ptr, pid_b, offs_d, mask_d, s_z_b, s_z_d, s_o_b, s_o_d,
                    HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """The end of a Mamba-1 decode step: y + D ⊙ x, times silu(z), stored in out's dtype."""
    if HAS_D:
        y += x * tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + pid_b * s_z_b + offs_d * s_z_d, mask=mask_d, other=0.0).to(tl.float32)
        y *= z * tl.sigmoid(z)
    tl.store(out_ptr + pid_b * s_o_b + offs_d * s_o_d, y.to(out_ptr.dtype.element_ty), mask=mask_d)


def dt_limit_args(dt_limit):
    """(HAS_DT_LIMIT, dt_min, dt_max) for a kernel; the bounds as floats, so the kernel's types stay fixed."""
    if not has_dt_limit(dt_limit):
        return False, 0.0, 0.0
    return True, float(dt_limit[0]), float(dt_limit[1])


def check_shapes(**expected):
    """Raise KernelInputError for the first input whose shape differs: name=(tensor, shape), a None tensor
    being an absent optional input."""
    for name, (t, shape) in expected.items():
        if t is not None and tuple(t.shape) != tuple(shape):
            raise KernelInputError(f"{name} must be {tuple(shape)}, got {tuple(t.shape)}")


def launch_guard(*tensors):
    """Check that the tensors are on one device a kernel can take (compiled kernels need CUDA tensors, the
    interpreter takes CPU tensors); returns the context that launches on that GPU, not the current one."""
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise KernelInputError(f"tensors are on several devices: {sorted(map(str, devices))}")
    dev = devices.pop()
    if dev.type == "cuda":
        return torch.cuda.device(dev)
    if not INTERPRET:
        raise KernelInputError(
            f"triton kernels need CUDA tensors, got {dev.type} (set TRITON_INTERPRET=1 before importing "
            "perfmamba to run them on CPU)"
        )
    return contextlib.nullcontext()


def skip_strides(D, h, p):
    """Strides (head, channel) of the skip D, per head (h,) or per channel (h, p); zeros without D."""
    if D is None:
        return 0, 0
    if D.shape not in ((h,), (h, p)):
        raise KernelInputError(f"D must be ({h},) or ({h}, {p}), got {tuple(D.shape)}")
    return (D.stride(0), 0) if D.dim() == 1 else tuple(D.stride())


def empty_like_order(x):
    """An empty (b, d, l) tensor like x in x's memory order: channel-last inputs give channel-last outputs, so
    the models' next `transpose(1, 2)` (to (b, l, d) for out_proj / x_proj) is free."""
    b, d, l = x.shape
    if x.stride(1) == 1 and x.stride(2) != 1:
        return torch.empty(b, l, d, device=x.device, dtype=x.dtype).transpose(1, 2)
    return torch.empty(b, d, l, device=x.device, dtype=x.dtype)


def rows(t, d):
    """(rows, d) view with unit column stride, copying only if the layout needs it."""
    t2 = t.reshape(-1, d)
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


def strides(t, n):
    """The strides of `t`, or n zeros when t is None (an absent optional input)."""
    return tuple(t.stride()) if t is not None else (0,) * n


def row_warps(block: int) -> int:
    """Warps for a program that reduces one row of `block` lanes: one per 256 lanes, 1 to 16."""
    return min(16, max(1, block // 256))


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(1, int(n)))
