"""perfmamba.train: the trainable Mamba-1 scan, schedule, determinism, learning, checkpoints, bad input."""
import json
import math

import pytest
import torch

from helpers import assert_close
from perfmamba import load, preset
from perfmamba.cli import main
from perfmamba.errors import PerfmambaError
from perfmamba.ops import selective_scan_chunked, selective_scan_ref
from perfmamba.ops.selective_scan import selective_scan_trainable
from perfmamba.train import TrainError, lr_at, param_groups, token_sha256, train


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


SCAN_CASES = [
    pytest.param(2, 6, 37, 5, 1, 8, True, id="B2-D6-L37-N5-T8-init"),
    pytest.param(2, 6, 37, 5, 2, 8, False, id="B2-D6-L37-N5-G2-T8"),
    pytest.param(1, 4, 5, 3, 1, 16, True, id="B1-D4-L5-N3-T16-chunk>len"),
    pytest.param(3, 8, 1, 2, 1, 4, True, id="B3-D8-L1-N2-T4-one-token"),
]


@pytest.mark.parametrize("b,d,l,n,g,chunk,init", SCAN_CASES)
def test_trainable_scan_matches_sequential_reference_values_and_gradients(b, d, l, n, g, chunk, init):
    gen = torch.Generator().manual_seed(0)

    def r(*shape, neg=False):
        t = torch.rand(*shape, generator=gen, dtype=torch.float64) if neg else \
            torch.randn(*shape, generator=gen, dtype=torch.float64)
        return (-t if neg else t).requires_grad_()

    bc = (b, n, l) if g == 1 else (b, g, n, l)
    u, delta, A, B, C = r(b, d, l), r(b, d, l), r(d, n, neg=True), r(*bc), r(*bc)
    D, z, bias = r(d), r(b, d, l), r(d)
    h0 = r(b, d, n) if init else None
    ins = [t for t in (u, delta, A, B, C, D, z, bias, h0) if t is not None]
    y_ref, h_ref = selective_scan_ref(u, delta, A, B, C, D, z, bias, True, True, h0)
    y, h = selective_scan_trainable(u, delta, A, B, C, D, z, bias, True, True, h0, chunk_size=chunk)
    assert_close(y, y_ref, atol=1e-12, rtol=1e-10, what="y")
    assert_close(h, h_ref, atol=1e-12, rtol=1e-10, what="last state")
    gy, gh = torch.randn_like(y_ref), torch.randn_like(h_ref)
    want = torch.autograd.grad((y_ref * gy).sum() + (h_ref * gh).sum(), ins)
    got = torch.autograd.grad((y * gy).sum() + (h * gh).sum(), ins)
    for name, a, e in zip("u delta A B C D z bias h0".split(), got, want):
        assert_close(a, e, atol=1e-11, rtol=1e-9, what=f"grad {name}")


def test_chunked_scan_is_differentiable_when_autograd_records():
    """The in-place inference scan hands over to the trainable one when an input requires grad."""
    gen = torch.Generator().manual_seed(3)
    b, d, l, n = 2, 4, 19, 3
    r = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    u, delta, B, C, z = r(b, d, l), r(b, d, l), r(b, n, l), r(b, n, l), r(b, d, l)
    A = -torch.rand(d, n, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y_nograd = selective_scan_chunked(u, delta, A, B, C, z=z, delta_softplus=True, chunk_size=4, block_size=8)
    grads = []
    for fn in (selective_scan_chunked, selective_scan_ref):
        leaves = [t.clone().requires_grad_() for t in (u, delta, A)]
        y = fn(*leaves, B, C, z=z, delta_softplus=True)
        y.square().sum().backward()
        grads.append([t.grad for t in leaves])
        if fn is selective_scan_chunked:
            assert_close(y.detach(), y_nograd, atol=1e-12)
    for g1, g2 in zip(*grads):
        assert_close(g1, g2, atol=1e-10, rtol=1e-8)


def test_lr_schedule_warmup_peak_and_cosine_floor():
    kw = dict(lr=1.0, warmup=10, steps=110, min_lr_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.1 + 0.9 * 0.5)  # halfway through the cosine
    assert lr_at(110, **kw) == pytest.approx(0.1)


def test_no_weight_decay_on_norms_biases_and_ssm_parameters():
    from perfmamba.models.lm import MambaLM

    model = MambaLM.from_config(preset("mamba-tiny"))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "backbone.layers.0.mixer.in_proj.weight" in decayed
    assert not any(k.endswith(("A_log", ".D", "norm.weight", "bias", "norm_f.weight")) for k in decayed)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def _random_stream(n, vocab, seed):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["mamba-tiny", "mamba2-tiny"])
def test_training_is_deterministic_for_a_seed(name):
    cfg = preset(name)
    tr, va = _random_stream(3000, cfg.vocab_size, 1), _random_stream(200, cfg.vocab_size, 2)
    kw = dict(steps=3, batch_size=4, seq_len=24, lr=1e-2, warmup=1, eval_every=3, eval_tokens=100, progress=False)
    m1, h1 = train(cfg, tr, va, seed=7, **kw)
    m2, h2 = train(cfg, tr, va, seed=7, **kw)
    m3, _ = train(cfg, tr, va, seed=8, **kw)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert [r["loss"] for r in h1] == [r["loss"] for r in h2]
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


