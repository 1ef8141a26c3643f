"""The `triton` compute path: our Triton kernels, each with the signature of its reference in `perfmamba.ops`.

Beside the fields of the `ref` namespace (conv, conv_update, selective_scan, selective_state_update, ssd,
ssd_state_update) it offers fused `rmsnorm`, `gated_rmsnorm`, `mamba2_step`, `mamba1_step` and `add_rmsnorm`
(references in `ops/norm.py`, `ops/decode.py`), which the models use where they find them. The Mamba-2 prefill
`ssd` may not be ours (`prefill_impl`); `ops().impl` names what each field runs, and measurements record it.
Kernels run on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 is set before import (the CPU tests).
Without triton, importing raises ImportError, which `get_ops` reports as an unavailable backend.
"""
from __future__ import annotations

from types import SimpleNamespace

import triton  # noqa: F401  (ImportError here means: no triton backend)

from .common import INTERPRET, KernelInputError
from .conv import causal_conv1d, causal_conv1d_update
from .decode import add_rmsnorm, mamba1_step, mamba2_step
from .norm import gated_rmsnorm, rmsnorm
from .selective_scan import selective_scan, selective_state_update
from .ssd import prefill_impl, ssd_state_update, use_ssd
from .chunked_ssd import chunked_ssd

__all__ = ["ops", "causal_conv1d", "causal_conv1d_update", "selective_scan", "selective_state_update",
           "ssd_state_update", "rmsnorm", "gated_rmsnorm", "mamba2_step", "mamba1_step", "add_rmsnorm", "prefill_impl",
           "use_ssd", "chunked_ssd", "KernelInputError", "INTERPRET"]


def ops() -> SimpleNamespace:
    ssd, ssd_impl = prefill_impl()
    fns = dict(conv=causal_conv1d, conv_update=causal_conv1d_update, selective_scan=selective_scan,
               selective_state_update=selective_state_update, ssd=ssd, ssd_state_update=ssd_state_update,
               rmsnorm=rmsnorm, gated_rmsnorm=gated_rmsnorm, mamba2_step=mamba2_step, mamba1_step=mamba1_step,
               add_rmsnorm=add_rmsnorm)
    impl = {name: f"perfmamba.ops.triton.{fn.__name__}" for name, fn in fns.items()}
    impl["ssd"] = ssd_impl
    return SimpleNamespace(name="triton", **fns, impl=impl, interpret=INTERPRET)
