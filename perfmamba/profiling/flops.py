"""Analytic FLOPs and bytes per component, for prefill and decode.

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
G ngroups, Q chunk_size, V padded vocab, B batch, L seqlen, I_l in_proj outputs (2E for Mamba-1,
2E + 2G·N_l + H for Mamba-2), C_l conv channels. Sums run over layers, so per-layer N_l (pruned models) is
exact. Equation sources: Gu & Dao 2023 (Mamba, arXiv 2312.00752) Alg. 2 and Eq. (2); Dao & Gu 2024
(Mamba-2, arXiv 2405.21060) §6 and Listing 1 (`ssd_minimal_discrete`); mamba-ssm
state-spaces/mamba@v2.2.4 mamba_ssm/modules/{mamba_simple,mamba2}.py for the projections' shapes.
"""
from __future__ import annotations

import math
from collections import Counter
from functools import partial

import pandas as pd
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


def _layer_counts(cfg: ModelConfig, l: int, batch: int, seqlen: int, phase: str, s: int, ss: int) -> dict:
    """{label: (FLOPs, bytes)} of layer l's mixer; s, ss: bytes per element of activations, of the cache."""
    T = tokens(batch, seqlen, phase)
    D, E, W, N = cfg.d_model, cfg.d_inner, cfg.d_conv, cfg.d_states[l]
    I, C = cfg.in_proj_dim(l), cfg.conv_dim(l)
    passes = 1 if phase == "prefill" else 2  # the cache is written (prefill) or read and written (decode)
    out = {
        # the paper's "Gated MLP": [x, z] (Mamba-1) or [z, xBC, dt] (Mamba-2) = W_in u, + bias;
        # weight D·I (+ bias I), read T·D, write T·I
        "in_proj": (T * I * (2 * D + cfg.bias), (D * I + cfg.bias * I + T * D + T * I) * s),
        # causal depthwise conv of width W, + bias, + SiLU: the same per token in decode (one window of the
        # cache); weight C·W (+ bias C), read T·C, write T·C, conv cache B·C·W
        "conv1d": (T * C * (2 * W + cfg.conv_bias + 2),
                   (C * W + cfg.conv_bias * C + 2 * T * C) * s + passes * batch * C * W * ss),
        # W_out y: weight E·D (+ bias D), read T·E, write T·D
        "out_proj": (T * D * (2 * E + cfg.bias), (E * D + cfg.bias * D + T * E + T * D) * s),
    }
    state = passes * batch * E * N * ss  # h: B·E·N (Mamba-2: B·H·P·N = B·E·N)
    if cfg.arch == "mamba1":
        R = cfg.dt_rank_value
        # [δ, B, C] = W_x x': weight E·(R + 2N), read T·E, write T·(R + 2N)
        out["ssm.x_proj"] = (2 * T * E * (R + 2 * N), (E * (R + 2 * N) + T * E + T * (R + 2 * N)) * s)
        # W_δ δ (its bias is added inside the scan): weight R·E, read T·R, write T·E
        out["ssm.dt_proj"] = (2 * T * R * E, (R * E + T * R + T * E) * s)
        # Gu & Dao 2023 Eq. 2, recurrent form as in mamba-ssm `selective_scan_ref`, per token: per (channel,
        # state) exp(ΔA) 2, (Δu)·B 1, dA·h + · 2, Σ C·h 2 → 7·E·N; per channel +bias 1, softplus 1, Δ·u 1,
        # +D·u 2, ·SiLU(z) 3 → 8·E, in both phases. Reads u, δ, z (3·T·E), B, C (2·T·N), A (E·N, fp32),
        # D and dt_bias (2E, fp32); writes y (T·E)
        out["ssm.scan"] = (T * (7 * E * N + 8 * E), (4 * T * E + 2 * T * N) * s + (E * N + 2 * E) * 4 + state)
        return out
    H, P, G = cfg.nheads, cfg.headdim, cfg.ngroups
    # decode, one recurrent step (Dao & Gu 2024 Eq. (1)): per (head, p, state) dA·h 1, (Δx)·B 1, + 1, h·C 2
    # → 5·E·N; per channel Δ·x 1, +D·x 2 → 3E; per head +bias, softplus, Δ·A, exp → 4H. Prefill: chunked SSD.
    # Reads x (T·E), dt (T·H), B, C (2·T·G·N), A, D, dt_bias (3H, fp32); writes y (T·E)
    flops = (T * (5 * E * N + 3 * E + 4 * H) if phase == "decode"
             else ssd_chunked_flops(batch, seqlen, H, P, G, N, cfg.chunk_size))
    out["ssm.scan"] = (flops, (2 * T * E + T * H + 2 * T * G * N) * s + 3 * H * 4 + state)
    # rmsnorm(y ⊙ SiLU(z)) per group: SiLU 2E, ⊙ 1E, x² 1E, Σ 1E, mean/+ε/rsqrt 3G, ·rsqrt 1E, ·weight 1E;
    # read y and z (2·T·E), write T·E, weight E
    out["gated_norm"] = ((7 * E + 3 * G) * T, (3 * T * E + E) * s)
    return out


