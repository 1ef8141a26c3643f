"""Surgery in float64: r = 0 is the identity, zeroed ≡ removed ≡ bridge, cached decoding ≡ full forward."""
import copy

import pytest
import torch

from perfmamba import MambaLM, preset, prune
from perfmamba.pruning import MODES, PruningError
from perfmamba.pruning.surgery import bridge, is_bridged, removed, zeroed
from helpers import assert_close as _assert_close

MODELS = [
    pytest.param("mamba2-tiny", {}, id="mamba2-G1-N13"),
    pytest.param("mamba2-tiny", {"ngroups": 2}, id="mamba2-G2-N13"),
    pytest.param("mamba2-tiny", {"d_state": 7, "bias": True}, id="mamba2-N7-bias"),
    pytest.param("mamba-tiny", {}, id="mamba1-N13"),
    pytest.param("mamba-tiny", {"d_state": 5}, id="mamba1-N5"),
]


def assert_close(actual, expected):
    """float64 agreement to 1e-10 (absolute)."""
    _assert_close(actual, expected, atol=1e-10, rtol=0)


def tiny(name, **kw):
    model = MambaLM.from_config(preset(name, **kw)).double().eval()
    if kw.get("bias"):  # non-zero in_proj bias, so that zeroing its B/C rows matters
        with torch.no_grad():
            for layer in model.backbone.layers:
                layer.mixer.in_proj.bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    return model


def ids(b=2, l=21, seed=0):
    return torch.randint(0, 251, (b, l), generator=torch.Generator().manual_seed(seed))


def decode(model, x, prefix=5):
    """Logits from a prefill of `prefix` tokens then one `step` per token, with the model's own cache."""
    cache = model.allocate_cache(x.shape[0], dtype=torch.float64)
    out = [model(x[:, :prefix], cache)]
    for t in range(prefix, x.shape[1]):
        out.append(model.step(x[:, t], cache)[:, None])
    return torch.cat(out, 1), cache


