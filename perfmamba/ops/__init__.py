"""SSM operators: a sequential reference next to each fast path, same signature.

`selective_scan_ref` / `selective_scan_chunked`  Mamba-1 selective scan (mamba-ssm `selective_scan_ref` layout)
`ssd_ref` / `ssd_chunked`                        Mamba-2 state-space duality (mamba-ssm `mamba_chunk_scan_combined` layout)
`causal_conv1d_ref` / `causal_conv1d_shift`     depthwise causal conv: torch's conv1d / token-major multiply-adds
`causal_conv1d_update_ref`                       one decode step of the conv
`selective_state_update_ref`, `ssd_state_update_ref`  one decode step of each SSM
`mamba2_step_ref`, `mamba1_step_ref`, `add_rmsnorm_ref`  a whole mixer's decode step between its projections, and
                                                 the residual add with the next RMSNorm (ops/decode.py)
`rmsnorm_ref`, `gated_rmsnorm_ref`               the norms (ops/norm.py)
The references loop over tokens and are the ground truth (run them in float64); the chunked versions loop
over chunks only.
"""
from .conv import causal_conv1d_ref, causal_conv1d_shift, causal_conv1d_update_ref
from .decode import add_rmsnorm_ref, mamba1_step_ref, mamba2_step_ref
from .norm import gated_rmsnorm_ref, rmsnorm_ref
from .selective_scan import selective_scan_chunked, selective_scan_ref, selective_state_update_ref
from .ssd import ssd_chunked, ssd_ref, ssd_state_update_ref

__all__ = [
    "causal_conv1d_ref", "causal_conv1d_shift", "causal_conv1d_update_ref",
    "selective_scan_ref", "selective_scan_chunked", "selective_state_update_ref",
    "ssd_ref", "ssd_chunked", "ssd_state_update_ref",
    "mamba2_step_ref", "mamba1_step_ref", "add_rmsnorm_ref", "rmsnorm_ref", "gated_rmsnorm_ref",
]
