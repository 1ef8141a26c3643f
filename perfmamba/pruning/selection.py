"""Which states to keep: the paper's per-layer top-k (Algorithm 1) and a global variant.

    k = n_keep(N, r) = max(1, ⌊N(1 − r)⌋)

r is read as the decimal the user wrote (0.8 means 8/10), so ⌊10 · (1 − 0.8)⌋ is 2, not the 1 of binary
floating point (1.9999999999999996). Every layer keeps at least one state; ratios outside [0, 1), NaN and
non-numbers are rejected. Kept indices are sorted ascending, one LongTensor per layer; ties in the scores go
to the lower state index, so a constant score keeps the first k states.

Hardware-aware counts (`align`): the paper's k = ⌊128(1 − r)⌋ gives N′ = 115, 89, 38, 12, widths off the
aligned fast paths of the GEMMs and kernels (Mamba-2's in_proj has 2d + 2gN′ + h outputs, and B, C start at
odd offsets of its rows), which made such models slower than dense on an H200. `align_count(k, N, M)` rounds
each layer's count to a multiple of M: "up" (default; never fewer states, so never less accurate, than the
exact count), "down" (faster) or "nearest" (ties up); then clamps to [1, N]: above N → N (N needs no
alignment: it is the dense width), 0 → min(M, N). M = 8 makes 2gN′ a multiple of 16, so in_proj's output
stays 16-byte aligned in bf16; 16 or 32 also match the kernels' tile widths. The states kept are the best
`align_count(k)` of the same ranking (for both selections a layer's kept set is a prefix of its ranking).
"""
from __future__ import annotations

import math
import numbers
from fractions import Fraction

import torch

from ..errors import PruningError

SELECTIONS = ("uniform", "global")
ALIGN_ROUNDING = ("up", "down", "nearest")


def check_choice(what: str, value, options) -> None:
    """A PruningError unless `value` is one of `options` (names in a tuple or the keys of a dict)."""
    if value not in options:
        raise PruningError(f"unknown {what} {value!r}; expected one of {', '.join(options)}")


def _number(value, kind: type, what: str):
    """`value` (a number, or a string holding one) as a `kind`, else a PruningError."""
    try:
        number = kind(value) if isinstance(value, str) else value
    except ValueError:
        number = None
    abstract = numbers.Real if kind is float else numbers.Integral
    if isinstance(number, bool) or not isinstance(number, abstract):
        raise PruningError(f"{what}, got {value!r}")
    return kind(number)


def check_ratio(ratio) -> float:
    """`ratio` as a float in [0, 1), or a PruningError."""
    if isinstance(ratio, torch.Tensor) and ratio.numel() == 1:
        ratio = ratio.item()
    r = _number(ratio, float, "ratio must be a number in [0, 1)")
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
    return [_ranked(s)[:n_keep(s.numel(), ratio)].sort().values for s in scores]


def normalise(score: torch.Tensor) -> torch.Tensor:
    """A layer's scores, shifted to be non-negative, over their mean (all equal: 1.0 everywhere). 1.0 reads
    "as important as the layer's average state", so layers of different sizes and scales (Δ grows with depth
    in trained models) compete on equal terms."""
    s = score.detach().to("cpu", torch.float64).flatten()
    s = s - s.min().clamp(max=0.0)
    m = s.mean()
    return torch.ones_like(s) if m <= 0 else s / m


def select_global(scores: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """Spend the uniform budget Σ_l n_keep(N_l, r) unevenly across layers: each layer keeps its best state,
    the rest of the budget goes to the highest normalised scores (`normalise`) over all layers."""
    best = [int(_ranked(s)[0]) for s in scores]
    chosen = [[b] for b in best]
    # candidates in (layer, state) order, so that the stable sort breaks ties by lower layer, then lower index
    rest = [(i, j, v) for i, s in enumerate(scores) for j, v in enumerate(normalise(s).tolist())
            if j != best[i]]
    budget = sum(n_keep(s.numel(), ratio) for s in scores) - len(scores)
    for i, j, _ in sorted(rest, key=lambda c: -c[2])[:budget]:
        chosen[i].append(j)
    return [torch.tensor(sorted(c), dtype=torch.long) for c in chosen]


def check_align(align, rounding: str = "up") -> int | None:
    """`align` as a positive int (or None: no rounding), and a known rounding rule; else a PruningError."""
    check_choice("align rounding", rounding, ALIGN_ROUNDING)
    if align is None:
        return None
    align = _number(align, int, "align must be a positive integer")
    if align < 1:
        raise PruningError(f"align must be a positive integer, got {align!r}")
    return align


def align_count(k: int, n_state: int, align: int | None, rounding: str = "up") -> int:
    """k kept states rounded to a multiple of `align` by `rounding` ("up", "down", "nearest": ties up), then
    clamped to [1, N]: above N → N, 0 → min(align, N). align None or 1 returns k unchanged."""
    align = check_align(align, rounding)
    if align is None or align == 1:
        return k
    down, up = (k // align) * align, -(-k // align) * align
    out = {"up": up, "down": down, "nearest": up if k - down >= up - k else down}[rounding]
    return max(1, min(out or align, n_state))


def select(scores: list[torch.Tensor], ratio: float, selection: str = "uniform", *, align: int | None = None,
           align_rounding: str = "up") -> list[torch.Tensor]:
    """Kept indices per layer by `selection`; with `align`, each layer's count rounded by `align_count`."""
    check_choice("selection", selection, SELECTIONS)
    kept = (select_uniform if selection == "uniform" else select_global)(scores, ratio)
    if check_align(align, align_rounding) is None:
        return kept
    return [_ranked(s)[:align_count(k.numel(), s.numel(), align, align_rounding)].sort().values
            for s, k in zip(scores, kept)]
