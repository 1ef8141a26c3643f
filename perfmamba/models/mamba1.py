"""Mamba-1 mixer (Gu & Dao 2023, Alg. 2; mamba-ssm `Mamba` @ v2.2.4, mamba_ssm/modules/mamba_simple.py).

in_proj → (x, z); x → causal depthwise conv1d → silu; x_proj → (dt_low, B, C); Δ = softplus(dt_proj(dt_low));
selective scan with D skip and silu(z) gate; out_proj. Parameter names match mamba-ssm and transformers.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ModelConfig
from ..ops.backends import get_ops
from .common import Mixer, init_dt_bias, into_cache


class Mamba1Mixer(Mixer):
    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        d, n, r = self.d_inner, self.d_state, config.dt_rank_value
        self.dt_rank = r
        self.x_proj = nn.Linear(d, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1))  # (d, n)
        self.D = nn.Parameter(torch.ones(d))
        self.out_proj = nn.Linear(d, config.d_model, bias=config.bias)
        # mamba-ssm initialisation of Δ
        std = r ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(init_dt_bias(d, config.dt_min, config.dt_max, config.dt_init_floor))

    def forward(self, hidden, conv_state=None, ssm_state=None):
        """hidden: (b, l, d_model). With states, continues from them and updates them in place."""
        ops = get_ops(self.backend)
        step = conv_state is not None and hidden.shape[1] == 1
        with record_function("in_proj"):
            xz = self.in_proj(hidden)  # (b, l, 2d)
        x, z = xz.chunk(2, dim=-1)
        x = self.causal_conv(ops, x, conv_state, step)  # (b, d, l)
        fused = getattr(ops, "mamba1_step", None) if step and self.fused_decode else None
        with record_function("ssm"):
            with record_function("ssm.x_proj"):
                x_dbl = self.x_proj(x.transpose(1, 2))  # (b, l, r + 2n)
            if fused is not None:  # Δ projection, state update, D skip and gate in one kernel, timed as the scan
                with record_function("ssm.scan"):
                    y = fused(ssm_state, x[..., 0], x_dbl[:, 0], self.dt_proj.weight, self.dt_proj.bias, self.A_log,
                              self.D, z[:, 0])[:, None]  # (b, 1, d)
            else:
                y = self._scan(ops, x, x_dbl, z, step, ssm_state)
        with record_function("out_proj"):
            return self.out_proj(y.to(hidden.dtype))

    def _scan(self, ops, x, x_dbl, z, step, ssm_state):
        """Δ projection, then the scan (prefill) or one state update (decode) on the namespace's kernels."""
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        with record_function("ssm.dt_proj"):
            dt = dt @ self.dt_proj.weight.t()  # (b, l, d); bias added inside the scan
        A = -torch.exp(self.A_log.float())  # (d, n)
        with record_function("ssm.scan"):
            if step:
                return ops.selective_state_update(ssm_state, x[..., 0], dt[:, 0], A, B[:, 0], C[:, 0], self.D.float(),
                                                  z[:, 0], self.dt_proj.bias.float(), dt_softplus=True)[:, None]
            out = ops.selective_scan(x, dt.transpose(1, 2), A, B.transpose(1, 2), C.transpose(1, 2),
                                     self.D.float(), z.transpose(1, 2), self.dt_proj.bias.float(),
                                     delta_softplus=True, return_last_state=ssm_state is not None,
                                     initial_state=ssm_state)
            return into_cache(out, ssm_state).transpose(1, 2)  # (b, l, d)
