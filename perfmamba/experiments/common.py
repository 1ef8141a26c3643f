"""Shared by the experiments: where rows go, which models a notebook names, calibration tokens, cached reads."""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import torch

from .. import results
from ..config import PRESETS
from ..errors import ExperimentError
from ..pruning.activity import calibration_tokens, corpus_tokens  # noqa: F401 (corpus_tokens: re-exported)
from ..pruning.activity import tokenizer_or_none as _tokenizer  # noqa: F401 (used by quality.py)


def results_dir(results_root=None, device=None) -> Path:
    """``<results_root>/<device-slug>``: where this machine's rows go."""
    root = Path(results_root) if results_root is not None else results.results_root()
    return root / results.device_slug(device)


def _csv(experiment: str, results_root=None, device=None) -> Path:
    return results.results_path(experiment, device, root=results_root)


def _device(device=None) -> torch.device:
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def _specs(models) -> list:
    """Model specs from a list, or from the notebooks' `model_dirs` mapping ({"mamba1": dir, ...})."""
    if models is None:
        return []
    if isinstance(models, dict):
        models = list(models.values())
    if isinstance(models, (str, os.PathLike)):
        models = [models]
    out = []
    for m in models:
        if isinstance(m, torch.nn.Module):
            out.append(m)
        elif str(m) in PRESETS and not Path(str(m)).is_dir():
            out.append(str(m))
        elif Path(str(m)).expanduser().is_dir():
            out.append(str(Path(str(m)).expanduser()))
        else:
            raise ExperimentError(f"unknown model {m!r}: not a preset ({', '.join(PRESETS)}) nor a checkpoint "
                                  "directory (`make reproduce` or `perfmamba train` writes the default models)")
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


def _load(spec, device=None, dtype=None):
    from ..checkpoints import load

    return load(spec, device=_device(device), dtype=dtype)


@contextlib.contextmanager
def _artifacts_env(artifacts):
    """$PERFMAMBA_ARTIFACTS = artifacts while evaluating: the offline tasks read their data from there."""
    old = os.environ.get("PERFMAMBA_ARTIFACTS")
    os.environ["PERFMAMBA_ARTIFACTS"] = str(Path(artifacts).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PERFMAMBA_ARTIFACTS", None)
        else:
            os.environ["PERFMAMBA_ARTIFACTS"] = old


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


def _with_machine(df, path: Path):
    df = df.copy()
    df["machine"] = path.parent.name
    return df


def _read(path: Path):
    import pandas as pd

    df = results.read_rows(path)
    return _with_machine(df, path) if not df.empty else pd.DataFrame()


def _values(xs):
    return {results.format_value(x) for x in xs}


def _isin(df, col, values):
    """Rows whose `col` equals one of `values`, compared as CSV text (so 64 matches 64 and "64")."""
    want = _values(values)
    return df[df[col].map(results.format_value).isin(want)]


def _write_env(path: Path, extra: dict, device=None):
    try:
        results.write_env(path.parent, extra, device=device)
    except OSError:
        pass


def _flush_denormals(device) -> str:
    from ..profiling.timing import set_flush_denormal

    return set_flush_denormal(True) if _device(device).type == "cpu" else "off"
