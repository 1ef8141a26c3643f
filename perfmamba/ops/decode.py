"""One decode step of a whole mixer, composed from the single-op references: the ground truth of the fused
Triton decode kernels (`perfmamba.ops.triton.decode`), same signatures.

Mamba-2 per token between its projections (mamba-ssm `Mamba2.step`, state-spaces/mamba@v2.2.4 mamba2.py):

    z, xBC, dt = split(in_proj(u))          xBC → conv-state update → silu → x, B, C   (conv_dim = d + 2·g·N)
    y = ssd_state_update(h, x, dt, A = −exp(A_log), B, C, D, dt_bias, softplus)
    out_proj input = gated_rmsnorm(y, z)    rmsnorm(y ⊙ silu(z)) per group of d/g channels

Mamba-1 (`Mamba.step`, modules/mamba_simple.py), after the conv update and x_proj:
dt_low, B, C = split(x_proj(x)), dt = dt_low · W_dtᵀ, y = selective_state_update(...) ⊙ silu(z). Between
layers, the residual add and the next RMSNorm (`add_rmsnorm_ref`). Every step rounds where the models round
(conv output and y to the activations' dtype), so the fused kernels can be compared exactly in float32.
"""
from __future__ import annotations

import torch

from .conv import causal_conv1d_update_ref
from .norm import gated_rmsnorm_ref, rmsnorm_ref
from .selective_scan import selective_state_update_ref
from .ssd import ssd_state_update_ref


def mamba2_step_ref(zxbcdt, conv_state, conv_weight, conv_bias, ssm_state, A_log, dt_bias, D, norm_weight, eps,
                    ngroups, dt_limit=None):
    """One Mamba-2 mixer step from the in_proj output to the out_proj input.

    zxbcdt: (b, d + conv_dim + h); conv_state: (b, conv_dim, w) and ssm_state: (b, h, p, N), both updated in
    place; conv_weight (conv_dim, w); conv_bias (conv_dim,) or None; A_log, dt_bias, D: (h,); norm_weight (d,).
    Returns the gated, normalised y (b, d) in the promoted dtype of norm_weight and zxbcdt.
    """
    b = zxbcdt.shape[0]
    _, h, p, n = ssm_state.shape
    d = h * p
    conv_dim = conv_weight.shape[0]
    z, xBC, dt = torch.split(zxbcdt, [d, conv_dim, h], dim=-1)
    xBC = causal_conv1d_update_ref(xBC, conv_state, conv_weight, conv_bias, activation="silu").to(zxbcdt.dtype)
    x, B, C = torch.split(xBC, [d, ngroups * n, ngroups * n], dim=-1)
    A = -torch.exp(A_log.float())
    y = ssd_state_update_ref(ssm_state, x.reshape(b, h, p), dt, A, B.reshape(b, ngroups, n), C.reshape(b, ngroups, n),
                             D.float() if D is not None else None, dt_bias.float() if dt_bias is not None else None,
                             dt_softplus=True, dt_limit=dt_limit)
    return gated_rmsnorm_ref(y.reshape(b, d).to(zxbcdt.dtype), z, norm_weight, eps, d // ngroups)


def mamba1_step_ref(ssm_state, x, x_dbl, dt_proj_weight, dt_proj_bias, A_log, D, z):
    """One Mamba-1 selective-state step from the x_proj output: Δ projection, state update, D skip, silu(z) gate.

    ssm_state: (b, d, N) updated in place; x, z: (b, d) (x after the conv); x_dbl: (b, r + 2N) = [dt_low | B | C];
    dt_proj_weight: (d, r); dt_proj_bias, D: (d,); A_log: (d, N). Returns y (b, d) in x's dtype.
    """
    r, n = dt_proj_weight.shape[1], ssm_state.shape[-1]
    dt_low, B, C = torch.split(x_dbl, [r, n, n], dim=-1)
    dt = dt_low @ dt_proj_weight.t()  # (b, d), in the activations' dtype like the model's matmul
    A = -torch.exp(A_log.float())
    return selective_state_update_ref(ssm_state, x, dt, A, B, C, D.float() if D is not None else None, z,
                                      dt_proj_bias.float() if dt_proj_bias is not None else None, dt_softplus=True)


def add_rmsnorm_ref(x, out, weight, eps=1e-5):
    """The residual add that ends a block and the RMSNorm that starts the next: returns (s, rmsnorm(s)) with
    s = (x + out) rounded to x's dtype. (Adding in float32 and rounding, the models' `residual_in_fp32`, gives the
    same s as adding in x's dtype, which torch also computes in float32 and rounds.)"""
    s = (x.float() + out.float()).to(x.dtype)
    return s, rmsnorm_ref(s, weight, eps)
