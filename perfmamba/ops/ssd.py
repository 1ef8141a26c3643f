"""Mamba-2 state-space duality (the `ssm` component of Mamba-2).

    Δ_t = softplus(dt_t + dt_bias)   per head          (b, l, h)
    h_t = exp(Δ_t A_h) h_{t-1} + Δ_t x_t ⊗ B_t         h: (b, h, p, n)
    y_t = h_t C_t + D_h x_t

Layouts follow mamba-ssm `mamba_chunk_scan_combined` (state-spaces/mamba@v2.2.4,
mamba_ssm/ops/triton/ssd_combined.py): x (b, l, h, p); dt (b, l, h); A, D, dt_bias (h,);
B, C (b, l, g, n) with heads split evenly into g groups. The chunked form is `ssd_minimal_discrete`
of the Mamba-2 paper (Dao & Gu 2024, Listing 1), extended to groups, ragged lengths and initial states.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .selective_scan import discretize_dt, prepare, records_grad


def _prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit):
    h, g = x.shape[2], B.shape[2]
    if h % g:
        raise ValueError(f"{h} heads cannot be split into {g} groups")
    return prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)


def _skip(y, x, D):
    if D is None:
        return y
    D = D.to(y.dtype)
    return torch.addcmul(y, x, D[:, None] if D.dim() == 1 else D)


def ssd_ref(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, initial_states=None,
            return_final_states=False, dt_limit=None, chunk_size=None):
    """Sequential reference. Returns y (b, l, h, p) [, final state (b, h, p, n)]. `chunk_size` is ignored."""
    out_dtype = x.dtype
    dtype, x, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    hg = torch.arange(h, device=x.device) // (h // g)  # group of each head
    state = torch.zeros(b, h, p, n, dtype=dtype, device=x.device) if initial_states is None \
        else initial_states.to(dtype).clone()
    ys = []
    for t in range(l):
        dA = torch.exp(dt[:, t] * A)  # (b, h)
        Bt, Ct = B[:, t, hg], C[:, t, hg]  # (b, h, n)
        state = dA[..., None, None] * state + (dt[:, t, :, None] * x[:, t])[..., None] * Bt[:, :, None, :]
        ys.append(state @ Ct[..., None])  # (b, h, p, 1)
    y = torch.stack(ys, dim=1).squeeze(-1) if l else x.new_zeros(b, 0, h, p)
    y = _skip(y, x, D).to(out_dtype)
    return (y, state.to(out_dtype)) if return_final_states else y


def _decay_matrix(a_cum):
    """a_cum: (..., T) running sums of log-decays -> (..., T, T) with out[i, j] = exp(a_cum[i] - a_cum[j]) for
    j ≤ i and 0 above the diagonal: the decay from step j to step i within a chunk."""
    T = a_cum.shape[-1]
    diff = a_cum[..., :, None] - a_cum[..., None, :]
    upper = torch.ones(T, T, dtype=torch.bool, device=a_cum.device).triu(1)
    return diff.masked_fill_(upper, float("-inf")).exp_()


def ssd_chunked(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, initial_states=None,
                return_final_states=False, dt_limit=None, chunk_size=256):
    """Chunked matrix form of `ssd_ref`: quadratic (attention-like) within chunks, recurrent across them.

    Token-major throughout, so that the two rank-n products are single GEMMs over all heads of a group:
    a chunk's state is (Δ·decay·X)ᵀ B, (T × r·p)ᵀ (T × n), and the carried state's output is C hᵀ,
    (T × n)(n × r·p). The state is passed from chunk to chunk by a loop over chunks (linear in their number).
    """
    out_dtype = x.dtype
    dtype, x, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    r = h // g  # heads per group
    T = max(1, min(chunk_size, l))
    nc = -(-l // T)
    pad = nc * T - l
    if pad:  # Δ = 0 on padding: decay 1 and no input, so the final state is unchanged
        xp, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    else:
        xp = x
    Xc = xp.reshape(b, nc, T, h, p)
    Bc = B.reshape(b, nc, T, g, n)
    Cc = C.reshape(b, nc, T, g, n)
    dtc = dt.reshape(b, nc, T, h)
    a_cum = (dtc * A).permute(0, 1, 3, 2).cumsum(-1)  # (b, c, h, T): log-decay from chunk start
    # 1. within chunks: Y = (C Bᵀ ∘ L) Δx, per head
    CB = torch.einsum("bcign,bcjgn->bcgij", Cc, Bc)  # (b, c, g, T, T)
    # in place where autograd is not recording (exp's output is needed for its backward; out= is not differentiable)
    inplace = not records_grad(x, dt, A, B, C, initial_states)
    M = _decay_matrix(a_cum).view(b, nc, g, r, T, T)
    M = M.mul_(CB[:, :, :, None]) if inplace else M * CB[:, :, :, None]
    Xh = Xc.permute(0, 1, 3, 2, 4) * dtc.permute(0, 1, 3, 2)[..., None]  # Δx, head-major: (b, c, h, T, p)
    Y = (M.view(b, nc, h, T, T) @ Xh).transpose(2, 3)  # (b, c, T, h, p)
    # 2. each chunk's end state from its own inputs
    w = (dtc * torch.exp(a_cum[..., -1:] - a_cum).transpose(2, 3))  # (b, c, T, h): Δ times decay to chunk end
    Xd = (Xc * w[..., None]).reshape(b, nc, T, g, r * p)
    states = torch.einsum("bctgq,bctgn->bcgqn", Xd, Bc).reshape(b, nc, h, p, n)
    # 3. recurrence across chunks: prev[c] is the state entering chunk c
    decay = torch.exp(a_cum[..., -1])  # (b, c, h)
    run = torch.zeros(b, h, p, n, dtype=dtype, device=x.device) if initial_states is None \
        else initial_states.to(dtype)
    if inplace:  # each state written straight into its slot: no copy of the running state per chunk
        prev = torch.empty(b, nc, h, p, n, dtype=dtype, device=x.device)
        prev[:, 0].copy_(run)
        for c in range(nc - 1):
            torch.addcmul(states[:, c], decay[:, c, :, None, None], prev[:, c], out=prev[:, c + 1])
        run = torch.addcmul(states[:, -1], decay[:, -1, :, None, None], prev[:, -1])
    else:
        entering = []
        for c in range(nc):
            entering.append(run)
            run = torch.addcmul(states[:, c], decay[:, c, :, None, None], run)
        prev = torch.stack(entering, dim=1)
    # 4. contribution of the carried state inside each chunk: C prevᵀ, scaled by the decay since chunk start
    Yoff = torch.einsum("bctgn,bcgqn->bctgq", Cc, prev.view(b, nc, g, r * p, n)).reshape(b, nc, T, h, p)
    Y = (Yoff * torch.exp(a_cum).transpose(2, 3)[..., None]).add_(Y)
    y = Y.reshape(b, nc * T, h, p)[:, :l]
    y = _skip(y, x, D).to(out_dtype)
    return (y, run.to(out_dtype)) if return_final_states else y


def ssd_state_update_ref(state, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=None):
    """One Mamba-2 decode step. state: (b, h, p, n) updated in place; x: (b, h, p); dt: (b, h); B, C: (b, g, n)."""
    dtype = state.dtype
    dt = discretize_dt(dt.to(dtype), dt_bias, dt_softplus, dt_limit)
    h, g = x.shape[1], B.shape[1]
    hg = torch.arange(h, device=x.device) // (h // g)
    Bh, Ch = B[:, hg].to(dtype), C[:, hg].to(dtype)  # (b, h, n)
    dA = torch.exp(dt * A.to(dtype))  # (b, h)
    state.copy_(dA[..., None, None] * state + (dt[..., None] * x.to(dtype))[..., None] * Bh[:, :, None, :])
    y = (state @ Ch[..., None]).squeeze(-1)  # (b, h, p)
    return _skip(y, x.to(dtype), D).to(x.dtype)
