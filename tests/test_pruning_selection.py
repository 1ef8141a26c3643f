"""k = ⌊N(1 − r)⌋ ≥ 1 by hand, top-k with index tie-breaks, and the global budget."""
import math

import pytest
import torch

from perfmamba.pruning import PruningError, n_keep, select_global, select_uniform
from perfmamba.pruning.selection import check_ratio, normalise


@pytest.mark.parametrize("n,ratio,k", [
    (128, 0.0, 128), (128, 0.1, 115), (128, 0.5, 64), (128, 0.9, 12),  # Mamba2-130m, the paper's sweep
    (16, 0.3, 11), (16, 0.9, 1),  # Mamba-1
    (10, 0.8, 2),  # binary floating point gives 10 * (1 - 0.8) = 1.9999999999999996
    (10, 0.7, 3), (20, 0.9, 2),
    (10, 0.9, 1), (13, 0.5, 6), (1, 0.99, 1), (3, 0.999, 1),  # never below one state
])
def test_n_keep_hand_values(n, ratio, k):
    assert n_keep(n, ratio) == k


def test_n_keep_exact_decimal_for_paper_sweep():
    for n in (13, 16, 64, 128):
        for tenth in range(10):
            assert n_keep(n, tenth / 10) == max(1, (n * (10 - tenth)) // 10)
    assert math.floor(10 * (1 - 0.8)) == 1  # the pitfall the exact arithmetic avoids


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, float("nan"), float("inf"), "half", None, True, [0.5]])
def test_bad_ratios(bad):
    with pytest.raises(PruningError):
        check_ratio(bad)


def test_ratio_from_string_and_tensor():
    assert check_ratio("0.25") == 0.25
    assert check_ratio(torch.tensor(0.5)) == 0.5


def test_select_uniform_top_k_sorted():
    scores = [torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3]), torch.tensor([3.0, 1.0, 2.0])]
    kept = select_uniform(scores, 0.4)  # k = 3 and 1
    assert [k.tolist() for k in kept] == [[1, 2, 3], [0]]


def test_select_uniform_ties_go_to_lower_index():
    assert select_uniform([torch.ones(7)], 0.5)[0].tolist() == [0, 1, 2]
    assert select_uniform([torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0])], 0.6)[0].tolist() == [1, 2]


def test_select_uniform_rejects_nan_scores():
    with pytest.raises(PruningError, match="NaN"):
        select_uniform([torch.tensor([1.0, float("nan")])], 0.5)


