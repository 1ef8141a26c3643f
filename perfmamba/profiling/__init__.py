"""Profiling: where time, memory, FLOPs and bytes go, per component, in prefill and decode (paper §4,
Fig. 2, Table 1).

    timing       synchronised timers, summary statistics, CUDA-graph decode
    attribution  per-component time by timers around the model's record_function ranges, and by a
                 torch.profiler trace (the two must agree)
    memory       weights, cache, per-component activation peaks, the labelled sum of allocations
    flops        analytic FLOPs and bytes per component, roofline coordinates
    sweep        the grid → tidy rows in data/results/<device-slug>/<experiment>.csv
"""
from .attribution import LABELS, Attribution, ComponentTimer, attribute, attribute_events, shares_agree
from ..provenance import collect_env
from .flops import (COMPONENTS, SUBCOMPONENTS, ProfilingError, component_counts, components_for,
                    roofline_points)
from .memory import cache_bytes, trace_memory, weight_bytes
from .sweep import KEY_COLUMNS, PROFILE_COLUMNS, default_grid, sweep, to_frame

__all__ = [
    "LABELS", "COMPONENTS", "SUBCOMPONENTS", "Attribution", "ComponentTimer", "attribute", "attribute_events",
    "shares_agree", "collect_env", "component_counts", "components_for", "roofline_points", "cache_bytes",
    "trace_memory", "weight_bytes", "sweep", "to_frame", "default_grid", "PROFILE_COLUMNS", "KEY_COLUMNS",
    "ProfilingError",
]
