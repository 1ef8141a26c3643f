"""Perplexity on held-out token streams with a sliding window.

Windows of `seq_len` input tokens start every `stride` tokens (the last one is aligned to the end of the
stream); each window scores only the targets no earlier window scored, so every token after the first is
scored exactly once, with at least seq_len − stride tokens of context once the stream is long enough
(stride = seq_len: disjoint windows; stride = 1: every token with a full window of context). This is the
transformers "perplexity of fixed-length models" recipe. Probabilities are the softmax over the model's whole
(padded) output vocabulary, as lm-eval's `hf` model computes them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import EvaluationError


def windows(n_tokens: int, seq_len: int, stride: int) -> list[tuple[int, int]]:
    """(start, first scored target) per window over a stream of n_tokens (targets at 1 … n_tokens − 1).

    Window k feeds tokens [start, start + L) and predicts targets start + 1 … start + L, L = min(seq_len,
    n_tokens − 1); it scores targets from `first` on.
    """
    L = min(seq_len, n_tokens - 1)
    last_start = n_tokens - 1 - L
    starts = list(range(0, last_start, stride)) + [last_start]
    out, scored = [], 0  # scored: the last target position already scored
    for s in starts:
        end = s + L  # last target of this window
        if end > scored:
            out.append((s, max(scored + 1, s + 1)))
            scored = end
    return out


@torch.no_grad()
def token_nlls(model, tokens: torch.Tensor, *, seq_len: int = 512, stride: int | None = None,
               batch_size: int = 8, progress: bool = False) -> torch.Tensor:
    """−log p(t_i | context) for i = 1 … n − 1 (float64), context as described in the module docstring."""
    tokens = torch.as_tensor(tokens).reshape(-1).long()
    n = tokens.numel()
    if n < 2:
        raise EvaluationError(f"need at least 2 tokens to compute a perplexity, got {n}")
    if seq_len < 1:
        raise EvaluationError(f"seq_len must be positive, got {seq_len}")
    stride = seq_len if stride is None else stride
    if not 1 <= stride <= seq_len:
        raise EvaluationError(f"stride must lie in [1, seq_len={seq_len}], got {stride}")
    vocab = model.config.padded_vocab_size
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab:
        raise EvaluationError(f"token ids must lie in [0, {vocab}) for this model, found "
                              f"[{int(tokens.min())}, {int(tokens.max())}]; is this the model's tokenizer?")
    device = next(model.parameters()).device
    tokens = tokens.to(device)
    L = min(seq_len, n - 1)
    wins = windows(n, seq_len, stride)
    out = torch.empty(n - 1, dtype=torch.float64, device=device)
    offsets = torch.arange(L + 1, device=device)
    for i in tqdm(range(0, len(wins), batch_size), desc="perplexity", disable=not progress, leave=False):
        chunk = wins[i:i + batch_size]
        starts = torch.tensor([s for s, _ in chunk], device=device)
        seqs = tokens[starts[:, None] + offsets]  # (b, L + 1)
        logits = model(seqs[:, :-1])  # (b, L, vocab)
        logp = F.log_softmax(logits.double(), dim=-1)
        nll = -logp.gather(-1, seqs[:, 1:, None])[..., 0]  # (b, L): target start + 1 + j
        for (s, first), row in zip(chunk, nll):
            out[first - 1:s + L] = row[first - s - 1:]
    return out


def perplexity(model, tokens: torch.Tensor, *, seq_len: int = 512, stride: int | None = None,
               batch_size: int = 8, progress: bool = False) -> dict:
    """{"ppl", "nll" (mean per token, nats), "n_tokens" (scored)} of `model` on a 1-D token stream."""
    was_training = model.training
    model.eval()
    try:
        nll = token_nlls(model, tokens, seq_len=seq_len, stride=stride, batch_size=batch_size,
                         progress=progress)
    finally:
        model.train(was_training)
    mean = float(nll.mean())
    return {"ppl": math.exp(mean), "nll": mean, "n_tokens": int(nll.numel())}


def perplexity_rows(model, tokens_by_split: dict, *, seq_len: int = 512, stride: int | None = None,
                    batch_size: int = 8, max_tokens: int | None = None, progress: bool = False) -> list[dict]:
    """Tidy rows (split, metric, value) of perplexity, mean nll and scored tokens for each split."""
    rows = []
    for split, toks in tokens_by_split.items():
        toks = toks[:max_tokens] if max_tokens else toks
        r = perplexity(model, toks, seq_len=seq_len, stride=stride, batch_size=batch_size, progress=progress)
        rows += [{"split": split, "task": "perplexity", "metric": m, "value": r[m]}
                 for m in ("ppl", "nll", "n_tokens")]
    return rows
