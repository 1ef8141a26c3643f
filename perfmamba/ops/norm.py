"""RMSNorm and Mamba-2's gated RMSNorm in plain torch: the references of the fused Triton norms.

`rmsnorm_ref` is transformers' `MambaRMSNorm` (normalise in float32, round to the input dtype, multiply by the
weight in the promoted dtype); `gated_rmsnorm_ref` is mamba-ssm's `RMSNormGated` with norm_before_gate=False
(state-spaces/mamba@v2.2.4, mamba_ssm/ops/triton/layernorm_gated.py): rmsnorm(y ⊙ silu(z)) per group.
The models' `RMSNorm` module and `gated_rmsnorm` run these.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rmsnorm_ref(x, weight, eps=1e-5):
    """x (..., d) → weight · x / sqrt(mean(x²) + eps)."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def gated_rmsnorm_ref(y, z, weight, eps, group_size):
    """Mamba-2's output norm, norm_before_gate=False: rmsnorm(y ⊙ silu(z)) per group of `group_size` channels."""
    dtype = y.dtype
    y = y.float() * F.silu(z.float())
    *pre, d = y.shape
    yg = y.view(*pre, d // group_size, group_size)
    yg = yg * torch.rsqrt(yg.pow(2).mean(-1, keepdim=True) + eps)
    return weight * yg.view(*pre, d).to(dtype)
