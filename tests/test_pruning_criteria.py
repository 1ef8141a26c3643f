"""Criteria: weight norms by hand, seeded noise, SparseSSM votes by hand, data-driven scores on zeroed states."""
import pytest
import torch

from perfmamba import MambaLM, preset
from perfmamba.pruning import CRITERIA, PruningError, collect_activity, prune, select_uniform
from perfmamba.pruning.activity import Activity
from perfmamba.pruning.criteria import NEEDS, scores
from perfmamba.pruning.surgery import zeroed

MODELS = [
    pytest.param("mamba2-tiny", {}, id="mamba2-G1-N13"),
    pytest.param("mamba2-tiny", {"ngroups": 2}, id="mamba2-G2-N13"),
    pytest.param("mamba-tiny", {}, id="mamba1-N13"),
]


def tiny(name, **kw):
    return MambaLM.from_config(preset(name, **kw)).double().eval()


def ids(b=2, l=12, seed=0):
    return torch.randint(0, 251, (b, l), generator=torch.Generator().manual_seed(seed))


def test_registry():
    assert set(CRITERIA) == {"delta", "random", "magnitude", "energy", "decay", "sparsessm"}
    assert set(NEEDS) == set(CRITERIA)


@pytest.mark.parametrize("name,kw", MODELS)
def test_magnitude_by_hand(name, kw):
    model = tiny(name, **kw)
    got = scores("magnitude", model)
    for layer, s in zip(model.backbone.layers, got):
        m = layer.mixer
        n = m.d_state
        if model.config.arch == "mamba2":
            d, g = m.d_inner, m.ngroups
            W = m.in_proj.weight
            Bw = W[2 * d:2 * d + g * n].reshape(g, n, -1)  # (g, n, d_model)
            Cw = W[2 * d + g * n:2 * d + 2 * g * n].reshape(g, n, -1)
            want = (Bw.square().sum((0, 2)) + Cw.square().sum((0, 2))).sqrt()
        else:
            W = m.x_proj.weight
            r = m.dt_rank
            want = (W[r:r + n].square().sum(1) + W[r + n:r + 2 * n].square().sum(1)).sqrt()
        torch.testing.assert_close(s, want.detach(), rtol=0, atol=1e-14)


def test_random_is_seeded():
    model = tiny("mamba2-tiny")
    a, b, c = scores("random", model, seed=3), scores("random", model, seed=3), scores("random", model, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    assert [x.shape for x in a] == [(13,), (13,)]
    assert not torch.equal(a[0], a[1])  # layers draw different numbers


def test_data_criteria_need_statistics():
    model = tiny("mamba2-tiny")
    for name in ("delta", "decay", "energy", "sparsessm"):
        with pytest.raises(PruningError, match="needs calibration"):
            scores(name, model, None)
    plain = collect_activity(model, ids())
    with pytest.raises(PruningError, match="scan=True"):
        scores("energy", model, plain)
    other = tiny("mamba2-tiny", d_state=5)
    with pytest.raises(PruningError, match="d_state"):
        scores("delta", other, plain)
    with pytest.raises(PruningError, match="unknown criterion"):
        scores("wanda", model, plain)


def _fake_stats(saliency):
    n = saliency.shape[1]
    z = torch.zeros(n, dtype=torch.float64)
    return Activity(arch="mamba1", d_states=[n], activity=[z], delta_mean=[z], decay=[z], energy=[z],
                    saliency=[saliency])


def test_sparsessm_votes_by_hand():
    sal = torch.tensor([[0.0, 0.0, 0.0, 0.0],  # position 0: h_{-1} = 0, left out
                        [1.0, 5.0, 5.0, 5.0],  # marks state 0
                        [5.0, 1.0, 5.0, 5.0],  # marks state 1
                        [0.5, 5.0, 5.0, 5.0],  # marks state 0
                        [5.0, 5.0, 5.0, 5.0]], dtype=torch.float64)  # tie: marks the lowest index, 0
    model = MambaLM.from_config(preset("mamba-tiny", n_layer=1, d_state=4))
    stats = _fake_stats(sal)
    got = scores("sparsessm", model, stats, ratio=0.25)[0]  # keep 3, mark 1 per position
    total = torch.tensor([11.5, 16.0, 20.0, 20.0], dtype=torch.float64)
    want = torch.tensor([4 - 3, 4 - 1, 4 - 0, 4 - 0], dtype=torch.float64) + 0.5 * total / 20.0
    torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
    assert select_uniform([got], 0.25)[0].tolist() == [1, 2, 3]
    torch.testing.assert_close(scores("sparsessm", model, stats)[0], total, rtol=0, atol=0)  # no ratio: Σ_t


def test_sparsessm_prunes_state_with_zero_A_log_first():
    """Mamba-1's S4D-real init has A_log[:, 0] = log 1 = 0: zero OBS saliency at every position."""
    model = tiny("mamba-tiny")
    small = prune(model, 0.05, criterion="sparsessm", calibration=ids())  # k = 12 of 13
    assert all(0 not in k for k in small.config.extra["pruning"]["kept"])


@pytest.mark.parametrize("name,kw", MODELS)
@pytest.mark.parametrize("criterion", ["energy", "magnitude", "sparsessm"])
def test_criteria_find_states_that_are_already_zeroed(name, kw, criterion):
    """States whose B/C rows are zero contribute nothing: energy, magnitude and saliency score them 0, so
    pruning them from the zeroed model removes exactly those and changes no logit."""
    model = tiny(name, **kw)
    dead = {0, 5, 11}  # includes 0: Mamba-1's state 0 has zero SparseSSM saliency anyway (A_log = 0)
    z = zeroed(model, [torch.tensor([s for s in range(13) if s not in dead])] * 2)
    x = ids()
    small = prune(z, 0.2, criterion=criterion, calibration=x)  # k = 10
    for k in small.config.extra["pruning"]["kept"]:
        assert dead.isdisjoint(k) and len(k) == 10
    torch.testing.assert_close(small(x), z(x), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name,kw", MODELS)
def test_delta_and_decay_are_the_activity_statistics(name, kw):
    model = tiny(name, **kw)
    act = collect_activity(model, ids())
    for crit, attr in (("delta", "activity"), ("decay", "decay")):
        for a, b in zip(scores(crit, model, act), getattr(act, attr)):
            assert torch.equal(a, b)
