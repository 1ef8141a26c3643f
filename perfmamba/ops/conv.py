"""Causal depthwise conv1d (the `conv1d` component), prefill and single-step decode; signatures of
Dao-AILab/causal-conv1d `causal_conv1d_ref` / `causal_conv1d_update_ref`.

`causal_conv1d_shift`, what the CPU models run, computes the reference as w shifted multiply-adds over
token-major rows: the models' activations are token-major, and the (b, d, l) layout costs a transposing copy
per layer that is slower than the convolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def check_activation(activation, error=ValueError) -> bool:
    """Whether SiLU is asked for; anything but None, "silu" or "swish" raises `error`."""
    if activation not in (None, "silu", "swish"):
        raise error(f"activation must be None or 'silu', got {activation!r}")
    return activation is not None


def causal_conv1d_ref(x, weight, bias=None, initial_states=None, return_final_states=False, activation=None):
    """x: (b, d, l); weight: (d, w); bias: (d,); initial_states: (b, d, w - 1) inputs preceding x.

    Returns out (b, d, l) and, if asked, the last w - 1 inputs (b, d, w - 1): the conv cache for decoding.
    """
    silu = check_activation(activation)
    d, w = x.shape[1], weight.shape[-1]
    if initial_states is None:
        xp = F.pad(x, (w - 1, 0))
    else:
        xp = torch.cat([initial_states.to(x.dtype), x], dim=-1)  # (b, d, w - 1 + l)
    out = F.conv1d(xp, weight.unsqueeze(1).to(x.dtype), bias.to(x.dtype) if bias is not None else None, groups=d)
    if silu:
        out = F.silu(out)
    if not return_final_states:
        return out
    return out, xp[..., -(w - 1):].contiguous() if w > 1 else xp[..., :0]


def causal_conv1d_shift(x, weight, bias=None, initial_states=None, return_final_states=False, activation=None):
    """Same contract as `causal_conv1d_ref`. Works on x.transpose(1, 2), (b, l, d), and returns out as a (b, d, l)
    view of a token-major tensor: for the models' inputs, which are transposed views of token-major
    activations, no transposing copy is made."""
    silu = check_activation(activation)
    b, d, l = x.shape
    w = weight.shape[-1]
    xt = x.transpose(1, 2)  # (b, l, d)
    wt = weight.to(x.dtype).t().contiguous()  # (w, d); contiguous rows: a strided row takes torch's slow path
    prev = xt.new_zeros(b, w - 1, d) if initial_states is None else initial_states.to(x.dtype).transpose(1, 2)
    xp = torch.cat([prev, xt], dim=1)  # (b, w - 1 + l, d): the inputs each output position sees
    out = xp[:, w - 1:] * wt[w - 1] if bias is None else torch.addcmul(bias.to(x.dtype), xp[:, w - 1:], wt[w - 1])
    for k in range(w - 1):
        out.addcmul_(xp[:, k:k + l], wt[k])
    if silu:
        out = F.silu(out, inplace=True)
    out = out.transpose(1, 2)
    if not return_final_states:
        return out
    return out, xp[:, l:].transpose(1, 2).contiguous()


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
