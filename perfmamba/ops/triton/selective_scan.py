"""Mamba-1 selective scan in Triton: prefill (`selective_scan`) and one decode step
(`selective_state_update`), signatures of the references in `perfmamba.ops.selective_scan` (mamba-ssm
`selective_scan_ref` and `selective_state_update`, state-spaces/mamba@v2.2.4). Any d_state N: the state tile
is the next power of two with masked lanes (A = B = C = 0 there: they stay zero); memory traffic follows N.

The prefill kernel is parallel over (batch, channel block) and sequential over time, holding a (BLOCK_D, N)
state tile in registers for the whole sequence: it reads u, Δ, z, B, C once and writes y once, the memory
floor of the scan. Inputs may be strided views (the models pass channel-last transposes); float32 math,
outputs in u's dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (KernelInputError, block_offsets, check_shapes, empty_like_order, launch_guard, next_pow2,
                     skip_gate_store, softplus, strides, update_state)


@triton.jit
def _selective_scan_fwd_kernel(
    u_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dt_bias_ptr, h0_ptr, out_ptr, hT_ptr,
    dim, seqlen, dstate, channels_per_group,
    s_u_b, s_u_d, s_u_l, s_dt_b, s_dt_d, s_dt_l, s_A_d, s_A_n,
    s_B_b, s_B_g, s_B_n, s_B_l, s_C_b, s_C_g, s_C_n, s_C_l, s_z_b, s_z_d, s_z_l,
    s_h0_b, s_h0_d, s_h0_n, s_o_b, s_o_d, s_o_l, s_hT_b, s_hT_d, s_hT_n,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr,
    HAS_H0: tl.constexpr, STORE_LAST: tl.constexpr, GROUPED: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d, mask_d = block_offsets(tl.program_id(1), BLOCK_D, dim)
    offs_n, mask_n = block_offsets(0, BLOCK_N, dstate)
    mask_dn = mask_d[:, None] & mask_n[None, :]

    # exp(Δ A) = exp2(Δ · A log2 e): one multiply saved per state element and step
    A = tl.load(A_ptr + offs_d[:, None] * s_A_d + offs_n[None, :] * s_A_n, mask=mask_dn, other=0.0).to(tl.float32)
    A = A * 1.4426950408889634
    if HAS_DT_BIAS:
        dt_bias = tl.load(dt_bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_H0:
        h = tl.load(h0_ptr + pid_b * s_h0_b + offs_d[:, None] * s_h0_d + offs_n[None, :] * s_h0_n,
                    mask=mask_dn, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)

    u_ptrs = u_ptr + pid_b * s_u_b + offs_d * s_u_d
    dt_ptrs = dt_ptr + pid_b * s_dt_b + offs_d * s_dt_d
    if HAS_Z:
        z_ptrs = z_ptr + pid_b * s_z_b + offs_d * s_z_d
    out_ptrs = out_ptr + pid_b * s_o_b + offs_d * s_o_d
    if GROUPED:  # B, C (b, g, n, l): each channel reads its group's row
        grp = offs_d // channels_per_group
        B_ptrs = B_ptr + pid_b * s_B_b + grp[:, None] * s_B_g + offs_n[None, :] * s_B_n
        C_ptrs = C_ptr + pid_b * s_C_b + grp[:, None] * s_C_g + offs_n[None, :] * s_C_n
        mask_bc = mask_dn
    else:  # one (n,) row shared by all channels
        B_ptrs = B_ptr + pid_b * s_B_b + offs_n * s_B_n
        C_ptrs = C_ptr + pid_b * s_C_b + offs_n * s_C_n
        mask_bc = mask_n

    # Inputs of token t + 1 are loaded while token t is computed (software prefetch): the loop is a chain of
    # dependent steps, so without it every step would wait a full memory latency for its own loads.
    u = tl.load(u_ptrs, mask=mask_d, other=0.0)
    dt = tl.load(dt_ptrs, mask=mask_d, other=0.0)
    Bt = tl.load(B_ptrs, mask=mask_bc, other=0.0)
    Ct = tl.load(C_ptrs, mask=mask_bc, other=0.0)
    if HAS_Z:
        z = tl.load(z_ptrs, mask=mask_d, other=0.0)
    for t in range(seqlen):
        # advance by one token; pointer arithmetic is 64-bit, so long sequences cannot overflow an index
        u_ptrs += s_u_l
        dt_ptrs += s_dt_l
        B_ptrs += s_B_l
        C_ptrs += s_C_l
        # "is there a next token" as vectors (the interpreter rejects a scalar bool inside a mask)
        more_d = mask_d & (offs_d * 0 + t + 1 < seqlen)
        more_bc = mask_bc & (offs_n * 0 + t + 1 < seqlen)
        u_next = tl.load(u_ptrs, mask=more_d, other=0.0)
        dt_next = tl.load(dt_ptrs, mask=more_d, other=0.0)
        B_next = tl.load(B_ptrs, mask=more_bc, other=0.0)
        C_next = tl.load(C_ptrs, mask=more_bc, other=0.0)
        if HAS_Z:
            z_ptrs += s_z_l
            z_next = tl.load(z_ptrs, mask=more_d, other=0.0)

        uf = u.to(tl.float32)
        dtf = dt.to(tl.float32)
        if HAS_DT_BIAS:
            dtf = dtf + dt_bias
        if DT_SOFTPLUS:
            dtf = softplus(dtf)
        dA = tl.exp2(dtf[:, None] * A)
        if GROUPED:
            h = h * dA + Bt.to(tl.float32) * (dtf * uf)[:, None]
            y = tl.sum(h * Ct.to(tl.float32), axis=1)
        else:
            h = h * dA + Bt.to(tl.float32)[None, :] * (dtf * uf)[:, None]
            y = tl.sum(h * Ct.to(tl.float32)[None, :], axis=1)
        if HAS_D:
            y += uf * Dv
        if HAS_Z:
            zf = z.to(tl.float32)
            y *= zf * tl.sigmoid(zf)
            z = z_next
        tl.store(out_ptrs, y.to(out_ptr.dtype.element_ty), mask=mask_d)
        out_ptrs += s_o_l
        u, dt, Bt, Ct = u_next, dt_next, B_next, C_next

    if STORE_LAST:
        tl.store(hT_ptr + pid_b * s_hT_b + offs_d[:, None] * s_hT_d + offs_n[None, :] * s_hT_n,
                 h.to(hT_ptr.dtype.element_ty), mask=mask_dn)


def _groups(B, C, d, shape, **others):
    """B, C (b, [g,] n[, l]) as (b, g, n[, l]) and g, which must divide d; `others` (name=(tensor, shape)) are
    checked first. `shape`: B's shape without the group axis."""
    Bg, Cg = (t if t.dim() == len(shape) + 1 else t.unsqueeze(1) for t in (B, C))  # (b, g, n[, l])
    g = Bg.shape[1]
    grouped = (shape[0], g, *shape[1:])
    check_shapes(**others, B=(Bg, grouped), C=(Cg, grouped))
    if d % g:
        raise KernelInputError(f"d={d} channels cannot be split into {g} groups")
    return Bg, Cg, g