@pytest.fixture(scope="module")
def shakespeare_tokens(request):
    from conftest import SHARED_DATA
    from perfmamba.data import train_tokenizer

    path = SHARED_DATA / "tiny_shakespeare.txt"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path}")
    text = path.read_text()
    tok = train_tokenizer(text[:300_000], vocab_size=512)
    cut = int(len(text) * 0.9)
    return tok, torch.tensor(tok(text[:cut])["input_ids"]), torch.tensor(tok(text[cut:])["input_ids"])[:8192]


@pytest.mark.parametrize("name", ["mamba-tiny", "mamba2-tiny"])
def test_short_training_run_beats_the_unigram_model(name, shakespeare_tokens):
    """60 steps on tiny-shakespeare: validation perplexity well below the add-one unigram model's."""
    from perfmamba.data import unigram_perplexity

    tok, tr, va = shakespeare_tokens
    cfg = preset(name, vocab_size=len(tok))
    model, hist = train(cfg, tr, va, steps=60, batch_size=16, seq_len=64, lr=1e-2, warmup=10, eval_every=60,
                        eval_tokens=4096, progress=False)
    unigram = unigram_perplexity(tr, va[:4096], len(tok))
    assert hist[-1]["val_ppl"] < 0.7 * unigram, (hist[-1]["val_ppl"], unigram)
    assert hist[-1]["loss"] < hist[0]["loss"] - 0.5


def test_checkpoint_has_model_tokenizer_and_log(tmp_path, shakespeare_tokens):
    tok, tr, va = shakespeare_tokens
    cfg = preset("mamba2-tiny", vocab_size=len(tok))
    out = tmp_path / "run"
    model, hist = train(cfg, tr[:5000], va[:500], out_dir=out, tokenizer=tok, steps=4, batch_size=2, seq_len=16,
                        eval_every=2, eval_tokens=200, seed=3, progress=False)
    assert {"config.json", "model.safetensors", "tokenizer.json", "train_log.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directories left
    log = json.loads((out / "train_log.json").read_text())
    assert log["complete"] and log["seed"] == 3 and log["n_params"] == model.num_parameters()
    assert log["data"]["train_sha256"] == token_sha256(tr[:5000]) and log["data"]["train_tokens"] == 5000
    assert [r["step"] for r in log["history"]] == [1, 2, 3, 4] and log["wall_time_s"] > 0
    assert math.isclose(log["final"]["val_ppl"], hist[-1]["val_ppl"])
    loaded = load(out)
    x = tr[:20][None]
    assert torch.equal(loaded(x), model(x))


def test_bad_input_is_one_clear_error():
    cfg = preset("mamba-tiny")
    ok = _random_stream(500, cfg.vocab_size, 0)
    kw = dict(steps=1, batch_size=2, seq_len=16, progress=False)
    with pytest.raises(TrainError, match="too few"):
        train(cfg, ok[:10], ok, **kw)
    with pytest.raises(TrainError, match=r"token ids must lie in \[0, 256\)"):
        train(cfg, torch.full((100,), 300), ok, **kw)
    with pytest.raises(TrainError, match="must be positive"):
        train(cfg, ok, ok, **{**kw, "steps": 0})

    class Big:
        def __len__(self):
            return 1000

    with pytest.raises(TrainError, match="tokenizer has 1000 tokens"):
        train(cfg, ok, ok, tokenizer=Big(), **kw)
    assert issubclass(TrainError, PerfmambaError)


def test_default_models_are_trained_once_and_reused(tmp_path, monkeypatch):
    import perfmamba.train as tr

    text = "\n".join(f"line {i} of a small corpus about {w}" for i, w in enumerate(["cats", "dogs", "birds"] * 80))
    monkeypatch.setattr(tr, "load_corpus", lambda root=None: {"train": text, "validation": text[:3000],
                                                               "test": text[:3000]})
    monkeypatch.setattr(tr, "TOKENIZER_VOCAB", 300)
    monkeypatch.setattr(tr, "DEFAULT_MODELS", {"tiny": {"preset": "mamba2-tiny", "steps": 2, "batch_size": 2,
                                                        "seq_len": 16, "lr": 1e-3, "warmup": 1, "seed": 0,
                                                        "eval_every": 2, "eval_tokens": 64}})
    paths = tr.train_default_models(tmp_path, progress=False)
    log = json.loads((paths["tiny"] / "train_log.json").read_text())
    assert log["config"]["vocab_size"] == 300 and log["complete"]

    def fail(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(tr, "train", fail)
    assert tr.train_default_models(tmp_path, progress=False) == paths
    with pytest.raises(TrainError, match="unknown default model"):
        tr.train_default_models(tmp_path, names=["nope"])


def test_cli_train_reports_bad_input_in_one_line(capsys):
    assert main(["train", "--preset", "no-such-preset"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown preset 'no-such-preset'" in err[0]
    assert main(["train", "--steps", "5"]) == 2
    assert "need --preset" in capsys.readouterr().err
