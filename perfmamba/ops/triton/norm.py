"""Fused RMSNorm and Mamba-2's gated RMSNorm in Triton: one read of the inputs, one write of the output, where
the torch versions (`perfmamba.ops.norm`) make ~6 float32 passes over the activations (hundreds of MB per
layer and pass at Mamba2-130M prefill B=8, L=8192). Same rounding as the references.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import KernelInputError, launch_guard, next_pow2, row_warps, rows, strides


@triton.jit
def rms_weight(v, n, eps, w_ptr, cols, mask, like_ptr):
    """w · round(v / sqrt(Σv² / n + eps)) in float32, rounded to like_ptr's dtype before the weight, as the
    references do. v: float32 row (masked lanes 0)."""
    rstd = 1.0 / tl.sqrt(tl.sum(v * v, axis=0) / n + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    return w * (v * rstd).to(like_ptr.dtype.element_ty).to(tl.float32)


@triton.jit
def _rmsnorm_kernel(x_ptr, z_ptr, w_ptr, out_ptr, ncols, group_size, eps, s_x_row, s_z_row, s_o_row,
                    HAS_Z: tl.constexpr, BLOCK: tl.constexpr):
    """One program per (row, group): out = w · round(v / sqrt(mean(v²) + eps)), v = x (· silu(z))."""
    row = tl.program_id(0).to(tl.int64)
    grp = tl.program_id(1)
    cols = grp * group_size + tl.arange(0, BLOCK)
    mask = (tl.arange(0, BLOCK) < group_size) & (cols < ncols)
    v = tl.load(x_ptr + row * s_x_row + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + row * s_z_row + cols, mask=mask, other=0.0).to(tl.float32)
        v = v * z * tl.sigmoid(z)
    out = rms_weight(v, group_size, eps, w_ptr, cols, mask, x_ptr)
    tl.store(out_ptr + row * s_o_row + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def rmsnorm(x, weight, eps=1e-5):
    """x (..., d) → weight · x / sqrt(mean(x²) + eps), as `perfmamba.models.common.RMSNorm`."""
    return gated_rmsnorm(x, None, weight, eps, x.shape[-1])


def gated_rmsnorm(y, z, weight, eps, group_size):
    """Mamba-2's output norm: rmsnorm(y ⊙ silu(z)) per group of `group_size` channels, as
    `perfmamba.models.common.gated_rmsnorm` (same signature); z None: no gate."""
    d = y.shape[-1]
    if weight.shape != (d,) or (z is not None and z.shape != y.shape) or d % group_size:
        raise KernelInputError(f"x (..., {d}), z like x, weight ({d},) and a group size dividing {d} "
                               f"expected, got {tuple(y.shape)}, {None if z is None else tuple(z.shape)}, "
                               f"{tuple(weight.shape)}, {group_size}")
    guard = launch_guard(y, z, weight)
    out = torch.empty(y.shape, device=y.device, dtype=torch.promote_types(weight.dtype, y.dtype))
    y2, z2, o2 = rows(y, d), (rows(z, d) if z is not None else None), out.view(-1, d)
    if y2.shape[0] == 0:
        return out
    block = next_pow2(group_size)
    with guard:
        _rmsnorm_kernel[(y2.shape[0], d // group_size)](
            y2, z2, weight, o2, d, group_size, float(eps), y2.stride(0), strides(z2, 2)[0],
            o2.stride(0), HAS_Z=z is not None, BLOCK=block, num_warps=row_warps(block),
        )
    return out