def ssd_chunked_flops(batch: int, seqlen: int, nheads: int, headdim: int, ngroups: int, d_state: int,
                      chunk_size: int) -> int:
    """FLOPs of one layer's chunked SSD prefill (Listing 1 with dense Q×Q blocks and linear state passing),
    with c = ⌈L/Q⌉ chunks per sequence: B·c·(2G·Q²·N [C Bᵀ] + 2H·Q² [exp(segsum), mask] + 2H·Q²·P [M X]
    + 2H·Q·P·N [chunk states] + 2H·Q·P·N [state → outputs] + 2H·P·N [state passing]) + T·(3E + 4H)."""
    B, L, H, P, G, N = batch, seqlen, nheads, headdim, ngroups, d_state
    Q = max(1, min(chunk_size, L))
    c = -(-L // Q)
    per_chunk = 2 * G * Q * Q * N + 2 * H * Q * Q + 2 * H * Q * Q * P + 4 * H * Q * P * N + 2 * H * P * N
    return B * c * per_chunk + B * L * (3 * H * P + 4 * H)


def _counts(cfg: ModelConfig, batch: int, seqlen: int, phase: str, dtype, state_dtype):
    """(FLOPs, bytes): two Counters by label (0 where the architecture lacks it); `ssm` is the sum of `ssm.*`
    (Mamba-1's projections exist only to feed the scan)."""
    T, s, ss = tokens(batch, seqlen, phase), _size(dtype), _size(state_dtype)
    D, V = cfg.d_model, cfg.padded_vocab_size
    n_norms = cfg.n_layer + 1  # the pre-norms and the final norm
    whole_model = {
        # a row gather: read T int64 ids and T rows of D, write T·D
        "embedding": (0, T * 8 + 2 * T * D * s),
        # per norm and token x² (D), Σ (D), mean/+ε/rsqrt (3), ·rsqrt (D), ·weight (D); read T·D, write T·D,
        # weight D. Prefill normalises every position (norm_f included), since all feed the cache.
        "rmsnorm": (n_norms * (4 * D + 3) * T, n_norms * (2 * T * D + D) * s),
        # logits of one position per sequence: weight V·D, read B·D, write B·V
        "lm_head": (2 * batch * D * V, (V * D + batch * D + batch * V) * s),
    }
    layers = [_layer_counts(cfg, l, batch, seqlen, phase, s, ss) for l in range(cfg.n_layer)]
    flops, nbytes = Counter(), Counter()
    for table in [whole_model] + layers:
        for label, (f, b) in table.items():
            flops[label] += f
            nbytes[label] += b
    for c in (flops, nbytes):
        c["ssm"] = sum(c[k] for k in SUBCOMPONENTS)
    return flops, nbytes


def _count(label: str, index: int, cfg: ModelConfig, batch: int, seqlen: int, phase: str, *,
           dtype=torch.float32, state_dtype=torch.float32) -> int:
    return _counts(cfg, batch, seqlen, phase, dtype, state_dtype)[index][label]


LABELS = COMPONENTS + SUBCOMPONENTS
# one count as a function of its own: FLOPS["ssm.scan"](cfg, batch, seqlen, phase), BYTES[…](…, dtype=…)
FLOPS = {label: partial(_count, label, 0) for label in LABELS}
BYTES = {label: partial(_count, label, 1) for label in LABELS}


def components_for(cfg: ModelConfig) -> list[str]:
    """Components (top-level, then Mamba-1 sub-components) that exist in this architecture."""
    top = [c for c in COMPONENTS if not (c == "gated_norm" and cfg.arch == "mamba1")]
    return top + (list(SUBCOMPONENTS) if cfg.arch == "mamba1" else [])


def component_counts(cfg: ModelConfig, batch: int, seqlen: int, phase: str, *, dtype=torch.float32,
                     state_dtype=torch.float32) -> dict[str, dict[str, int]]:
    """{component: {"flops": …, "bytes": …}} for every component of this architecture, plus "total"
    (the sum over top-level components)."""
    flops, nbytes = _counts(cfg, batch, seqlen, phase, dtype, state_dtype)
    out = {c: {"flops": flops[c], "bytes": nbytes[c]} for c in components_for(cfg)}
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
    attainable = wide["attainable_flops"]
    wide["fraction_of_roof"] = wide["achieved_flops"] / attainable.where(attainable > 0)
    wide.columns.name = None
    return wide


def arithmetic_intensity(flops: float, nbytes: float) -> float:
    return flops / nbytes if nbytes else math.nan
