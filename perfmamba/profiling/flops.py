"""Analytic FLOPs and bytes per component, one function each, for prefill and decode.

Conventions (nanoGPT `estimate_mfu` style, stated once here):

- A multiply-add counts 2 FLOPs (matmuls and the convolution, as `torch.utils.flop_counter` counts them);
  every other elementwise add or multiply counts 1, and so does each pointwise function (exp, softplus,
  sigmoid, rsqrt). SiLU(x) = x·σ(x) counts 2.
- Tokens processed: T = batch·seqlen in prefill, T = batch in decode (one token per sequence; a recurrent
  model's step does not depend on the context length). Prefill computes logits for the last position only
  (time to first token, like mamba-ssm's ``num_last_tokens=1``), so `lm_head` processes `batch` tokens in
  both phases.
- Bytes are the unavoidable memory traffic of one call: every weight read once, every activation input
  read once, every output written once, the recurrent state read and written once in decode and written
  once at the end of prefill (prefill fills the cache). Activations and weights have the model dtype,
  the cache its own dtype (float32 unless stated), A/D/dt_bias are float32. Traffic from the residual
  stream and from reshapes ("other") is not attributed.

Symbols: D d_model, E d_inner, N_l d_state of layer l, R dt_rank, W d_conv, H nheads, P headdim,
G ngroups, Q chunk_size, V padded vocab, B batch, L seqlen. Sums run over layers, so per-layer N_l
(pruned models) is exact. Equation sources: Gu & Dao 2023 (Mamba, arXiv 2312.00752) Alg. 2 and Eq. (2);
Dao & Gu 2024 (Mamba-2, arXiv 2405.21060) §6 and Listing 1 (`ssd_minimal_discrete`); mamba-ssm
state-spaces/mamba@v2.2.4 mamba_ssm/modules/{mamba_simple,mamba2}.py for the projections' shapes.
"""
from __future__ import annotations

import math

import torch

from ..config import ModelConfig
from ..errors import ProfilingError

PHASES = ("prefill", "decode")
# top-level components, in block order (Mamba-1 has no gated_norm); `ssm` contains ssm.* for Mamba-1
COMPONENTS = ("embedding", "rmsnorm", "in_proj", "conv1d", "ssm", "gated_norm", "out_proj", "lm_head")
SUBCOMPONENTS = ("ssm.x_proj", "ssm.dt_proj", "ssm.scan")


