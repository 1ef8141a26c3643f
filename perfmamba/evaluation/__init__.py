"""Evaluation: perplexity, the lm-eval model type `perfmamba`, offline tasks and the associative-recall probe.

    rows = evaluate_model(model, tokenizer, splits=["test"], tasks=["corpus_choice"], recall=[4, 16])
"""
from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from ..data import SPLITS, encode_splits, load_corpus
from ..io import atomic_path
from .lm_eval_model import PerfmambaLM, resolve_tokenizer, task_manager
from .local_tasks import TASKS_DIR
from .perplexity import EvaluationError, perplexity, perplexity_rows, token_nlls, windows
from .recall import recall_accuracy, recall_batch, recall_rows

__all__ = ["evaluate_model", "write_rows", "perplexity", "perplexity_rows", "token_nlls", "windows",
           "recall_accuracy", "recall_batch", "recall_rows", "EvaluationError",
           "local_task_names", "task_manager"]

ROW_KEYS = ("split", "task", "metric", "value", "stderr", "n", "n_pairs")


def local_task_names() -> list[str]:
    """The offline tasks shipped in perfmamba/evaluation/tasks."""
    return sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=2)
def _shared_task_manager(include_defaults: bool):
    # indexing lm-eval's ~15k stock task files takes seconds: done once per process
    return task_manager(include_defaults=include_defaults)


def _row(**kw) -> dict:
    return {k: kw.get(k) for k in ROW_KEYS}


def _task_rows(model, tokenizer, tasks: list[str], *, limit, batch_size: int) -> list[dict]:
    """lm-eval's `simple_evaluate` on `tasks`, our model type wrapped around the in-memory model."""
    import lm_eval

    ours = set(local_task_names())
    tm = _shared_task_manager(not set(tasks) <= ours)
    unknown = [t for t in tasks if t not in tm.all_tasks]
    if unknown:
        raise EvaluationError(f"unknown task {unknown[0]!r}; offline tasks: {', '.join(sorted(ours))} "
                              "(or a stock lm-eval task name where its dataset is available)")
    lm = PerfmambaLM(model=model, tokenizer=tokenizer, batch_size=batch_size,
                     device=str(next(model.parameters()).device))
    results = lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=tm, limit=limit, log_samples=False,
                                      bootstrap_iters=1000, verbosity="ERROR")
    rows = []
    for task in tasks:
        res = results["results"].get(task, {})
        n = results.get("n-samples", {}).get(task, {}).get("effective")
        for key, value in res.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = res.get(f"{metric}_stderr,{filt}")
            rows.append(_row(task=task, metric=metric, value=float(value), n=n,
                             stderr=float(stderr) if isinstance(stderr, (int, float)) else None))
    return rows


def evaluate_model(model, tokenizer=None, *, splits=("validation", "test"),
                   tasks=("corpus_choice", "corpus_cloze"), recall=None, corpus: dict | None = None,
                   seq_len: int = 512, stride: int | None = None, batch_size: int = 8,
                   max_tokens: int | None = None, limit: int | None = None, recall_kwargs: dict | None = None,
                   progress: bool = False) -> list[dict]:
    """Tidy rows {split, task, metric, value, stderr, n, n_pairs} for the notebooks and the pruning sweeps.

    splits: corpus splits scored by sliding-window perplexity (`corpus`: {split: text}, default
        load_corpus()).
    tasks: lm-eval task names (our offline tasks, or stock ones where their datasets are available).
    recall: n_pairs values for the associative-recall probe (`recall_kwargs` passed on), or None.
    tokenizer: object or path; default the tokenizer files beside `model.source`. Needed for splits and tasks.
    """
    splits, tasks = list(splits or []), list(tasks or [])
    rows: list[dict] = []
    tok = resolve_tokenizer(model, tokenizer) if (splits or tasks) else None
    if splits:
        bad = [s for s in splits if s not in SPLITS and (corpus is None or s not in corpus)]
        if bad:
            raise EvaluationError(f"unknown split {bad[0]!r}; expected one of {', '.join(SPLITS)}")
        corpus = load_corpus() if corpus is None else corpus
        toks = encode_splits({s: corpus[s] for s in splits}, tok)
        short = [s for s, ids in toks.items() if ids.numel() < 2]
        if short:
            raise EvaluationError(f"split {short[0]!r} is empty or too short to score")
        rows += [_row(**r) for r in perplexity_rows(model, toks, seq_len=seq_len, stride=stride,
                                                    batch_size=batch_size, max_tokens=max_tokens,
                                                    progress=progress)]
    if tasks:
        rows += _task_rows(model, tok, tasks, limit=limit, batch_size=batch_size)
    if recall:
        rows += [_row(**r) for r in recall_rows(model, list(recall), **(recall_kwargs or {}))]
    return rows


def write_rows(rows: list[dict], path, **context) -> Path:
    """Rows (plus constant `context` columns, e.g. model=…) to CSV, written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pd.DataFrame([{**context, **r} for r in rows]).to_csv(tmp, index=False)
    return path
