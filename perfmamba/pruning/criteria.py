"""Pruning criteria: per layer, one score per state (higher = keep).

Every criterion is `fn(model, stats, *, ratio=None, seed=0) -> list[Tensor (N_l,)]`, `stats` an `Activity`
(None for those that read weights only). `NEEDS` says what each needs: None (weights), "calibration" (a
plain pass) or "scan" (`collect_activity(..., scan=True)`).

    delta      E[Δ_t]: the paper's activity (§5); see activity.py for the per-state reading
    random     uniform noise from a seeded generator: the floor any criterion must beat
    magnitude  ‖[W_B,s ; W_C,s]‖₂: weight norm of the rows producing B_s and C_s (Mamba-2: in_proj rows of
               every group; Mamba-1: x_proj rows)
    energy     E|C_s h_s ⊙ silu(z)|: the mean magnitude of state s's additive contribution to the gated SSM
               output (Mamba-1: the out_proj input; Mamba-2: the input of the gated RMSNorm), from a
               float64 scan over the calibration data
    decay      E|1 − exp(Δ_t A_s)|: how much of the state is replaced per token (Mamba-2: A and Δ are per
               head, so the per-head value is spread over states like `delta`)
    sparsessm  SparseSSM (Tuo & Wang 2025, arXiv 2506.09613), structured variant; see `sparsessm_scores`
"""
from __future__ import annotations

from functools import partial

import torch

from .activity import Activity
from .selection import PruningError, check_choice, n_keep
from .surgery import bc_rows


def _statistic(name: str, attr: str, model, stats, **_) -> list[torch.Tensor]:
    """A copy of the statistic `attr` of `stats`, checked to be there and to describe `model`."""
    if not isinstance(stats, Activity):
        raise PruningError(f"criterion {name!r} needs calibration statistics (pass calibration data)")
    value = getattr(stats, attr)
    if value is None:
        raise PruningError(f"criterion {name!r} needs statistics collected with scan=True")
    if stats.d_states != model.config.d_states or stats.arch != model.config.arch:
        raise PruningError(f"calibration statistics describe a {stats.arch} model with d_state "
                           f"{stats.d_states}, not this {model.config.arch} model with "
                           f"{model.config.d_states}")
    return [v.clone() for v in value]


def random_scores(model, stats=None, *, seed: int = 0, **_) -> list[torch.Tensor]:
    """Uniform scores from `torch.Generator().manual_seed(seed)`, drawn layer by layer."""
    g = torch.Generator().manual_seed(int(seed))
    return [torch.rand(n, generator=g, dtype=torch.float64) for n in model.config.d_states]


def magnitude_scores(model, stats=None, **_) -> list[torch.Tensor]:
    """L2 norm of the projection rows that produce B_s and C_s (all groups for Mamba-2)."""
    out = []
    for layer in model.backbone.layers:
        m = layer.mixer
        proj = m.in_proj if model.config.arch == "mamba2" else m.x_proj
        w = proj.weight.detach().to("cpu", torch.float64)
        rows = bc_rows(m, torch.arange(m.d_state))  # (2g, n) or (2, n): rows of B_s / C_s
        out.append(w[rows].square().sum(-1).sum(0).sqrt())  # (n,)
    return out


def sparsessm_scores(model, stats, *, ratio: float | None = None, **_) -> list[torch.Tensor]:
    """SparseSSM (Tuo & Wang 2025, "SparseSSM: Efficient Selective Structured State Space Models Can Be
    Pruned in One-Shot", arXiv 2506.09613), structured (whole-state) variant.

    SparseSSM extends Optimal Brain Surgeon to the time-shared A matrix: the saliency of A_log[d, s] at
    position t uses the diagonal Hessian approximated by the squared previous state (Theorem 1; reference
    code github.com/CFinTech/SparseSSM, prune/sparsessm.py):

        I_t(d, s) = A_log[d, s]² · E_b[h_{t−1}[d, s]²]

    The structured variant (prune/structure_ts.py) sums I_t over channels, marks at every position the
    states of lowest saliency and removes those marked most often (a vote across time). Here N − n_keep(N, r)
    are marked per position (the reference rounds r·N; ours matches `select_uniform`'s budget), the score is
    the number of positions where a state was not marked, and ties are broken by the time-summed saliency
    (scaled into [0, 0.5], so it never outweighs a vote). Position 0 (h_{−1} = 0 for every state) is left
    out. Without a ratio, or when it removes nothing, the score is the time-summed Σ_t Σ_d I_t(d, s).

    Mamba-2 (an extension; the paper treats Mamba-1): A_log is per head and h is (h, p, n), so
    I_t(s) = Σ_{h,p} A_log[h]² E_b[h_{t−1}[h, p, s]²]. The OBS update of the remaining weights is not
    applied: states are only kept or dropped, like every other criterion here.
    """
    sal = _statistic("sparsessm", "saliency", model, stats)  # per layer (l, N)
    out = []
    for s in sal:
        total = s.sum(0)  # (N,)
        tie = 0.5 * total / total.max() if total.max() > 0 else torch.zeros_like(total)
        n = s.shape[1]
        marked = n - n_keep(n, ratio) if ratio is not None else 0
        steps = s[1:]
        if marked == 0 or steps.shape[0] == 0:
            out.append(total)
            continue
        lowest = torch.sort(steps, dim=1, stable=True).indices[:, :marked]  # (l − 1, marked)
        votes = torch.bincount(lowest.flatten(), minlength=n).double()
        out.append(steps.shape[0] - votes + tie)
    return out


CRITERIA = {
    "delta": partial(_statistic, "delta", "activity"),
    "random": random_scores,
    "magnitude": magnitude_scores,
    "energy": partial(_statistic, "energy", "energy"),
    "decay": partial(_statistic, "decay", "decay"),
    "sparsessm": sparsessm_scores,
}
NEEDS = {"delta": "calibration", "random": None, "magnitude": None, "energy": "scan", "decay": "calibration",
         "sparsessm": "scan"}


def scores(name: str, model, stats=None, *, ratio: float | None = None, seed: int = 0) -> list[torch.Tensor]:
    """Per-layer scores (float64, CPU) of criterion `name`."""
    check_choice("criterion", name, CRITERIA)
    out = CRITERIA[name](model, stats, ratio=ratio, seed=seed)
    return [o.detach().to("cpu", torch.float64) for o in out]
