"""Tidy result rows: one CSV per experiment under ``data/results/<device-slug>/``, provenance in ``env.json``.

A file has one fixed header (its `Schema`); rows with other columns are refused with a one-line
`ResultsError`. Sweeps call `existing_keys` first and skip points already measured, which makes a killed
sweep resumable. A new file is written whole; an append is one ``write`` of whole lines with O_APPEND, after
dropping a torn last line that a killed writer may have left.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from .errors import ResultsError
from .io import atomic_write_text
from .paths import results_root
from .provenance import collect_env, default_device, device_slug


# the schema registry -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schema:
    """A result file's header, and the columns that identify one point (what a resumed run skips)."""
    columns: tuple[str, ...]
    key: tuple[str, ...]


_BENCH = ("model", "arch", "path", "component", "phase", "batch", "seqlen", "d_state", "ratio", "metric", "value",
          "unit", "spread_lo", "spread_hi", "impl", "dtype", "note", "section", "device", "timestamp")

# Every kind of result file, once. "profile" is the sweep's (latency, profile_cpu, pruning_efficiency, …: one
# measurement is one setting and method); the benchmarks' files resume per section.
SCHEMAS = {
    "profile": Schema(
        ("model", "arch", "path", "fused", "cuda_graph", "method", "component", "phase", "batch", "seqlen",
         "d_state", "ratio", "criterion", "mode", "metric", "value", "unit", "median", "p10", "p90", "n_iter",
         "warmup", "dtype", "state_dtype", "device", "threads"),
        ("model", "arch", "path", "fused", "cuda_graph", "method", "phase", "batch", "seqlen", "d_state", "ratio",
         "criterion", "mode", "dtype", "state_dtype", "device", "threads")),
    "activity": Schema(
        ("model", "model_sha", "arch", "layer", "state", "d_state", "activity", "decay", "n_tokens", "seq_len",
         "split", "device", "path"),
        ("model", "model_sha", "n_tokens", "seq_len", "split")),
    "pruning_quality": Schema(
        ("model", "model_sha", "arch", "ratio", "criterion", "mode", "selection", "seed", "d_state", "d_state_kept",
         "task", "split", "n_pairs", "metric", "value", "stderr", "n", "calib_tokens", "calib_seq_len",
         "eval_tokens", "eval_seq_len", "limit", "recall_seqs", "device", "path"),
        ("model", "model_sha", "ratio", "criterion", "mode", "selection", "seed", "task", "split", "n_pairs",
         "calib_tokens", "calib_seq_len", "eval_tokens", "eval_seq_len", "limit", "recall_seqs")),
    "recall_pruning": Schema(
        ("model", "model_sha", "arch", "ratio", "criterion", "seed", "d_state_kept", "n_pairs", "metric", "value",
         "chance", "n_seqs", "train_steps", "device", "path"),
        ("model", "model_sha", "ratio", "criterion", "seed", "n_pairs", "n_seqs")),
    "decode_state_traffic": Schema(
        ("model", "arch", "batch", "ratio", "d_state", "dtype", "state_dtype", "metric", "value", "unit", "source",
         "device", "path"),
        ("model", "batch", "ratio", "dtype", "state_dtype")),
    "machine_peaks": Schema(("device", "dtype", "metric", "value", "unit", "method", "size", "n_iter"),
                            ("device", "dtype")),
    "gpu_kernels": Schema(_BENCH, ("section", "metric")),
    "gpu_goals": Schema(_BENCH, ("section", "metric")),
}

# The `device` column names the kind of device (torch's device type); which machine it was is the folder's
# device slug and env.json's `device_name`. "any" marks analytic rows that no device measured.
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "any")


def device_type(device) -> str:
    """The `device` cell for rows measured on `device` (a torch.device, "cuda:1", None for the default one)."""
    return default_device(device).type


# formatting -------------------------------------------------------------------------------------------
def format_value(v) -> str:
    """The CSV text of one cell. Keys compare on this text, so it must be stable: None/NaN → "", bools as
    "True"/"False", floats by ``repr`` (shortest round-trip), everything else by ``str``."""
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(float(v))  # float() drops numpy's repr
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):  # numpy / torch scalars
        try:
            return format_value(v.item())
        except (TypeError, ValueError):
            pass
    return str(v)


def row_key(row: dict, key_cols: Sequence[str]) -> tuple[str, ...]:
    """The identity of a row for resuming: its key columns as CSV text."""
    return tuple(format_value(row.get(c)) for c in key_cols)


