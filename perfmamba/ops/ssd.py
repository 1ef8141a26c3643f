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


def _prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit):
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x, dt, A, B, C = (t.to(dtype) for t in (x, dt, A, B, C))
    if dt_bias is not None:
        dt = dt + dt_bias.to(dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    if dt_limit is not None and tuple(dt_limit) != (0.0, float("inf")):
        dt = dt.clamp(dt_limit[0], dt_limit[1])
    h, g = x.shape[2], B.shape[2]
    if h % g:
        raise ValueError(f"{h} heads cannot be split into {g} groups")
    return dtype, x, dt, A, B, C


def _skip(y, x, D):
    if D is None:
        return y
    D = D.to(y.dtype)
    return y + x * (D[:, None] if D.dim() == 1 else D)


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


def _segsum(a):
    """a: (..., T) -> (..., T, T) with out[i, j] = Σ_{j<k≤i} a[k] for j ≤ i, -inf above the diagonal."""
    T = a.shape[-1]
    a = a[..., None].expand(*a.shape, T)  # (..., T, T): a[..., i, j] = a[i]
    strict = torch.ones(T, T, dtype=torch.bool, device=a.device).tril(-1)
    a = a.masked_fill(~strict, 0).cumsum(dim=-2)
    return a.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=a.device).tril(0), float("-inf"))


def ssd_chunked(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, initial_states=None,
                return_final_states=False, dt_limit=None, chunk_size=256):
    """Chunked matrix form of `ssd_ref`: quadratic (attention-like) within chunks, recurrent across them."""
    out_dtype = x.dtype
    dtype, x, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit)
    b, l, h, p = x.shape
    g, n = B.shape[2], B.shape[3]
    r = h // g  # heads per group
    T = max(1, min(chunk_size, l))
    nc = -(-l // T)
    pad = nc * T - l
    xs = x * dt[..., None]  # Δ x, (b, l, h, p)
    if pad:  # Δ = 0 on padding: decay 1 and no input, so the final state is unchanged
        xs, dtp = F.pad(xs, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    else:
        dtp = dt
    X = xs.view(b, nc, T, g, r, p)
    Bc = B.view(b, nc, T, g, n)
    Cc = C.view(b, nc, T, g, n)
    a = (dtp * A).view(b, nc, T, g, r).permute(0, 3, 4, 1, 2)  # (b, g, r, c, T)
    a_cum = a.cumsum(-1)
    # 1. within chunks: Y = (C Bᵀ ∘ L) X
    Lmat = torch.exp(_segsum(a))  # (b, g, r, c, T, T)
    CB = torch.einsum("bcign,bcjgn->bgcij", Cc, Bc)  # (b, g, c, T, T)
    M = Lmat * CB[:, :, None]  # (b, g, r, c, T, T)
    Xp = X.permute(0, 3, 4, 1, 2, 5)  # (b, g, r, c, T, p)
    Y = M @ Xp  # (b, g, r, c, T, p)
    # 2. state at the end of each chunk from its own inputs
    decay_states = torch.exp(a_cum[..., -1:] - a_cum)  # (b, g, r, c, T)
    states = torch.einsum("bcjgn,bgrcj,bgrcjp->bgrcpn", Bc, decay_states, Xp)  # (b, g, r, c, p, n)
    # 3. recurrence across chunks
    if initial_states is None:
        h0 = torch.zeros(b, g, r, 1, p, n, dtype=dtype, device=x.device)
    else:
        h0 = initial_states.to(dtype).view(b, g, r, 1, p, n)
    states = torch.cat([h0, states], dim=3)  # (b, g, r, c + 1, p, n)
    decay_chunk = torch.exp(_segsum(F.pad(a_cum[..., -1], (1, 0))))  # (b, g, r, c + 1, c + 1)
    states = torch.einsum("bgrzc,bgrcpn->bgrzpn", decay_chunk, states)
    prev, final = states[:, :, :, :-1], states[:, :, :, -1]
    # 4. contribution of the carried state inside each chunk
    Y = Y + torch.einsum("bcign,bgrcpn,bgrci->bgrcip", Cc, prev, torch.exp(a_cum))
    y = Y.permute(0, 3, 4, 1, 2, 5).reshape(b, nc * T, h, p)[:, :l]
    y = _skip(y, x, D).to(out_dtype)
    return (y, final.reshape(b, h, p, n).to(out_dtype)) if return_final_states else y


def ssd_state_update_ref(state, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=None):
    """One Mamba-2 decode step. state: (b, h, p, n) updated in place; x: (b, h, p); dt: (b, h); B, C: (b, g, n)."""
    dtype = state.dtype
    dt = dt.to(dtype)
    if dt_bias is not None:
        dt = dt + dt_bias.to(dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    if dt_limit is not None and tuple(dt_limit) != (0.0, float("inf")):
        dt = dt.clamp(dt_limit[0], dt_limit[1])
    h, g = x.shape[1], B.shape[1]
    hg = torch.arange(h, device=x.device) // (h // g)
    Bh, Ch = B[:, hg].to(dtype), C[:, hg].to(dtype)  # (b, h, n)
    dA = torch.exp(dt * A.to(dtype))  # (b, h)
    state.copy_(dA[..., None, None] * state + (dt[..., None] * x.to(dtype))[..., None] * Bh[:, :, None, :])
    y = (state @ Ch[..., None]).squeeze(-1)  # (b, h, p)
    return _skip(y, x.to(dtype), D).to(x.dtype)
