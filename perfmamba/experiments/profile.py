"""Per-component time, memory, FLOPs and bytes (fig2_latency, table1_components) and the roofline (ext_roofline)."""
from __future__ import annotations

import statistics

import pandas as pd
import torch

from .. import results
from ..profiling.sweep import parse_dtype, sweep
from ..profiling.timing import time_call
from ..provenance import default_device
from .common import _isin, _profile_rows, _read, _specs, _write_env


def latency(models, seqlens, batches=(1,), phases=("prefill", "decode"), *, paths=("ref",), methods=("timers",),
            warmup=None, iters=None, dtype=None, device=None, threads=None, results_root=None,
            experiment: str = "latency", progress: bool = False):
    """Per-component time (and memory with the "profiler" method), FLOPs and bytes of every model × path ×
    phase × batch × seqlen point: `perfmamba.profiling.sweep` into ``<experiment>.csv``. Returns the rows of
    the requested grid (measured now or earlier), with `machine`.

    models: preset names, checkpoint directories, or the notebooks' model_dirs mapping.
    """
    specs = _specs(models, "latency")
    grid = dict(seqlens=seqlens, batches=batches, phases=phases, paths=paths, methods=methods)
    out = results.results_path(experiment, device, root=results_root)
    sweep(specs, **grid, out=out, device=device, warmup=warmup, iters=iters, dtype=dtype, threads=threads,
          progress=progress)
    df = _profile_rows(out, specs, grid)
    return df[df["mode"] == "dense"].reset_index(drop=True)


PEAK_COLUMNS = list(results.SCHEMAS["machine_peaks"].columns)


def machine_peaks(device=None, *, dtype="float32", results_root=None, experiment: str = "machine_peaks"):
    """Measured ceilings of this machine: matmul FLOP/s (an n×n×n product) and copy bandwidth (bytes read +
    written per second of a large tensor copy). Cached; returns rows (metric peak_flops / peak_bandwidth)."""
    dev = default_device(device)
    out = results.results_path(experiment, dev, root=results_root)
    done = results.existing_keys(out, results.SCHEMAS["machine_peaks"].key)
    key = results.row_key({"device": results.device_type(dev), "dtype": dtype}, results.SCHEMAS["machine_peaks"].key)
    if key not in done:
        dt = parse_dtype(dtype)
        n = 4096 if dev.type == "cuda" else 1024
        a = torch.randn(n, n, device=dev).to(dt)
        b = torch.randn(n, n, device=dev).to(dt)
        mm = statistics.median(time_call(lambda: a @ b, dev, warmup=2, iters=7))
        numel = (1 << 28) if dev.type == "cuda" else (1 << 25)
        x = torch.empty(numel, device=dev, dtype=dt).fill_(1)
        y = torch.empty_like(x)
        cp = statistics.median(time_call(lambda: y.copy_(x), dev, warmup=2, iters=7))
        size = x.numel() * x.element_size()
        base = dict(device=results.device_type(dev), dtype=dtype, n_iter=7)
        rows = [dict(base, metric="peak_flops", value=2 * n ** 3 / mm, unit="flop/s",
                     method=f"matmul {n}x{n}x{n}", size=n),
                dict(base, metric="peak_bandwidth", value=2 * size / cp, unit="byte/s",
                     method="tensor copy (read + write)", size=size)]
        results.append_rows(out, rows, PEAK_COLUMNS)
        _write_env(out, experiment, dev)
    return _isin(_read(out), device=[results.device_type(dev)], dtype=[dtype]).reset_index(drop=True)


def roofline(models, seqlens, batches=(1,), phases=("prefill", "decode"), *, peak_flops=None, peak_bw=None,
             paths=("ref",), warmup=None, iters=None, dtype=None, device=None, results_root=None,
             experiment: str = "latency", progress: bool = False):
    """Latency rows (`latency`) plus two rows with component "machine": the compute and bandwidth ceilings,
    given (`peak_flops` FLOP/s, `peak_bw` byte/s, e.g. a GPU's data sheet) or measured (`machine_peaks`)."""
    rows = latency(models, seqlens, batches, phases, paths=paths, methods=("timers",), warmup=warmup, iters=iters,
                   dtype=dtype, device=device, results_root=results_root, experiment=experiment, progress=progress)
    src = "given"
    if peak_flops is None or peak_bw is None:
        dt = dtype or ("bfloat16" if default_device(device).type == "cuda" else "float32")
        peaks = machine_peaks(device, dtype=dt, results_root=results_root)
        measured = dict(zip(peaks["metric"], peaks["value"]))
        peak_flops = measured["peak_flops"] if peak_flops is None else peak_flops
        peak_bw = measured["peak_bandwidth"] if peak_bw is None else peak_bw
        src = "measured"
    machine = rows["machine"].iloc[0] if len(rows) else results.device_slug(device)
    extra = pd.DataFrame([dict(component="machine", metric=metric, value=float(v), unit=unit, method=src,
                               machine=machine)
                          for metric, v, unit in (("peak_flops", peak_flops, "flop/s"),
                                                  ("peak_bandwidth", peak_bw, "byte/s"))])
    return pd.concat([rows, extra], ignore_index=True)
