import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from perfmamba import MambaLM, preset
from helpers import assert_close

CASES = [
    pytest.param("mamba-tiny", {}, id="mamba1-N13"),
    pytest.param("mamba2-tiny", {}, id="mamba2-N13-g1"),
    pytest.param("mamba2-tiny", {"ngroups": 2}, id="mamba2-N13-g2"),
    pytest.param("mamba-tiny", {"d_state": [13, 4]}, id="mamba1-perlayer-N13-4"),
    pytest.param("mamba2-tiny", {"d_state": [5, 13]}, id="mamba2-perlayer-N5-13"),
]


def model_for(name, overrides, dtype=torch.float64):
    return MambaLM.from_config(preset(name, **overrides)).to(dtype).eval()


@pytest.mark.parametrize("name,overrides", CASES)
def test_chunked_path_matches_sequential_reference(name, overrides):
    m = model_for(name, overrides)
    ids = torch.randint(0, 251, (2, 37), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast = m(ids)
        m.backend = "sequential"
        slow = m(ids)
    assert_close(fast, slow, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("name,overrides", CASES)
def test_incremental_decoding_matches_full_forward(name, overrides):
    m = model_for(name, overrides)
    ids = torch.randint(0, 251, (2, 37), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = m(ids)
        cache = m.allocate_cache(2, dtype=torch.float64)
        parts = [m(ids[:, :17], cache)]  # prefill
        parts += [m.step(ids[:, t], cache)[:, None] for t in range(17, 30)]  # decode
        parts += [m(ids[:, 30:], cache)]  # a second prefill continuing from the cache
    assert cache.seqlen_offset == 37
    assert_close(torch.cat(parts, 1), full, atol=1e-10, rtol=1e-9)


def test_cache_is_sized_by_each_layers_d_state():
    m = model_for("mamba2-tiny", {"d_state": [5, 13]})
    cache = m.allocate_cache(3)
    cfg = m.config
    assert [t.shape for t in cache.ssm_states] == [(3, cfg.nheads, cfg.headdim, 5), (3, cfg.nheads, cfg.headdim, 13)]
    assert [t.shape[1] for t in cache.conv_states] == [cfg.d_inner + 2 * 5, cfg.d_inner + 2 * 13]
    assert cache.nbytes()["ssm_state"] == 3 * cfg.nheads * cfg.headdim * 18 * 4


def test_random_init_is_seeded():
    a, b = MambaLM.from_config(preset("mamba-tiny")), MambaLM.from_config(preset("mamba-tiny"))
    c = MambaLM.from_config(preset("mamba-tiny", seed=1))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.backbone.embedding.weight, c.backbone.embedding.weight)


@pytest.mark.parametrize("name", ["mamba-tiny", "mamba2-tiny"])
def test_components_are_labelled_for_the_profiler(name):
    m = model_for(name, {}, torch.float32)
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad():
        m(torch.randint(0, 251, (1, 8)))
    names = {e.key for e in prof.key_averages()}
    expected = {"embedding", "rmsnorm", "in_proj", "conv1d", "ssm", "out_proj", "lm_head"}
    expected |= {"ssm.x_proj", "ssm.dt_proj", "ssm.scan"} if name.startswith("mamba-") else {"gated_norm"}
    assert expected <= names


def test_bfloat16_forward_runs_and_is_close():
    m = model_for("mamba2-tiny", {}, torch.float32)
    ids = torch.randint(0, 251, (1, 20))
    with torch.no_grad():
        ref = m(ids)
        got = m.to(torch.bfloat16)(ids).float()
    assert got.dtype == torch.float32 and (got - ref).abs().max() < 0.05 * ref.abs().max()


def test_generate_greedy_equals_argmax_of_forward():
    m = model_for("mamba-tiny", {}, torch.float32)
    ids = torch.randint(0, 251, (2, 5))
    out = m.generate(ids, 4)
    with torch.no_grad():
        logits = m(out[:, :-1])[..., :251]
    assert torch.equal(out[:, 5:], logits[:, 4:].argmax(-1))


def test_bad_token_ids_raise():
    m = model_for("mamba-tiny", {}, torch.float32)
    with pytest.raises(ValueError, match="token ids"):
        m(torch.tensor([[0, 256]]))
    with pytest.raises(ValueError, match="batch, length"):
        m(torch.tensor([1, 2]))
