"""perfmamba: profiling and state pruning of Mamba-1 / Mamba-2 selective state space models.

A reproducible replication of *PerfMamba: Performance Analysis and Pruning of Selective State Space Models*
(arXiv 2511.22849).

Glossary (paper symbol ↔ code name)
-----------------------------------
    D (model width)            d_model
    E·D (expanded width)       d_inner = expand · d_model
    N (state size)             d_state           (per layer after pruning: ModelConfig.d_states)
    N′ (kept states)           n_keep = ⌊N(1 − r)⌋, at least 1
    r (pruning ratio)          ratio
    Δ_t (step size)            dt; Δ = softplus(dt + dt_bias)
    A, B_t, C_t, D             A = −exp(A_log), B, C (input-dependent), D (skip)
    h_t (hidden state)         ssm_state: Mamba-1 (b, d_inner, N), Mamba-2 (b, nheads, headdim, N)
    activity(l, s) = E[Δ_t]    perfmamba.pruning activity statistics
    W_bridge ∈ R^{N×N′}        mode="bridge"
    "Gated MLP"                in_proj (the input projection to x, z, B, C, Δ)
    RMSNorm / conv1d / SSM / output projection   rmsnorm / conv1d / ssm / out_proj (profiler labels)
    prefill (time to first token) / decode (time per output token)   phase="prefill" / "decode"
"""
from .checkpoints import CheckpointError, load
from .config import PRESETS, ConfigError, ModelConfig, preset
from .errors import PerfmambaError
from .models.cache import MambaCache
from .models.lm import MambaLM
from .pruning import prune

__version__ = "0.1.0"

__all__ = ["load", "PRESETS", "preset", "ModelConfig", "MambaLM", "MambaCache", "PerfmambaError",
           "ConfigError", "CheckpointError", "prune"]
