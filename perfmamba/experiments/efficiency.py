"""Time, memory and state bytes of pruned models against the dense one (table2_efficiency)."""
from __future__ import annotations

from .. import results
from ..errors import ExperimentError
from ..pruning import NEEDS, prune
from ..pruning.selection import check_ratio
from ..profiling.sweep import sweep
from ..profiling.timing import set_flush_denormal
from ..provenance import default_device
from .common import _load, _profile_rows, _specs


def pruning_efficiency(models, ratios, *, batches=(1,), seqlens=(64,), phases=("prefill", "decode"),
                       criterion: str = "magnitude", modes=("removed",), paths=("ref",), methods=("timers",),
                       warmup=None, iters=None, dtype=None, state_dtype="float32", device=None, results_root=None,
                       experiment: str = "pruning_efficiency", progress: bool = False):
    """Time, memory and state bytes of pruned models against the dense model, through the profiling sweep:
    states physically removed (mode "removed", the default) and, when `modes` asks for them, masked ("zeroed")
    or masked and bridged back to N ("bridge"), whose shapes are the dense ones. Rows are profile rows
    (`perfmamba.profiling.PROFILE_COLUMNS`) tagged with ratio, criterion and mode ("dense" for r = 0).

    Which states are removed does not change the work, only how many: the default criterion "magnitude" reads
    the weights only, so presets (random init) can be timed without calibration data.
    """
    if NEEDS.get(criterion, "calibration") is not None:
        raise ExperimentError(f"pruning_efficiency times the pruned shapes; use a criterion that needs no "
                              f"calibration data (magnitude, random), not {criterion!r}")
    specs = _specs(models, "pruning_efficiency")
    ratios = sorted({check_ratio(r) for r in ratios} - {0.0})
    out = results.results_path(experiment, device, root=results_root)
    grid = dict(seqlens=seqlens, batches=batches, phases=phases, paths=paths, methods=methods)
    if default_device(device).type == "cpu":  # for the whole process, before its first parallel op (the load)
        set_flush_denormal(True)
    for spec in specs:
        dense = _load(spec, device)
        for r, mode in [(0.0, "dense"), *((r, mode) for r in ratios for mode in modes)]:
            m = dense if r == 0.0 else prune(dense, r, criterion=criterion, mode=mode)
            tags = dict(ratio=r, criterion="none" if r == 0.0 else criterion, mode=mode)
            sweep([m], **grid, out=out, device=device, warmup=warmup, iters=iters, dtype=dtype,
                  state_dtype=state_dtype, tags=tags, progress=progress)
            del m
    df = _profile_rows(out, specs, grid, ratio=[0.0, *ratios])
    df = df[df["criterion"].isin(["none", criterion]) & df["mode"].isin(["dense", *modes])]
    return df.reset_index(drop=True)