# reading ----------------------------------------------------------------------------------------------
def read_header(path) -> list[str] | None:
    """Column names of an existing results file, or None when it does not exist or is empty."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="") as f:
        try:
            header = next(csv.reader(f))
        except StopIteration:
            return None
        except (csv.Error, UnicodeDecodeError) as e:
            raise ResultsError(f"results file {path} is not a CSV file ({e})") from None
    return header


def _complete_lines(path: Path) -> str:
    text = path.read_text()
    if text and not text.endswith("\n"):  # a torn final line from a killed writer: ignore it
        text = text[: text.rfind("\n") + 1]
    return text


def read_rows(path, *, dtype=None):
    """All rows of a results file as a pandas DataFrame (empty when the file does not exist).

    Cells are parsed by pandas (numbers become numbers); pass ``dtype=str`` to get the CSV text.
    """
    path = Path(path)
    if read_header(path) is None:
        return pd.DataFrame()
    return pd.read_csv(io.StringIO(_complete_lines(path)), dtype=dtype, keep_default_na=True)


def existing_keys(path, key_cols: Sequence[str]) -> set[tuple[str, ...]]:
    """Key tuples (as CSV text, see `row_key`) of the rows already in `path`; empty if there is no file."""
    path = Path(path)
    header = read_header(path)
    if header is None:
        return set()
    missing = [c for c in key_cols if c not in header]
    if missing:
        raise ResultsError(f"results file {path} has schema {','.join(header)}, which lacks key column(s) "
                           f"{','.join(missing)}")
    idx = [header.index(c) for c in key_cols]
    keys = set()
    reader = csv.reader(io.StringIO(_complete_lines(path)))
    next(reader, None)
    for rec in reader:
        if len(rec) == len(header):
            keys.add(tuple(rec[i] for i in idx))
    return keys


# writing ----------------------------------------------------------------------------------------------
def _csv_text(rows: Iterable[dict], columns: Sequence[str], header: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns)
    for r in rows:
        extra = set(r) - set(columns)
        if extra:
            raise ResultsError(f"row has columns {', '.join(sorted(extra))} that are not in the schema "
                               f"{','.join(columns)}")
        if "device" in columns and r.get("device") not in DEVICE_TYPES:
            raise ResultsError(f"device {r.get('device')!r} is not a device type ({', '.join(DEVICE_TYPES)}); "
                               "the machine's name belongs in env.json")
        w.writerow([format_value(r.get(c)) for c in columns])
    return buf.getvalue()


def append_rows(path, rows: Sequence[dict], columns: Sequence[str] | None = None) -> int:
    """Append `rows` to the CSV at `path`, creating it (and its directory) if needed. Returns rows written.

    `columns` is the file's schema; by default the union of the rows' keys. Missing cells are written empty.
    An existing file must have exactly this header, otherwise `ResultsError`
    ("results file X has schema …, expected …") and nothing is written.
    """
    path = Path(path)
    rows = list(rows)
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    if not columns:
        if rows:
            raise ResultsError("rows have no columns")
        return 0
    if len(set(columns)) != len(columns):
        raise ResultsError(f"duplicate column names in {','.join(columns)}")
    header = read_header(path)
    if header is None:
        atomic_write_text(path, _csv_text(rows, columns, header=True))
        return len(rows)
    if header != list(columns):
        raise ResultsError(f"results file {path} has schema {','.join(header)}, expected {','.join(columns)}")
    if not rows:
        return 0
    text = _csv_text(rows, columns, header=False)
    with open(path, "rb+") as f:  # drop a torn last line left by a killed writer
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                f.seek(0)
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(rows)


# provenance -------------------------------------------------------------------------------------------
def results_path(experiment: str, device=None, root=None) -> Path:
    """``<root>/<device-slug>/<experiment>.csv``; root defaults to `results_root()`."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", experiment or ""):
        raise ResultsError(f"experiment name {experiment!r} must be letters, digits, '_', '-' or '.'")
    return Path(root if root is not None else results_root()) / device_slug(device) / f"{experiment}.csv"


HISTORY = 20


def write_env(directory, extra: dict | None = None, *, device=None, dtype=None) -> dict:
    """Write provenance (`perfmamba.provenance.collect_env`) plus `extra` to ``<directory>/env.json``.

    Earlier runs' env.json contents are kept, newest last, under "history" (at most `HISTORY` entries), so a
    resumed sweep does not lose who measured the earlier rows. Returns the dict written.
    """
    path = Path(directory) / "env.json"
    env = {**collect_env(device=device, dtype=dtype), **(extra or {})}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            old = {}
        if isinstance(old, dict) and old:
            env["history"] = (old.pop("history", []) + [old])[-HISTORY:]
    atomic_write_text(path, json.dumps(env, indent=2, sort_keys=True, default=str) + "\n")
    return env
