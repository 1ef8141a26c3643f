"""Load a model from a preset name or a checkpoint directory in any of the three formats (`perfmamba.formats`),
and save one (`save`, also `MambaLM.save`)."""
from __future__ import annotations

from pathlib import Path

import torch

from .config import PRESETS, preset
from .errors import CheckpointError
from .formats import FORMATS, TOKENIZER_FILES, _read_weights, _to_ours, detect_format, read_config, save
from .models.lm import MambaLM

__all__ = ["load", "save", "load_state_dict_strict", "read_config", "detect_format", "FORMATS", "TOKENIZER_FILES"]


def load_state_dict_strict(model: MambaLM, sd: dict, where: str) -> None:
    """Load weights, reporting missing/unexpected keys and shape mismatches as one CheckpointError line."""
    own = model.state_dict()
    if model.config.tie_embeddings:
        sd.pop("lm_head.weight", None)  # tied: the embedding is the head
        own.pop("lm_head.weight", None)
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    parts = [f"{what} {len(keys)} tensors (e.g. {keys[0]})"
             for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if parts:
        raise CheckpointError(f"{where}: weights do not match the config: " + "; ".join(parts))
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{where}: config does not match the weights: {k} has shape "
                                  f"{tuple(sd[k].shape)}, the config implies {tuple(v.shape)}")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(sd[k])


def load(source, *, device="cpu", dtype=None) -> MambaLM:
    """A model from a preset name (seeded random init) or a checkpoint directory in any of the three formats; a
    model object is taken as it is. On `device`, in `dtype` where given, in eval mode. Every loader of the
    library (experiments, profiling, pruning, evaluation, the CLI) goes through here."""
    path = Path(str(source)).expanduser()
    if isinstance(source, torch.nn.Module):
        model = source
    elif path.is_dir():
        cfg, fmt = read_config(path)
        sd = _to_ours(_read_weights(path), fmt)
        with torch.device("meta"):
            model = MambaLM(cfg, init=False)
        model = model.to_empty(device="cpu")
        if cfg.tie_embeddings:
            model.lm_head.weight = model.backbone.embedding.weight
        load_state_dict_strict(model, sd, str(path))
        model.source = str(path)
        model.source_format = fmt
    elif str(source) in PRESETS:
        model = MambaLM.from_config(preset(str(source)))
        model.source = str(source)
        model.source_format = "preset"
    elif path.exists():
        raise CheckpointError(f"{path}: not a directory (expected a checkpoint directory or a preset name)")
    else:
        raise CheckpointError(f"{source!r}: no such checkpoint directory or preset (presets: {', '.join(PRESETS)})")
    return model.to(device=device, dtype=dtype).eval()
