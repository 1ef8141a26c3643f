"""Rows committed by other machines (data/results/<slug>/) and the label of the machine that measured them."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import paths, results

NO_GPU_MESSAGE = ("No GPU results are committed: data/results/ holds no directory of a GPU machine. Run "
                  "`python benchmarks/gpu_campaign.py` (or `make reproduce` with the paper profile) on a CUDA "
                  "machine and commit data/results/<gpu-slug>/; this page then renders those rows.")


def gpu_results(results_root=None, experiment: str | None = None):
    """Every row committed by GPU machines: the CSVs under ``<results_root>/<slug>/`` whose slug is not a CPU's,
    with `experiment` (the file name), `machine` (the slug) and `device_name` (env.json's GPU, else the slug).
    Empty frame, with ``attrs["message"]`` saying so, when there are none."""
    root = Path(results_root) if results_root is not None else paths.results_root()
    frames = []
    if root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("cpu-")):
            name = _env_of(d.name, root).get("gpu_name") or d.name
            for f in sorted(d.glob(f"{experiment or '*'}.csv")):
                df = results.read_rows(f)
                if not df.empty:
                    frames.append(df.assign(experiment=f.stem, machine=d.name, device_name=str(name)))
    if not frames:
        df = pd.DataFrame(columns=["experiment", "machine", "device_name", "metric", "value", "unit"])
        df.attrs["message"] = NO_GPU_MESSAGE
        return df
    return pd.concat(frames, ignore_index=True)


def committed(experiment: str, results_root=None):
    """The rows of one experiment (``<experiment>.csv``) committed by GPU machines, with `machine` and
    `device_name`; columns no row fills are dropped. Empty frame with ``attrs["message"]`` when there are none."""
    rows = gpu_results(results_root, experiment)
    if rows.empty:
        rows.attrs["message"] = (f"No GPU machine has committed {experiment}.csv under data/results/<gpu-slug>/ "
                                 "(benchmarks/gpu_book.sh measures it).")
        return rows
    return rows.dropna(axis=1, how="all").reset_index(drop=True)


def _env_of(machine: str, results_root=None) -> dict:
    root = Path(results_root) if results_root is not None else paths.results_root()
    try:
        return json.loads((root / machine / "env.json").read_text())
    except (OSError, ValueError):
        return {}


def machine_label(rows, results_root=None) -> str:
    """"<device name> · <path> · <dtype> · <threads> threads" for the rows' machine(s), from their env.json."""
    if rows is None or rows.empty or "machine" not in rows:
        return "no rows"
    if results_root is None:
        results_root = rows.attrs.get("results_root")  # set by read_sweep
    labels = []
    for m in dict.fromkeys(rows["machine"].dropna()):
        sub = rows[rows["machine"] == m]
        env = _env_of(m, results_root)
        cpu = f"{env['cpu_model']} CPU ({env.get('cpu_count', '?')} cores)" if env.get("cpu_model") else m
        parts = [str(env.get("gpu_name") or cpu)]
        for col in ("path", "dtype"):
            if col in sub and sub[col].notna().any():
                parts.append("/".join(sorted({str(p) for p in sub[col].dropna()})))
        if "threads" in sub and sub["threads"].notna().any():
            parts.append(f"threads: {int(sub['threads'].dropna().iloc[0])}")
        torch_version = (env.get("versions") or {}).get("torch")
        if torch_version:
            parts.append(f"torch {torch_version}")
        labels.append(" · ".join(parts))
    return "; ".join(labels)


def is_gpu(rows) -> bool:
    return rows is not None and not rows.empty and "machine" in rows and \
        any(not str(m).startswith("cpu-") for m in rows["machine"].dropna())


def read_sweep(path):
    """The rows of a committed results CSV (``data/results/<slug>/<name>.csv``) with `machine` set to its
    folder's name and ``attrs["results_root"]`` to the folder above, so that `machine_label` finds the
    env.json beside it. Empty frame, with ``attrs["message"]``, when `path` is None or holds no rows."""
    rows = results.read_rows(path) if path else pd.DataFrame()
    if rows.empty:
        rows.attrs["message"] = f"No committed rows at {path!r}."
        return rows
    rows = rows.assign(machine=Path(path).parent.name)
    rows.attrs["results_root"] = str(Path(path).parent.parent)
    return rows
