"""Mamba-1 selective scan (the `ssm` component of Mamba-1).

    Δ_t = softplus(dt_t + dt_bias)         (b, d, l)
    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t u_t   h: (b, d, n)
    y_t = C_t · h_t + D u_t,  then y_t ⊙ silu(z_t)

Layouts follow mamba-ssm `selective_scan_ref` (state-spaces/mamba@v2.2.4,
mamba_ssm/ops/selective_scan_interface.py): u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l) or
(b, g, n, l); D, delta_bias: (d,). Computation runs in float32, or float64 when the inputs are float64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def discretize_dt(dt, bias=None, softplus=False, limit=None):
    """Δ from the raw dt, in dt's dtype: + bias (shaped to broadcast), softplus, clamp to `limit`, each only
    where asked. The limit (0, ∞) is mamba-ssm's default and means none."""
    if bias is not None:
        dt = dt + bias.to(dt.dtype)
    if softplus:
        dt = F.softplus(dt)
    if has_dt_limit(limit):
        dt = dt.clamp(limit[0], limit[1])
    return dt


def has_dt_limit(limit) -> bool:
    return limit is not None and tuple(limit) != (0.0, float("inf"))


def records_grad(*tensors) -> bool:
    """Whether autograd records an op on these tensors (None: an absent optional input)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def compute_dtype(x) -> torch.dtype:
    """The references compute in float64 for float64 inputs, else in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def prepare(x, dt, A, B, C, dt_bias, dt_softplus, dt_limit=None):
    """(compute dtype, x, Δ, A, B, C): the inputs cast to the compute dtype, Δ discretised (`dt_bias` shaped
    to broadcast against dt)."""
    dtype = compute_dtype(x)
    x, dt, A, B, C = (t.to(dtype) for t in (x, dt, A, B, C))
    return dtype, x, discretize_dt(dt, dt_bias, dt_softplus, dt_limit), A, B, C


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus):
    dtype, u, delta, A, B, C = prepare(u, delta, A, B, C, None if delta_bias is None else delta_bias[:, None],
                                       delta_softplus)
    B, C, g = _groups(B, C, u.shape[1], 4)
    return dtype, u, delta, A, B, C, g


def _groups(B, C, d, ndim):
    """B, C with their group axis at dim 1, `ndim` dims in all (an input without one is one group), and the
    number of groups g, which must divide d."""
    if B.dim() == ndim - 1:  # (b, n[, l]) -> (b, 1, n[, l])
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    g = B.shape[1]
    if d % g:
        raise ValueError(f"d={d} channels cannot be split into {g} groups")
    return B, C, g


