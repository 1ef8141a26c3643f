"""Which implementation runs each operator: `ref` (chunked PyTorch, any device), `sequential` (the
token-by-token references, for ground truth), `triton` (our kernels), `mamba_ssm` (upstream kernels where
importable). Each namespace has conv, conv_update, selective_scan, selective_state_update, ssd,
ssd_state_update with the reference signatures.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from types import SimpleNamespace

from . import conv, selective_scan, ssd
from ..errors import BackendUnavailable

# backends that need an optional package: the module (relative to this one) whose `ops()` builds the namespace
_OPTIONAL = {"triton": ".triton", "mamba_ssm": ".mamba_ssm_backend"}


def _ref_ops(sequential: bool) -> SimpleNamespace:
    return SimpleNamespace(
        name="sequential" if sequential else "ref",
        conv=conv.causal_conv1d_ref if sequential else conv.causal_conv1d_shift,
        conv_update=conv.causal_conv1d_update_ref,
        selective_scan=selective_scan.selective_scan_ref if sequential else selective_scan.selective_scan_chunked,
        selective_state_update=selective_scan.selective_state_update_ref,
        ssd=ssd.ssd_ref if sequential else ssd.ssd_chunked,
        ssd_state_update=ssd.ssd_state_update_ref,
    )


@lru_cache(maxsize=None)
def get_ops(name: str) -> SimpleNamespace:
    if name in ("ref", "sequential"):
        return _ref_ops(name == "sequential")
    if name not in _OPTIONAL:
        raise ValueError(f"unknown backend {name!r}; expected ref, sequential, triton or mamba_ssm")
    try:
        module = importlib.import_module(_OPTIONAL[name], __package__)
    except ImportError as e:
        raise BackendUnavailable(f"backend {name!r} is unavailable: {e}") from None
    return module.ops()
