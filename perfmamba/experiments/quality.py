"""Quality of pruned models: perplexity, offline tasks, the recall probe (fig4_accuracy, ext_criteria)."""
from __future__ import annotations

import contextlib
import io
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import paths, results
from ..errors import ExperimentError
from ..evaluation import evaluate_model
from ..evaluation.perplexity import perplexity_rows
from ..pruning import CRITERIA, MODES, NEEDS, SELECTIONS, collect_activity, prune
from ..pruning.activity import corpus_tokens, tokenizer_or_none
from ..pruning.selection import check_ratio
from .common import _isin, _load, _of_models, _read, _specs, _write_env, calibration_batch, model_ref

QUALITY_COLUMNS = list(results.SCHEMAS["pruning_quality"].columns)
QUALITY_KEY = list(results.SCHEMAS["pruning_quality"].key)
DENSE = dict(ratio=0.0, criterion="none", mode="dense", selection="none", seed=0)


def _points(ratios, criteria, modes, selection, seeds):
    for what, values, known in (("criterion", criteria, CRITERIA), ("mode", modes, MODES),
                                ("selection", [selection], SELECTIONS)):
        for v in values:
            if v not in known:
                raise ExperimentError(f"unknown {what} {v!r}; expected one of {', '.join(known)}")
    pts = [dict(DENSE)]
    for r in ratios:
        r = check_ratio(r)
        if r == 0.0:
            continue
        for c in criteria:
            for m in modes:
                for s in (seeds if c == "random" else (0,)):
                    pts.append(dict(ratio=r, criterion=c, mode=m, selection=selection, seed=int(s)))
    return pts


def _kept_mean(model) -> float:
    info = model.config.extra.get("pruning")
    sizes = [len(k) for k in info["kept"]] if info else model.config.d_states
    return sum(sizes) / len(sizes)


def _todo(points, units, done, key, **fixed) -> list[tuple[dict, list]]:
    """(point, its units [dicts] whose row key (columns `key`) is not in `done`) for each point with some."""
    todo = []
    for p in points:
        left = [u for u in units if results.row_key(dict(p, **u, **fixed), key) not in done]
        if left:
            todo.append((p, left))
    return todo


def _pruner(model, todo, criteria, calib_ids):
    """point -> `model` pruned there (`model` itself at the dense point). One activity collection on
    `calib_ids()` serves every pruned point of `todo`: made at the first one when any needs it, with the
    float64 scan when a criterion needs it."""
    need = any(NEEDS[p["criterion"]] for p, _ in todo if p["mode"] != "dense")
    stats = None

    def at(p):
        nonlocal stats
        if p["mode"] == "dense":
            return model
        if stats is None and need:
            with torch.inference_mode():
                stats = collect_activity(model, calib_ids(), scan=any(NEEDS[c] == "scan" for c in criteria))
        return prune(model, p["ratio"], criterion=p["criterion"], mode=p["mode"], selection=p["selection"],
                     seed=p["seed"], stats=stats)
    return at


def _evaluate(model, tok, units, *, artifacts, eval_tokens, eval_seq_len, limit, batch_size, recall_kwargs):
    """Rows {task, split, n_pairs, metric, value, stderr, n} for the work units of one model."""
    rows = []
    splits = [u["split"] for u in units if u["task"] == "perplexity"]
    tasks = [u["task"] for u in units if u["task"] not in ("perplexity", "recall")]
    pairs = [u["n_pairs"] for u in units if u["task"] == "recall"]
    if (splits or tasks) and tok is None:
        raise ExperimentError(f"{getattr(model, 'source', 'model')}: perplexity and tasks need a tokenizer beside "
                              "the checkpoint")
    if splits:
        toks = {s: corpus_tokens(tok, s, artifacts)[:eval_tokens] for s in splits}
        with torch.inference_mode():
            for r in perplexity_rows(model, toks, seq_len=eval_seq_len, batch_size=batch_size):
                rows.append(dict(task="perplexity", split=r["split"], metric=r["metric"], value=r["value"],
                                 n=int(toks[r["split"]].numel())))
    if tasks or pairs:
        # lm-eval prints progress bars and notes for every task; a notebook page is not the place for them
        with paths.environ(**{paths.ARTIFACTS: str(Path(artifacts).resolve())}), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            for r in evaluate_model(model, tok, splits=(), tasks=tasks, recall=pairs or None, limit=limit,
                                    batch_size=batch_size, recall_kwargs=recall_kwargs):
                rows.append({k: r.get(k) for k in ("task", "split", "n_pairs", "metric", "value", "stderr", "n")})
    return rows


