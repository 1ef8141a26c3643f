"""The `triton` compute path: our Triton kernels, each beside its reference in `perfmamba.ops`, same signature.

    conv                    causal_conv1d            (ref: causal_conv1d_ref), SiLU fused, channel-last aware
    conv_update             causal_conv1d_update     (ref: causal_conv1d_update_ref), conv_state updated in place
    selective_scan          Mamba-1 prefill scan     (ref: selective_scan_ref), any d_state
    selective_state_update  Mamba-1 decode step      (ref: selective_state_update_ref), one kernel
    ssd                     Mamba-2 prefill          mamba-ssm's Triton SSD (mamba_chunk_scan_combined) when importable,
                                                     else ours (chunked_ssd, ref: ssd_ref) on CUDA, else the torch
                                                     perfmamba.ops.ssd_chunked; PERFMAMBA_SSD / use_ssd choose
    ssd_state_update        Mamba-2 decode step      (ref: ssd_state_update_ref), one kernel, any d_state
    rmsnorm, gated_rmsnorm  fused norms              (ref: perfmamba.ops.norm rmsnorm_ref / gated_rmsnorm_ref)
    mamba2_step             Mamba-2 layer step       (ref: perfmamba.ops.decode.mamba2_step_ref): conv update, state
                            between the projections   update, gated norm in two kernels, any N′ per layer
    mamba1_step             Mamba-1 step after x_proj (ref: mamba1_step_ref): Δ projection, state update, gate
    add_rmsnorm             residual add + RMSNorm   (ref: add_rmsnorm_ref), between the layers of a decode step
The last five are extra fields that the `ref` namespace does not have; the models use them where they find them.

`ops().impl` names what each operator runs (the Mamba-2 prefill may not be ours); measurements record it.
The kernels run on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 is set before this package is
imported (how the CPU tests exercise them). Importing needs triton only; without it this raises ImportError,
which `perfmamba.ops.backends.get_ops` reports as an unavailable backend.
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
    """The operator namespace of the `triton` backend (see `perfmamba.ops.backends`); `impl` names each op's
    function."""
    ssd, ssd_impl = prefill_impl()
    fns = dict(conv=causal_conv1d, conv_update=causal_conv1d_update, selective_scan=selective_scan,
               selective_state_update=selective_state_update, ssd=ssd, ssd_state_update=ssd_state_update,
               rmsnorm=rmsnorm, gated_rmsnorm=gated_rmsnorm, mamba2_step=mamba2_step, mamba1_step=mamba1_step,
               add_rmsnorm=add_rmsnorm)
    impl = {name: f"perfmamba.ops.triton.{fn.__name__}" for name, fn in fns.items()}
    impl["ssd"] = ssd_impl
    return SimpleNamespace(name="triton", **fns, impl=impl, interpret=INTERPRET)
