"""Which states to keep: the paper's per-layer top-k (Algorithm 1) and a global variant.

    k = n_keep(N, r) = max(1, ⌊N(1 − r)⌋)

r is read as the decimal the user wrote (0.8 means 8/10), so ⌊10 · (1 − 0.8)⌋ is 2 and not the 1 that
binary floating point gives (10 · (1 − 0.8) = 1.9999999999999996). Every layer keeps at least one
state, so no ratio in [0, 1) can empty a layer; ratios ≥ 1 (and negative ones, NaN, non-numbers) are
rejected.

Kept indices are returned sorted ascending (one LongTensor per layer). Ties in the scores are broken by
the state index (the lower index is kept), so a constant score keeps the first k states.
"""
from __future__ import annotations

import math
import numbers
from fractions import Fraction

import torch

from ..errors import PruningError

SELECTIONS = ("uniform", "global")


def check_ratio(ratio) -> float:
    """`ratio` as a float in [0, 1), or a PruningError."""
    if isinstance(ratio, str):
        try:
            ratio = float(ratio)
        except ValueError:
            raise PruningError(f"ratio must be a number in [0, 1), got {ratio!r}") from None
    if isinstance(ratio, torch.Tensor) and ratio.numel() == 1:
        ratio = ratio.item()
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise PruningError(f"ratio must be a number in [0, 1), got {ratio!r}")
    r = float(ratio)
    if not 0.0 <= r < 1.0:  # also rejects NaN
        extra = " (it would remove every state)" if r >= 1.0 else ""
        raise PruningError(f"ratio must lie in [0, 1), got {r!r}{extra}")
    return r


def n_keep(n_state: int, ratio: float) -> int:
    """k = max(1, ⌊N(1 − r)⌋), with r taken as its shortest decimal representation (exact arithmetic)."""
    r = Fraction(repr(check_ratio(ratio)))
    return max(1, math.floor(n_state * (1 - r)))


def _ranked(score: torch.Tensor) -> torch.Tensor:
    """Indices from best to worst; equal scores keep index order (stable sort)."""
    s = score.detach().to("cpu", torch.float64).flatten()
    if torch.isnan(s).any():
        raise PruningError("criterion produced NaN scores (is the calibration data degenerate?)")
    return torch.sort(-s, stable=True).indices


def select_uniform(scores: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """Per layer, the k = n_keep(N_l, r) highest-scoring states (the paper's Algorithm 1)."""
    kept = []
    for s in scores:
        k = n_keep(s.numel(), ratio)
        kept.append(_ranked(s)[:k].sort().values)
    return kept


def normalise(score: torch.Tensor) -> torch.Tensor:
    """A layer's scores relative to that layer's mean, after shifting them to be non-negative.

    1.0 reads "as important as the layer's average state", so layers of different sizes and with
    differently scaled statistics (Δ grows with depth in trained models) compete on equal terms.
    A layer whose scores are all equal gets 1.0 everywhere.
    """
    s = score.detach().to("cpu", torch.float64).flatten()
    s = s - s.min().clamp(max=0.0)
    m = s.mean()
    return torch.ones_like(s) if m <= 0 else s / m


def select_global(scores: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """Spend the uniform budget Σ_l n_keep(N_l, r) unevenly across layers.

    Scores are normalised per layer (`normalise`). Each layer first keeps its best state; the remaining
    budget goes to the highest normalised scores over all layers (ties: lower layer, then lower index).
    """
    budget = sum(n_keep(s.numel(), ratio) for s in scores)
    ranked = [_ranked(s) for s in scores]
    chosen = [[int(r[0])] for r in ranked]
    cand_score, cand_layer, cand_state = [], [], []
    for i, (s, r) in enumerate(zip(scores, ranked)):
        rest = r[1:]
        cand_score.append(normalise(s)[rest])
        cand_layer.append(torch.full_like(rest, i))
        cand_state.append(rest)
    if cand_score:
        sc, ly, st = torch.cat(cand_score), torch.cat(cand_layer), torch.cat(cand_state)
        # stable sort on -score keeps the (layer, state) order for ties: sort that order in first
        order = torch.argsort(ly * (max(s.numel() for s in scores) + 1) + st, stable=True)
        sc, ly, st = sc[order], ly[order], st[order]
        best = torch.sort(-sc, stable=True).indices[: budget - len(scores)]
        for j in best.tolist():
            chosen[int(ly[j])].append(int(st[j]))
    return [torch.tensor(sorted(c), dtype=torch.long) for c in chosen]


def select(scores: list[torch.Tensor], ratio: float, selection: str = "uniform") -> list[torch.Tensor]:
    if selection == "uniform":
        return select_uniform(scores, ratio)
    if selection == "global":
        return select_global(scores, ratio)
    raise PruningError(f"unknown selection {selection!r}; expected one of {', '.join(SELECTIONS)}")
