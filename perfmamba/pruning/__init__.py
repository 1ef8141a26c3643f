"""State activity and state pruning (PerfMamba §5–6).

    act = collect_activity(model, tokens)              # per layer and state: activity(l, s) = E[Δ_t], ...
    small = prune(model, 0.5, calibration=tokens)      # keep k = ⌊N(1 − r)⌋ ≥ 1 states per layer
"""
from __future__ import annotations

import copy

import torch

from .activity import Activity, activity_rows, calibration_tokens, collect_activity, spread_heads
from .criteria import CRITERIA, NEEDS, scores
from .selection import (ALIGN_ROUNDING, SELECTIONS, PruningError, align_count, check_align, check_choice,
                        check_ratio, n_keep, select, select_global, select_uniform)
from .surgery import MODES, removed, zeroed

__all__ = ["prune", "collect_activity", "activity_rows", "Activity", "CRITERIA", "MODES", "SELECTIONS",
           "PruningError", "select_uniform", "select_global", "n_keep", "align_count", "ALIGN_ROUNDING",
           "spread_heads", "scores"]


def prune(model, ratio, *, criterion: str = "delta", calibration=None, mode: str = "removed",
          selection: str = "uniform", align: int | None = None, align_rounding: str = "up", pad: bool = False,
          seed: int = 0, tokenizer=None, stats: Activity | None = None, batch_size: int = 8,
          seq_len: int = 512, progress: bool = False):
    """A new model with a fraction `ratio` of the SSM states of every layer pruned; `model` is untouched.

    ratio: r in [0, 1); each layer keeps k = max(1, ⌊N(1 − r)⌋) states (selection="uniform", the paper's
        Algorithm 1), or the same total spread across layers by normalised score (selection="global").
    align: round each layer's kept count to a multiple of `align` that the kernels run fast (None: exact),
        by align_rounding "up", "down" or "nearest", clamped to [1, N] (`selection.align_count`).
    pad: with align (rounding "up") and mode "removed": keep exactly k states, laid out with the aligned
        count, the extra states zero (zero B/C rows and Mamba-2 conv channels: they stay 0 and add nothing).
        The exact model's logits at the aligned model's shapes (and speed).
    criterion: a name in CRITERIA (the paper's is "delta"). mode: "removed" | "zeroed" | "bridge".
    calibration: what `calibration_tokens` takes (token ids, text with `tokenizer`, ...), cut into rows of
        `seq_len`; needed by the data-driven criteria; or `stats`, a `collect_activity` result to reuse.
    seed: for criterion="random". The kept indices and settings go to `new.config.extra["pruning"]`, so
    checkpoints carry them.
    """
    r = check_ratio(ratio)
    check_choice("criterion", criterion, CRITERIA)
    check_choice("mode", mode, MODES)
    check_choice("selection", selection, SELECTIONS)
    align = check_align(align, align_rounding)
    if pad and (align is None or align_rounding != "up" or mode != "removed"):
        raise PruningError("pad needs align=M with align_rounding 'up' and mode 'removed' (it pads the "
                           "removed model's states with zero states up to a multiple of M)")
    need = NEEDS[criterion]
    tokens = None if calibration is None else calibration_tokens(model, calibration, tokenizer=tokenizer,
                                                                  seq_len=seq_len)
    n = model.config.d_states
    if r == 0.0:  # every layer keeps all its states: no statistics needed
        kept = layout = [torch.arange(ni) for ni in n]
    else:
        if need is not None and (stats is None or (need == "scan" and stats.energy is None)):
            if tokens is None:
                raise PruningError(f"criterion {criterion!r} needs calibration data (token ids or text)")
            stats = collect_activity(model, tokens, batch_size=batch_size, scan=need == "scan",
                                     progress=progress)
        s = scores(criterion, model, stats, ratio=r, seed=seed)
        kept = select(s, r, selection, align=None if pad else align, align_rounding=align_rounding)
        layout = select(s, r, selection, align=align, align_rounding="up") if pad else kept
    if pad:  # the aligned layout, then its states outside the exact selection zeroed
        new = zeroed(removed(model, layout), [torch.searchsorted(lay, k) for lay, k in zip(layout, kept)])
    else:
        new = MODES[mode](model, kept)
    info = {"ratio": r, "criterion": criterion, "mode": mode, "selection": selection, "seed": seed,
            "d_state_before": list(n), "kept": [k.tolist() for k in kept],
            "calibration_tokens": tokens.numel() if tokens is not None else stats.n_tokens if stats else 0}
    if align is not None:
        info.update(align=align, align_rounding=align_rounding)
    if pad:
        info.update(pad=True, layout=[lay.tolist() for lay in layout])
    if "pruning" in model.config.extra:
        info["previous"] = copy.deepcopy(model.config.extra["pruning"])
    new.config.extra = {**copy.deepcopy(model.config.extra), "pruning": info}
    return new
