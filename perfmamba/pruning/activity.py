"""State activity statistics over calibration data (paper §5, Fig. 3), collected with forward hooks.

The paper scores state s of layer l by how strongly the selective SSM steps, averaged over calibration
tokens (and the channels / heads that share the state):

    activity(l, s) = E[Δ_t],   Δ_t = softplus(dt_t + dt_bias)

Δ is not indexed by the state, so a per-state reading needs a convention:

- Mamba-2: Δ is per head; each head's mean is spread over a block of contiguous states (`spread_heads`),
  which is what the paper's Fig. 3 heatmap shows.
- Mamba-1: Δ is per channel, shared by the channel's N states, so E[Δ_t] is constant across states. The
  default reading (`mamba1_reading="delta_A"`) is E_{t,d}[Δ_{t,d}·|A_{d,s}|], the exponent of state s's
  per-token decay exp(−Δ|A_s|): how much the state moves per token, the closest quantity to "activity"
  that depends on s. "mean" gives the literal channel mean (selection then keeps the first k states).

Δ, B, C, x and z are recomputed from submodules the mixers call, so the model code is unchanged: Mamba-2
from the `in_proj` output ([z, xBC, dt], conv and silu re-applied to xBC), Mamba-1 from the `in_proj`
output (z) and the `x_proj` input (conv output u) and output (dt_low, B, C), Δ = softplus(dt_proj(dt_low)).
With `scan=True` the hooks also run the recurrence (float64, token by token) for the data-driven criteria:
each state's output energy E|C_s h_s ⊙ silu(z)| and SparseSSM's per-position saliency Σ A_log² h_{t−1}².
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data import (SPLITS, default_root, documents, encode_documents, load_corpus, model_tokenizer,
                    read_text_file)
from ..errors import PerfmambaError, PruningError
from ..models.mamba2 import Mamba2Mixer
from ..ops.conv import causal_conv1d_ref
from .selection import check_choice
from .surgery import is_bridged

MAMBA1_READINGS = ("delta_A", "mean")
DEFAULT_SEQ_LEN = 512


@dataclass
class Activity:
    """Per-layer statistics from one calibration pass. Lists hold one tensor per layer (float64, CPU)."""

    arch: str
    d_states: list[int]
    activity: list[torch.Tensor]  # (N_l,): activity(l, s), the paper's score
    delta_mean: list[torch.Tensor]  # E[Δ] per head (nheads,) for Mamba-2, per channel (d_inner,) for Mamba-1
    decay: list[torch.Tensor]  # (N_l,): E|1 − exp(Δ A_s)| (Mamba-2: per head, spread like activity)
    energy: list[torch.Tensor] | None = None  # (N_l,): E|C_s h_s ⊙ silu(z)|        (scan=True)
    saliency: list[torch.Tensor] | None = None  # (l, N_l): Σ A_log² h_{t−1}² per position (scan=True)
    n_tokens: int = 0
    n_sequences: int = 0
    mamba1_reading: str = "delta_A"

    @property
    def n_layer(self) -> int:
        return len(self.activity)

    def matrix(self) -> torch.Tensor:
        """(n_layer, max N) activity, NaN where a layer has fewer states: the Fig. 3 heatmap."""
        m = torch.full((self.n_layer, max(self.d_states)), float("nan"), dtype=torch.float64)
        for i, a in enumerate(self.activity):
            m[i, : a.numel()] = a
        return m


def spread_heads(values: torch.Tensor, n_state: int) -> torch.Tensor:
    """Per-head values (H,) → per-state values (N,): contiguous blocks of ⌊N/H⌋ states per head, the last
    head taking the remainder; with H > N, state s averages heads ⌊sH/N⌋ … ⌊(s+1)H/N⌋ − 1."""
    h = values.numel()
    if h <= n_state:
        idx = torch.clamp(torch.arange(n_state) // (n_state // h), max=h - 1)
        return values[idx]
    return torch.stack([values[s * h // n_state:(s + 1) * h // n_state].mean() for s in range(n_state)])


# calibration data ---------------------------------------------------------------------------------------
def tokenizer_or_none(model, tokenizer=None):
    """`data.model_tokenizer`, or None for a model without one (a preset) or with one that does not fit it."""
    try:
        return model_tokenizer(model, tokenizer)
    except PerfmambaError:
        return None


_CORPUS_TOKENS: dict[tuple, tuple] = {}


def corpus_tokens(tokenizer, split: str, artifacts="artifacts") -> torch.Tensor:
    """A whole corpus split as one token stream (documents each led by eos), cached per process.
    `artifacts`: the folder holding corpus/ (None: `data.default_root()`'s)."""
    check_choice("split", split, SPLITS)
    root = default_root() if artifacts is None else Path(artifacts) / "corpus"
    key = (id(tokenizer), len(tokenizer), str(root.resolve()), split)
    if key not in _CORPUS_TOKENS:  # kept with its tokens, the tokenizer's id cannot be reused meanwhile
        _CORPUS_TOKENS[key] = (tokenizer, encode_documents(documents(load_corpus(root)[split]), tokenizer))
    return _CORPUS_TOKENS[key][1]


def _token_stream(model, calibration, tokenizer, n_tokens, seed, split, artifacts) -> torch.Tensor:
    """The 1-D ids of a calibration source other than ids (see `calibration_tokens`)."""
    if isinstance(calibration, str):
        tok = model_tokenizer(model, tokenizer, check_vocab=False)
        if tok is None:
            raise PruningError(f"calibration text needs a tokenizer: {getattr(model, 'source', 'the model')} "
                               "has none beside it; pass tokenizer=PATH")
        if not calibration.strip():
            raise PruningError("calibration text is empty")
        ids = tok(calibration, add_special_tokens=False, verbose=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)
    if isinstance(calibration, os.PathLike):
        tok = model_tokenizer(model, tokenizer, required=True)
        return encode_documents(documents(read_text_file(calibration)), tok)
    if calibration is None:
        tok = tokenizer_or_none(model, tokenizer)
        if tok is not None:
            return corpus_tokens(tok, split, artifacts)
        calibration = n_tokens
    if isinstance(calibration, int) and not isinstance(calibration, bool):
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, model.config.vocab_size, (calibration,), generator=g)
    raise PruningError("calibration must be token ids (a LongTensor), text, a text file (a Path), None or a "
                       f"number of random ids, got {type(calibration).__name__}")


