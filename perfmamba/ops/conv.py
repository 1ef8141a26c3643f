"""Causal depthwise conv1d (the `conv1d` component), prefill and single-step decode.

Signatures follow Dao-AILab/causal-conv1d `causal_conv1d_ref` / `causal_conv1d_update_ref`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_ref(x, weight, bias=None, initial_states=None, return_final_states=False, activation=None):
    """x: (b, d, l); weight: (d, w); bias: (d,); initial_states: (b, d, w - 1) inputs preceding x.

    Returns out (b, d, l) and, if asked, the last w - 1 inputs (b, d, w - 1): the conv cache for decoding.
    """
    if activation not in (None, "silu", "swish"):
        raise ValueError(f"activation must be None or 'silu', got {activation!r}")
    b, d, l = x.shape
    w = weight.shape[-1]
    if initial_states is None:
        xp = F.pad(x, (w - 1, 0))
    else:
        xp = torch.cat([initial_states.to(x.dtype), x], dim=-1)  # (b, d, w - 1 + l)
    out = F.conv1d(xp, weight.unsqueeze(1).to(x.dtype), bias.to(x.dtype) if bias is not None else None, groups=d)
    if activation is not None:
        out = F.silu(out)
    if not return_final_states:
        return out
    return out, xp[..., -(w - 1):].contiguous() if w > 1 else xp[..., :0]


def causal_conv1d_update_ref(x, conv_state, weight, bias=None, activation=None):
    """One decode step. x: (b, d); conv_state: (b, d, w) holding the last w inputs, updated in place."""
    conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
    conv_state[:, :, -1] = x
    out = torch.einsum("bdw,dw->bd", conv_state.to(weight.dtype), weight)
    if bias is not None:
        out = out + bias
    if activation is not None:
        out = F.silu(out)
    return out.to(x.dtype)
