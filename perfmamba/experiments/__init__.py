"""The experiments behind the notebooks: each computes tidy rows, caches them, and returns a DataFrame; each
module's docstring names its notebooks.

Rows are cached in ``<results_root>/<device-slug>/<experiment>.csv`` (`perfmamba.results`; results_root is
the argument, else $PERFMAMBA_RESULTS, else data/results). A point whose key is already in the file is read
back, not recomputed, so a killed notebook resumes and two notebooks over the same points share the work.
Keys include a fingerprint of the model's weights (`model_ref`), so a retrained model is measured again.
Progress bars are off by default (`progress=True` turns them on): the notebooks' pages show results, not bars.

Every returned frame has `machine` (the device slug of the directory its rows came from), `device` and `path`
(the compute path: "ref", "triton", "mamba_ssm").
"""
from ..errors import ExperimentError
from .activity import ACTIVITY_COLUMNS, ACTIVITY_KEY, activity
from .analysis import (TRACE_GAP_MIN, both_methods, efficiency_summary, graphed, instrumentation_cost, method_agreement,
                       mode_comparison, point_label, recall_probe_pairs, span_text, trace_gap, tradeoff)
from .committed import NO_GPU_MESSAGE, committed, gpu_results, is_gpu, machine_label, read_sweep
from ..pruning.activity import corpus_tokens
from .common import calibration_batch, model_ref
from .decode import TRAFFIC_COLUMNS, TRAFFIC_KEY, decode_state_traffic, traffic_rows
from .efficiency import pruning_efficiency
from .profile import PEAK_COLUMNS, latency, machine_peaks, roofline
from .quality import DENSE, QUALITY_COLUMNS, QUALITY_KEY, pruning_quality
from .recall import RECALL_COLUMNS, RECALL_KEY, recall_model, recall_pruning

__all__ = [
    "ExperimentError", "latency", "machine_peaks", "roofline", "activity", "pruning_quality", "pruning_efficiency",
    "decode_state_traffic", "traffic_rows", "recall_model", "recall_pruning", "committed", "gpu_results", "is_gpu",
    "machine_label", "read_sweep", "tradeoff", "efficiency_summary", "mode_comparison", "method_agreement",
    "instrumentation_cost", "trace_gap", "graphed", "both_methods", "point_label", "span_text", "recall_probe_pairs",
    "calibration_batch", "corpus_tokens", "model_ref", "TRACE_GAP_MIN", "NO_GPU_MESSAGE",
    "ACTIVITY_COLUMNS", "ACTIVITY_KEY", "QUALITY_COLUMNS", "QUALITY_KEY", "DENSE", "TRAFFIC_COLUMNS", "TRAFFIC_KEY",
    "RECALL_COLUMNS", "RECALL_KEY", "PEAK_COLUMNS",
]
