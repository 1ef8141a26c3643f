"""Causal depthwise conv1d in Triton (the `conv1d` component): prefill and one decode step, SiLU fused.

Why a kernel: with torch's cuDNN depthwise path this memory-bound op took 43 % of Mamba2-130M prefill on an
H100 (49.7 of 115.7 ms at B=8, L=8192; ../shared/gpu/README.md). Each (BLOCK_L, BLOCK_D) output tile reads its
inputs once (the w-1 overlapping taps hit cache) and writes once, keeping the input's memory order: the models
pass channel-last views of the in_proj output, so the following transpose is free.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..conv import check_activation
from .common import (KernelInputError, block_offsets, check_shapes, empty_like_order, launch_guard, next_pow2,
                     strides)


@triton.jit
def _causal_conv1d_fwd_kernel(
    x_ptr, w_ptr, bias_ptr, init_ptr, out_ptr, dim, seqlen,
    s_x_b, s_x_d, s_x_l, s_w_d, s_w_k, s_i_b, s_i_d, s_i_k, s_o_b, s_o_d, s_o_l,
    WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_INIT: tl.constexpr, SILU: tl.constexpr,
    BLOCK_L: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_l, mask_l = block_offsets(tl.program_id(1), BLOCK_L, seqlen)
    offs_d, mask_d = block_offsets(tl.program_id(2), BLOCK_D, dim)
    x_base = x_ptr + pid_b * s_x_b + offs_d[None, :] * s_x_d
    acc = tl.zeros([BLOCK_L, BLOCK_D], dtype=tl.float32)
    for k in tl.static_range(WIDTH):
        # out[t] = Σ_k w[k] · x[t - (WIDTH - 1) + k], with x[-j] = initial_states[WIDTH - 1 - j]
        w = tl.load(w_ptr + offs_d * s_w_d + k * s_w_k, mask=mask_d, other=0.0).to(tl.float32)
        pos = offs_l - (WIDTH - 1) + k  # (BLOCK_L,)
        m = ((pos >= 0) & (pos < seqlen))[:, None] & mask_d[None, :]
        xv = tl.load(x_base + pos[:, None].to(tl.int64) * s_x_l, mask=m, other=0.0).to(tl.float32)
        if HAS_INIT:
            if k < WIDTH - 1:  # only the first WIDTH - 1 taps can reach before the sequence start
                mi = ((pos < 0) & (pos + WIDTH - 1 >= 0))[:, None] & mask_d[None, :]
                xv += tl.load(init_ptr + pid_b * s_i_b + offs_d[None, :] * s_i_d + (pos + WIDTH - 1)[:, None] * s_i_k,
                              mask=mi, other=0.0).to(tl.float32)
        acc += xv * w[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[None, :]
    if SILU:
        acc = acc * tl.sigmoid(acc)
    mo = mask_l[:, None] & mask_d[None, :]
    tl.store(out_ptr + pid_b * s_o_b + offs_d[None, :] * s_o_d + offs_l[:, None].to(tl.int64) * s_o_l,
             acc.to(out_ptr.dtype.element_ty), mask=mo)


def causal_conv1d(x, weight, bias=None, initial_states=None, return_final_states=False, activation=None):
    """Triton version of `perfmamba.ops.causal_conv1d_ref`.

    x: (b, d, l); weight: (d, w); bias: (d,); initial_states: (b, d, w - 1), the inputs preceding x.
    Returns out (b, d, l) in x's dtype and memory order, and, if asked, the last w - 1 inputs (b, d, w - 1).
    """
    silu = check_activation(activation, KernelInputError)
    if x.dim() != 3:
        raise KernelInputError(f"x must be (b, d, l), got {tuple(x.shape)}")
    b, d, l = x.shape
    w = weight.shape[-1]
    init = initial_states if w > 1 else None  # a width-1 conv sees no earlier input
    check_shapes(weight=(weight, (d, w)), initial_states=(init, (b, d, w - 1)))
    guard = launch_guard(x, weight, bias, initial_states)
    out = empty_like_order(x)
    if l:
        block_l = min(64, max(16, next_pow2(l)))
        block_d = min(64, max(16, next_pow2(d)))
        grid = (b, triton.cdiv(l, block_l), triton.cdiv(d, block_d))
        with guard:
            _causal_conv1d_fwd_kernel[grid](
                x, weight, bias, init, out, d, l,
                *x.stride(), *weight.stride(), *strides(init, 3), *out.stride(),
                WIDTH=w, HAS_BIAS=bias is not None, HAS_INIT=init is not None, SILU=silu,
                BLOCK_L=block_l, BLOCK_D=block_d, num_warps=4,
            )
    if not return_final_states:
        return out
    if w == 1:
        return out, x[..., :0]
    # the last w - 1 inputs of [initial_states, x]: a copy of at most w - 1 columns, not worth a kernel
    prev = init.to(x.dtype) if init is not None else x.new_zeros(b, d, w - 1)
    final = torch.cat([prev, x[..., max(0, l - (w - 1)):]], dim=-1)[..., -(w - 1):].contiguous()
    return out, final


@triton.jit
def conv_state_step(rows, x, mask, s_k, WIDTH: tl.constexpr, BLOCK_W: tl.constexpr, STORE: tl.constexpr):
    """The conv window of some channels after one step, shifted left by one: [old[1], ..., old[W-1], x], with
    x rounded to the state's dtype as stored. rows: (R, 1) pointers to each channel's state, written back if
    STORE."""
    offs_k = tl.arange(0, BLOCK_W)[None, :]
    win = tl.load(rows + (offs_k + 1) * s_k, mask=mask[:, None] & (offs_k + 1 < WIDTH), other=0.0)
    win = tl.where(offs_k == WIDTH - 1, x.to(rows.dtype.element_ty)[:, None], win)
    if STORE:
        tl.store(rows + offs_k * s_k, win, mask=mask[:, None] & (offs_k < WIDTH))
    return win


@triton.jit
def conv_output(win, w_rows, s_k, bias_ptr, ch, mask, WIDTH: tl.constexpr, BLOCK_W: tl.constexpr,
                HAS_BIAS: tl.constexpr, SILU: tl.constexpr):
    """Σ_k w[k] · win[k] (+ bias) (then silu) in float32 for the channels `ch`; w_rows: (R, 1) pointers."""
    offs_k = tl.arange(0, BLOCK_W)[None, :]
    w = tl.load(w_rows + offs_k * s_k, mask=mask[:, None] & (offs_k < WIDTH), other=0.0).to(tl.float32)
    acc = tl.sum(win.to(tl.float32) * w, axis=1)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + ch, mask=mask, other=0.0).to(tl.float32)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    return acc


@triton.jit
def _causal_conv1d_update_kernel(
    x_ptr, state_ptr, w_ptr, bias_ptr, out_ptr, dim,
    s_x_b, s_x_d, s_s_b, s_s_d, s_s_k, s_w_d, s_w_k, s_o_b, s_o_d,
    WIDTH: tl.constexpr, BLOCK_W: tl.constexpr, HAS_BIAS: tl.constexpr, SILU: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_d, mask_d = block_offsets(tl.program_id(1), BLOCK_D, dim)
    x = tl.load(x_ptr + pid_b * s_x_b + offs_d * s_x_d, mask=mask_d, other=0.0)
    state_rows = state_ptr + pid_b * s_s_b + offs_d[:, None] * s_s_d
    win = conv_state_step(state_rows, x, mask_d, s_s_k, WIDTH, BLOCK_W, True)
    acc = conv_output(win, w_ptr + offs_d[:, None] * s_w_d, s_w_k, bias_ptr, offs_d, mask_d, WIDTH, BLOCK_W,
                      HAS_BIAS, SILU)
    tl.store(out_ptr + pid_b * s_o_b + offs_d * s_o_d, acc.to(out_ptr.dtype.element_ty), mask=mask_d)


def causal_conv1d_update(x, conv_state, weight, bias=None, activation=None):
    """Triton version of `perfmamba.ops.causal_conv1d_update_ref`: one decode step.

    x: (b, d); conv_state: (b, d, w) holding the last w inputs, shifted and updated in place; weight: (d, w).
    Returns out (b, d) in x's dtype.
    """
    silu = check_activation(activation, KernelInputError)
    if x.dim() != 2:
        raise KernelInputError(f"x must be (b, d), got {tuple(x.shape)}")
    b, d = x.shape
    w = conv_state.shape[-1]
    check_shapes(conv_state=(conv_state, (b, d, w)), weight=(weight, (d, w)))
    guard = launch_guard(x, conv_state, weight, bias)
    out = torch.empty(b, d, device=x.device, dtype=x.dtype)
    block_d = min(128, max(16, next_pow2(d)))
    with guard:
        _causal_conv1d_update_kernel[(b, triton.cdiv(d, block_d))](
            x, conv_state, weight, bias, out, d,
            *x.stride(), *conv_state.stride(), *weight.stride(), *out.stride(),
            WIDTH=w, BLOCK_W=next_pow2(w), HAS_BIAS=bias is not None, SILU=silu, BLOCK_D=block_d, num_warps=4,
        )
    return out