def calibration_tokens(model, calibration=None, *, tokenizer=None, seq_len: int = DEFAULT_SEQ_LEN,
                       n_tokens: int | None = None, seed: int = 0, split: str = "validation",
                       artifacts=None) -> torch.LongTensor:
    """Calibration data as (b, l) ids checked against the model's vocabulary: the one way the pruning
    functions, the CLI, the lm-eval model type and the experiments get it.

    calibration: token ids, (b, l) or (l,); text, tokenized as it is; a text file (a Path) or None (the
    corpus `split`, see `corpus_tokens`): documents each led by eos, as in training; an int n: n random ids
    seeded by `seed`, which is also what None gives for a model without a tokenizer (n = n_tokens).
    tokenizer: an object or a path, default the one beside `model.source` (`data.model_tokenizer`).
    A stream (1-D) keeps its first `n_tokens` (None: all) and is cut into rows of `seq_len` tokens; a
    shorter tail is dropped unless it is the only row.
    """
    ids = calibration
    if not isinstance(ids, torch.Tensor):
        ids = _token_stream(model, calibration, tokenizer, n_tokens, seed, split, artifacts)
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise PruningError(f"calibration token ids must be integers, got {ids.dtype}")
    if ids.dim() == 1:
        ids = ids[:n_tokens]
    if ids.numel() == 0:
        raise PruningError("calibration data is empty (no tokens)")
    if ids.dim() == 1:
        if seq_len < 1:
            raise PruningError(f"seq_len must be positive, got {seq_len}")
        rows = max(1, ids.numel() // seq_len)
        ids = ids[:rows * seq_len].view(rows, -1) if ids.numel() >= seq_len else ids[None]
    elif ids.dim() != 2:
        raise PruningError(f"calibration token ids must be (batch, length) or (length,), got shape "
                           f"{tuple(ids.shape)}")
    vocab = model.config.vocab_size
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= vocab:
        raise PruningError(f"calibration token ids must lie in [0, {vocab}) (the model's vocabulary), got "
                           f"[{lo}, {hi}]; is the tokenizer the model's?")
    return ids.long()


# recovering the SSM inputs from submodule hooks -----------------------------------------------------------
def mamba2_ssm_inputs(mixer, zxbcdt: torch.Tensor) -> dict:
    """The SSD inputs of a Mamba-2 mixer from its in_proj output (b, l, d + conv_dim + h), in float64."""
    d, n, h, p, g = mixer.d_inner, mixer.d_state, mixer.nheads, mixer.headdim, mixer.ngroups
    b, l, _ = zxbcdt.shape
    zxbcdt = zxbcdt.detach().double()
    z, xBC, dt = torch.split(zxbcdt, [d, mixer.conv_dim, h], dim=-1)
    w = mixer.conv1d.weight.detach().double().squeeze(1)  # (conv_dim, w)
    cb = mixer.conv1d.bias.detach().double() if mixer.conv1d.bias is not None else None
    xBC = causal_conv1d_ref(xBC.transpose(1, 2), w, cb, activation="silu").transpose(1, 2)  # (b, l, conv_dim)
    x, B, C = torch.split(xBC, [d, g * n, g * n], dim=-1)
    A_log = mixer.A_log.detach().double()  # (h,)
    # x, z (b, l, h, p); B, C (b, l, g, n); Δ (b, l, h)
    return dict(x=x.reshape(b, l, h, p), z=z.reshape(b, l, h, p), B=B.reshape(b, l, g, n),
                C=C.reshape(b, l, g, n), delta=F.softplus(dt + mixer.dt_bias.detach().double()),
                A=-torch.exp(A_log), A_log=A_log)


def mamba1_ssm_inputs(mixer, z: torch.Tensor, u: torch.Tensor, x_dbl: torch.Tensor) -> dict:
    """The selective-scan inputs of a Mamba-1 mixer from in_proj's z half and x_proj's input u and output."""
    r, n = mixer.dt_rank, mixer.d_state
    u, x_dbl, z = u.detach().double(), x_dbl.detach().double(), z.detach().double()
    dt_low, B, C = torch.split(x_dbl, [r, n, n], dim=-1)
    dt = dt_low @ mixer.dt_proj.weight.detach().double().t() + mixer.dt_proj.bias.detach().double()
    A_log = mixer.A_log.detach().double()  # (d, n)
    # as d heads of one channel in one group: x, z (b, l, d, 1); B, C (b, l, 1, n); Δ (b, l, d)
    return dict(x=u[..., None], z=z[..., None], B=B[:, :, None], C=C[:, :, None], delta=F.softplus(dt),
                A=-torch.exp(A_log), A_log=A_log)


class _LayerStats:
    """Forward hooks on one mixer's submodules and the running sums they feed (float64, CPU): delta (h | d),
    decay (h | N), energy (N), saliency (l, N)."""

    def __init__(self, mixer, scan: bool):
        self.mixer, self.scan, self.mamba2 = mixer, scan, isinstance(mixer, Mamba2Mixer)
        self.tokens = self.sequences = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.handles = [mixer.in_proj.register_forward_hook(self._on_in_proj)]
        if not self.mamba2:
            self.handles.append(mixer.x_proj.register_forward_hook(self._on_x_proj))

    def _on_in_proj(self, module, inp, out):
        if self.mamba2:
            self.update(mamba2_ssm_inputs(self.mixer, out))
        else:
            self.z = out[..., self.mixer.d_inner:]

    def _on_x_proj(self, module, inp, out):
        z, self.z = self.z, None  # not held until the next batch
        self.update(mamba1_ssm_inputs(self.mixer, z, inp[0], out))

    def update(self, s: dict):
        delta = s["delta"]
        b, l = delta.shape[:2]
        self.tokens += b * l
        self.sequences += b
        new = {"delta": delta.sum((0, 1))}
        if self.mamba2:
            new["decay"] = (1 - torch.exp(delta * s["A"])).abs().sum((0, 1))  # (h,)
        else:
            A = s["A"]  # (d, n)
            step = max(1, (1 << 22) // max(1, delta.numel()))  # states per slice: memory ~4M elements
            decay = [(1 - torch.exp(delta[..., None] * A[:, j:j + step])).abs().sum((0, 1, 2))
                     for j in range(0, A.shape[1], step)]
            new["decay"] = torch.cat(decay)  # (n,)
        if self.scan:
            new["energy"], new["saliency"] = _scan(s)
        for k, v in new.items():
            self.sums[k] = v.cpu() if k not in self.sums else self.sums[k] + v.cpu()

    def means(self, mamba1_reading: str) -> dict[str, torch.Tensor]:
        """The fields of `Activity` for this layer."""
        n, width, dm = self.mixer.d_state, self.mixer.d_inner, self.sums["delta"] / self.tokens
        out = {"delta_mean": dm}
        if self.mamba2:
            out.update(activity=spread_heads(dm, n), decay=spread_heads(self.sums["decay"] / self.tokens, n))
        else:
            if mamba1_reading == "delta_A":  # E_{t,d}[Δ_{t,d} |A_{d,s}|], |A| = exp(A_log) (d, n)
                out["activity"] = dm @ torch.exp(self.mixer.A_log.detach().double().cpu()) / width
            else:
                out["activity"] = dm.mean().expand(n).clone()
            out["decay"] = self.sums["decay"] / (self.tokens * width)
        if self.scan:
            out.update(energy=self.sums["energy"] / (self.tokens * width),
                       saliency=self.sums["saliency"] / self.sequences)
        return out


def _scan(s: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-by-token recurrence (as `ssd_ref` / `selective_scan_ref`), returning Σ|C_s h_s ⊙ silu(z)| (n,)
    and SparseSSM's per-position saliency Σ A_log² h_{t−1}² (l, n), summed over batch, heads and channels.
    Mamba-1 runs as d heads of one channel (see `mamba1_ssm_inputs`), A (d, n) per head and state."""
    x, delta, B, C, z = s["x"], s["delta"], s["B"], s["C"], s["z"]
    b, l, h, p = x.shape
    A, a2 = s["A"].reshape(h, 1, -1), (s["A_log"] ** 2).reshape(h, 1, -1)  # (h, 1, 1) or (d, 1, n)
    g, n = B.shape[2], B.shape[3]
    hg = torch.arange(h, device=x.device) // (h // g)  # group of each head
    gate = F.silu(z)  # (b, l, h, p)
    state = x.new_zeros(b, h, p, n)
    energy = x.new_zeros(n)
    sal = []
    for t in range(l):
        sal.append((a2 * state.square()).sum((0, 1, 2)))  # state is h_{t-1}
        dA = torch.exp(delta[:, t, :, None, None] * A)  # (b, h, 1, 1) or (b, d, 1, n)
        Bt, Ct = B[:, t, hg], C[:, t, hg]  # (b, h, n)
        state = dA * state + (delta[:, t, :, None] * x[:, t])[..., None] * Bt[:, :, None, :]
        energy += (state * Ct[:, :, None, :] * gate[:, t, :, :, None]).abs().sum((0, 1, 2))
    return energy, torch.stack(sal)


@torch.no_grad()
def collect_activity(model, tokens, *, batch_size: int = 8, tokenizer=None, seq_len: int = DEFAULT_SEQ_LEN,
                     scan: bool = False, mamba1_reading: str = "delta_A", progress: bool = False) -> Activity:
    """Run `model` over calibration data and return per-layer, per-state statistics.

    tokens: (b, l) or (l,) LongTensor, or text (with `tokenizer`, or the tokenizer beside `model.source`).
    batch_size: rows per forward pass. scan: also collect the statistics that need the recurrence
    (energy, SparseSSM saliency); costs one float64 sequential scan per layer and batch.
    """
    check_choice("mamba1_reading", mamba1_reading, MAMBA1_READINGS)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise PruningError(f"batch_size must be a positive integer, got {batch_size!r}")
    tokens = calibration_tokens(model, tokens, tokenizer=tokenizer, seq_len=seq_len)
    mixers = [layer.mixer for layer in model.backbone.layers]
    if any(is_bridged(m) for m in mixers):
        raise PruningError("this model was pruned in bridge mode; collect statistics on the original or on a "
                           "removed/zeroed model")
    stats = [_LayerStats(m, scan) for m in mixers]
    device = next(model.parameters()).device
    try:
        starts = range(0, tokens.shape[0], batch_size)
        for s in tqdm(starts, desc="activity", unit="batch", disable=not progress):
            model(tokens[s:s + batch_size].to(device))
    finally:
        for st in stats:
            for h in st.handles:
                h.remove()
    means = [st.means(mamba1_reading) for st in stats]
    return Activity(arch=model.config.arch, d_states=[m.d_state for m in mixers],
                    **{k: [m[k] for m in means] for k in means[0]}, n_tokens=int(tokens.numel()),
                    n_sequences=int(tokens.shape[0]), mamba1_reading=mamba1_reading)


def activity_rows(act: Activity, model_name: str) -> list[dict]:
    """Tidy rows, one per (layer, state): model, arch, layer, state, d_state, activity, decay[, energy],
    n_tokens."""
    rows = []
    for i, a in enumerate(act.activity):
        for s in range(a.numel()):
            row = {"model": model_name, "arch": act.arch, "layer": i, "state": s, "d_state": a.numel(),
                   "activity": float(a[s]), "decay": float(act.decay[i][s])}
            if act.energy is not None:
                row["energy"] = float(act.energy[i][s])
            row["n_tokens"] = act.n_tokens
            rows.append(row)
    return rows
