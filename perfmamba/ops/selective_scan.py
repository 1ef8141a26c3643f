"""Mamba-1 selective scan (the `ssm` component of Mamba-1).

    Δ_t = softplus(dt_t + dt_bias)         (b, d, l)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t   h: (b, d, n)
    y_t = C_t · h_t + D u_t,  then y_t ⊙ silu(z_t)

Layouts follow mamba-ssm `selective_scan_ref` (state-spaces/mamba@v2.2.4, mamba_ssm/ops/selective_scan_interface.py):
u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l) or (b, g, n, l); D, delta_bias: (d,).
Computation runs in float32, or float64 when the inputs are float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    b, d, l = u.shape
    if B.dim() == 3:  # (b, n, l) -> (b, 1, n, l)
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    g = B.shape[1]
    if d % g:
        raise ValueError(f"d={d} channels cannot be split into {g} groups")
    return dtype, u, delta, A, B, C, g


def _finish(y, u, D, z, out_dtype):
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, initial_state=None):
    """Sequential reference: one step per token. Returns y (b, d, l) [, last state (b, d, n)]."""
    out_dtype = u.dtype
    dtype, u, delta, A, B, C, g = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    b, d, l = u.shape
    n = A.shape[1]
    ch = torch.arange(d, device=u.device) // (d // g)  # group of each channel
    Bc, Cc = B[:, ch], C[:, ch]  # (b, d, n, l)
    h = torch.zeros(b, d, n, dtype=dtype, device=u.device) if initial_state is None else initial_state.to(dtype).clone()
    ys = []
    for t in range(l):
        dA = torch.exp(delta[:, :, t, None] * A)  # (b, d, n)
        h = dA * h + (delta[:, :, t] * u[:, :, t])[..., None] * Bc[..., t]
        ys.append((h * Cc[..., t]).sum(-1))  # (b, d)
    y = torch.stack(ys, dim=-1) if l else u.new_zeros(b, d, 0)
    y = _finish(y, u, D, z, out_dtype)
    return (y, h.to(out_dtype)) if return_last_state else y


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False, initial_state=None, chunk_size=8, block_size=64):
    """Same result as `selective_scan_ref` without a Python loop per token.

    The sequence is processed in blocks of `block_size` tokens (bounding memory to b·block·d·n), each block
    split into chunks of `chunk_size`. Within a block, one vectorised recurrence step per position advances
    all chunks at once from a zero state while accumulating the running decay ∏ exp(Δ A); then one step per
    chunk adds the carried state times that decay. Python iterations per block: chunk_size + block/chunk.
    """
    out_dtype = u.dtype
    dtype, u, delta, A, B, C, g = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    b, d, l = u.shape
    n = A.shape[1]
    T = max(1, min(chunk_size, l))
    Lb = max(T, (block_size // T) * T)
    h = torch.zeros(b, d, n, dtype=dtype, device=u.device) if initial_state is None else initial_state.to(dtype).clone()
    dl = (delta * u).transpose(1, 2).contiguous()  # (b, l, d)
    dt_ = delta.transpose(1, 2).contiguous()  # (b, l, d)
    Bt = B.permute(0, 3, 1, 2).contiguous()  # (b, l, g, n)
    Ct = C.permute(0, 3, 1, 2).contiguous()
    y = torch.empty(b, l, d, dtype=dtype, device=u.device)
    for s in range(0, l, Lb):
        e = min(s + Lb, l)
        lb = e - s
        nc = -(-lb // T)
        pad = nc * T - lb
        # (b, lb, d, n) for the block, padded to whole chunks with Δ = 0 (decay 1, no input)
        dA = torch.exp(dt_[:, s:e, :, None] * A)  # (b, lb, d, n)
        x = (dl[:, s:e].view(b, lb, g, d // g)[..., None] * Bt[:, s:e, :, None, :]).view(b, lb, d, n)
        if pad:
            dA = F.pad(dA, (0, 0, 0, 0, 0, pad), value=1.0)
            x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dA = dA.view(b, nc, T, d, n)
        x = x.view(b, nc, T, d, n)
        for t in range(1, T):  # local scans of all chunks at once, and running decay within each chunk
            x[:, :, t].addcmul_(dA[:, :, t], x[:, :, t - 1])
            dA[:, :, t].mul_(dA[:, :, t - 1])
        for c in range(nc):  # carry the state across chunks
            x[:, c].addcmul_(dA[:, c], h[:, None])
            h = x[:, c, T - 1]
        x = x.view(b, nc * T, d, n)[:, :lb]
        # y_t = Σ_n h_t[n] C_t[n]  — a batched mat-vec per token
        Cb = Ct[:, s:e]  # (b, lb, g, n)
        y[:, s:e] = (x.reshape(b, lb, g, d // g, n) @ Cb[..., None]).view(b, lb, d)
    h = h.clone()
    y = _finish(y.transpose(1, 2), u, D, z, out_dtype)
    return (y, h.to(out_dtype)) if return_last_state else y


def selective_state_update_ref(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One Mamba-1 decode step. state: (b, d, n) updated in place; x, dt, z: (b, d); B, C: (b, n) or (b, g, n).

    Returns y (b, d). Same as mamba-ssm `selective_state_update_ref` for this layout.
    """
    dtype = state.dtype
    dt = dt.to(dtype)
    if dt_bias is not None:
        dt = dt + dt_bias.to(dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    b, d = x.shape
    if B.dim() == 2:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    g = B.shape[1]
    ch = torch.arange(d, device=x.device) // (d // g)
    Bc, Cc = B[:, ch].to(dtype), C[:, ch].to(dtype)  # (b, d, n)
    dA = torch.exp(dt[..., None] * A.to(dtype))
    state.copy_(dA * state + (dt * x.to(dtype))[..., None] * Bc)
    y = (state * Cc).sum(-1)
    if D is not None:
        y = y + x.to(dtype) * D.to(dtype)
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(x.dtype)
