"""Bytes of one decode step, weights against recurrent state, and the bandwidth-bound ideal speed-up
(ext_decode_state_traffic)."""
from __future__ import annotations

import itertools
import math

import pandas as pd
import torch

from .. import results
from ..config import PRESETS, preset
from ..errors import ExperimentError
from ..models.lm import MambaLM
from ..profiling.flops import component_counts
from ..profiling.memory import cache_bytes
from ..profiling.sweep import parse_dtype
from ..pruning.selection import check_ratio, n_keep
from .analysis import efficiency_summary
from .common import _isin, _read
from .efficiency import pruning_efficiency

TRAFFIC_COLUMNS = list(results.SCHEMAS["decode_state_traffic"].columns)
TRAFFIC_KEY = list(results.SCHEMAS["decode_state_traffic"].key)


def traffic_rows(name, batch, ratio, dtype, state_dtype):
    cfg = preset(name)
    cfg = cfg.replace(d_state=[n_keep(n, ratio) for n in cfg.d_states])
    dt, sdt = parse_dtype(dtype), parse_dtype(state_dtype)
    with torch.device("meta"):
        model = MambaLM(cfg, init=False)
    size = torch.empty((), dtype=dt).element_size()
    weights = sum(t.numel() for t in {id(p): p for p in model.parameters()}.values()) * size
    cache = cache_bytes(model, batch, sdt)
    step = component_counts(cfg, batch, 1, "decode", dtype=dt, state_dtype=sdt)["total"]["bytes"]
    state = cache["ssm_state"] + cache["conv_state"]
    base = dict(model=name, arch=cfg.arch, batch=batch, ratio=ratio, d_state=sum(cfg.d_states) / cfg.n_layer,
                dtype=dtype, state_dtype=state_dtype, source="analytic", device="any", path="analytic")
    nbytes = dict(weights_bytes=weights, ssm_state_bytes=cache["ssm_state"],
                  conv_state_bytes=cache["conv_state"], step_bytes=step)
    return ([dict(base, metric=k, value=v, unit="byte") for k, v in nbytes.items()]
            + [dict(base, metric="state_traffic_fraction", value=2 * state / step, unit="fraction")])


def decode_state_traffic(presets, batches, ratios, *, dtype="bfloat16", state_dtype=None, measure=(),
                         measure_batches=None, measure_seqlen: int = 64, warmup=None, iters=None, device=None,
                         results_root=None, experiment: str = "decode_state_traffic", progress: bool = False):
    """Bytes one decode step must move: weights (read once) against the recurrent state (conv + SSM cache,
    read and written), per preset × batch × ratio (analytic, `perfmamba.profiling.flops` and the cache
    shapes), with `ideal_speedup` = dense step bytes / pruned step bytes, the most a bandwidth-bound step can
    gain from pruning. For the presets in `measure`, decode is also timed on this machine
    (`pruning_efficiency`, phase decode) and `measured_speedup` reported beside the ideal one.
    """
    state_dtype = state_dtype or dtype
    names = list(presets)
    for n in names:
        if n not in PRESETS:
            raise ExperimentError(f"decode_state_traffic takes preset names, got {n!r}")
    ratios = sorted({0.0} | {check_ratio(r) for r in ratios})
    out = results.results_path(experiment, device, root=results_root)
    done = results.existing_keys(out, TRAFFIC_KEY)
    rows = []
    for n, b, r in itertools.product(names, batches, ratios):
        key = dict(model=n, batch=b, ratio=r, dtype=dtype, state_dtype=state_dtype)
        if results.row_key(key, TRAFFIC_KEY) not in done:
            rows += traffic_rows(n, int(b), r, dtype, state_dtype)
    if rows:
        results.append_rows(out, rows, TRAFFIC_COLUMNS)
    df = _isin(_read(out), model=names, batch=batches, ratio=ratios, dtype=[dtype], state_dtype=[state_dtype])
    step = df[df["metric"] == "step_bytes"].copy()
    dense = step[step["ratio"].astype(float) == 0.0].set_index(["model", "batch"])["value"]
    step["value"] = [dense.get((m, b), math.nan) / v for m, b, v in zip(step["model"], step["batch"], step["value"])]
    step["metric"], step["unit"] = "ideal_speedup", "x"
    frames = [df, step]
    if measure:
        eff = pruning_efficiency(list(measure), [r for r in ratios if r > 0], batches=measure_batches or batches,
                                 seqlens=(measure_seqlen,), phases=("decode",), methods=("timers",), warmup=warmup,
                                 iters=iters, dtype=None, device=device, results_root=results_root,
                                 experiment=f"{experiment}_measured", progress=progress)
        s = efficiency_summary(eff)
        if not s.empty:
            for metric, col, unit in (("time", "time_ms", "ms"), ("measured_speedup", "speedup", "x")):
                frames.append(pd.DataFrame(dict(model=s["model"], arch=s["arch"], batch=s["batch"],
                                                ratio=s["ratio"], d_state=s["d_state"], metric=metric,
                                                value=s[col], unit=unit, source="measured", path=s["path"],
                                                device=results.device_type(device), machine=s["machine"],
                                                dtype=eff["dtype"].iloc[0], state_dtype=eff["state_dtype"].iloc[0])))
    return pd.concat(frames, ignore_index=True)
