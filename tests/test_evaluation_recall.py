"""Associative-recall probe: sequence layout by hand, the scorer on oracle and constant models, a short training."""
import pytest
import torch
import torch.nn as nn

from perfmamba import ModelConfig
from perfmamba.evaluation import EvaluationError, recall_accuracy, recall_batch, recall_rows
from perfmamba.train import train_recall_model


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


@pytest.mark.parametrize("n_pairs,n_queries", [(1, None), (5, None), (7, 3)], ids=["N1", "N5", "N7-Q3"])
def test_batch_layout_by_hand(n_pairs, n_queries):
    x, y = recall_batch(6, n_pairs, vocab_range=(10, 40), n_queries=n_queries,
                        generator=torch.Generator().manual_seed(1))
    q = n_pairs if n_queries is None else n_queries
    assert x.shape == y.shape == (6, 2 * n_pairs + 2 * q - 1)
    for xs, ys in zip(x.tolist(), y.tolist()):
        seq = xs + [ys[-1]]
        keys, values = seq[0:2 * n_pairs:2], seq[1:2 * n_pairs:2]
        assert len(set(keys)) == n_pairs and all(10 <= k < 25 for k in keys)
        assert all(25 <= v < 40 for v in values)
        bound = dict(zip(keys, values))
        queries = seq[2 * n_pairs::2]
        assert len(set(queries)) == q and set(queries) <= set(keys)
        for i, t in enumerate(ys):
            if i >= 2 * n_pairs and (i - 2 * n_pairs) % 2 == 0:
                assert t == bound[xs[i]]  # the value bound to the queried key
            else:
                assert t == -100


class Oracle(nn.Module):
    """Answers every query from the pairs before it (logit 1 on the bound value); every k-th answer off by one."""

    def __init__(self, vocab, mistake_every=0):
        super().__init__()
        self.config = ModelConfig(arch="mamba1", d_model=8, n_layer=1, vocab_size=vocab)
        self.w = nn.Parameter(torch.zeros(1))
        self.mistake_every = mistake_every

    def forward(self, x):
        out = torch.zeros(*x.shape, self.config.padded_vocab_size)
        for b, row in enumerate(x.tolist()):
            bound, asked = {}, 0
            for i in range(0, len(row), 2):
                key = row[i]
                if key in bound:  # keys are distinct among the pairs: a repeated key is a query
                    asked += 1
                    v = bound[key]
                    if self.mistake_every and asked % self.mistake_every == 0:
                        v = v + 1 if v + 1 < self.config.vocab_size else v - 1
                    out[b, i, v] = 1.0
                else:
                    bound[key] = row[i + 1]
        return out


def test_scorer_on_oracle_and_constant_models():
    assert recall_accuracy(Oracle(64), n_pairs=8, n_seqs=20) == 1.0
    acc = recall_accuracy(Oracle(64, mistake_every=4), n_pairs=8, n_seqs=20)
    assert acc == pytest.approx(0.75, abs=0.02)

    class Constant(Oracle):
        def forward(self, x):
            return torch.zeros(*x.shape, self.config.padded_vocab_size)  # argmax: the first value token

    # chance: the first of 32 values is right about 1/32 of the time
    assert recall_accuracy(Constant(64), n_pairs=8, n_seqs=400) == pytest.approx(1 / 32, abs=0.015)
    rows = recall_rows(Oracle(64), [1, 4], n_seqs=4)
    assert [(r["n_pairs"], r["value"]) for r in rows] == [(1, 1.0), (4, 1.0)]


@pytest.mark.parametrize("kw,msg", [
    (dict(n_pairs=40), "n_pairs must lie in"), (dict(n_pairs=0), "n_pairs must lie in"),
    (dict(n_pairs=4, vocab_range=(0, 3)), "too small"), (dict(n_pairs=4, vocab_range=(0, 100)), "exceeds"),
    (dict(n_pairs=4, n_queries=5), "n_queries must lie in"),
], ids=["too-many-pairs", "zero-pairs", "tiny-range", "range-beyond-vocab", "too-many-queries"])
def test_bad_input(kw, msg):
    with pytest.raises(EvaluationError, match=msg):
        recall_accuracy(Oracle(64), n_seqs=4, **kw)


def test_short_training_learns_to_recall_few_pairs():
    cfg = ModelConfig(arch="mamba2", d_model=32, n_layer=2, vocab_size=32, d_state=16, headdim=16, chunk_size=16)
    model, hist = train_recall_model(cfg, max_pairs=2, steps=80, batch_size=32, lr=1e-2, progress=False)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert recall_accuracy(model, n_pairs=1, n_seqs=128) > 0.5  # chance is 1/16