def _tile(dstate: int, budget: int, max_d: int):
    """(BLOCK_D, BLOCK_N, num_warps) for a (BLOCK_D, N) state tile of about `budget` elements: the prefill
    scan keeps it and ~4 temporaries in registers (4096, up to 32 rows); the memory-bound decode step wants
    small tiles and many programs (1024, up to 64 rows)."""
    block_n = next_pow2(dstate)
    block_d = max(4, min(max_d, budget // block_n))
    return block_d, block_n, 4 if block_d * block_n <= 2048 else 8


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, initial_state=None):
    """Triton version of `perfmamba.ops.selective_scan_ref`. Returns y (b, d, l) [, last state (b, d, n)].

    u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l) or (b, g, n, l); D, delta_bias: (d,);
    initial_state: (b, d, n).
    """
    if u.dim() != 3:
        raise KernelInputError(f"u must be (batch, dim, seqlen), got shape {tuple(u.shape)}")
    b, d, l = u.shape
    n = A.shape[-1]
    Bg, Cg, g = _groups(B, C, d, (b, n, l), A=(A, (d, n)), delta=(delta, u.shape), z=(z, u.shape),
                        initial_state=(initial_state, (b, d, n)))
    guard = launch_guard(u, delta, A, B, C, D, z, delta_bias, initial_state)
    out = empty_like_order(u)
    last = torch.empty(b, d, n, device=u.device, dtype=u.dtype) if return_last_state else None
    if l == 0:
        if return_last_state:
            last.copy_(initial_state if initial_state is not None else torch.zeros_like(last))
        return (out, last) if return_last_state else out
    block_d, block_n, num_warps = _tile(n, 4096, 32)
    with guard:
        _selective_scan_fwd_kernel[(b, triton.cdiv(d, block_d))](
            u, delta, A, Bg, Cg, D, z, delta_bias, initial_state, out, last,
            d, l, n, d // g,
            *u.stride(), *delta.stride(), *A.stride(), *Bg.stride(), *Cg.stride(), *strides(z, 3),
            *strides(initial_state, 3), *out.stride(), *strides(last, 3),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_DT_BIAS=delta_bias is not None,
            DT_SOFTPLUS=bool(delta_softplus), HAS_H0=initial_state is not None, STORE_LAST=bool(return_last_state),
            GROUPED=g > 1, BLOCK_D=block_d, BLOCK_N=block_n, num_warps=num_warps,
        )
    return (out, last) if return_last_state else out


@triton.jit
def _selective_state_update_kernel(
    state_ptr, x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, dt_bias_ptr, out_ptr,
    dim, dstate, channels_per_group,
    s_s_b, s_s_d, s_s_n, s_x_b, s_x_d, s_dt_b, s_dt_d, s_A_d, s_A_n,
    s_B_b, s_B_g, s_B_n, s_C_b, s_C_g, s_C_n, s_z_b, s_z_d, s_o_b, s_o_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d, mask_d = block_offsets(tl.program_id(1), BLOCK_D, dim)
    offs_n, mask_n = block_offsets(0, BLOCK_N, dstate)
    mask_dn = mask_d[:, None] & mask_n[None, :]
    grp = offs_d // channels_per_group
    x = tl.load(x_ptr + pid_b * s_x_b + offs_d * s_x_d, mask=mask_d, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + pid_b * s_dt_b + offs_d * s_dt_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_DT_BIAS:
        dt += tl.load(dt_bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if DT_SOFTPLUS:
        dt = softplus(dt)
    A = tl.load(A_ptr + offs_d[:, None] * s_A_d + offs_n[None, :] * s_A_n, mask=mask_dn, other=0.0).to(tl.float32)
    B = tl.load(B_ptr + pid_b * s_B_b + grp[:, None] * s_B_g + offs_n[None, :] * s_B_n, mask=mask_dn,
                other=0.0).to(tl.float32)
    C = tl.load(C_ptr + pid_b * s_C_b + grp[:, None] * s_C_g + offs_n[None, :] * s_C_n, mask=mask_dn,
                other=0.0).to(tl.float32)
    s_ptrs = state_ptr + pid_b * s_s_b + offs_d[:, None] * s_s_d + offs_n[None, :] * s_s_n
    y = update_state(s_ptrs, mask_dn, tl.exp(A * dt[:, None]), B * (dt * x)[:, None], C)
    skip_gate_store(y, x, D_ptr, z_ptr, out_ptr, pid_b, offs_d, mask_d, s_z_b, s_z_d, s_o_b, s_o_d,
                    HAS_D, HAS_Z)


def selective_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """Triton version of `perfmamba.ops.selective_state_update_ref`: one Mamba-1 decode step in one kernel.

    state: (b, d, n) updated in place; x, dt, z: (b, d); A: (d, n); B, C: (b, n) or (b, g, n);
    D, dt_bias: (d,). Returns y (b, d) in x's dtype.
    """
    if state.dim() != 3:
        raise KernelInputError(f"state must be (batch, dim, d_state), got shape {tuple(state.shape)}")
    b, d, n = state.shape
    Bg, Cg, g = _groups(B, C, d, (b, n), x=(x, (b, d)), dt=(dt, (b, d)), z=(z, (b, d)), A=(A, (d, n)))
    guard = launch_guard(state, x, dt, A, B, C, D, z, dt_bias)
    out = torch.empty(b, d, device=x.device, dtype=x.dtype)
    block_d, block_n, num_warps = _tile(n, 1024, 64)
    with guard:
        _selective_state_update_kernel[(b, triton.cdiv(d, block_d))](
            state, x, dt, A, Bg, Cg, D, z, dt_bias, out,
            d, n, d // g,
            *state.stride(), *x.stride(), *dt.stride(), *A.stride(), *Bg.stride(), *Cg.stride(),
            *strides(z, 2), *out.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_DT_BIAS=dt_bias is not None,
            DT_SOFTPLUS=bool(dt_softplus), BLOCK_D=block_d, BLOCK_N=block_n, num_warps=num_warps,
        )
    return out