def test_normalise_relative_to_layer_mean():
    assert normalise(torch.tensor([1.0, 3.0])).tolist() == [0.5, 1.5]
    assert normalise(torch.tensor([-1.0, 1.0])).tolist() == [0.0, 2.0]  # shifted to be non-negative first
    assert normalise(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def test_select_global_budget_and_at_least_one_per_layer():
    g = torch.Generator().manual_seed(0)
    scores = [torch.rand(13, generator=g) for _ in range(3)] + [torch.rand(5, generator=g)]
    for ratio in (0.1, 0.5, 0.9):
        kept = select_global(scores, ratio)
        assert sum(k.numel() for k in kept) == sum(n_keep(s.numel(), ratio) for s in scores)
        assert all(k.numel() >= 1 for k in kept)
        assert all(torch.equal(k, k.sort().values) and k.unique().numel() == k.numel() for k in kept)


def test_select_global_moves_budget_to_peaked_layers():
    flat = torch.ones(8)
    peaked = torch.tensor([10.0, 9.0, 8.0, 7.0, 0.01, 0.01, 0.01, 0.01])
    kept = select_global([flat, peaked], 0.5)  # budget 8; peaked states score up to 10/4.5 vs 1.0
    assert kept[1].tolist() == [0, 1, 2, 3]
    assert kept[0].tolist() == [0, 1, 2, 3]
    peaked = torch.tensor([100.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    kept = select_global([flat, peaked], 0.5)  # the peaked layer keeps its one strong state, the rest go to flat
    assert kept[1].tolist() == [0] and kept[0].tolist() == list(range(7))


# hardware-aware kept counts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,n,align,rounding,want", [
    pytest.param(115, 128, 8, "up", 120, id="115-up-8"),
    pytest.param(115, 128, 8, "down", 112, id="115-down-8"),
    pytest.param(115, 128, 8, "nearest", 112, id="115-nearest-8"),
    pytest.param(89, 128, 16, "up", 96, id="89-up-16"),
    pytest.param(89, 128, 16, "nearest", 96, id="89-nearest-16"),
    pytest.param(38, 128, 32, "down", 32, id="38-down-32"),
    pytest.param(12, 128, 8, "nearest", 16, id="12-nearest-8-tie-up"),
    pytest.param(12, 128, 8, "down", 8, id="12-down-8"),
    pytest.param(3, 128, 8, "down", 8, id="below-align-down-keeps-one-multiple"),
    pytest.param(1, 5, 8, "up", 5, id="never-above-N"),
    pytest.param(1, 5, 8, "down", 5, id="zero-becomes-min-align-N"),
    pytest.param(13, 13, 8, "up", 13, id="dense-stays-N"),
    pytest.param(64, 128, 8, "up", 64, id="already-aligned"),
    pytest.param(7, 128, 1, "up", 7, id="align-1-is-exact"),
    pytest.param(7, 128, None, "up", 7, id="no-align"),
])
def test_align_count_rule(k, n, align, rounding, want):
    from perfmamba.pruning import align_count

    assert align_count(k, n, align, rounding) == want


def test_aligned_selection_is_a_prefix_of_the_ranking():
    """Rounding adds the next-best states (up) or drops the worst kept ones (down), for both selections."""
    from perfmamba.pruning.selection import select

    g = torch.Generator().manual_seed(0)
    scores = [torch.rand(128, generator=g), torch.rand(128, generator=g) * 5]
    for selection in ("uniform", "global"):
        exact = select(scores, 0.1, selection)
        for rounding in ("up", "down"):
            aligned = select(scores, 0.1, selection, align=8, align_rounding=rounding)
            for s, e, a in zip(scores, exact, aligned):
                assert a.numel() % 8 == 0 and a.tolist() == sorted(a.tolist())
                order = torch.sort(-s, stable=True).indices
                assert set(a.tolist()) == set(order[:a.numel()].tolist())
                small, big = (e, a) if rounding == "up" else (a, e)
                assert set(small.tolist()) <= set(big.tolist())


def test_prune_with_align_records_it():
    import perfmamba
    from perfmamba.pruning import prune

    model = perfmamba.load("mamba2-tiny")
    small = prune(model, 0.1, criterion="random", align=4, align_rounding="down")
    assert small.config.d_states == [8, 8]  # floor(13 · 0.9) = 11 → 8
    info = small.config.extra["pruning"]
    assert info["align"] == 4 and info["align_rounding"] == "down"
    assert "align" not in prune(model, 0.1, criterion="random").config.extra["pruning"]
    with pytest.raises(PruningError, match="align must be a positive integer"):
        prune(model, 0.1, criterion="random", align=-8)


def test_padded_layout_has_the_exact_models_logits_at_the_aligned_shapes():
    """pad=True: the exact kept states, laid out at the aligned count with zero states; float64 logits equal the
    exact removed model's, and the shapes (hence the kernels' work) are the aligned model's."""
    import perfmamba
    from perfmamba.pruning import prune

    for name in ("mamba2-tiny", "mamba-tiny"):
        model = perfmamba.load(name).double()
        exact = prune(model, 0.3, criterion="random", seed=3)  # N' = floor(13 · 0.7) = 9
        padded = prune(model, 0.3, criterion="random", seed=3, align=4, pad=True)
        aligned = prune(model, 0.3, criterion="random", seed=3, align=4)
        assert exact.config.d_states == [9, 9] and padded.config.d_states == aligned.config.d_states == [12, 12]
        ids = torch.randint(0, 251, (2, 11), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(padded(ids), exact(ids), rtol=0, atol=1e-10)
        c1, c2 = padded.allocate_cache(2, dtype=torch.float64), exact.allocate_cache(2, dtype=torch.float64)
        padded(ids[:, :9], c1), exact(ids[:, :9], c2)
        torch.testing.assert_close(padded.step(ids[:, 9], c1), exact.step(ids[:, 9], c2), rtol=0, atol=1e-10)
        info = padded.config.extra["pruning"]
        assert info["pad"] is True and [len(k) for k in info["kept"]] == [9, 9]
        assert [len(k) for k in info["layout"]] == [12, 12]
    with pytest.raises(PruningError, match="pad needs align"):
        prune(model, 0.3, criterion="random", pad=True)
    with pytest.raises(PruningError, match="pad needs align"):
        prune(model, 0.3, criterion="random", align=4, pad=True, mode="zeroed")
