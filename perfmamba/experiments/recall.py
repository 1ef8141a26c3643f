"""Associative recall of a recall-trained model, dense and pruned (ext_recall)."""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from .. import results
from ..evaluation.recall import RECALL_VOCAB, recall_accuracy, recall_batch
from ..train import save_checkpoint, train_recall_model
from .common import _isin, _load, _read, _write_env, model_ref
from .quality import _kept_mean, _points, _pruner, _todo

RECALL_COLUMNS = list(results.SCHEMAS["recall_pruning"].columns)
RECALL_KEY = list(results.SCHEMAS["recall_pruning"].key)


def _recall_defaults(train_steps, max_pairs) -> tuple[int, int]:
    """The training steps and pair count to use: as given, else `train_recall_model`'s own defaults."""
    params = inspect.signature(train_recall_model).parameters
    return (int(train_steps if train_steps is not None else params["steps"].default),
            int(max_pairs if max_pairs is not None else params["max_pairs"].default))


def recall_model(artifacts="artifacts", *, train_steps: int | None = None, max_pairs: int | None = None,
                 progress: bool = False):
    """The tiny Mamba-2 trained on associative recall (`perfmamba.train.train_recall_model`; None takes its
    defaults), trained once and kept in ``<artifacts>/models/recall-s<steps>-p<max_pairs>``; returns the directory."""
    train_steps, max_pairs = _recall_defaults(train_steps, max_pairs)
    path = Path(artifacts) / "models" / f"recall-s{train_steps}-p{max_pairs}"
    if not (path / "model.safetensors").is_file():
        model, history = train_recall_model(steps=train_steps, max_pairs=max_pairs, progress=progress)
        save_checkpoint(model, path, log={"task": "associative recall", "steps": train_steps, "max_pairs": max_pairs,
                                          "final_loss": history[-1]["loss"], "complete": True})
    return path


def recall_pruning(ratios, *, criteria=("delta", "random"), n_pairs=(1, 2, 4, 8, 16), seeds=(0,),
                   train_steps: int | None = None, max_pairs: int | None = None, n_seqs: int = 256,
                   calib_seqs: int = 64, artifacts="artifacts", device=None, results_root=None,
                   experiment: str = "recall_pruning", progress: bool = False):
    """Associative-recall accuracy (MQAR, `perfmamba.evaluation.recall`) of a model trained on the task
    (`recall_model`), dense and pruned (mode "removed") at each ratio and criterion, for each n_pairs.
    Calibration: `calib_seqs` recall sequences with `max_pairs` pairs (another seed than the test ones)."""
    train_steps, max_pairs = _recall_defaults(train_steps, max_pairs)
    pts = _points(ratios, criteria, ("removed",), "uniform", seeds)
    path = recall_model(artifacts, train_steps=train_steps, max_pairs=max_pairs, progress=progress)
    name, sha = model_ref(path)
    out = results.results_path(experiment, device, root=results_root)
    done = results.existing_keys(out, RECALL_KEY)
    todo = _todo(pts, [dict(n_pairs=n) for n in n_pairs], done, RECALL_KEY, model=name, model_sha=sha,
                 n_seqs=n_seqs)
    model = _load(path, device) if todo else None

    def calib_ids():  # another seed than the test sequences
        return recall_batch(calib_seqs, max_pairs, generator=torch.Generator().manual_seed(12345))[0]

    prune_at = _pruner(model, todo, criteria, calib_ids)
    for p, left in todo:
        pruned = prune_at(p)
        base = dict(model=name, model_sha=sha, arch=model.config.arch, ratio=p["ratio"],
                    criterion=p["criterion"], seed=p["seed"], d_state_kept=_kept_mean(pruned), metric="acc",
                    chance=1 / (RECALL_VOCAB - RECALL_VOCAB // 2), n_seqs=n_seqs, train_steps=train_steps,
                    device=results.device_type(device), path=model.backend)
        rows = []
        for u in left:
            n = int(u["n_pairs"])
            acc = recall_accuracy(pruned, n_pairs=n, n_seqs=n_seqs, seed=1)
            rows.append(dict(base, n_pairs=n, value=acc))
        results.append_rows(out, rows, RECALL_COLUMNS)
    if model is not None:
        _write_env(out, experiment, device)
    df = _isin(_read(out), model=[name], model_sha=[sha], n_pairs=n_pairs, ratio=[0.0, *map(float, ratios)],
               n_seqs=[n_seqs])
    return df[df["criterion"].isin(["none", *criteria])].reset_index(drop=True)
