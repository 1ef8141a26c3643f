"""Pieces shared by both architectures: RMSNorm, init helpers, the backend switch."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..ops.norm import gated_rmsnorm_ref, rmsnorm_ref

BACKENDS = ("ref", "sequential", "triton", "mamba_ssm")


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · w, computed in float32 (transformers `MambaRMSNorm`)."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x, ops=None):
        """`ops`: an operator namespace (`perfmamba.ops.get_ops`); where it offers a fused `rmsnorm` (the
        `triton` one does), that runs instead of the torch reference."""
        with record_function("rmsnorm"):
            fused = getattr(ops, "rmsnorm", None)
            if fused is not None:
                return fused(x, self.weight, self.eps)
            return rmsnorm_ref(x, self.weight, self.eps)


def gated_rmsnorm(y, z, weight, eps, group_size):
    """Mamba-2's output norm, norm_before_gate=False: rmsnorm(y ⊙ silu(z)) per group of `group_size` channels
    (`perfmamba.ops.norm.gated_rmsnorm_ref`)."""
    return gated_rmsnorm_ref(y, z, weight, eps, group_size)


def init_dt_bias(n: int, dt_min: float, dt_max: float, floor: float) -> torch.Tensor:
    """Inverse softplus of Δ sampled log-uniformly in [dt_min, dt_max] (mamba-ssm initialisation)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name
