"""Sliding-window perplexity against hand computations: every scored token exactly once, with its context."""
import math

import pytest
import torch

from perfmamba import MambaLM, preset
from perfmamba.evaluation import EvaluationError, perplexity, perplexity_rows, token_nlls, windows


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


@pytest.fixture(scope="module")
def model():
    # float32: torch's depthwise conv1d is ~50× slower in float64 on CPU; the tolerances below allow for it
    return MambaLM.from_config(preset("mamba2-tiny", seed=3)).eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(0, 251, (53,), generator=torch.Generator().manual_seed(0))


def _nll_of(model, context, target) -> float:
    """−log softmax(model(context))[-1][target], computed on its own."""
    with torch.no_grad():
        logits = model(context[None])[0, -1].double()
    return float(-(logits - torch.logsumexp(logits, -1))[target])


@pytest.mark.parametrize("n,seq_len,stride", [(53, 16, 5), (53, 16, 16), (53, 16, 1), (10, 16, 4), (2, 7, 3),
                                              (100, 13, 13), (100, 13, 12)],
                         ids=lambda v: str(v))
def test_windows_score_every_target_exactly_once(n, seq_len, stride):
    seen = []
    for s, first in windows(n, seq_len, stride):
        L = min(seq_len, n - 1)
        assert 0 <= s and s + L <= n - 1 and s + 1 <= first <= s + L
        seen += list(range(first, s + L + 1))
    assert seen == list(range(1, n))


def test_disjoint_windows_equal_a_hand_computation(model, tokens):
    """stride = seq_len: windows [0, 16), [16, 32), …, the last one aligned to the end of the stream."""
    got = token_nlls(model, tokens, seq_len=16, stride=16, batch_size=3)
    n = tokens.numel()
    for j in range(1, n):
        # target j is scored by the first window whose targets reach j
        starts = [0, 16, 32, n - 1 - 16]
        s = next(s for s in starts if s < j <= s + 16)
        assert got[j - 1].item() == pytest.approx(_nll_of(model, tokens[s:j], tokens[j]), abs=2e-5), j


def test_stride_one_scores_each_token_with_a_full_window(model, tokens):
    got = token_nlls(model, tokens, seq_len=8, stride=1, batch_size=16)
    for j in range(1, tokens.numel()):
        assert got[j - 1].item() == pytest.approx(_nll_of(model, tokens[max(0, j - 8):j], tokens[j]), abs=2e-5)


def test_odd_stride_matches_the_window_rule(model, tokens):
    n, L, stride = tokens.numel(), 16, 5
    starts = list(range(0, n - 1 - L, stride)) + [n - 1 - L]
    got = token_nlls(model, tokens, seq_len=L, stride=stride, batch_size=4)
    for j in range(1, n):
        s = min(s for s in starts if s < j <= s + L)
        assert got[j - 1].item() == pytest.approx(_nll_of(model, tokens[s:j], tokens[j]), abs=2e-5)


def test_short_stream_and_summary(model, tokens):
    """Fewer tokens than one window: one window over the whole stream; ppl = exp(mean nll)."""
    r = perplexity(model, tokens[:9], seq_len=64)
    hand = [_nll_of(model, tokens[:j], tokens[j]) for j in range(1, 9)]
    assert r["n_tokens"] == 8
    assert r["nll"] == pytest.approx(sum(hand) / 8, abs=2e-5)
    assert r["ppl"] == pytest.approx(math.exp(sum(hand) / 8), rel=2e-5)


def test_untrained_model_is_near_uniform_and_rows_are_tidy(model, tokens):
    rows = perplexity_rows(model, {"validation": tokens, "test": tokens[:20]}, seq_len=16)
    assert {(r["split"], r["metric"]) for r in rows} == {(s, m) for s in ("validation", "test")
                                                         for m in ("ppl", "nll", "n_tokens")}
    ppl = next(r["value"] for r in rows if r["split"] == "validation" and r["metric"] == "ppl")
    assert 150 < ppl < 400  # a freshly initialised model is close to uniform over 256 outputs


@pytest.mark.parametrize("bad,kw,msg", [
    (torch.tensor([5]), {}, "at least 2 tokens"),
    (torch.tensor([], dtype=torch.long), {}, "at least 2 tokens"),
    (torch.arange(20), {"seq_len": 8, "stride": 9}, "stride must lie"),
    (torch.arange(20), {"seq_len": 8, "stride": 0}, "stride must lie"),
    (torch.tensor([1, 2, 300]), {}, r"token ids must lie in \[0, 256\)"),
], ids=["one-token", "empty", "stride>seq_len", "stride0", "id-beyond-vocab"])
def test_bad_input(model, bad, kw, msg):
    with pytest.raises(EvaluationError, match=msg):
        perplexity(model, bad, **kw)
