"""Mamba-2 mixer (Dao & Gu 2024; mamba-ssm `Mamba2` @ v2.2.4, mamba_ssm/modules/mamba2.py, d_ssm = d_inner).

in_proj → [z, xBC, dt]; xBC → causal depthwise conv1d → silu → (x, B, C); SSD with per-head Δ, A and D;
gated RMSNorm rmsnorm(y ⊙ silu(z)) per group; out_proj. Parameter names match mamba-ssm and transformers.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ModelConfig
from ..ops.backends import get_ops
from .common import Mixer, gated_rmsnorm, init_dt_bias, into_cache

# The chunked torch path is exact for any chunk length; on CPU a shorter chunk than the checkpoint's
# (256, a GPU tile size) is several times faster because the intra-chunk part is quadratic.
REF_CHUNK = 64


class GatedRMSNorm(nn.Module):
    def __init__(self, d: int, eps: float, group_size: int):
        super().__init__()
        self.eps, self.group_size = eps, group_size
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, y, z, ops=None):
        """`ops`: an operator namespace; its fused `gated_rmsnorm`, where it has one, runs instead of torch's."""
        with record_function("gated_norm"):
            fn = getattr(ops, "gated_rmsnorm", None) or gated_rmsnorm
            return fn(y, z, self.weight, self.eps, self.group_size)


class Mamba2Mixer(Mixer):
    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        d, h, g = self.d_inner, config.nheads, config.ngroups
        self.nheads, self.headdim, self.ngroups, self.chunk_size = h, config.headdim, g, config.chunk_size
        self.dt_bias = nn.Parameter(init_dt_bias(h, config.dt_min, config.dt_max, config.dt_init_floor))
        self.A_log = nn.Parameter(torch.log(torch.empty(h).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(h))
        self.norm = GatedRMSNorm(d, config.rms_norm_eps, d // g)
        self.out_proj = nn.Linear(d, config.d_model, bias=config.bias)

    def forward(self, hidden, conv_state=None, ssm_state=None):
        """hidden: (b, l, d_model). With states, continues from them and updates them in place."""
        ops = get_ops(self.backend)
        b, l, _ = hidden.shape
        d, n, h, p, g = self.d_inner, self.d_state, self.nheads, self.headdim, self.ngroups
        step = conv_state is not None and l == 1
        with record_function("in_proj"):
            zxbcdt = self.in_proj(hidden)  # (b, l, d + conv_dim + h)
        fused = getattr(ops, "mamba2_step", None) if step and self.fused_decode else None
        if fused is not None:  # conv update, state update and gated norm in two kernels; timed as "ssm"
            with record_function("ssm"):
                y = fused(zxbcdt[:, 0], conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, ssm_state,
                          self.A_log, self.dt_bias, self.D, self.norm.weight, self.norm.eps, g)  # (b, d)
            with record_function("out_proj"):
                return self.out_proj(y[:, None])
        z, xBC, dt = torch.split(zxbcdt, [d, self.conv_dim, h], dim=-1)
        xBC = self.causal_conv(ops, xBC, conv_state, step).transpose(1, 2)  # (b, l, conv_dim)
        x, B, C = torch.split(xBC, [d, g * n, g * n], dim=-1)
        A = -torch.exp(self.A_log.float())  # (h,)
        with record_function("ssm"):
            if step:
                y = ops.ssd_state_update(ssm_state, x[:, 0].reshape(b, h, p), dt[:, 0], A, B[:, 0].reshape(b, g, n),
                                         C[:, 0].reshape(b, g, n), self.D.float(), self.dt_bias.float(),
                                         dt_softplus=True)[:, None]  # (b, 1, h, p)
            else:
                chunk = min(self.chunk_size, REF_CHUNK) if ops.name in ("ref", "sequential") else self.chunk_size
                out = ops.ssd(x.reshape(b, l, h, p), dt, A, B.reshape(b, l, g, n), C.reshape(b, l, g, n),
                              self.D.float(), self.dt_bias.float(), dt_softplus=True, initial_states=ssm_state,
                              return_final_states=ssm_state is not None, chunk_size=chunk)
                y = into_cache(out, ssm_state)  # (b, l, h, p)
        y = self.norm(y.reshape(b, l, d).to(hidden.dtype), z, ops)
        with record_function("out_proj"):
            return self.out_proj(y)
