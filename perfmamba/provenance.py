"""Provenance of a measurement: machine, driver, library versions, dtype, git commit, date, threads.

Versions are read from installed package metadata (`importlib.metadata`), so collecting them imports
nothing heavy and works where an import would fail (mamba-ssm without its CUDA extension).
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from .paths import REPO

PACKAGES = ("torch", "triton", "mamba_ssm", "causal_conv1d", "transformers", "numpy", "perfmamba")


def _slug(text: str) -> str:
    text = re.sub(r"\(r\)|\(tm\)|\bcpu\b|@.*$", " ", text.lower())
    text = re.sub(r"\bprocessor\b|\bwith radeon.*$", " ", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``, else `platform.processor()`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def default_device(device=None) -> torch.device:
    """`device`, or by default the GPU if one is visible, else the CPU."""
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def device_slug(device=None) -> str:
    """A directory name for results measured on `device` (default: `default_device()`): the GPU's name
    (``nvidia-h100-80gb-hbm3``), or ``cpu-<model>`` (e.g. ``cpu-amd-epyc``) for the CPU."""
    dev = default_device(device)
    if dev.type == "cuda":
        return _slug(torch.cuda.get_device_name(dev))
    return "cpu-" + _slug(cpu_model())


def package_version(name: str) -> str | None:
    for candidate in (name, name.replace("_", "-")):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return None


def git_sha(repo=REPO) -> str | None:
    """HEAD of the working tree, with "-dirty" when tracked files differ from it; None outside git."""
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "diff", "--quiet", "HEAD", "--"], capture_output=True,
                               timeout=10).returncode != 0
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "") if sha else None


def gpu_driver() -> str | None:
    """NVIDIA driver version from nvidia-smi, if present."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def collect_env(device=None, dtype=None) -> dict:
    """A flat dict describing where and with what a measurement ran."""
    dev = default_device(device)
    env = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": str(dev),
        "device_slug": device_slug(dev),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dtype": str(dtype).replace("torch.", "") if dtype is not None else None,
        "git_sha": git_sha(),
        "versions": {p: package_version(p) for p in PACKAGES},
        "torch_cuda": torch.version.cuda,
    }
    try:
        env["loadavg_1m"] = round(os.getloadavg()[0], 2)  # other processes share a CPU machine
    except OSError:
        pass
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(gpu_name=props.name, gpu_memory_bytes=props.total_memory,
                   gpu_capability=f"{props.major}.{props.minor}", gpu_driver=gpu_driver())
    return env
