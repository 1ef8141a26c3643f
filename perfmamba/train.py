"""Train small Mamba-1 / Mamba-2 language models on CPU (the embedded default of the pipeline).

nanoGPT-style loop: AdamW (no weight decay on norms, biases, A_log, D, dt_bias, as mamba-ssm's
`_no_weight_decay`), linear warm-up then cosine decay to `min_lr_ratio · lr`, gradient clipping at 1.0,
periodic validation loss, checkpoints in our format with the tokenizer and a `train_log.json`.

Deterministic for a seed: the initialisation is seeded through `config.seed`, the batch order through
`perfmamba.data.batches(seed=…)`, and nothing else draws random numbers.

    model, history = train(preset("mamba-small"), tokens["train"], tokens["validation"], out_dir="m", steps=500)
    paths = train_default_models("artifacts")   # the two default models, trained once and reused
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import ModelConfig, preset
from .data import batches, encode_splits, load_corpus, load_tokenizer, train_tokenizer
from .errors import TrainError
from .evaluation.perplexity import perplexity
from .evaluation.recall import RECALL_CONFIG, recall_batch, split_range
from .io import atomic_dir
from .models.lm import MambaLM


@contextlib.contextmanager
def num_threads(n: int | None):
    """torch CPU threads set to n (if given) inside the block, restored after it."""
    saved = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# ----------------------------------------------------------------------------------------------------------
# optimisation

def lr_at(step: int, *, lr: float, warmup: int, steps: int, min_lr_ratio: float = 0.1) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to min_lr_ratio · lr at `steps` (nanoGPT)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


_NO_DECAY = ("A_log", "D", "dt_bias", "dt_proj.bias")


def param_groups(model: MambaLM, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and conv kernels only; never on norms, biases or the SSM parameters."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.dim() >= 2 and not name.endswith(_NO_DECAY):
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimizer(model: MambaLM, lr: float, weight_decay: float) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.95), eps=1e-8)


def _update(model: MambaLM, opt, loss: torch.Tensor, lr: float, grad_clip: float) -> torch.Tensor:
    """One optimiser step at learning rate `lr`, gradients clipped to `grad_clip`; returns the norm before."""
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return gnorm


def token_sha256(tokens: torch.Tensor) -> str:
    """A digest of a token stream, recorded so that a log says exactly which data trained a model."""
    return hashlib.sha256(tokens.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()


def _check_tokens(name: str, tokens, seq_len: int, vocab: int) -> torch.Tensor:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1:
        raise TrainError(f"{name} must be a 1-D tensor of token ids")
    if tokens.numel() < seq_len + 1:
        raise TrainError(f"{name}: {tokens.numel()} tokens are too few for one window of seq_len {seq_len}")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab:
        raise TrainError(f"{name}: token ids must lie in [0, {vocab}) for this model, found [{lo}, {hi}]")
    return tokens.long()


def _batch_stream(tokens: torch.Tensor, batch_size: int, seq_len: int, seed: int):
    """Endless (input, target) batches: one shuffled pass per epoch, the order fixed by (seed, epoch)."""
    for epoch in itertools.count():
        got = False
        for x, y in batches(tokens, batch_size, seq_len, seed=seed * 1000 + epoch, shuffle=True, drop_last=True):
            got = True
            yield x, y
        if not got:  # fewer windows than one batch: use the partial batch
            yield from batches(tokens, batch_size, seq_len, seed=seed * 1000 + epoch, shuffle=True)


def train(config: ModelConfig, train_tokens: torch.Tensor, val_tokens: torch.Tensor, *, out_dir=None,
          tokenizer=None, steps: int = 1000, batch_size: int = 16, seq_len: int = 128, lr: float = 3e-3,
          warmup: int = 50, seed: int = 0, eval_every: int = 100, eval_tokens: int = 65536,
          weight_decay: float = 0.1, grad_clip: float = 1.0, min_lr_ratio: float = 0.1, threads: int | None = None,
          progress: bool = True, extra_log: dict | None = None):
    """Train a model from scratch; returns (model, history).

    train_tokens, val_tokens: 1-D token streams (`perfmamba.data.encode_splits`). The model is initialised
    from `config` with `config.seed = seed`. Validation: perplexity of the first `eval_tokens` validation tokens
    in windows of `seq_len`, every `eval_every` steps and at the end. history: one dict per step with step, lr,
    loss (train, that batch), elapsed_s, and val_loss / val_ppl on evaluation steps.

    With `out_dir`: a checkpoint in our format at every evaluation and at the end (`model.save`), the tokenizer
    (`tokenizer.save_pretrained`) and `train_log.json` (settings, history, wall time, parameter count, seed,
    sha256 of the token streams), written together into a temporary directory renamed into place.
    """
    if steps < 1 or batch_size < 1 or seq_len < 1 or eval_every < 1:
        raise TrainError(f"steps, batch_size, seq_len and eval_every must be positive, got {steps}, {batch_size}, "
                         f"{seq_len}, {eval_every}")
    if not lr > 0:
        raise TrainError(f"lr must be positive, got {lr}")
    if tokenizer is not None and len(tokenizer) > config.padded_vocab_size:
        raise TrainError(f"the tokenizer has {len(tokenizer)} tokens, more than the model's vocabulary "
                         f"({config.padded_vocab_size}); set vocab_size to len(tokenizer)")
    train_tokens = _check_tokens("train tokens", train_tokens, seq_len, config.padded_vocab_size)
    val_tokens = _check_tokens("validation tokens", val_tokens, 1, config.padded_vocab_size)
    val_eval = val_tokens[:eval_tokens] if eval_tokens else val_tokens
    if val_eval.numel() < 2:
        raise TrainError("need at least 2 validation tokens")
    config = config.replace(seed=seed)
    torch.manual_seed(seed)
    model = MambaLM.from_config(config)
    opt = _optimizer(model, lr, weight_decay)
    settings = dict(steps=steps, batch_size=batch_size, seq_len=seq_len, lr=lr, warmup=warmup, seed=seed,
                    eval_every=eval_every, eval_tokens=eval_tokens, weight_decay=weight_decay, grad_clip=grad_clip,
                    min_lr_ratio=min_lr_ratio, optimizer="AdamW(0.9, 0.95)", schedule="linear warmup + cosine")
    data_info = {"train_tokens": int(train_tokens.numel()), "train_sha256": token_sha256(train_tokens),
                 "val_tokens": int(val_tokens.numel()), "val_sha256": token_sha256(val_tokens),
                 "val_eval_tokens": int(val_eval.numel())}

    history: list[dict] = []
    stream = _batch_stream(train_tokens, batch_size, seq_len, seed)
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc=f"train {config.arch}", disable=not progress, dynamic_ncols=True)
    model.train()
    with num_threads(threads):
        env = {"torch": torch.__version__, "python": platform.python_version(),
               "threads": torch.get_num_threads(), "machine": platform.machine()}
        for step in bar:
            cur = lr_at(step, lr=lr, warmup=warmup, steps=steps, min_lr_ratio=min_lr_ratio)
            x, y = next(stream)
            logits = model(x)  # (b, l, padded_vocab)
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), y.view(-1))
            if not torch.isfinite(loss):
                raise TrainError(f"loss became {loss.item()} at step {step}; lower the learning rate")
            gnorm = _update(model, opt, loss, cur, grad_clip)
            row = {"step": step + 1, "lr": cur, "loss": loss.item(), "grad_norm": float(gnorm),
                   "elapsed_s": time.perf_counter() - t0}
            history.append(row)
            last = step + 1 == steps
            if (step + 1) % eval_every == 0 or last:
                model.eval()
                r = perplexity(model, val_eval, seq_len=seq_len, stride=seq_len, batch_size=batch_size)
                model.train()
                row.update(val_loss=r["nll"], val_ppl=r["ppl"])
                bar.set_postfix(loss=f"{row['loss']:.3f}", val_ppl=f"{r['ppl']:.1f}")
                if out_dir is not None:
                    log = dict(extra_log or {}, config=config.to_dict(), settings=settings, data=data_info,
                               n_params=model.num_parameters(), seed=seed, complete=last,
                               wall_time_s=time.perf_counter() - t0,
                               final={k: row[k] for k in ("step", "val_loss", "val_ppl")},
                               history=history, env=env)
                    save_checkpoint(model, out_dir, tokenizer=tokenizer, log=log)
            elif step % 10 == 0:
                bar.set_postfix(loss=f"{row['loss']:.3f}")
    model.eval()
    return model, history


def save_checkpoint(model: MambaLM, out_dir, *, tokenizer=None, log: dict | None = None) -> Path:
    """Model (our format), tokenizer and train_log.json into `out_dir`, replaced as a whole (never half-written)."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save(tmp, format="perfmamba", overwrite=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if log is not None:
            (tmp / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
    return out_dir


# ----------------------------------------------------------------------------------------------------------
# the embedded default: one Mamba-1 and one Mamba-2 model trained on the offline corpus

TOKENIZER_VOCAB = 4096
# Sized for about 5 minutes each on 2 idle CPU cores (train_log.json records the measured time). Mamba-1 steps
# cost ~3× Mamba-2 steps on CPU (its scan expands every token to a (d_inner, N) state; SSD works per chunk),
# hence fewer steps for the same time.
DEFAULT_MODELS: dict[str, dict] = {
    "mamba-small": {"preset": "mamba-small", "steps": 300, "batch_size": 8, "seq_len": 128, "lr": 3e-3,
                    "warmup": 30, "seed": 0, "eval_every": 100, "eval_tokens": 16384},
    "mamba2-small": {"preset": "mamba2-small", "steps": 600, "batch_size": 16, "seq_len": 128, "lr": 3e-3,
                     "warmup": 50, "seed": 0, "eval_every": 100, "eval_tokens": 16384},
}


# The smoke profile's stand-ins (`perfmamba reproduce --profile smoke`, CI and the image test): the tiny presets, a
# few seconds of training each, so that the whole pipeline runs end to end in minutes; not for any claim.
SMOKE_MODELS: dict[str, dict] = {
    name: {"preset": name, "steps": 20, "batch_size": 8, "seq_len": 64, "lr": 3e-3, "warmup": 5, "seed": 0,
           "eval_every": 20, "eval_tokens": 2048}
    for name in ("mamba-tiny", "mamba2-tiny")
}


def default_tokenizer(artifacts_dir):
    """The shared tokenizer of the default models: byte-level BPE trained once on the corpus train split."""
    path = Path(artifacts_dir) / "tokenizer"
    if (path / "tokenizer.json").is_file():
        return load_tokenizer(path)
    corpus = load_corpus(Path(artifacts_dir) / "corpus")
    with atomic_dir(path) as tmp:  # complete or absent, never half-written
        train_tokenizer(corpus["train"], vocab_size=TOKENIZER_VOCAB, out_dir=tmp)
    return load_tokenizer(path)


def _is_done(out: Path, config: ModelConfig, settings: dict) -> bool:
    try:
        log = json.loads((out / "train_log.json").read_text())
    except (OSError, ValueError):
        return False
    want = config.replace(seed=settings["seed"]).to_dict()
    same = all(log.get("settings", {}).get(k) == v for k, v in settings.items())
    return bool(log.get("complete")) and log.get("config") == want and same and (out / "model.safetensors").is_file()


def train_default_models(artifacts_dir="artifacts", *, names=None, progress: bool = True, threads=None,
                         models: dict | None = None) -> dict[str, Path]:
    """Train the default models once (tokenizer shared) under `artifacts_dir/models/<name>`; reuse finished ones.

    models: {name: spec} to train instead of DEFAULT_MODELS (e.g. SMOKE_MODELS).
    A model is reused when its train_log.json is complete and records the same config and settings.
    Returns {name: checkpoint directory}.
    """
    models = DEFAULT_MODELS if models is None else models
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    names = list(models) if names is None else list(names)
    unknown = [n for n in names if n not in models]
    if unknown:
        raise TrainError(f"unknown default model {unknown[0]!r}; expected one of {', '.join(models)}")
    tokenizer = default_tokenizer(artifacts_dir)
    out, tokens = {}, None
    for name in names:
        spec = models[name]
        config = preset(spec["preset"], vocab_size=len(tokenizer))
        path = artifacts_dir / "models" / name
        settings = {k: v for k, v in spec.items() if k != "preset"}
        if not _is_done(path, config, settings):
            if tokens is None:
                tokens = encode_splits(load_corpus(artifacts_dir / "corpus"), tokenizer)
            train(config, tokens["train"], tokens["validation"], out_dir=path, tokenizer=tokenizer, threads=threads,
                  progress=progress, extra_log={"name": name, "preset": spec["preset"]}, **settings)
        out[name] = path
    return out


def train_recall_model(config: ModelConfig | None = None, *, max_pairs: int = 8, steps: int = 1500,
                       batch_size: int = 64, lr: float = 1e-2, warmup: int = 20, seed: int = 0,
                       vocab_range=None, progress: bool = True, threads: int | None = 1):
    """Train a tiny model on associative recall; returns (model, history).

    Each step draws n_pairs uniformly from [1, max_pairs] (one value per batch); the loss is the cross-entropy
    of the value at every query. Same optimiser and schedule as `train`. With the defaults
    (about a minute on one CPU core) the dense model answers ≥ 98 % of queries up to 8 pairs and still ~90 %
    at 16 (chance 1/32), so pruning its states has capacity to take away. `threads`: torch threads while
    training (restored afterwards); a model this small runs best on one.
    """
    config = RECALL_CONFIG if config is None else config
    vocab_range = (0, config.vocab_size) if vocab_range is None else vocab_range
    lo, mid, hi = split_range(vocab_range, config, TrainError)
    if not 1 <= max_pairs <= mid - lo:
        raise TrainError(f"max_pairs must lie in [1, {mid - lo}], got {max_pairs}")
    with num_threads(threads):
        model = MambaLM.from_config(config.replace(seed=seed))
        opt = _optimizer(model, lr, 0.1)
        g = torch.Generator().manual_seed(seed)
        history = []
        model.train()
        bar = tqdm(range(steps), desc="train recall", disable=not progress, dynamic_ncols=True)
        for step in bar:
            cur = lr_at(step, lr=lr, warmup=warmup, steps=steps)
            n = int(torch.randint(1, max_pairs + 1, (1,), generator=g))
            x, y = recall_batch(batch_size, n, vocab_range=vocab_range, generator=g)
            logits = model(x)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-100)
            _update(model, opt, loss, cur, 1.0)
            history.append({"step": step + 1, "n_pairs": n, "loss": loss.item(), "lr": cur})
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}")
    return model.eval(), history