def check_shape_args(batch, seqlen, phase) -> None:
    for name, v in (("batch", batch), ("seqlen", seqlen)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ProfilingError(f"{name} must be a positive integer, got {v!r}")
    if phase not in PHASES:
        raise ProfilingError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")


def tokens(batch: int, seqlen: int, phase: str) -> int:
    """T: tokens one call processes."""
    check_shape_args(batch, seqlen, phase)
    return batch * seqlen if phase == "prefill" else batch


def _size(dtype) -> int:
    return torch.empty((), dtype=dtype).element_size() if isinstance(dtype, torch.dtype) else int(dtype)


# FLOPs ------------------------------------------------------------------------------------------------
def flops_embedding(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """A row gather: no arithmetic."""
    tokens(batch, seqlen, phase)
    return 0


def flops_rmsnorm(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """n_layer pre-norms + the final norm, each (4D + 3)·T: x² (D), Σ (D), mean/+ε/rsqrt (3), ·rsqrt (D),
    ·weight (D). Prefill normalises every position (norm_f included), since all feed the cache."""
    return (cfg.n_layer + 1) * (4 * cfg.d_model + 3) * tokens(batch, seqlen, phase)


def flops_in_proj(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """The paper's "Gated MLP": [x, z] (Mamba-1) or [z, xBC, dt] (Mamba-2) = W_in u,
    2·T·D·I_l (+T·I_l with bias); I_l = 2E (Mamba-1), 2E + 2G·N_l + H (Mamba-2)."""
    T = tokens(batch, seqlen, phase)
    return sum(T * cfg.in_proj_dim(l) * (2 * cfg.d_model + cfg.bias) for l in range(cfg.n_layer))


def flops_conv1d(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """Causal depthwise conv of width W over C_l = conv_dim(l) channels, + bias, + SiLU:
    T·C_l·(2W + 1·bias + 2). The same per token in decode (one window of the conv cache)."""
    T = tokens(batch, seqlen, phase)
    return sum(T * cfg.conv_dim(l) * (2 * cfg.d_conv + cfg.conv_bias + 2) for l in range(cfg.n_layer))


def flops_x_proj(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """Mamba-1 [δ, B, C] = W_x x': 2·T·E·(R + 2N_l). Zero for Mamba-2 (inside in_proj)."""
    if cfg.arch != "mamba1":
        return 0
    T, E, R = tokens(batch, seqlen, phase), cfg.d_inner, cfg.dt_rank_value
    return sum(2 * T * E * (R + 2 * n) for n in cfg.d_states)


def flops_dt_proj(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """Mamba-1 W_δ δ: 2·T·R·E (the bias is added inside the scan). Zero for Mamba-2."""
    if cfg.arch != "mamba1":
        return 0
    return cfg.n_layer * 2 * tokens(batch, seqlen, phase) * cfg.dt_rank_value * cfg.d_inner


def flops_scan(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """The recurrence itself.

    Mamba-1 (Gu & Dao 2023, Eq. 2, recurrent form as in mamba-ssm `selective_scan_ref`), per token:
    per (channel, state) exp(ΔA) 2, (Δu)·B 1, dA·h + · 2, Σ C·h 2 → 7·E·N_l; per channel +bias 1,
    softplus 1, Δ·u 1, +D·u 2, ·SiLU(z) 3 → 8·E. Same count in prefill and decode.

    Mamba-2 decode (one recurrent step, Dao & Gu 2024 Eq. (1)): per (head, p, state) dA·h 1, (Δx)·B 1, + 1,
    h·C 2 → 5·E·N_l; per channel Δ·x 1, +D·x 2 → 3E; per head +bias, softplus, Δ·A, exp → 4H.
    Mamba-2 prefill (chunked SSD, Listing 1 with dense Q×Q blocks and linear state passing), with
    c = ⌈L/Q⌉ chunks per sequence: B·c·(2G·Q²·N [C Bᵀ] + 2H·Q² [exp(segsum), mask] + 2H·Q²·P [M X]
    + 2H·Q·P·N [chunk states] + 2H·Q·P·N [state → outputs] + 2H·P·N [state passing])
    + T·(3E + 4H).
    """
    T, E = tokens(batch, seqlen, phase), cfg.d_inner
    if cfg.arch == "mamba1":
        return sum(T * (7 * E * n + 8 * E) for n in cfg.d_states)
    H, P, G = cfg.nheads, cfg.headdim, cfg.ngroups
    if phase == "decode":
        return sum(T * (5 * E * n + 3 * E + 4 * H) for n in cfg.d_states)
    return sum(ssd_chunked_flops(batch, seqlen, H, P, G, n, cfg.chunk_size) for n in cfg.d_states)


def ssd_chunked_flops(batch: int, seqlen: int, nheads: int, headdim: int, ngroups: int, d_state: int,
                      chunk_size: int) -> int:
    """FLOPs of one layer's chunked SSD prefill (see `flops_scan`); chunk_size is the kernel's Q."""
    B, L, H, P, G, N = batch, seqlen, nheads, headdim, ngroups, d_state
    Q = max(1, min(chunk_size, L))
    c = -(-L // Q)
    per_chunk = 2 * G * Q * Q * N + 2 * H * Q * Q + 2 * H * Q * Q * P + 4 * H * Q * P * N + 2 * H * P * N
    return B * c * per_chunk + B * L * (3 * H * P + 4 * H)


def flops_ssm(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """The `ssm` component: for Mamba-1 x_proj + dt_proj + scan (they exist only to feed the scan),
    for Mamba-2 the SSD scan."""
    return (flops_x_proj(cfg, batch, seqlen, phase) + flops_dt_proj(cfg, batch, seqlen, phase)
            + flops_scan(cfg, batch, seqlen, phase))


def flops_gated_norm(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """Mamba-2 rmsnorm(y ⊙ SiLU(z)) per group: SiLU 2E, ⊙ 1E, x² 1E, Σ 1E, mean/+ε/rsqrt 3G, ·rsqrt 1E,
    ·weight 1E → (7E + 3G)·T. Zero for Mamba-1 (its gate is inside the scan)."""
    if cfg.arch != "mamba2":
        return 0
    return cfg.n_layer * (7 * cfg.d_inner + 3 * cfg.ngroups) * tokens(batch, seqlen, phase)


def flops_out_proj(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """W_out y: 2·T·E·D (+T·D with bias)."""
    return cfg.n_layer * tokens(batch, seqlen, phase) * cfg.d_model * (2 * cfg.d_inner + cfg.bias)


def flops_lm_head(cfg: ModelConfig, batch: int, seqlen: int, phase: str) -> int:
    """Logits of one position per sequence: 2·B·D·V."""
    check_shape_args(batch, seqlen, phase)
    return 2 * batch * cfg.d_model * cfg.padded_vocab_size


FLOPS = {
    "embedding": flops_embedding, "rmsnorm": flops_rmsnorm, "in_proj": flops_in_proj, "conv1d": flops_conv1d,
    "ssm": flops_ssm, "ssm.x_proj": flops_x_proj, "ssm.dt_proj": flops_dt_proj, "ssm.scan": flops_scan,
    "gated_norm": flops_gated_norm, "out_proj": flops_out_proj, "lm_head": flops_lm_head,
}


# bytes ------------------------------------------------------------------------------------------------
def bytes_embedding(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """Read T int64 ids and T rows of D, write T·D."""
    T, s = tokens(batch, seqlen, phase), _size(dtype)
    return T * 8 + 2 * T * cfg.d_model * s


def bytes_rmsnorm(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """(n_layer + 1) norms: read T·D, write T·D, weight D."""
    T, s = tokens(batch, seqlen, phase), _size(dtype)
    return (cfg.n_layer + 1) * (2 * T * cfg.d_model + cfg.d_model) * s


def bytes_in_proj(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """Weight D·I_l (+ bias I_l), read T·D, write T·I_l."""
    T, s, D = tokens(batch, seqlen, phase), _size(dtype), cfg.d_model
    return sum((D * I + cfg.bias * I + T * D + T * I) * s for I in map(cfg.in_proj_dim, range(cfg.n_layer)))


def bytes_conv1d(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """Weight C·W (+ bias C), read T·C, write T·C; conv cache B·C·W written (prefill) or read and written
    (decode)."""
    T, s, ss, W = tokens(batch, seqlen, phase), _size(dtype), _size(state_dtype), cfg.d_conv
    cache_passes = 1 if phase == "prefill" else 2
    total = 0
    for l in range(cfg.n_layer):
        C = cfg.conv_dim(l)
        total += (C * W + cfg.conv_bias * C + 2 * T * C) * s + cache_passes * batch * C * W * ss
    return total


def bytes_x_proj(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """Mamba-1: weight E·(R + 2N), read T·E, write T·(R + 2N)."""
    if cfg.arch != "mamba1":
        return 0
    T, s, E, R = tokens(batch, seqlen, phase), _size(dtype), cfg.d_inner, cfg.dt_rank_value
    return sum((E * (R + 2 * n) + T * E + T * (R + 2 * n)) * s for n in cfg.d_states)


def bytes_dt_proj(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """Mamba-1: weight R·E, read T·R, write T·E."""
    if cfg.arch != "mamba1":
        return 0
    T, s, E, R = tokens(batch, seqlen, phase), _size(dtype), cfg.d_inner, cfg.dt_rank_value
    return cfg.n_layer * (R * E + T * R + T * E) * s


def bytes_scan(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """Mamba-1: read u, δ, z (3·T·E) and B, C (2·T·N), A (E·N, fp32), D and dt_bias (2E, fp32); write y (T·E).
    Mamba-2: read x (T·E), dt (T·H), B, C (2·T·G·N), A, D, dt_bias (3H, fp32); write y (T·E).
    State B·E·N (Mamba-2: B·H·P·N = B·E·N) written once (prefill) or read and written (decode)."""
    T, s, ss, E = tokens(batch, seqlen, phase), _size(dtype), _size(state_dtype), cfg.d_inner
    passes = 1 if phase == "prefill" else 2
    total = 0
    for n in cfg.d_states:
        if cfg.arch == "mamba1":
            total += (4 * T * E + 2 * T * n) * s + (E * n + 2 * E) * 4
        else:
            H, G = cfg.nheads, cfg.ngroups
            total += (2 * T * E + T * H + 2 * T * G * n) * s + 3 * H * 4
        total += passes * batch * E * n * ss
    return total


def bytes_ssm(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    kw = dict(dtype=dtype, state_dtype=state_dtype)
    return (bytes_x_proj(cfg, batch, seqlen, phase, **kw) + bytes_dt_proj(cfg, batch, seqlen, phase, **kw)
            + bytes_scan(cfg, batch, seqlen, phase, **kw))


def bytes_gated_norm(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """Mamba-2: read y and z (2·T·E), write T·E, weight E."""
    if cfg.arch != "mamba2":
        return 0
    T, s, E = tokens(batch, seqlen, phase), _size(dtype), cfg.d_inner
    return cfg.n_layer * (3 * T * E + E) * s


def bytes_out_proj(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """Weight E·D (+ bias D), read T·E, write T·D."""
    T, s, E, D = tokens(batch, seqlen, phase), _size(dtype), cfg.d_inner, cfg.d_model
    return cfg.n_layer * (E * D + cfg.bias * D + T * E + T * D) * s


def bytes_lm_head(cfg, batch, seqlen, phase, *, dtype=torch.float32, state_dtype=torch.float32) -> int:
    """Weight V·D, read B·D, write B·V (one position per sequence)."""
    check_shape_args(batch, seqlen, phase)
    s, D, V = _size(dtype), cfg.d_model, cfg.padded_vocab_size
    return (V * D + batch * D + batch * V) * s


BYTES = {
    "embedding": bytes_embedding, "rmsnorm": bytes_rmsnorm, "in_proj": bytes_in_proj, "conv1d": bytes_conv1d,
    "ssm": bytes_ssm, "ssm.x_proj": bytes_x_proj, "ssm.dt_proj": bytes_dt_proj, "ssm.scan": bytes_scan,
    "gated_norm": bytes_gated_norm, "out_proj": bytes_out_proj, "lm_head": bytes_lm_head,
}


def components_for(cfg: ModelConfig) -> list[str]:
    """Components (top-level, then Mamba-1 sub-components) that exist in this architecture."""
    top = [c for c in COMPONENTS if not (c == "gated_norm" and cfg.arch == "mamba1")]
    return top + (list(SUBCOMPONENTS) if cfg.arch == "mamba1" else [])


def component_counts(cfg: ModelConfig, batch: int, seqlen: int, phase: str, *, dtype=torch.float32,
                     state_dtype=torch.float32) -> dict[str, dict[str, int]]:
    """{component: {"flops": …, "bytes": …}} for every component of this architecture, plus "total"
    (the sum over top-level components)."""
    out = {}
    for c in components_for(cfg):
        out[c] = {"flops": FLOPS[c](cfg, batch, seqlen, phase),
                  "bytes": BYTES[c](cfg, batch, seqlen, phase, dtype=dtype, state_dtype=state_dtype)}
    top = [c for c in out if "." not in c]
    out["total"] = {k: sum(out[c][k] for c in top) for k in ("flops", "bytes")}
    return out


# roofline ---------------------------------------------------------------------------------------------
def roofline_points(rows, peak_flops: float, peak_bw: float):
    """Roofline coordinates per measured component.

    `rows`: tidy rows (list of dicts or DataFrame) with metrics "time" (unit "ms"; the median is used),
    "flops" and "bytes" for the same setting and component. Returns a DataFrame with one row per
    (setting, component): intensity (FLOP/byte), achieved FLOP/s and bytes/s, the attainable FLOP/s
    min(peak_flops, intensity·peak_bw), which roof bounds it (ridge point peak_flops/peak_bw) and the
    fraction of the attainable rate reached.
    """
    import pandas as pd

    if not (peak_flops > 0 and peak_bw > 0):
        raise ProfilingError(f"peaks must be positive, got peak_flops={peak_flops!r}, peak_bw={peak_bw!r}")
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty or "metric" not in df:
        return pd.DataFrame()
    df = df[df["metric"].isin(["time", "flops", "bytes"])].copy()
    if "method" in df:  # analytic rows and timed rows carry different methods: pair them on the rest,
        timed = set(df.loc[df["metric"] == "time", "method"])  # using one timing method (timers first)
        use = "timers" if "timers" in timed else (sorted(timed)[0] if timed else None)
        df = df[(df["metric"] != "time") | (df["method"] == use)].drop(columns="method")
    df["v"] = df["median"].where(df["metric"].eq("time") & df["median"].notna(), df["value"]) \
        if "median" in df else df["value"]
    drop = {"metric", "value", "unit", "median", "p10", "p90", "n_iter", "warmup", "v"}
    keys = [c for c in df.columns if c not in drop]
    df[keys] = df[keys].astype(object).where(df[keys].notna(), "")
    wide = df.pivot_table(index=keys, columns="metric", values="v", aggfunc="first").reset_index()
    wide = wide.dropna(subset=[c for c in ("time", "flops", "bytes") if c in wide])
    if not {"time", "flops", "bytes"} <= set(wide.columns):
        return pd.DataFrame()
    seconds = wide["time"].astype(float) / 1e3
    wide["intensity"] = wide["flops"].astype(float) / wide["bytes"].astype(float)
    wide["achieved_flops"] = wide["flops"].astype(float) / seconds
    wide["achieved_bandwidth"] = wide["bytes"].astype(float) / seconds
    wide["attainable_flops"] = (wide["intensity"] * peak_bw).clip(upper=peak_flops)
    ridge = peak_flops / peak_bw
    wide["bound"] = ["memory" if i < ridge else "compute" for i in wide["intensity"]]
    wide["fraction_of_roof"] = wide["achieved_flops"] / wide["attainable_flops"].where(wide["attainable_flops"] > 0)
    wide.columns.name = None
    return wide


def arithmetic_intensity(flops: float, nbytes: float) -> float:
    return flops / nbytes if nbytes else math.nan
