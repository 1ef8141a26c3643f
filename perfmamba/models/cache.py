"""Recurrent state for incremental decoding: per layer a conv cache and an SSM state, sized by that layer's N."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import ModelConfig


@dataclass
class MambaCache:
    conv_states: list[torch.Tensor]  # per layer (b, conv_dim_l, d_conv): the last d_conv inputs of conv1d
    ssm_states: list[torch.Tensor]  # per layer Mamba-1 (b, d_inner, N_l), Mamba-2 (b, nheads, headdim, N_l)
    seqlen_offset: int = 0  # tokens consumed so far
    extra: dict = field(default_factory=dict)

    @classmethod
    def allocate(cls, config: ModelConfig, batch_size: int, *, device="cpu", dtype=torch.float32) -> "MambaCache":
        heads = (config.d_inner,) if config.arch == "mamba1" else (config.nheads, config.headdim)
        conv = [torch.zeros(batch_size, config.conv_dim(i), config.d_conv, device=device, dtype=dtype)
                for i in range(config.n_layer)]
        ssm = [torch.zeros(batch_size, *heads, n, device=device, dtype=dtype) for n in config.d_states]
        return cls(conv, ssm)

    @property
    def batch_size(self) -> int:
        return self.ssm_states[0].shape[0]

    def nbytes(self) -> dict[str, int]:
        """Bytes of the recurrent (SSM) state and of the conv cache, summed over layers."""
        return {name: sum(t.numel() * t.element_size() for t in states)
                for name, states in (("ssm_state", self.ssm_states), ("conv_state", self.conv_states))}

    def clone(self) -> "MambaCache":
        return MambaCache([t.clone() for t in self.conv_states], [t.clone() for t in self.ssm_states],
                          self.seqlen_offset, dict(self.extra))
