import pytest
import torch

from perfmamba import PRESETS, ConfigError, MambaLM, ModelConfig, preset

# Parameter counts of the state-spaces checkpoints with vocab 50277 padded to 50280, tied embedding
# counted once. Hand count for mamba2-130m, per layer: in_proj 768·(2·1536 + 2·128 + 24) = 2,574,336;
# conv1d 1792·4 + 1792 = 8,960; dt_bias, A_log, D 3·24 = 72; norm 1536; out_proj 1536·768 = 1,179,648;
# block norm 768 → 3,765,320; ×24 = 90,367,680; + embedding 50280·768 = 38,615,040; + norm_f 768.
EXPECTED = {
    "mamba-130m": 129_135_360,
    "mamba2-130m": 128_983_488,
}


def count(name):
    with torch.device("meta"):
        return MambaLM(preset(name), init=False).num_parameters()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_parameter_counts_match_state_spaces(name):
    assert count(name) == EXPECTED[name]


def test_mamba2_130m_hand_count():
    per_layer = 768 * (2 * 1536 + 2 * 128 + 24) + 1792 * 4 + 1792 + 3 * 24 + 1536 + 1536 * 768 + 768
    assert count("mamba2-130m") == 24 * per_layer + 50280 * 768 + 768


@pytest.mark.parametrize("name", [n for n in PRESETS if not n.endswith(("tiny", "small"))])
def test_paper_presets_shapes(name):
    cfg = preset(name)
    assert cfg.padded_vocab_size == 50280 and cfg.tie_embeddings
    assert cfg.d_state == (16 if cfg.arch == "mamba1" else 128)
    if cfg.arch == "mamba2":
        assert (cfg.headdim, cfg.ngroups, cfg.chunk_size) == (64, 1, 256)


def test_per_layer_d_state_round_trips_through_dict():
    cfg = preset("mamba2-tiny", d_state=[13, 5])
    assert cfg.d_states == [13, 5] and cfg.uniform_d_state is None
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert preset("mamba2-tiny", d_state=[7, 7]).d_state == 7  # a uniform list collapses to an int


@pytest.mark.parametrize("bad", [
    dict(arch="mamba3"), dict(d_state=0), dict(d_state=[4]), dict(d_model=-1), dict(d_state=[4, 2.5]),
])
def test_bad_configs_raise(bad):
    with pytest.raises(ConfigError):
        preset("mamba-tiny", **bad)


def test_unknown_preset_and_keys():
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("mamba-7b")
    with pytest.raises(ConfigError, match="unknown config keys"):
        ModelConfig.from_dict({**preset("mamba-tiny").to_dict(), "foo": 1})
