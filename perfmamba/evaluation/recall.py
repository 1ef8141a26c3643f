"""Synthetic associative recall: how many key → value bindings a model holds in its recurrent state.

A sequence lists n_pairs key–value pairs, then queries earlier keys in random order (multi-query associative
recall, MQAR; Arora et al. 2023, "Zoology", github.com/HazyResearch/zoology):

    k1 v1 k2 v2 … kN vN  q1 a1 q2 a2 …      (q_j one of the keys, a_j its value)

Keys are distinct within a sequence and come from the lower half of `vocab_range`, values (any, with
repeats) from the upper half. At each query the model must predict the value bound to that key; accuracy is
the fraction of queries where the most likely value token (argmax over the value range) is right. Chance is
1 / (number of values). A model can only answer from what its state kept about the pairs, so accuracy as a
function of n_pairs measures state capacity, and pruning states should lower it.
"""
from __future__ import annotations

import torch

from ..config import ModelConfig
from .perplexity import EvaluationError

# A tiny Mamba-2 trained on the task in a couple of minutes on 2 CPU cores
# (`perfmamba.train.train_recall_model`): 32 keys, 32 values, chance 1/32.
RECALL_VOCAB = 64
RECALL_CONFIG = ModelConfig(arch="mamba2", d_model=64, n_layer=2, vocab_size=RECALL_VOCAB, d_state=32,
                            headdim=16, chunk_size=16)


def split_range(vocab_range, config: ModelConfig | None = None, error=EvaluationError):
    """(lo, mid, hi): keys from [lo, mid), values from [mid, hi); within `config`'s vocabulary if given."""
    lo, hi = (int(v) for v in vocab_range)
    if hi - lo < 4:
        raise EvaluationError(f"vocab_range {vocab_range} is too small: need at least 4 token ids")
    if config is not None and hi > config.padded_vocab_size:
        raise error(f"vocab_range {tuple(vocab_range)} exceeds the model's vocabulary "
                    f"({config.padded_vocab_size})")
    return lo, lo + (hi - lo) // 2, hi


def recall_batch(n_seqs: int, n_pairs: int, *, vocab_range=(0, RECALL_VOCAB), n_queries: int | None = None,
                 generator: torch.Generator | None = None):
    """(inputs (b, 2N + 2Q − 1), targets (same; −100 where nothing is asked)) for b = n_seqs sequences.

    Q = n_queries (default N) distinct keys queried. The target at a query position is the key's value.
    """
    lo, mid, hi = split_range(vocab_range)
    n_keys = mid - lo
    if not 1 <= n_pairs <= n_keys:
        raise EvaluationError(f"n_pairs must lie in [1, {n_keys}] for vocab_range {tuple(vocab_range)}, "
                              f"got {n_pairs}")
    q = n_pairs if n_queries is None else n_queries
    if not 1 <= q <= n_pairs:
        raise EvaluationError(f"n_queries must lie in [1, n_pairs={n_pairs}], got {q}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    keys = torch.rand(n_seqs, n_keys, generator=g).argsort(-1)[:, :n_pairs] + lo  # (b, N) distinct keys
    values = torch.randint(mid, hi, (n_seqs, n_pairs), generator=g)  # (b, N)
    which = torch.rand(n_seqs, n_pairs, generator=g).argsort(-1)[:, :q]  # (b, Q) queried pair indices
    seq = torch.empty(n_seqs, 2 * n_pairs + 2 * q, dtype=torch.long)
    seq[:, 0:2 * n_pairs:2], seq[:, 1:2 * n_pairs:2] = keys, values
    seq[:, 2 * n_pairs::2] = keys.gather(1, which)
    seq[:, 2 * n_pairs + 1::2] = values.gather(1, which)
    inputs, targets = seq[:, :-1], seq[:, 1:].clone()
    asked = torch.zeros_like(targets, dtype=torch.bool)
    asked[:, 2 * n_pairs::2] = True  # input is a query key → target is its value
    targets[~asked] = -100
    return inputs, targets


@torch.no_grad()
def recall_accuracy(model, *, n_pairs: int, vocab_range=None, n_seqs: int = 256, seed: int = 0,
                    n_queries: int | None = None, batch_size: int = 64) -> float:
    """Fraction of queries answered with the right value (argmax over the value tokens).

    vocab_range: (lo, hi) token ids, keys from the lower half, values from the upper; default the model's
    whole (unpadded) vocabulary, which is the range `train_recall_model` trains on.
    """
    vocab_range = (0, model.config.vocab_size) if vocab_range is None else vocab_range
    lo, mid, hi = split_range(vocab_range, model.config)
    if n_seqs < 1:
        raise EvaluationError(f"n_seqs must be positive, got {n_seqs}")
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    right = total = 0
    try:
        for b0 in range(0, n_seqs, batch_size):
            x, y = recall_batch(min(batch_size, n_seqs - b0), n_pairs, vocab_range=vocab_range,
                                n_queries=n_queries, generator=g)
            logits = model(x.to(device))[..., mid:hi]  # (b, l, values)
            asked = y != -100
            pred = logits.argmax(-1).cpu() + mid
            right += int((pred[asked] == y[asked]).sum())
            total += int(asked.sum())
    finally:
        model.train(was_training)
    return right / total


def recall_rows(model, n_pairs_list=(1, 2, 4, 8, 16), **kwargs) -> list[dict]:
    """Tidy rows (task "recall", metric "acc", n_pairs, value) over a range of n_pairs."""
    return [{"task": "recall", "metric": "acc", "n_pairs": n,
             "value": recall_accuracy(model, n_pairs=n, **kwargs)} for n in n_pairs_list]