def pruning_quality(model_dirs, ratios, *, criteria=("delta",), modes=("removed",), selection: str = "uniform",
                    seeds=(0,), splits=("test",), tasks=("corpus_choice", "corpus_cloze"), recall=(),
                    calib_tokens: int = 16384, calib_seq_len: int = 256, eval_tokens: int = 32768,
                    eval_seq_len: int = 256, limit: int | None = 200, recall_seqs: int = 256, batch_size: int = 8,
                    artifacts="artifacts",
                    device=None, results_root=None, experiment: str = "pruning_quality", progress: bool = False):
    """Quality of pruned models against the dense one: for every model × ratio × criterion × mode (× seed for
    the random criterion), `perfmamba.prune` then perplexity on corpus `splits` (first `eval_tokens` tokens,
    windows of `eval_seq_len`), the offline lm-eval `tasks` (first `limit` items) and the associative-recall
    probe for each n_pairs in `recall` (`recall_seqs` sequences each). The dense model is the row with ratio 0, criterion "none".

    One activity collection per model (on `calib_tokens` of the validation split) serves every ratio and
    criterion (`prune(..., stats=...)`); it runs the float64 scan only when a criterion needs it. Rows are
    appended per pruned model, so a killed run resumes at the next one.
    """
    specs = _specs(model_dirs, "pruning_quality")
    points = _points(ratios, criteria, modes, selection, seeds)
    units = ([dict(task="perplexity", split=s, n_pairs=None) for s in splits]
             + [dict(task=t, split=None, n_pairs=None) for t in tasks]
             + [dict(task="recall", split=None, n_pairs=int(n)) for n in recall])
    if not units:
        raise ExperimentError("pruning_quality: nothing to measure (no splits, tasks or recall)")
    out = results.results_path(experiment, device, root=results_root)
    done = results.existing_keys(out, QUALITY_KEY)
    settings = dict(calib_tokens=calib_tokens, calib_seq_len=calib_seq_len, eval_tokens=eval_tokens,
                    eval_seq_len=eval_seq_len, limit=limit, recall_seqs=recall_seqs)
    refs = [model_ref(s) for s in specs]
    for spec, (name, sha) in zip(specs, refs):
        todo = _todo(points, units, done, QUALITY_KEY, **settings, model=name, model_sha=sha)
        if not todo:
            continue
        model = _load(spec, device)
        tok = tokenizer_or_none(model)
        calib_ids = partial(calibration_batch, model, calib_tokens, calib_seq_len, artifacts=artifacts)
        prune_at = _pruner(model, todo, criteria, calib_ids)
        for p, left in tqdm(todo, desc=f"quality {name}", unit="model", disable=not progress):
            pruned = prune_at(p)
            rows = _evaluate(pruned, tok, left, artifacts=artifacts, eval_tokens=eval_tokens,
                             eval_seq_len=eval_seq_len, limit=limit, batch_size=batch_size,
                             recall_kwargs={"n_seqs": recall_seqs})
            base = dict(p, model=name, model_sha=sha, arch=model.config.arch,
                        d_state=sum(model.config.d_states) / model.config.n_layer, d_state_kept=_kept_mean(pruned),
                        device=results.device_type(device), path=model.backend, **settings)
            results.append_rows(out, [dict(base, **r) for r in rows], QUALITY_COLUMNS)
            del pruned
        _write_env(out, experiment, device)
    df = _isin(_of_models(_read(out), refs), ratio=[0.0, *map(float, ratios)],
               **{k: [v] for k, v in settings.items()})
    df = df[df["criterion"].isin(["none", *criteria]) & df["mode"].isin(["dense", *modes])]
    df = df[df["selection"].isin(["none", selection]) & df["task"].isin(["perplexity", "recall", *tasks])]
    return df.reset_index(drop=True)
