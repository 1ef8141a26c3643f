"""The rows the claims are judged on, gathered in one place, each with the machine that measured it.

- committed GPU rows: ``data/results/<gpu-slug>/{profile,pruning_efficiency,gpu_kernels}.csv``
  (`benchmarks/gpu_book.sh`, `benchmarks/gpu_campaign.py`);
- the committed CPU sweep ``data/results/cpu-amd-epyc/profile_cpu.csv`` (the 130M shapes at batch 1);
- this machine's run: ``<results_root>/<this device>/pruning_quality.csv``, written by the notebooks that ran
  before the claims page (`make reproduce`).
A file that is missing gives an empty frame, and the claims that need it say "not measured here".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import experiments, results

SWEEP = "data/results/cpu-amd-epyc/profile_cpu.csv"


@dataclass
class Sources:
    gpu_profile: pd.DataFrame = field(default_factory=pd.DataFrame)
    gpu_efficiency: pd.DataFrame = field(default_factory=pd.DataFrame)
    gpu_kernels: pd.DataFrame = field(default_factory=pd.DataFrame)
    sweep: pd.DataFrame = field(default_factory=pd.DataFrame)
    quality: pd.DataFrame = field(default_factory=pd.DataFrame)
    results_root: str | None = None

    def machine(self, rows: pd.DataFrame) -> str:
        """The device name of rows (env.json's GPU or CPU model), for the `machine` of a Value."""
        if rows.empty:
            return ""
        if "device_name" in rows and rows["device_name"].notna().any():
            return str(rows["device_name"].dropna().iloc[0])
        return experiments.machine_label(rows, self.results_root).split(" · ")[0]


def collect(results_root=None, sweep=SWEEP, run_root=None) -> Sources:
    """Every source above. results_root: where the committed GPU folders are read (default $PERFMAMBA_RESULTS or
    data/results); run_root: where this machine's run wrote its rows (the same default); sweep: the committed CPU
    sweep (None: none)."""
    root = str(results_root) if results_root is not None else None
    sw = experiments.read_sweep(sweep) if sweep and Path(sweep).is_file() else pd.DataFrame()
    quality = results.results_path("pruning_quality", root=run_root)
    return Sources(gpu_profile=experiments.committed("profile", root),
                   gpu_efficiency=experiments.committed("pruning_efficiency", root),
                   gpu_kernels=experiments.committed("gpu_kernels", root),
                   sweep=sw, quality=results.read_rows(quality) if quality.is_file() else pd.DataFrame(),
                   results_root=root)
