"""Pruned models in every checkpoint format: ours (per-layer N′), stock transformers (state_size = N′),
mamba-ssm; logits compared after loading."""
import pytest
import torch

import perfmamba
from perfmamba import CheckpointError, MambaLM, preset, prune

MODELS = [
    pytest.param("mamba2-tiny", {}, id="mamba2-G1-N13"),
    pytest.param("mamba2-tiny", {"ngroups": 2}, id="mamba2-G2-N13"),
    pytest.param("mamba-tiny", {}, id="mamba1-N13"),
]


def tiny(name, dtype=torch.float32, **kw):
    return MambaLM.from_config(preset(name, **kw)).to(dtype).eval()


def ids(b=2, l=19, seed=0):
    return torch.randint(0, 251, (b, l), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,kw,criterion", [
    pytest.param("mamba2-tiny", {}, "decay", id="mamba2-G1-N13-decay"),
    pytest.param("mamba2-tiny", {"ngroups": 2}, "decay", id="mamba2-G2-N13-decay"),
    pytest.param("mamba-tiny", {}, "energy", id="mamba1-N13-energy"),
])
def test_global_selection_round_trips_in_our_format(name, kw, criterion, tmp_path):
    model = tiny(name, **kw)
    x = ids()
    small = prune(model, 0.5, criterion=criterion, calibration=x, selection="global")
    assert small.config.uniform_d_state is None  # per-layer N′ for these seeds
    small.save(tmp_path / "ours")
    back = perfmamba.load(tmp_path / "ours")
    assert back.config.d_states == small.config.d_states
    assert back.config.extra["pruning"] == small.config.extra["pruning"]
    assert torch.equal(back(x), small(x))
    with pytest.raises(CheckpointError, match="one d_state for all layers"):
        small.save(tmp_path / "hf", format="transformers")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("name,kw", MODELS)
def test_stock_transformers_loads_pruned_model(name, kw, tmp_path):
    import transformers

    model = tiny(name, **kw)
    x = ids()
    small = prune(model, 0.6, criterion="magnitude", mode="removed")
    small.save(tmp_path / "hf", format="transformers")
    cls = transformers.Mamba2ForCausalLM if model.config.arch == "mamba2" else transformers.MambaForCausalLM
    hf = cls.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.state_size == 5
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, small(x), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name,kw", MODELS)
def test_bridge_exports_the_zeroed_model(name, kw, tmp_path):
    """A bridged model is saved with W_bridge applied: the full-size model whose pruned rows are zero."""
    import transformers

    model = tiny(name, **kw)
    x = ids()
    b = prune(model, 0.6, criterion="magnitude", mode="bridge")
    z = prune(model, 0.6, criterion="magnitude", mode="zeroed")
    b.save(tmp_path / "hf", format="transformers")
    cls = transformers.Mamba2ForCausalLM if model.config.arch == "mamba2" else transformers.MambaForCausalLM
    hf = cls.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.state_size == 13
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, z(x), rtol=0, atol=1e-4)
    b.save(tmp_path / "ours")
    torch.testing.assert_close(perfmamba.load(tmp_path / "ours")(x), z(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name,kw", MODELS)
def test_mamba_ssm_format_round_trip(name, kw, tmp_path):
    model = tiny(name, **kw)
    x = ids()
    small = prune(model, 0.3, criterion="delta", calibration=x)
    small.save(tmp_path / "ms", format="mamba_ssm")
    back = perfmamba.load(tmp_path / "ms")
    assert back.config.d_states == [9] * model.config.n_layer  # ⌊13 · 0.7⌋
    assert torch.equal(back(x), small(x))
