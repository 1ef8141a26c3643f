"""SSM operators: a sequential reference next to each fast path, same signature (mamba-ssm's layouts).

`selective_scan_ref` / `selective_scan_chunked` (Mamba-1), `ssd_ref` / `ssd_chunked` (Mamba-2),
`causal_conv1d_ref` / `causal_conv1d_shift`, each with its one-token decode step (`*_update_ref`); whole mixer
decode steps and the residual add with the next norm (`decode.py`); the norms (`norm.py`). The references loop
over tokens and are the ground truth (run them in float64); the chunked versions loop over chunks only.
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
