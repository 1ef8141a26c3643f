"""Pieces shared by both architectures: RMSNorm, the mixers' common part, the Δ bias initialisation, the
causal conv with its cache, the backend names."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ModelConfig
from ..ops.norm import gated_rmsnorm_ref, rmsnorm_ref

gated_rmsnorm = gated_rmsnorm_ref  # the model's own, which a backend's fused `gated_rmsnorm` replaces

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
            fn = getattr(ops, "rmsnorm", None) or rmsnorm_ref
            return fn(x, self.weight, self.eps)


class Mixer(nn.Module):
    """What both mixers share: their sizes, the compute path the LM sets on them, and in_proj and the causal
    depthwise conv1d, made first (the initialisation draws in mamba-ssm's order)."""

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.d_inner, self.d_state = config.d_inner, config.d_states[layer_idx]
        self.conv_dim = c = config.conv_dim(layer_idx)
        self.backend = "ref"
        self.fused_decode = True  # a decode step runs the backend's fused step kernel, where it has one
        self.in_proj = nn.Linear(config.d_model, config.in_proj_dim(layer_idx), bias=config.bias)
        self.conv1d = nn.Conv1d(c, c, config.d_conv, groups=c, padding=config.d_conv - 1,
                                bias=config.conv_bias)

    def causal_conv(self, ops, x, conv_state, step: bool):
        """silu(causal depthwise conv1d(x)): x (b, l, c) → (b, c, l). With `conv_state` (b, c, d_conv), the
        last d_conv inputs, continues from it and updates it in place; `step`: one token by `conv_update`."""
        with record_function("conv1d"):
            w, cb = self.conv1d.weight.squeeze(1), self.conv1d.bias  # (c, d_conv)
            if step:
                return ops.conv_update(x[:, 0], conv_state, w, cb, activation="silu")[:, :, None]  # (b, c, 1)
            init = conv_state[..., 1:] if conv_state is not None else None
            out = ops.conv(x.transpose(1, 2), w, cb, initial_states=init, activation="silu")
            if conv_state is not None:
                # the last d_conv inputs of [cache, x]: only the tail of x is concatenated, not all l tokens
                k = conv_state.shape[-1]
                conv_state.copy_(torch.cat([conv_state, x[:, -k:].transpose(1, 2)], -1)[..., -k:])
            return out


def init_dt_bias(n: int, dt_min: float, dt_max: float, floor: float) -> torch.Tensor:
    """Inverse softplus of Δ sampled log-uniformly in [dt_min, dt_max] (mamba-ssm initialisation)."""
    dt = torch.exp(torch.rand(n) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
    return dt + torch.log(-torch.expm1(-dt))


def into_cache(out, ssm_state):
    """A prefill scan's output; with a cache, the scan also returned its final state, which goes into it."""
    if ssm_state is None:
        return out
    out, last = out
    ssm_state.copy_(last)
    return out


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name
