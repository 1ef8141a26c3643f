"""Our chunked SSD (Mamba-2 prefill) in Triton: `perfmamba.ops.ssd_chunked`'s matrix form in four kernels.

    a_t = Σ_{s ≤ t in the chunk} Δ_s A_h
    within a chunk:   y_t = Σ_{s ≤ t} (C_t · B_s) exp(a_t − a_s) Δ_s x_s                     (attention-like)
    across chunks:    y_t += exp(a_t) C_t · h_prev,   h_next = exp(a_T) h_prev + Σ_s exp(a_T − a_s) Δ_s x_s ⊗ B_s

The decomposition of the Mamba-2 paper (Dao & Gu 2024, §6, Listing 1) and of mamba-ssm's Triton SSD
(state-spaces/mamba@v2.2.4, mamba_ssm/ops/triton/ssd_{chunk_state,state_passing,chunk_scan}.py), written anew:

    _ssd_cumsum_kernel         (b, h, chunk)            Δ and its running sum a within the chunk
    _ssd_chunk_state_kernel    (b·chunk, h, p-block)    each chunk's own end state, a (P × T)(T × N) product
    _ssd_state_passing_kernel  (b, h, state block)      the sequential pass over chunks: the state entering each
    _ssd_chunk_scan_kernel     (b·chunk, h, row block)  y = C prevᵀ e^a + causal (C Bᵀ ∘ decay ∘ Δ) x + D x,
                                                         flash-attention style over blocks of source positions

Any N′ (lanes padded to a power of two ≥ 16), head dimension and ngroups, ragged lengths (Δ = 0 past the end).
Products take the activations' dtype (bf16 on a GPU; float32 in full float32, not TF32), sums float32.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .common import (KernelInputError, check_shapes, dt_limit_args, head_delta, launch_guard, next_pow2,
                     skip_strides, strides)


@triton.jit
def _ssd_cumsum_kernel(dt_ptr, dtb_ptr, A_ptr, dtp_ptr, acs_ptr, seqlen, dt_min, dt_max,
                       s_dt_b, s_dt_l, s_dt_h, s_o_b, s_o_h, s_o_c,
                       HAS_DT_BIAS: tl.constexpr, DT_SOFTPLUS: tl.constexpr, HAS_DT_LIMIT: tl.constexpr,
                       T: tl.constexpr):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_h = tl.program_id(1)
    pid_c = tl.program_id(2)
    t = pid_c * T + tl.arange(0, T)
    m = t < seqlen
    dt = tl.load(dt_ptr + pid_b * s_dt_b + t.to(tl.int64) * s_dt_l + pid_h * s_dt_h, mask=m, other=0.0).to(tl.float32)
    dt = head_delta(dt, dtb_ptr, pid_h, dt_min, dt_max, HAS_DT_BIAS, DT_SOFTPLUS, HAS_DT_LIMIT)
    dt = tl.where(m, dt, 0.0)  # past the end: Δ = 0, decay 1, no input
    a = tl.cumsum(dt * tl.load(A_ptr + pid_h).to(tl.float32), axis=0)
    o = pid_b * s_o_b + pid_h * s_o_h + pid_c * s_o_c + tl.arange(0, T)
    tl.store(dtp_ptr + o, dt)
    tl.store(acs_ptr + o, a)


@triton.jit
def _ssd_chunk_state_kernel(x_ptr, B_ptr, dtp_ptr, acs_ptr, st_ptr, seqlen, headdim, dstate, nchunks, heads_per_group,
                            s_x_b, s_x_l, s_x_h, s_x_p, s_B_b, s_B_l, s_B_g, s_B_n, s_a_b, s_a_h, s_a_c,
                            s_st_b, s_st_c, s_st_h, s_st_p, s_st_n,
                            T: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                            PREC: tl.constexpr):
    pid_bc = tl.program_id(0)
    pid_h = tl.program_id(1)
    pid_p = tl.program_id(2)
    pid_b = (pid_bc // nchunks).to(tl.int64)
    pid_c = pid_bc % nchunks
    grp = pid_h // heads_per_group
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    a_base = acs_ptr + pid_b * s_a_b + pid_h * s_a_h + pid_c * s_a_c
    a_end = tl.load(a_base + T - 1)
    acc = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    for k0 in range(0, T, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        t = pid_c * T + offs_k
        mt = t < seqlen
        a = tl.load(a_base + offs_k)
        dt = tl.load(dtp_ptr + pid_b * s_a_b + pid_h * s_a_h + pid_c * s_a_c + offs_k)
        w = tl.exp(a_end - a) * dt  # (K,): Δ_s times the decay to the chunk's end
        xk = tl.load(x_ptr + pid_b * s_x_b + t[:, None].to(tl.int64) * s_x_l + pid_h * s_x_h + offs_p[None, :] * s_x_p,
                     mask=mt[:, None] & (offs_p[None, :] < headdim), other=0.0)  # (K, P)
        bk = tl.load(B_ptr + pid_b * s_B_b + t[:, None].to(tl.int64) * s_B_l + grp * s_B_g + offs_n[None, :] * s_B_n,
                     mask=mt[:, None] & (offs_n[None, :] < dstate), other=0.0)  # (K, N)
        xw = (xk.to(tl.float32) * w[:, None]).to(bk.dtype)
        acc += tl.dot(tl.trans(xw), bk, input_precision=PREC)
    tl.store(st_ptr + pid_b * s_st_b + pid_c * s_st_c + pid_h * s_st_h + offs_p[:, None] * s_st_p
             + offs_n[None, :] * s_st_n, acc, mask=(offs_p[:, None] < headdim) & (offs_n[None, :] < dstate))


@triton.jit
def _ssd_state_passing_kernel(st_ptr, acs_ptr, h0_ptr, fin_ptr, nchunks, pn, T: tl.constexpr,
                              s_st_b, s_st_c, s_st_h, s_a_b, s_a_h, s_a_c, s_h0_b, s_h0_h, s_f_b, s_f_h,
                              HAS_H0: tl.constexpr, STORE_FINAL: tl.constexpr, BLOCK: tl.constexpr):
    """In place: states[c] (a chunk's own end state) becomes the state entering chunk c. The (p, n) state of a head
    is contiguous in `states`, `h0` and `final` (flattened index e = p·N + n)."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_h = tl.program_id(1)
    offs = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
    m = offs < pn
    if HAS_H0:
        run = tl.load(h0_ptr + pid_b * s_h0_b + pid_h * s_h0_h + offs, mask=m, other=0.0).to(tl.float32)
    else:
        run = tl.zeros([BLOCK], dtype=tl.float32)
    for c in range(nchunks):
        ptr = st_ptr + pid_b * s_st_b + c * s_st_c + pid_h * s_st_h + offs
        own = tl.load(ptr, mask=m, other=0.0)
        tl.store(ptr, run, mask=m)
        run = run * tl.exp(tl.load(acs_ptr + pid_b * s_a_b + pid_h * s_a_h + c * s_a_c + T - 1)) + own
    if STORE_FINAL:
        tl.store(fin_ptr + pid_b * s_f_b + pid_h * s_f_h + offs, run.to(fin_ptr.dtype.element_ty), mask=m)


@triton.jit
def _ssd_chunk_scan_kernel(x_ptr, B_ptr, C_ptr, D_ptr, dtp_ptr, acs_ptr, st_ptr, y_ptr,
                           seqlen, headdim, dstate, nchunks, heads_per_group,
                           s_x_b, s_x_l, s_x_h, s_x_p, s_B_b, s_B_l, s_B_g, s_B_n, s_C_b, s_C_l, s_C_g, s_C_n,
                           s_D_h, s_D_p, s_a_b, s_a_h, s_a_c, s_st_b, s_st_c, s_st_h, s_st_p, s_st_n,
                           s_y_b, s_y_l, s_y_h, s_y_p,
                           HAS_D: tl.constexpr, T: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_P: tl.constexpr,
                           BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PREC: tl.constexpr):
    pid_bc = tl.program_id(0)
    pid_h = tl.program_id(1)
    pid_mp = tl.program_id(2)
    n_pblocks = tl.cdiv(headdim, BLOCK_P)
    pid_m = pid_mp // n_pblocks
    pid_p = pid_mp % n_pblocks
    pid_b = (pid_bc // nchunks).to(tl.int64)
    pid_c = pid_bc % nchunks
    grp = pid_h // heads_per_group
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # rows: positions within the chunk
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    tm = pid_c * T + offs_m
    mm = tm < seqlen
    mp = offs_p < headdim
    mn = offs_n < dstate
    a_base = acs_ptr + pid_b * s_a_b + pid_h * s_a_h + pid_c * s_a_c
    a_m = tl.load(a_base + offs_m)
    cm = tl.load(C_ptr + pid_b * s_C_b + tm[:, None].to(tl.int64) * s_C_l + grp * s_C_g + offs_n[None, :] * s_C_n,
                 mask=mm[:, None] & mn[None, :], other=0.0)  # (M, N)
    # the carried state: exp(a_t) C_t · h_prev
    prev = tl.load(st_ptr + pid_b * s_st_b + pid_c * s_st_c + pid_h * s_st_h + offs_n[:, None] * s_st_n
                   + offs_p[None, :] * s_st_p, mask=mn[:, None] & mp[None, :], other=0.0)  # (N, P), float32
    acc = tl.dot(cm, prev.to(cm.dtype), input_precision=PREC) * tl.exp(a_m)[:, None]
    # within the chunk, causal: source blocks up to the last row of this block
    for k0 in range(0, (pid_m + 1) * BLOCK_M, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        tk = pid_c * T + offs_k
        mk = tk < seqlen
        bk = tl.load(B_ptr + pid_b * s_B_b + tk[None, :].to(tl.int64) * s_B_l + grp * s_B_g + offs_n[:, None] * s_B_n,
                     mask=mk[None, :] & mn[:, None], other=0.0)  # (N, K)
        cb = tl.dot(cm, bk, input_precision=PREC)  # (M, K)
        a_k = tl.load(a_base + offs_k)
        dt_k = tl.load(dtp_ptr + pid_b * s_a_b + pid_h * s_a_h + pid_c * s_a_c + offs_k)
        causal = offs_m[:, None] >= offs_k[None, :]
        w = tl.where(causal, cb * tl.exp(tl.where(causal, a_m[:, None] - a_k[None, :], 0.0)) * dt_k[None, :], 0.0)
        xk = tl.load(x_ptr + pid_b * s_x_b + tk[:, None].to(tl.int64) * s_x_l + pid_h * s_x_h + offs_p[None, :] * s_x_p,
                     mask=mk[:, None] & mp[None, :], other=0.0)  # (K, P)
        acc += tl.dot(w.to(xk.dtype), xk, input_precision=PREC)
    xm = tl.load(x_ptr + pid_b * s_x_b + tm[:, None].to(tl.int64) * s_x_l + pid_h * s_x_h + offs_p[None, :] * s_x_p,
                 mask=mm[:, None] & mp[None, :], other=0.0).to(tl.float32)
    if HAS_D:
        acc += xm * tl.load(D_ptr + pid_h * s_D_h + offs_p * s_D_p, mask=mp, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + pid_b * s_y_b + tm[:, None].to(tl.int64) * s_y_l + pid_h * s_y_h + offs_p[None, :] * s_y_p,
             acc.to(y_ptr.dtype.element_ty), mask=mm[:, None] & mp[None, :])


def chunked_ssd(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, initial_states=None, return_final_states=False,
                dt_limit=None, chunk_size=256):
    """Triton version of `perfmamba.ops.ssd_ref` (chunked). Returns y (b, l, h, p) in x's dtype [, final state
    (b, h, p, n) in x's dtype]."""
    if x.dim() != 4 or dt.dim() != 3 or B.dim() != 4:
        raise KernelInputError(f"x (b, l, h, p), dt (b, l, h), B and C (b, l, g, n) expected, got {tuple(x.shape)}, "
                               f"{tuple(dt.shape)}, {tuple(B.shape)}")
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    check_shapes(dt=(dt, (b, l, h)), A=(A, (h,)), B=(B, (b, l, g, n)), C=(C, (b, l, g, n)),
                 initial_states=(initial_states, (b, h, p, n)))
    if h % g:
        raise KernelInputError(f"{h} heads cannot be split into {g} groups")
    sD = skip_strides(D, h, p)
    guard = launch_guard(x, dt, A, B, C, D, dt_bias, initial_states)
    T = max(16, next_pow2(min(chunk_size or 256, 256)))
    nc = max(1, triton.cdiv(l, T))
    has_limit, lo, hi = dt_limit_args(dt_limit)
    f32 = dict(device=x.device, dtype=torch.float32)
    dtp, acs = torch.empty(b, h, nc, T, **f32), torch.empty(b, h, nc, T, **f32)
    states = torch.empty(b, nc, h, p, n, **f32)  # each chunk's own end state, then (in place) the entering state
    y = torch.empty(b, l, h, p, device=x.device, dtype=x.dtype)
    final = torch.empty(b, h, p, n, device=x.device, dtype=x.dtype) if return_final_states else None
    h0 = initial_states.contiguous() if initial_states is not None else None
    # tiles of the chunk scan: tl.dot needs every side ≥ 16
    block_n, block_m, block_p = max(16, next_pow2(n)), min(64, T), max(16, min(64, next_pow2(p)))
    block_k = min(64 if block_n <= 64 else 32, T)
    sa = dtp.stride()[:3]
    # float32 activations: exact float32 products (a float32 model asks for float32 results), not TF32
    prec = "ieee" if x.dtype == torch.float32 else None
    with guard:
        _ssd_cumsum_kernel[(b, h, nc)](dt, dt_bias, A, dtp, acs, l, lo, hi, *dt.stride(), *sa,
                                       HAS_DT_BIAS=dt_bias is not None, DT_SOFTPLUS=bool(dt_softplus),
                                       HAS_DT_LIMIT=has_limit, T=T)
        _ssd_chunk_state_kernel[(b * nc, h, triton.cdiv(p, block_p))](
            x, B, dtp, acs, states, l, p, n, nc, h // g, *x.stride(), *B.stride(), *sa, *states.stride(),
            T=T, BLOCK_P=block_p, BLOCK_N=block_n, BLOCK_K=min(64, T), PREC=prec, num_warps=4)
        blk = min(1024, next_pow2(p * n))
        _ssd_state_passing_kernel[(b, h, triton.cdiv(p * n, blk))](
            states, acs, h0, final, nc, p * n, T, states.stride(0), states.stride(1), states.stride(2), *sa,
            *strides(h0, 4)[:2], *strides(final, 4)[:2],
            HAS_H0=h0 is not None, STORE_FINAL=final is not None, BLOCK=blk, num_warps=4)
        _ssd_chunk_scan_kernel[(b * nc, h, triton.cdiv(T, block_m) * triton.cdiv(p, block_p))](
            x, B, C, D, dtp, acs, states, y, l, p, n, nc, h // g, *x.stride(), *B.stride(), *C.stride(), *sD, *sa,
            *states.stride(), *y.stride(), HAS_D=D is not None, T=T, BLOCK_M=block_m, BLOCK_P=block_p,
            BLOCK_N=block_n, BLOCK_K=block_k, PREC=prec, num_warps=8 if block_n >= 128 else 4)
    return (y, final) if return_final_states else y
