"""Shared by the experiments: where rows go, which models a notebook names, calibration tokens, cached reads."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import torch

from .. import results
from ..checkpoints import load
from ..config import PRESETS
from ..errors import ExperimentError
from ..profiling.sweep import CALL
from ..provenance import default_device
from ..pruning.activity import calibration_tokens


def _specs(models, experiment: str) -> list:
    """Model specs from a list, or from the notebooks' `model_dirs` mapping ({"mamba1": dir, ...})."""
    if isinstance(models, dict):
        models = list(models.values())
    if isinstance(models, (str, os.PathLike)):
        models = [models]
    out = []
    for m in models or ():
        if isinstance(m, torch.nn.Module):
            out.append(m)
        elif str(m) in PRESETS and not Path(str(m)).is_dir():
            out.append(str(m))
        elif Path(str(m)).expanduser().is_dir():
            out.append(str(Path(str(m)).expanduser()))
        else:
            raise ExperimentError(f"unknown model {m!r}: not a preset ({', '.join(PRESETS)}) nor a checkpoint "
                                  "directory (`make reproduce` or `perfmamba train` writes the default models)")
    if not out:
        raise ExperimentError(f"{experiment}: no models given")
    return out


_SHA_CACHE: dict[tuple, str] = {}


def model_ref(spec) -> tuple[str, str]:
    """(name, fingerprint) of a model spec: a preset gives (preset, "preset"), a checkpoint directory its name
    and "sha256:" + the first 12 hex digits of the sha256 of its weight files."""
    if isinstance(spec, torch.nn.Module):
        src = getattr(spec, "source", None)
        return (Path(str(src)).name if src else type(spec).__name__), "in-memory"
    if str(spec) in PRESETS and not Path(str(spec)).is_dir():
        return str(spec), "preset"
    path = Path(str(spec))
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        raise ExperimentError(f"{path}: no weight files (*.safetensors, *.bin)")
    key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        for p in files:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        _SHA_CACHE[key] = "sha256:" + h.hexdigest()[:12]  # a prefix keeps it text in CSV round trips
    return path.name, _SHA_CACHE[key]


def _load(spec, device=None):
    return load(spec, device=default_device(device))


def calibration_batch(model, n_tokens: int, seq_len: int, *, artifacts="artifacts", split="validation",
                      seed: int = 0) -> torch.LongTensor:
    """(n_tokens // seq_len, seq_len) calibration ids (one row of n_tokens when n_tokens < seq_len): the
    corpus split, or seeded random ids for a model without a tokenizer (`pruning.calibration_tokens`)."""
    if n_tokens < 1 or seq_len < 1:
        raise ExperimentError(f"need n_tokens ≥ 1 and seq_len ≥ 1, got n_tokens={n_tokens}, "
                              f"seq_len={seq_len}")
    ids = calibration_tokens(model, None, seq_len=seq_len, n_tokens=n_tokens, seed=seed, split=split,
                             artifacts=artifacts)
    asked = n_tokens // min(seq_len, n_tokens) * min(seq_len, n_tokens)
    if ids.numel() < asked:
        raise ExperimentError(f"the {split} split has fewer than the {asked} tokens asked")
    return ids


def _read(path: Path):
    """The rows of `path` with `machine`, the device slug of its folder; an empty frame when it holds none."""
    df = results.read_rows(path)
    return df.assign(machine=path.parent.name) if not df.empty else pd.DataFrame()


def _isin(df, **want):
    """Rows whose every named column holds one of its values, compared as CSV text (64 matches "64")."""
    for col, values in want.items():
        df = df[df[col].map(results.format_value).isin({results.format_value(x) for x in values})]
    return df


def _of_models(df, refs):
    """Rows of the models `refs` [(name, fingerprint)], as `model_ref` gives them."""
    keep = set(refs)
    return df[[(m, s) in keep for m, s in zip(df["model"], df["model_sha"].astype(str))]]


def _write_env(path: Path, experiment: str, device=None):
    try:
        results.write_env(path.parent, {"experiment": experiment}, device=device)
    except OSError:
        pass


def _profile_rows(out: Path, specs, grid: dict, **want):
    """The rows of `out` on `grid` (and `want`), with the analytic counts and the calls timed whole of its
    points."""
    return _isin(_read(out), model=[model_ref(s)[0] for s in specs], seqlen=grid["seqlens"],
                 batch=grid["batches"], phase=grid["phases"], path=grid["paths"],
                 method=[*grid["methods"], "analytic", CALL], **want)
