"""Which states to keep: the paper's per-layer top-k (Algorithm 1) and a global variant.

    k = n_keep(N, r) = max(1, ⌊N(1 − r)⌋)

r is read as the decimal the user wrote (0.8 means 8/10), so ⌊10 · (1 − 0.8)⌋ is 2 and not the 1 that
binary floating point gives (10 · (1 − 0.8) = 1.9999999999999996). Every layer keeps at least one
state, so no ratio in [0, 1) can empty a layer; ratios ≥ 1 (and negative ones, NaN, non-numbers) are
rejected.

Kept indices are returned sorted ascending (one LongTensor per layer). Ties in the scores are broken by
the state index (the lower index is kept), so a constant score keeps the first k states.

Hardware-aware kept counts (`align`): the paper's k = ⌊128(1 − r)⌋ gives N′ = 115, 89, 38, 12, widths that
leave the aligned fast paths of the GEMMs and kernels (Mamba-2's in_proj has 2d + 2gN′ + h outputs, and B, C
start at odd offsets of its rows), which made such models slower than dense on an H200. `align_count(k, N, M)`
rounds each layer's count to a multiple of M:

    "up" (default)   the smallest multiple of M that is ≥ k        (keeps more states than asked: never less
                                                                     accurate than the exact count)
    "down"           the largest multiple of M that is ≤ k          (fewer states, faster)
    "nearest"        the nearer of the two, ties up

and then clamps to [1, N]: a count above N becomes N (a layer never keeps more states than it has; N itself
needs no alignment, it is the dense width), and a count of 0 ("down" or "nearest" below M) becomes min(M, N),
the smallest aligned count that keeps a state. M = 8 makes 2gN′ a multiple of 16, so every row and slice of
in_proj's output stays 16-byte aligned in bf16; M = 16 or 32 also matches the kernels' tile widths. The
states kept are the best `align_count(k)` by the same ranking (for both selections a layer's kept set is a
prefix of its ranking, so rounding adds the next-best states or drops the worst kept ones).
"""
from __future__ import annotations

import math
import numbers
from fractions import Fraction

import torch

from ..errors import PruningError

SELECTIONS = ("uniform", "global")
ALIGN_ROUNDING = ("up", "down", "nearest")


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


def check_align(align, rounding: str = "up") -> int | None:
    """`align` as a positive int (or None: no rounding), and a known rounding rule; else a PruningError."""
    if rounding not in ALIGN_ROUNDING:
        raise PruningError(f"unknown align rounding {rounding!r}; expected one of {', '.join(ALIGN_ROUNDING)}")
    if align is None:
        return None
    if isinstance(align, str):
        try:
            align = int(align)
        except ValueError:
            raise PruningError(f"align must be a positive integer, got {align!r}") from None
    if isinstance(align, bool) or not isinstance(align, numbers.Integral) or align < 1:
        raise PruningError(f"align must be a positive integer, got {align!r}")
    return int(align)


def align_count(k: int, n_state: int, align: int | None, rounding: str = "up") -> int:
    """k kept states rounded to a multiple of `align` by `rounding` ("up", "down", "nearest": ties up), then clamped
    to [1, N]: above N → N, 0 → min(align, N). align None or 1 returns k unchanged."""
    align = check_align(align, rounding)
    if align is None or align == 1:
        return k
    down, up = (k // align) * align, -(-k // align) * align
    out = {"up": up, "down": down, "nearest": up if k - down >= up - k else down}[rounding]
    if out == 0:
        out = align
    return max(1, min(out, n_state))


def select(scores: list[torch.Tensor], ratio: float, selection: str = "uniform", *, align: int | None = None,
           align_rounding: str = "up") -> list[torch.Tensor]:
    """Kept indices per layer by `selection`; with `align`, each layer's count rounded by `align_count`."""
    if selection == "uniform":
        kept = select_uniform(scores, ratio)
    elif selection == "global":
        kept = select_global(scores, ratio)
    else:
        raise PruningError(f"unknown selection {selection!r}; expected one of {', '.join(SELECTIONS)}")
    if check_align(align, align_rounding) is None:
        return kept
    return [_ranked(s)[:align_count(k.numel(), s.numel(), align, align_rounding)].sort().values
            for s, k in zip(scores, kept)]
