"""Fused decode steps in Triton, same signatures as `perfmamba.ops.decode`: a Mamba-2 layer in two kernels
between its projections, Mamba-1's Δ projection, state update and gate in one, and the residual add fused with
the next norm.

Why: a decode step moves little data (Mamba2-130M at B=8: ~250 MB of weights and 75 MB of state, ≈ 0.1 ms at
H200 bandwidth), so its time is set by the kernels it launches: unfused, ~15 per layer, 1.83 ms per token
against mamba-ssm's 1.18 on an H200.

`_mamba2_step_kernel`, per (batch row, head, block of head channels): the conv update of the head's x channels
(private to the program, so written here), the conv of the group's B and C channels (from the old conv state,
not written: other programs of the group read it too), Δ, the state update of the (BLOCK_P, N′) tile,
y = h·C + D·x and y ⊙ silu(z), stored in float32. `_mamba2_step_norm_kernel`, per (batch row, group): the
gated RMSNorm, and the conv-state shift of the group's B and C channels, which only now is safe. Any N′ per
layer.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .conv import conv_output, conv_state_step
from .norm import rms_weight
from .common import (KernelInputError, block_offsets, check_shapes, dt_limit_args, head_delta, launch_guard,
                     next_pow2, row_warps, rows, skip_gate_store, softplus, strides, update_state)


@triton.jit
def _xbc_conv(zx, cs, cw_ptr, cb_ptr, ch, mask, d_inner, s_zx_c, s_cs_c, s_cs_k, s_cw_c, s_cw_k,
              WIDTH: tl.constexpr, BLOCK_W: tl.constexpr, HAS_CONV_BIAS: tl.constexpr, STORE: tl.constexpr):
    """silu(conv) of the xBC channels `ch` with this step's input, rounded to the activations' dtype (as the
    model rounds), in float32; zx, cs: this batch row of zxbcdt and of the conv state, shifted if STORE."""
    x = tl.load(zx + (d_inner + ch) * s_zx_c, mask=mask, other=0.0)
    win = conv_state_step(cs + ch[:, None] * s_cs_c, x, mask, s_cs_k, WIDTH, BLOCK_W, STORE)
    out = conv_output(win, cw_ptr + ch[:, None] * s_cw_c, s_cw_k, cb_ptr, ch, mask, WIDTH, BLOCK_W,
                      HAS_CONV_BIAS, True)
    return out.to(zx.dtype.element_ty).to(tl.float32)


@triton.jit
def _mamba2_step_kernel(
    zx_ptr, cs_ptr, cw_ptr, cb_ptr, st_ptr, Alog_ptr, dtb_ptr, D_ptr, g_ptr,
    d_inner, conv_dim, headdim, dstate, heads_per_group, ngroups, dt_min, dt_max,
    s_zx_b, s_zx_c, s_cs_b, s_cs_c, s_cs_k, s_cw_c, s_cw_k, s_st_b, s_st_h, s_st_p, s_st_n, s_g_b,
    WIDTH: tl.constexpr, HAS_CONV_BIAS: tl.constexpr, HAS_D: tl.constexpr, HAS_DT_BIAS: tl.constexpr,
    HAS_DT_LIMIT: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_h = tl.program_id(1)
    offs_p, mask_p = block_offsets(tl.program_id(2), BLOCK_P, headdim)
    offs_n, mask_n = block_offsets(0, BLOCK_N, dstate)
    grp = pid_h // heads_per_group
    zx = zx_ptr + pid_b * s_zx_b  # this row of [z (d) | xBC (conv_dim) | dt (h)]
    cs = cs_ptr + pid_b * s_cs_b
    act_ty = zx_ptr.dtype.element_ty  # the activations' dtype: conv output and y are rounded to it, as in the model

    # conv of the head's x channels, whose conv state is private to this program: shifted and written here.
    # The group's B and C channels use the old state, which other programs read too (the norm kernel
    # shifts it).
    cx = pid_h * headdim + offs_p  # channel in xBC
    cB = d_inner + grp * dstate + offs_n
    cC = cB + ngroups * dstate
    x = _xbc_conv(zx, cs, cw_ptr, cb_ptr, cx, mask_p, d_inner, s_zx_c, s_cs_c, s_cs_k, s_cw_c, s_cw_k,
                  WIDTH, BLOCK_W, HAS_CONV_BIAS, True)
    Bv = _xbc_conv(zx, cs, cw_ptr, cb_ptr, cB, mask_n, d_inner, s_zx_c, s_cs_c, s_cs_k, s_cw_c, s_cw_k,
                   WIDTH, BLOCK_W, HAS_CONV_BIAS, False)
    Cv = _xbc_conv(zx, cs, cw_ptr, cb_ptr, cC, mask_n, d_inner, s_zx_c, s_cs_c, s_cs_k, s_cw_c, s_cw_k,
                   WIDTH, BLOCK_W, HAS_CONV_BIAS, False)
    Bv = tl.where(mask_n, Bv, 0.0)
    Cv = tl.where(mask_n, Cv, 0.0)

    # Δ and the decay, one scalar per head
    dt = tl.load(zx + (d_inner + conv_dim + pid_h) * s_zx_c).to(tl.float32)
    dt = head_delta(dt, dtb_ptr, pid_h, dt_min, dt_max, HAS_DT_BIAS, True, HAS_DT_LIMIT)
    dA = tl.exp(-tl.exp(tl.load(Alog_ptr + pid_h).to(tl.float32)) * dt)

    # state update of the (BLOCK_P, N') tile
    s_ptrs = st_ptr + pid_b * s_st_b + pid_h * s_st_h + offs_p[:, None] * s_st_p + offs_n[None, :] * s_st_n
    mask_pn = mask_p[:, None] & mask_n[None, :]
    y = update_state(s_ptrs, mask_pn, dA, (dt * x)[:, None] * Bv[None, :], Cv[None, :])
    if HAS_D:
        y += x * tl.load(D_ptr + pid_h).to(tl.float32)
    y = y.to(act_ty).to(tl.float32)
    z = tl.load(zx + cx * s_zx_c, mask=mask_p, other=0.0).to(tl.float32)
    tl.store(g_ptr + pid_b * s_g_b + cx, y * z * tl.sigmoid(z), mask=mask_p)


@triton.jit
def _mamba2_step_norm_kernel(
    g_ptr, zx_ptr, cs_ptr, nw_ptr, out_ptr,
    d_inner, group_size, dstate, ngroups, eps,
    s_g_b, s_zx_b, s_zx_c, s_cs_b, s_cs_c, s_cs_k, s_o_b,
    WIDTH: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_g = tl.program_id(1)
    # gated RMSNorm of the group: rmsnorm(y ⊙ silu(z)), rounded to the activations' dtype, times the weight
    offs = tl.arange(0, BLOCK_G)
    cols = pid_g * group_size + offs
    mask = offs < group_size
    v = tl.load(g_ptr + pid_b * s_g_b + cols, mask=mask, other=0.0)
    o = rms_weight(v, group_size, eps, nw_ptr, cols, mask, zx_ptr)
    tl.store(out_ptr + pid_b * s_o_b + cols, o.to(out_ptr.dtype.element_ty), mask=mask)
    # the conv-state shift of the group's B and C channels, now that every head has read the old state
    offs_n, mask_n = block_offsets(0, BLOCK_N, dstate)
    for which in tl.static_range(2):  # B, then C
        ch = d_inner + which * ngroups * dstate + pid_g * dstate + offs_n
        x = tl.load(zx_ptr + pid_b * s_zx_b + (d_inner + ch) * s_zx_c, mask=mask_n, other=0.0)
        cs_rows = cs_ptr + pid_b * s_cs_b + ch[:, None] * s_cs_c
        conv_state_step(cs_rows, x, mask_n, s_cs_k, WIDTH, BLOCK_W, True)


def mamba2_step(zxbcdt, conv_state, conv_weight, conv_bias, ssm_state, A_log, dt_bias, D, norm_weight, eps,
                ngroups, dt_limit=None):
    """Triton version of `perfmamba.ops.decode.mamba2_step_ref`: a Mamba-2 layer's step between in_proj and
    out_proj in two kernels. Shapes as there; conv_state and ssm_state are updated in place."""
    if ssm_state.dim() != 4 or conv_weight.dim() != 2:
        raise KernelInputError(f"ssm_state (b, h, p, N) and conv_weight (conv_dim, w) expected, got "
                               f"{tuple(ssm_state.shape)}, {tuple(conv_weight.shape)}")
    b, h, p, n = ssm_state.shape
    d = h * p
    conv_dim, w = conv_weight.shape
    if ngroups < 1 or h % ngroups or conv_dim != d + 2 * ngroups * n:
        raise KernelInputError(f"conv_dim {conv_dim} must be d + 2·g·N = {d} + 2·{ngroups}·{n}, with g dividing {h}")
    check_shapes(zxbcdt=(zxbcdt, (b, d + conv_dim + h)), conv_state=(conv_state, (b, conv_dim, w)),
                 A_log=(A_log, (h,)), dt_bias=(dt_bias, (h,)), D=(D, (h,)), norm_weight=(norm_weight, (d,)))
    has_limit, lo, hi = dt_limit_args(dt_limit)
    guard = launch_guard(zxbcdt, conv_state, conv_weight, conv_bias, ssm_state, A_log, dt_bias, D,
                         norm_weight)
    gated = torch.empty(b, d, device=zxbcdt.device, dtype=torch.float32)
    out = torch.empty(b, d, device=zxbcdt.device, dtype=torch.promote_types(norm_weight.dtype, zxbcdt.dtype))
    # about 2048 state elements per program: taller tiles than a bare state update, because every program
    # also recomputes its group's B/C conv (2·N′ channels); at least 16 lanes: tiny tiles are where compiled
    # layouts get fragile
    block_n = max(16, next_pow2(n))
    block_p = max(1, min(next_pow2(p), 2048 // block_n))
    block_g, block_w = max(16, next_pow2(d // ngroups)), max(2, next_pow2(w))
    with guard:
        _mamba2_step_kernel[(b, h, triton.cdiv(p, block_p))](
            zxbcdt, conv_state, conv_weight, conv_bias, ssm_state, A_log, dt_bias, D, gated,
            d, conv_dim, p, n, h // ngroups, ngroups, lo, hi,
            *zxbcdt.stride(), *conv_state.stride(), *conv_weight.stride(), *ssm_state.stride(), gated.stride(0),
            WIDTH=w, HAS_CONV_BIAS=conv_bias is not None, HAS_D=D is not None, HAS_DT_BIAS=dt_bias is not None,
            HAS_DT_LIMIT=has_limit, BLOCK_P=block_p, BLOCK_N=block_n, BLOCK_W=block_w,
            num_warps=4 if block_p * block_n <= 2048 else 8,
        )
        _mamba2_step_norm_kernel[(b, ngroups)](
            gated, zxbcdt, conv_state, norm_weight, out,
            d, d // ngroups, n, ngroups, float(eps),
            gated.stride(0), *zxbcdt.stride(), *conv_state.stride(), out.stride(0),
            WIDTH=w, BLOCK_G=block_g, BLOCK_N=block_n, BLOCK_W=block_w,
            num_warps=row_warps(block_g),
        )
    return out


@triton.jit
def _mamba1_step_kernel(
    st_ptr, x_ptr, xdbl_ptr, wdt_ptr, dtb_ptr, Alog_ptr, D_ptr, z_ptr, out_ptr,
    dim, dstate, dt_rank,
    s_st_b, s_st_d, s_st_n, s_x_b, s_x_d, s_xd_b, s_xd_c, s_w_d, s_w_r, s_A_d, s_A_n,
    s_z_b, s_z_d, s_o_b, s_o_d,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_DT_BIAS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d, mask_d = block_offsets(tl.program_id(1), BLOCK_D, dim)
    offs_n, mask_n = block_offsets(0, BLOCK_N, dstate)
    offs_r = tl.arange(0, BLOCK_R)
    mask_dn = mask_d[:, None] & mask_n[None, :]
    act_ty = x_ptr.dtype.element_ty
    xd = xdbl_ptr + pid_b * s_xd_b  # [dt_low (r) | B (N) | C (N)]

    # Δ = dt_low · W_dtᵀ (rounded to the activations' dtype, like the model's matmul), + bias, softplus
    dtl = tl.load(xd + offs_r * s_xd_c, mask=offs_r < dt_rank, other=0.0).to(tl.float32)
    W = tl.load(wdt_ptr + offs_d[:, None] * s_w_d + offs_r[None, :] * s_w_r,
                mask=mask_d[:, None] & (offs_r[None, :] < dt_rank), other=0.0).to(tl.float32)
    dt = tl.sum(W * dtl[None, :], axis=1).to(act_ty).to(tl.float32)
    if HAS_DT_BIAS:
        dt += tl.load(dtb_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    dt = softplus(dt)

    A = -tl.exp(tl.load(Alog_ptr + offs_d[:, None] * s_A_d + offs_n[None, :] * s_A_n, mask=mask_dn,
                        other=0.0).to(tl.float32))
    Bv = tl.load(xd + (dt_rank + offs_n) * s_xd_c, mask=mask_n, other=0.0).to(tl.float32)
    Cv = tl.load(xd + (dt_rank + dstate + offs_n) * s_xd_c, mask=mask_n, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + pid_b * s_x_b + offs_d * s_x_d, mask=mask_d, other=0.0).to(tl.float32)
    s_ptrs = st_ptr + pid_b * s_st_b + offs_d[:, None] * s_st_d + offs_n[None, :] * s_st_n
    y = update_state(s_ptrs, mask_dn, tl.exp(A * dt[:, None]), Bv[None, :] * (dt * x)[:, None], Cv[None, :])
    skip_gate_store(y, x, D_ptr, z_ptr, out_ptr, pid_b, offs_d, mask_d, s_z_b, s_z_d, s_o_b, s_o_d,
                    HAS_D, HAS_Z)


def mamba1_step(ssm_state, x, x_dbl, dt_proj_weight, dt_proj_bias, A_log, D, z):
    """Triton version of `perfmamba.ops.decode.mamba1_step_ref`: Δ projection, state update, D skip and gate in
    one kernel. Shapes as there; ssm_state is updated in place."""
    if ssm_state.dim() != 3 or dt_proj_weight.dim() != 2:
        raise KernelInputError(f"ssm_state (b, d, N) and dt_proj_weight (d, r) expected, got "
                               f"{tuple(ssm_state.shape)}, {tuple(dt_proj_weight.shape)}")
    b, d, n = ssm_state.shape
    r = dt_proj_weight.shape[1]
    check_shapes(x=(x, (b, d)), z=(z, (b, d)), dt_proj_weight=(dt_proj_weight, (d, r)),
                 x_dbl=(x_dbl, (b, r + 2 * n)), A_log=(A_log, (d, n)))
    guard = launch_guard(ssm_state, x, x_dbl, dt_proj_weight, dt_proj_bias, A_log, D, z)
    out = torch.empty(b, d, device=x.device, dtype=x.dtype)
    block_n, block_r = max(16, next_pow2(n)), max(16, next_pow2(r))
    # the (BLOCK_D, N) state tile and the (BLOCK_D, r) tile of W_dt both stay at ~2048 elements (r = 160 at 2.8B)
    block_d = max(4, min(64, 2048 // max(block_n, block_r)))
    with guard:
        _mamba1_step_kernel[(b, triton.cdiv(d, block_d))](
            ssm_state, x, x_dbl, dt_proj_weight, dt_proj_bias, A_log, D, z, out,
            d, n, r,
            *ssm_state.stride(), *x.stride(), *x_dbl.stride(), *dt_proj_weight.stride(), *A_log.stride(),
            *strides(z, 2), *out.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_DT_BIAS=dt_proj_bias is not None,
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_R=block_r, num_warps=4,
        )
    return out


@triton.jit
def _add_rmsnorm_kernel(x_ptr, o_ptr, w_ptr, s_ptr, n_ptr, ncols, eps, s_x_row, s_o_row, s_s_row, s_n_row,
                        BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < ncols
    s = tl.load(x_ptr + row * s_x_row + cols, mask=mask, other=0.0).to(tl.float32) \
        + tl.load(o_ptr + row * s_o_row + cols, mask=mask, other=0.0).to(tl.float32)
    s = s.to(s_ptr.dtype.element_ty)
    tl.store(s_ptr + row * s_s_row + cols, s, mask=mask)
    normed = rms_weight(s.to(tl.float32), ncols, eps, w_ptr, cols, mask, s_ptr)
    tl.store(n_ptr + row * s_n_row + cols, normed.to(n_ptr.dtype.element_ty), mask=mask)


def add_rmsnorm(x, out, weight, eps=1e-5):
    """Triton version of `perfmamba.ops.decode.add_rmsnorm_ref`: (x + out rounded to x's dtype, its RMSNorm) in one
    kernel. x, out: (..., d); weight: (d,)."""
    d = x.shape[-1]
    check_shapes(out=(out, x.shape), weight=(weight, (d,)))
    guard = launch_guard(x, out, weight)
    s = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    normed = torch.empty(x.shape, device=x.device, dtype=torch.promote_types(weight.dtype, x.dtype))
    x2, o2 = rows(x, d), rows(out, d)
    s2, n2 = s.view(-1, d), normed.view(-1, d)
    if x2.shape[0]:
        block = max(16, next_pow2(d))
        with guard:
            _add_rmsnorm_kernel[(x2.shape[0],)](x2, o2, weight, s2, n2, d, float(eps), x2.stride(0), o2.stride(0),
                                                s2.stride(0), n2.stride(0), BLOCK=block,
                                                num_warps=row_warps(block))
    return s, normed