@pytest.mark.parametrize("name,kw", MODELS)
@pytest.mark.parametrize("mode", MODES)
def test_ratio_zero_is_identity(name, kw, mode):
    model = tiny(name, **kw)
    x = ids()
    new = prune(model, 0.0, mode=mode)
    assert new is not model
    assert {k: v.shape for k, v in new.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert new.config.d_states == model.config.d_states
    assert torch.equal(new(x), model(x))


@pytest.mark.parametrize("name,kw", MODELS)
@pytest.mark.parametrize("criterion", ["delta", "random"])
def test_zeroed_removed_bridge_agree(name, kw, criterion):
    model = tiny(name, **kw)
    before = copy.deepcopy(model.state_dict())
    x = ids()
    out = {mode: prune(model, 0.6, criterion=criterion, calibration=x, mode=mode) for mode in MODES}
    ref = model(x)
    logits = {mode: m(x) for mode, m in out.items()}
    assert_close(logits["removed"], logits["zeroed"])
    assert_close(logits["bridge"], logits["zeroed"])
    assert (logits["removed"] - ref).abs().max() > 1e-6  # pruning changed something
    # the input model is untouched
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    n = model.config.d_states[0]
    k = max(1, int(n * 4 // 10))
    assert out["removed"].config.d_states == [k] * model.config.n_layer
    assert out["zeroed"].config.d_states == model.config.d_states
    assert out["bridge"].config.d_states == model.config.d_states
    info = out["removed"].config.extra["pruning"]
    assert info["ratio"] == 0.6 and info["criterion"] == criterion and info["mode"] == "removed"
    assert info["selection"] == "uniform" and [len(kk) for kk in info["kept"]] == [k] * model.config.n_layer
    assert all(kk == sorted(kk) for kk in info["kept"])


@pytest.mark.parametrize("name,kw", MODELS)
@pytest.mark.parametrize("mode", MODES)
def test_cached_decoding_matches_full_forward(name, kw, mode):
    model = tiny(name, **kw)
    x = ids()
    new = prune(model, 0.5, calibration=x, mode=mode, selection="global")
    full = new(x)
    stepped, cache = decode(new, x)
    assert_close(stepped, full)
    n_kept = [len(k) for k in new.config.extra["pruning"]["kept"]]
    expect = n_kept if mode == "removed" else model.config.d_states
    assert [s.shape[-1] for s in cache.ssm_states] == expect


@pytest.mark.parametrize("name,kw", MODELS)
def test_bridge_cache_is_the_zeroed_cache(name, kw):
    """The bridged model computes with N′ states, but its N-sized cache holds exactly the zeroed model's."""
    model = tiny(name, **kw)
    x = ids()
    z = prune(model, 0.5, calibration=x, mode="zeroed")
    b = prune(model, 0.5, calibration=x, mode="bridge")
    assert all(is_bridged(layer.mixer) for layer in b.backbone.layers)
    lz, cz = decode(z, x)
    lb, cb = decode(b, x)
    assert_close(lb, lz)
    for a, c in zip(cb.ssm_states + cb.conv_states, cz.ssm_states + cz.conv_states):
        assert_close(a, c)
    kept = b.config.extra["pruning"]["kept"]
    for layer, k in zip(b.backbone.layers, kept):
        W = layer.mixer.bridge
        assert W.shape == (model.config.d_states[0], len(k))
        assert torch.equal(W.argmax(0), torch.tensor(k)) and W.sum().item() == len(k)


def test_removed_caches_are_smaller():
    model = tiny("mamba2-tiny")
    small = prune(model, 0.5, mode="removed", criterion="magnitude")
    full_b = model.allocate_cache(8).nbytes()
    small_b = small.allocate_cache(8).nbytes()
    assert small_b["ssm_state"] * 13 == full_b["ssm_state"] * 6
    # Mamba-2's conv runs over [x, B, C]: 2·g·(N − N′) fewer channels
    assert full_b["conv_state"] - small_b["conv_state"] == 8 * 2 * 7 * 4 * 4 * 2  # b, layers, N−N′, d_conv, fp32, B+C
    assert small.num_parameters() < model.num_parameters()


def test_zeroing_needs_the_conv_channels():
    """Zeroing only the in_proj rows leaves silu(conv bias) ≠ 0 in B and C: not the removed model."""
    model = tiny("mamba2-tiny")
    x = ids()
    kept = [torch.arange(0, 13, 2)] * 2
    z, r = zeroed(model, kept), removed(model, kept)
    assert_close(z(x), r(x))
    partial = copy.deepcopy(z)
    with torch.no_grad():
        for src, dst in zip(model.backbone.layers, partial.backbone.layers):
            dst.mixer.conv1d.load_state_dict(src.mixer.conv1d.state_dict())
    assert (partial(x) - r(x)).abs().max() > 1e-6


def test_bridge_state_dict_round_trip():
    model = tiny("mamba-tiny")
    b = bridge(model, [torch.tensor([1, 4, 6]), torch.tensor([0, 12])])
    sd = b.state_dict()
    key = "backbone.layers.0.mixer.x_proj.weight"
    assert sd[key].shape == model.state_dict()[key].shape
    assert sd["backbone.layers.0.mixer.A_log"].shape == (64, 13)
    b2 = bridge(model, [torch.tensor([1, 4, 6]), torch.tensor([0, 12])])
    with torch.no_grad():
        for p in b2.parameters():
            p.zero_()
    b2.load_state_dict(sd)
    x = ids()
    assert torch.equal(b2(x), b(x))


def test_prune_twice_records_history():
    model = tiny("mamba2-tiny")
    x = ids()
    once = prune(model, 0.5, calibration=x)
    twice = prune(once, 0.5, calibration=x)
    assert twice.config.d_states == [3, 3]
    assert twice.config.extra["pruning"]["previous"]["d_state_before"] == [13, 13]
    with pytest.raises(PruningError, match="bridge"):
        prune(prune(model, 0.5, calibration=x, mode="bridge"), 0.5, calibration=x)


def test_surgery_rejects_bad_kept():
    model = tiny("mamba2-tiny")
    for kept, msg in [([torch.tensor([0])], "2"), ([torch.tensor([], dtype=torch.long)] * 2, "at least one"),
                      ([torch.tensor([13])] * 2, r"\[0, 13\)"), ([torch.tensor([1, 1])] * 2, "distinct")]:
        with pytest.raises(PruningError, match=msg):
            removed(model, kept)
