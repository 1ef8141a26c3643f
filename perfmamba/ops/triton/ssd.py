"""Mamba-2 in Triton: one decode step (`ssd_state_update`) in one kernel, and the prefill dispatch (`ssd`).

The decode kernel follows mamba-ssm's `selective_state_update` with tied head dimension
(state-spaces/mamba@v2.2.4, mamba_ssm/ops/triton/selective_state_update.py, TIE_HDIM): Δ, A, dt_bias are per
head, so exp(Δ A) is one scalar per program. Unlike upstream, d_state need not be a power of two (masked
lanes), and dt_limit is applied.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ..ssd import ssd_chunked
from .chunked_ssd import chunked_ssd
from .common import (INTERPRET, KernelInputError, block_offsets, check_shapes, dt_limit_args, head_delta,
                     launch_guard, next_pow2, skip_strides, update_state)


@triton.jit
def _ssd_state_update_kernel(
    state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, dt_bias_ptr, out_ptr,
    headdim, dstate, heads_per_group, dt_min, dt_max,
    s_s_b, s_s_h, s_s_p, s_s_n, s_x_b, s_x_h, s_x_p, s_dt_b, s_dt_h,
    s_B_b, s_B_g, s_B_n, s_C_b, s_C_g, s_C_n, s_D_h, s_D_p, s_o_b, s_o_h, s_o_p,
    HAS_D: tl.constexpr, HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, HAS_DT_LIMIT: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_h = tl.program_id(1)
    offs_p, mask_p = block_offsets(tl.program_id(2), BLOCK_P, headdim)
    offs_n, mask_n = block_offsets(0, BLOCK_N, dstate)
    grp = pid_h // heads_per_group

    dt = tl.load(dt_ptr + pid_b * s_dt_b + pid_h * s_dt_h).to(tl.float32)
    dt = head_delta(dt, dt_bias_ptr, pid_h, dt_min, dt_max, HAS_DT_BIAS, DT_SOFTPLUS, HAS_DT_LIMIT)
    dA = tl.exp(dt * tl.load(A_ptr + pid_h).to(tl.float32))  # one scalar per head

    x = tl.load(x_ptr + pid_b * s_x_b + pid_h * s_x_h + offs_p * s_x_p, mask=mask_p, other=0.0).to(tl.float32)
    B = tl.load(B_ptr + pid_b * s_B_b + grp * s_B_g + offs_n * s_B_n, mask=mask_n, other=0.0).to(tl.float32)
    C = tl.load(C_ptr + pid_b * s_C_b + grp * s_C_g + offs_n * s_C_n, mask=mask_n, other=0.0).to(tl.float32)
    s_ptrs = state_ptr + pid_b * s_s_b + pid_h * s_s_h + offs_p[:, None] * s_s_p + offs_n[None, :] * s_s_n
    mask_pn = mask_p[:, None] & mask_n[None, :]
    y = update_state(s_ptrs, mask_pn, dA, (dt * x)[:, None] * B[None, :], C[None, :])
    if HAS_D:
        y += x * tl.load(D_ptr + pid_h * s_D_h + offs_p * s_D_p, mask=mask_p, other=0.0).to(tl.float32)
    tl.store(out_ptr + pid_b * s_o_b + pid_h * s_o_h + offs_p * s_o_p, y.to(out_ptr.dtype.element_ty), mask=mask_p)


def ssd_state_update(state, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=None):
    """Triton version of `perfmamba.ops.ssd_state_update_ref`: one Mamba-2 decode step in one kernel.

    state: (b, h, p, n) updated in place; x: (b, h, p); dt: (b, h); A, dt_bias: (h,); B, C: (b, g, n);
    D: (h,) or (h, p). Returns y (b, h, p) in x's dtype.
    """
    if state.dim() != 4:
        raise KernelInputError(f"state must be (batch, nheads, headdim, d_state), got {tuple(state.shape)}")
    b, h, p, n = state.shape
    check_shapes(x=(x, (b, h, p)), dt=(dt, (b, h)), A=(A, (h,)))
    g = B.shape[1] if B.dim() == 3 else 0
    if B.dim() != 3 or B.shape != (b, g, n) or C.shape != B.shape or g == 0 or h % g:
        raise KernelInputError(f"B and C must be ({b}, g, {n}) with g dividing {h}, got {tuple(B.shape)}, {tuple(C.shape)}")
    sD = skip_strides(D, h, p)
    has_limit, lo, hi = dt_limit_args(dt_limit)
    guard = launch_guard(state, x, dt, A, B, C, D, dt_bias)
    out = torch.empty(b, h, p, device=x.device, dtype=x.dtype)
    block_n = next_pow2(n)  # mamba-ssm's hand-tuned tile heights by d_state
    block_p = min(32 if block_n <= 16 else 16 if block_n <= 32 else 8 if block_n <= 64 else 4, next_pow2(p))
    with guard:
        _ssd_state_update_kernel[(b, h, triton.cdiv(p, block_p))](
            state, x, dt, A, B, C, D, dt_bias, out,
            p, n, h // g, lo, hi,
            *state.stride(), *x.stride(), *dt.stride(), *B.stride(), *C.stride(), *sD, *out.stride(),
            HAS_D=D is not None, HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=bool(dt_softplus),
            HAS_DT_LIMIT=has_limit, BLOCK_P=block_p, BLOCK_N=block_n, num_warps=4 if block_n <= 128 else 8,
        )
    return out


def prefill_impl(choice=None):
    """(function, name) for Mamba-2 prefill, resolved when the backend is first used (not at import: importing
    mamba-ssm changes what transformers binds in the same process).

    `choice`, by default PERFMAMBA_SSD: "mamba_ssm" (`mamba_chunk_scan_combined`), "triton" (our
    `chunked_ssd`), "torch" (`perfmamba.ops.ssd_chunked`), or "auto"/unset: mamba-ssm's where it is importable
    (it needs CUDA; PERFMAMBA_NO_MAMBA_SSM=1 rules it out), else ours on a CUDA machine, else torch's."""
    choice = (os.environ.get("PERFMAMBA_SSD", "auto") if choice is None else choice) or "auto"
    if choice not in ("auto", "mamba_ssm", "triton", "torch"):
        raise KernelInputError(f"PERFMAMBA_SSD must be auto, mamba_ssm, triton or torch, got {choice!r}")
    fixed = {"torch": (ssd_chunked, "perfmamba.ops.ssd_chunked"),
             "triton": (chunked_ssd, "perfmamba.ops.triton.chunked_ssd")}
    if choice in fixed:
        return fixed[choice]
    if choice == "mamba_ssm" or os.environ.get("PERFMAMBA_NO_MAMBA_SSM", "") in ("", "0"):
        try:
            from ..mamba_ssm_backend import ssd as mamba_ssm_ssd
        except ImportError:
            pass
        else:
            return mamba_ssm_ssd, "mamba_ssm.mamba_chunk_scan_combined"
    return fixed["triton" if torch.cuda.is_available() and not INTERPRET else "torch"]


def use_ssd(ns, name: str):
    """Point the `triton` namespace `ns` (from `get_ops("triton")`) at another prefill SSD, "mamba_ssm",
    "triton" or "torch" (benchmarks compare them). Returns the previous (function, name), for restoring with
    `ns.ssd, ns.impl["ssd"] = ...`."""
    old = ns.ssd, ns.impl["ssd"]
    ssd, impl = prefill_impl(name)
    if name == "mamba_ssm" and impl != "mamba_ssm.mamba_chunk_scan_combined":
        raise KernelInputError("mamba-ssm's SSD is not importable here")
    ns.ssd, ns.impl["ssd"] = ssd, impl
    return old
