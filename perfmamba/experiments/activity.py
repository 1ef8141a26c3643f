"""activity(l, s) of every layer and state (fig3_state_activity)."""
from __future__ import annotations

import torch

from .. import results
from ..pruning import activity_rows, collect_activity
from .common import _isin, _load, _of_models, _read, _specs, _write_env, calibration_batch, model_ref

ACTIVITY_COLUMNS = list(results.SCHEMAS["activity"].columns)
ACTIVITY_KEY = list(results.SCHEMAS["activity"].key)


def activity(model_dirs, *, n_tokens: int = 16384, seq_len: int = 256, split: str = "validation",
             artifacts="artifacts", device=None, results_root=None, experiment: str = "activity",
             progress: bool = False):
    """activity(l, s) (`perfmamba.pruning.collect_activity`) of every model on the first `n_tokens` of the corpus
    split, in rows of `seq_len`: one row per (model, layer, state). Returns the rows of these models."""
    specs = _specs(model_dirs, "activity")
    out = results.results_path(experiment, device, root=results_root)
    done = results.existing_keys(out, ACTIVITY_KEY)
    refs = [model_ref(s) for s in specs]
    for spec, (name, sha) in zip(specs, refs):
        point = dict(model=name, model_sha=sha, n_tokens=n_tokens, seq_len=seq_len, split=split)
        if results.row_key(point, ACTIVITY_KEY) in done:
            continue
        model = _load(spec, device)
        ids = calibration_batch(model, n_tokens, seq_len, artifacts=artifacts, split=split)
        with torch.inference_mode():
            act = collect_activity(model, ids, progress=progress)
        rows = []
        for r in activity_rows(act, name):
            r.pop("energy", None)
            rows.append(dict(r, model_sha=sha, n_tokens=n_tokens, seq_len=seq_len, split=split,
                             device=results.device_type(device), path=model.backend))
        results.append_rows(out, rows, ACTIVITY_COLUMNS)
        _write_env(out, experiment, device)
    df = _of_models(_read(out), refs)
    return _isin(df, n_tokens=[n_tokens], seq_len=[seq_len], split=[split]).reset_index(drop=True)
