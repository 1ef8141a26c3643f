"""The `mamba_ssm` compute path: upstream kernels (mamba-ssm 2.2.4 – 2.3.x) behind the reference signatures.

`ops().impl` names what each operator runs, so measurements can record it: the Triton
`mamba_chunk_scan_combined` and `selective_state_update` (for Mamba-2 with the head dimension tied by stride-0
views, as `Mamba2.step` does); `selective_scan_fn` only where its CUDA extension is built, causal_conv1d only
where installed, else our torch versions (mamba-ssm's own modules fall back to nn.Conv1d too).

mamba-ssm's package `__init__` imports its CUDA extension `selective_scan_cuda` unconditionally; where that
extension is missing (a wheel built with MAMBA_SKIP_CUDA_BUILD=TRUE) an empty stand-in module is registered so
that the Triton kernels can be imported. Side effect: in this process transformers then sees mamba-ssm as
importable and binds its kernels, which crash on CPU tensors. So this module only loads on a CUDA machine, and
raises ImportError (reported by `get_ops` as an unavailable backend) everywhere else.
"""
from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import torch

if not torch.cuda.is_available():
    raise ImportError("mamba-ssm's Triton kernels need a CUDA device")


def upstream_models() -> SimpleNamespace:
    """mamba-ssm's own model classes (MambaConfig, MambaLMHeadModel, InferenceParams) and version, for the
    benchmarks that time mamba-ssm beside us (the stand-in for its CUDA extension is registered on import)."""
    import mamba_ssm
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel
    from mamba_ssm.utils.generation import InferenceParams

    return SimpleNamespace(version=mamba_ssm.__version__, MambaConfig=MambaConfig, MambaLMHeadModel=MambaLMHeadModel,
                           InferenceParams=InferenceParams)


def _import_mamba_ssm():
    """The one place that imports mamba-ssm: with the stand-in for `selective_scan_cuda` where the extension is
    missing, so that its Triton kernels import."""
    stand_in = False
    try:
        import selective_scan_cuda  # noqa: F401  (the real extension, when built)
    except ImportError:
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
        stand_in = True
    try:
        import mamba_ssm
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update as _ssu
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined as _mcsc
    except ImportError as e:
        if stand_in:
            del sys.modules["selective_scan_cuda"]
        raise ImportError(f"mamba_ssm is not importable: {e}") from None
    scan_fn = None
    if not stand_in:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as scan_fn
    return mamba_ssm.__version__, _mcsc, _ssu, scan_fn


VERSION, _mamba_chunk_scan_combined, _selective_state_update, _selective_scan_fn = _import_mamba_ssm()

try:
    from causal_conv1d import causal_conv1d_fn as _causal_conv1d_fn
    from causal_conv1d import causal_conv1d_update as _causal_conv1d_update
except ImportError:
    _causal_conv1d_fn = _causal_conv1d_update = None

from .conv import causal_conv1d_ref, causal_conv1d_update_ref  # noqa: E402
from .selective_scan import has_dt_limit, selective_scan_chunked  # noqa: E402
from .ssd import ssd_state_update_ref  # noqa: E402


def ssd(x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, initial_states=None, return_final_states=False,
        dt_limit=None, chunk_size=256):
    """`perfmamba.ops.ssd_ref` signature over `mamba_chunk_scan_combined`. Returns y (b, l, h, p) [, final state]."""
    limit = (0.0, float("inf")) if dt_limit is None else tuple(float(v) for v in dt_limit)
    out = _mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size or 256, D=D, dt_bias=dt_bias,
                                     initial_states=initial_states, dt_softplus=dt_softplus, dt_limit=limit,
                                     return_final_states=return_final_states)
    # the reference returns the state in x's dtype
    return (out[0], out[1].to(x.dtype)) if return_final_states else out


def ssd_state_update(state, x, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False, dt_limit=None):
    """`perfmamba.ops.ssd_state_update_ref` signature over mamba-ssm's Triton `selective_state_update`.

    Per-head Δ, A, dt_bias, D become stride-0 (h, p[, n]) views, which selects the kernel's tied-head path.
    The kernel has no dt_limit, so a limited Δ goes to the reference.
    """
    if has_dt_limit(dt_limit):
        return ssd_state_update_ref(state, x, dt, A, B, C, D, dt_bias, dt_softplus, dt_limit)
    b, h, p, n = state.shape
    bias = dt_bias if dt_bias is not None else dt.new_zeros(h)
    D_ = None if D is None else (D[:, None].expand(h, p) if D.dim() == 1 else D)
    return _selective_state_update(state, x, dt[:, :, None].expand(b, h, p), A[:, None, None].expand(h, p, n),
                                   B, C, D_, None, bias[:, None].expand(h, p), dt_softplus)


# `perfmamba.ops.selective_state_update_ref` signature: mamba-ssm's Triton kernel takes it as it is
selective_state_update = _selective_state_update


def _selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False, initial_state=None):
    if initial_state is not None:  # selective_scan_fn has no initial state: continue with the torch path
        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                                      initial_state)
    return _selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def _conv(x, weight, bias=None, initial_states=None, return_final_states=False, activation=None):
    return _causal_conv1d_fn(x, weight, bias, initial_states=initial_states, return_final_states=return_final_states,
                             activation=activation)


def ops() -> SimpleNamespace:
    scan_cuda = _selective_scan_fn is not None
    conv_cuda = _causal_conv1d_fn is not None
    torch_path = "perfmamba.ops.{} (torch)".format
    fns = {  # field: (function, what it runs)
        "conv": (_conv, "causal_conv1d.causal_conv1d_fn") if conv_cuda
        else (causal_conv1d_ref, torch_path("causal_conv1d_ref")),
        # causal_conv1d_update takes the reference's arguments as they are
        "conv_update": (_causal_conv1d_update, "causal_conv1d.causal_conv1d_update") if conv_cuda
        else (causal_conv1d_update_ref, torch_path("causal_conv1d_update_ref")),
        "selective_scan": (_selective_scan_cuda, "mamba_ssm.selective_scan_fn (CUDA)") if scan_cuda
        else (selective_scan_chunked, torch_path("selective_scan_chunked")),
        "selective_state_update": (selective_state_update, "mamba_ssm.ops.triton.selective_state_update"),
        "ssd": (ssd, "mamba_ssm.mamba_chunk_scan_combined"),
        "ssd_state_update": (ssd_state_update, "mamba_ssm.ops.triton.selective_state_update"),
    }
    return SimpleNamespace(name="mamba_ssm", **{k: fn for k, (fn, _) in fns.items()},
                           impl={k: impl for k, (_, impl) in fns.items()}, version=VERSION)