def _finish(y, u, D, z, out_dtype):
    """y + D u (D per channel, dim 1 of u), times silu(z), in out_dtype."""
    if D is not None:
        y = y + u * D.to(y.dtype).view(-1, *(1,) * (u.dim() - 2))
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

    Blocks of `block_size` tokens (memory b·block·d·n), each scanned in chunks of `chunk_size` by `_scan_`.
    Token-major inside, (b, l, d): the models' Δ, z and out_proj input are in that layout, so their (b, d, l)
    arguments are transposed views and y is a (b, d, l) view of a token-major tensor, without copies. The
    block buffers are allocated once per call (no page faults in the loop). While autograd records, the call
    goes to `selective_scan_trainable`.
    """
    if records_grad(u, delta, A, B, C, D, z, delta_bias, initial_state):
        return selective_scan_trainable(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                        initial_state, chunk_size)
    out_dtype = u.dtype
    dtype = compute_dtype(u)
    b, d, l = u.shape
    n = A.shape[1]
    B, C, g = _groups(B, C, d, 4)
    A = A.to(dtype)
    ut = u.transpose(1, 2).to(dtype).contiguous()  # (b, l, d)
    dt = discretize_dt(delta.transpose(1, 2).to(dtype), delta_bias, delta_softplus).contiguous()
    dl = dt * ut  # (b, l, d)
    Bt = B.permute(0, 3, 1, 2).to(dtype).contiguous()  # (b, l, g, n)
    Ct = C.permute(0, 3, 1, 2).to(dtype).contiguous()
    T = max(1, min(chunk_size, l))
    Lb = min(max(T, (block_size // T) * T), -(-l // T) * T)
    h = torch.zeros(b, d, n, dtype=dtype, device=u.device) if initial_state is None else initial_state.to(dtype).clone()
    y = torch.empty(b, l, d, dtype=dtype, device=u.device)
    dA_buf = torch.empty(b, Lb, d, n, dtype=dtype, device=u.device)
    x_buf = torch.empty(b, Lb, d, n, dtype=dtype, device=u.device)
    for s in range(0, l, Lb):
        e = min(s + Lb, l)
        lb = e - s
        nc = -(-lb // T)
        dA, x = dA_buf[:, : nc * T], x_buf[:, : nc * T]
        torch.mul(dt[:, s:e, :, None], A, out=dA[:, :lb])
        dA[:, :lb].exp_()
        torch.mul(dl[:, s:e].view(b, lb, g, d // g, 1), Bt[:, s:e, :, None, :], out=x[:, :lb].view(b, lb, g, d // g, n))
        if nc * T > lb:  # pad the last chunk with Δ = 0: decay 1, no input
            dA[:, lb:].fill_(1.0)
            x[:, lb:].zero_()
        h = _scan_(dA, x, h, T).clone()  # a view into the buffers, which the next block overwrites
        # y_t = Σ_n h_t[n] C_t[n]  — a batched mat-vec per token
        hx = x.view(b, nc * T, g, d // g, n)[:, :lb]
        y[:, s:e] = (hx @ Ct[:, s:e, :, :, None]).view(b, lb, d)
    if D is not None:
        y.addcmul_(ut, D.to(dtype))
    if z is not None:
        y.mul_(F.silu(z.transpose(1, 2).to(dtype)))
    y = y.to(out_dtype).transpose(1, 2)  # (b, d, l) view
    return (y, h.to(out_dtype)) if return_last_state else y


def _scan_(decay, x, h0, chunk: int, reverse: bool = False):
    """In place along dim 1 of x, decay (b, l, ...): x_t += decay_t ⊙ x_{t−1} from x_{−1} = h0 (reverse:
    x_t += decay_t ⊙ x_{t+1} from x_l = h0; h0 None is 0). All chunks of `chunk` positions advance at once
    from a zero state while `decay` becomes the running product within each; one step per chunk then adds the
    carried state. Returns the state after the last step (a view into x).
    """
    b, l = x.shape[:2]
    T = max(1, min(chunk, l))
    nc = l // T
    l0 = nc * T
    rest = x.shape[2:]
    h = h0

    def one_by_one(positions):  # the positions l0 … l−1 past the whole chunks: first in reverse, last forward
        nonlocal h
        for t in positions:
            if h is not None:
                x[:, t].addcmul_(decay[:, t], h)
            h = x[:, t]

    if reverse:
        one_by_one(range(l - 1, l0 - 1, -1))
    if nc:
        X = x[:, :l0].view(b, nc, T, *rest)
        P = decay[:, :l0].view(b, nc, T, *rest)
        steps = range(T - 2, -1, -1) if reverse else range(1, T)
        for t in steps:
            nb = t + 1 if reverse else t - 1
            X[:, :, t].addcmul_(P[:, :, t], X[:, :, nb])
            P[:, :, t].mul_(P[:, :, nb])
        for c in (range(nc - 1, -1, -1) if reverse else range(nc)):
            if h is not None:
                X[:, c].addcmul_(P[:, c], h[:, None])
            h = X[:, c, 0] if reverse else X[:, c, T - 1]
    if not reverse:
        one_by_one(range(l0, l))
    return h


class _SelectiveScan(torch.autograd.Function):
    """h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t u_t) ⊗ B_t,  y_t = h_t C_t, with a hand-written backward.

    u, delta (after softplus): (b, d, l); A (d, n); B, C (b, g, n, l); h0 (b, d, n) or None.
    Returns y (b, d, l) and the last state (b, d, n). The states h (b, l, d, n) are kept for the backward pass,
    which runs the adjoint recurrence g_t = C_t ⊗ ∂y_t + exp(Δ_{t+1} A) ⊙ g_{t+1} backwards in time and reads
    every gradient off g and h:  ∂(Δu)_t = g_t B_t,  ∂B_t = Σ_d g_t (Δu)_t,  ∂C_t = Σ_d h_t ∂y_t,
    ∂Δ_t += Σ_n q_t A,  ∂A = Σ_{b,t} q_t Δ_t,  ∂h0 = g_0 exp(Δ_0 A),  with q_t = g_t ⊙ exp(Δ_t A) ⊙ h_{t−1}.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, h0, chunk):
        b, d, l = u.shape
        g, n = B.shape[1], B.shape[2]
        dt = delta.transpose(1, 2)  # (b, l, d)
        decay = torch.exp(dt[..., None] * A)  # (b, l, d, n)
        du = (dt * u.transpose(1, 2)).reshape(b, l, g, d // g, 1)
        hs = (du * B.permute(0, 3, 1, 2)[:, :, :, None, :]).reshape(b, l, d, n)  # (Δu)_t ⊗ B_t
        last = _scan_(decay, hs, h0, chunk).clone()  # hs now holds h_t
        y = (hs.view(b, l, g, d // g, n) @ C.permute(0, 3, 1, 2)[..., None]).reshape(b, l, d)
        ctx.chunk = chunk
        ctx.save_for_backward(u, delta, A, B, C, h0 if h0 is not None else u.new_empty(0), hs)
        ctx.has_h0 = h0 is not None
        return y.transpose(1, 2).contiguous(), last

    @staticmethod
    def backward(ctx, gy, glast):
        u, delta, A, B, C, h0, hs = ctx.saved_tensors
        b, d, l = u.shape
        g, n = B.shape[1], B.shape[2]
        dt = delta.transpose(1, 2)  # (b, l, d)
        Bt, Ct = B.permute(0, 3, 1, 2), C.permute(0, 3, 1, 2)  # (b, l, g, n)
        gy = torch.zeros_like(u) if gy is None else gy
        gyt = gy.transpose(1, 2)  # (b, l, d)
        # adjoint states, reverse scan: g_t = C_t ⊗ ∂y_t + exp(Δ_{t+1} A) ⊙ g_{t+1}, g_l = ∂last
        G = (gyt.reshape(b, l, g, d // g, 1) * Ct[:, :, :, None, :]).reshape(b, l, d, n)
        dt_next = F.pad(dt[:, 1:], (0, 0, 0, 1))  # Δ_{t+1}, 0 after the end
        _scan_(torch.exp(dt_next[..., None] * A), G, glast, ctx.chunk, reverse=True)
        # gradients through the input term (Δu)_t ⊗ B_t and the readout h_t C_t
        gdu = (G.view(b, l, g, d // g, n) @ Bt[..., None]).reshape(b, l, d)
        du = (dt * u.transpose(1, 2)).reshape(b, l, g, 1, d // g)
        gB = (du @ G.view(b, l, g, d // g, n)).reshape(b, l, g, n).permute(0, 2, 3, 1)
        gC = (gyt.reshape(b, l, g, 1, d // g) @ hs.view(b, l, g, d // g, n)).reshape(b, l, g, n).permute(0, 2, 3, 1)
        # gradients through the decay exp(Δ_t A): q_t = g_t ⊙ exp(Δ_t A) ⊙ h_{t−1}
        decay = torch.exp(dt[..., None] * A)
        gh0 = G[:, 0] * decay[:, 0] if ctx.has_h0 else None
        q = decay.mul_(G)
        q[:, 1:].mul_(hs[:, :-1])
        if ctx.has_h0:
            q[:, 0].mul_(h0)
        else:
            q[:, 0].zero_()
        gdt = torch.einsum("bldn,dn->bld", q, A)  # Σ_n q A
        gA = torch.einsum("bldn,bld->dn", q, dt)
        gu = (gdu * dt).transpose(1, 2)
        gdelta = (gdu * u.transpose(1, 2) + gdt).transpose(1, 2)
        return gu, gdelta, gA, gB.contiguous(), gC.contiguous(), gh0, None


def selective_scan_trainable(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                             return_last_state=False, initial_state=None, chunk_size=8):
    """`selective_scan_ref` with a backward pass fast enough to train on CPU: the scan is one autograd node
    (`_SelectiveScan`); Δ bias and softplus, D skip and silu(z) gate stay in autograd. (The chunked scan works
    in place, which autograd cannot record; the reference's backward materialises a full gradient per token.)
    Memory: a few (b, l, d, n) tensors per call, kept for the backward pass.
    """
    out_dtype = u.dtype
    dtype, u, delta, A, B, C, _ = _prepare(u, delta, A, B, C, delta_bias, delta_softplus)
    h0 = initial_state.to(dtype) if initial_state is not None else None
    y, last = _SelectiveScan.apply(u.contiguous(), delta.contiguous(), A.contiguous(), B.contiguous(),
                                   C.contiguous(), h0, chunk_size)
    y = _finish(y, u, D, z, out_dtype)
    return (y, last.to(out_dtype)) if return_last_state else y


def selective_state_update_ref(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """One Mamba-1 decode step. state: (b, d, n) updated in place; x, dt, z: (b, d); B, C: (b, n) or (b, g, n).

    Returns y (b, d). Same as mamba-ssm `selective_state_update_ref` for this layout.
    """
    dtype = state.dtype
    dt = discretize_dt(dt.to(dtype), dt_bias, dt_softplus)
    d = x.shape[1]
    B, C, g = _groups(B, C, d, 3)
    ch = torch.arange(d, device=x.device) // (d // g)
    Bc, Cc = B[:, ch].to(dtype), C[:, ch].to(dtype)  # (b, d, n)
    dA = torch.exp(dt[..., None] * A.to(dtype))
    state.copy_(dA * state + (dt * x.to(dtype))[..., None] * Bc)
    return _finish((state * Cc).sum(-1), x.to(dtype), D, z, x.dtype)
