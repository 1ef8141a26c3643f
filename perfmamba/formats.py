"""Checkpoint formats: the three on-disk layouts, read into (ModelConfig, tensors) and written from a model,
with no import of the model classes (so the model can save itself without a cycle).

- ``perfmamba``: ``config.json`` ({"format": "perfmamba", "config": ModelConfig}) + ``model.safetensors``;
  per-layer d_state allowed.
- ``transformers``: ``MambaForCausalLM`` / ``Mamba2ForCausalLM`` ``save_pretrained`` layout (``model_type``
  mamba / mamba2; key ``backbone.embeddings``).
- ``mamba_ssm``: state-spaces layout (d_model, n_layer, vocab_size, ssm_cfg, …; ``pytorch_model.bin`` or
  ``model.safetensors``; key ``backbone.embedding``).

Pickles are read with ``weights_only=True``. A checkpoint is written whole or not at all, with the tokenizer
files found beside the source.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

from .config import ConfigError, ModelConfig
from .errors import CheckpointError, first_line
from .io import atomic_dir

FORMATS = ("perfmamba", "transformers", "mamba_ssm")
FORMAT_VERSION = 1
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json", "tokenizer.model")


# reading -------------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent}: no config.json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return d


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    st, pt = directory / "model.safetensors", directory / "pytorch_model.bin"
    if st.exists():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(st))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{st}: truncated or corrupt safetensors file ({first_line(e)})") from None
    if pt.exists():
        try:
            sd = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError for code-running pickles, RuntimeError/EOFError: truncation
            if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
                raise CheckpointError(f"{pt}: refusing to load: the pickle contains objects other than "
                                      "tensors") from None
            raise CheckpointError(f"{pt}: cannot read ({first_line(e)})") from None
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise CheckpointError(f"{pt}: expected a dict of tensors")
        return sd
    raise CheckpointError(f"{directory}: no model.safetensors or pytorch_model.bin")


def detect_format(directory: Path, cfg: dict) -> str:
    if cfg.get("format") == "perfmamba":
        return "perfmamba"
    if cfg.get("model_type") in ("mamba", "mamba2"):
        return "transformers"
    if "d_model" in cfg and "n_layer" in cfg:
        return "mamba_ssm"
    raise CheckpointError(f"{directory}: config.json is not a perfmamba, transformers Mamba or mamba-ssm "
                          "config")


# transformers' MambaConfig / Mamba2Config key of each ModelConfig field (or derived value), in written order
_HF_KEYS = {"d_model": "hidden_size", "n_layer": "num_hidden_layers", "vocab_size": "vocab_size",
            "d_state": "state_size", "d_conv": "conv_kernel", "expand": "expand", "bias": "use_bias",
            "conv_bias": "use_conv_bias", "hidden_act": "hidden_act", "rms_norm_eps": "layer_norm_epsilon",
            "residual_in_fp32": "residual_in_fp32", "tie_embeddings": "tie_word_embeddings",
            "dt_rank": "time_step_rank", "dt_min": "time_step_min", "dt_max": "time_step_max",
            "dt_init_floor": "time_step_floor"}
_HF_MAMBA2_KEYS = {"nheads": "num_heads", "headdim": "head_dim", "ngroups": "n_groups",
                   "chunk_size": "chunk_size"}
# The fields read back (the rest is written for transformers only). An absent key leaves ModelConfig's
# default, which is transformers' own, except for the required ones.
_HF_COMMON_READ = ("d_model", "n_layer", "vocab_size", "d_state", "d_conv", "expand", "bias", "conv_bias",
                   "rms_norm_eps", "residual_in_fp32", "tie_embeddings")
_HF_READ = {"mamba1": (*_HF_COMMON_READ, "dt_rank"),
            "mamba2": (*_HF_COMMON_READ, "headdim", "ngroups", "chunk_size")}
_HF_REQUIRED = ("d_model", "n_layer", "vocab_size", "d_state")

# mamba-ssm's ssm_cfg: the keys that are ModelConfig fields (written: those of the layer's arch), and those we
# accept only at mamba-ssm's default
_SSM_SHARED = ("d_state", "d_conv", "expand", "conv_bias", "bias")
_SSM_WRITTEN = {"mamba1": (*_SSM_SHARED, "dt_rank"),
                "mamba2": (*_SSM_SHARED, "headdim", "ngroups", "chunk_size")}
_SSM_READ = {*_SSM_WRITTEN["mamba1"], *_SSM_WRITTEN["mamba2"], "dt_min", "dt_max", "dt_init_floor"}
_SSM_DEFAULTS = {"rmsnorm": True, "norm_before_gate": False, "d_ssm": None, "dt_limit": [0.0, float("inf")],
                 "D_has_hdim": False}


def _unlimited(lim) -> bool:
    """Whether a Δ limit (transformers' time_step_limit, mamba-ssm's dt_limit) is (0, inf), the only one we
    run. Its floats may be numbers, strings or as transformers writes them ({"__float__": "Infinity"})."""
    lo, hi = (float(v["__float__"] if isinstance(v, dict) and "__float__" in v else v) for v in lim[:2])
    return lo == 0.0 and math.isinf(hi)


def _from_transformers_config(c: dict) -> ModelConfig:
    arch = "mamba1" if c["model_type"] == "mamba" else "mamba2"
    keys = {**_HF_KEYS, **_HF_MAMBA2_KEYS}
    kw = {f: c[keys[f]] for f in _HF_READ[arch] if keys[f] in c or f in _HF_REQUIRED}
    kw.setdefault("tie_embeddings", arch == "mamba1")
    if c.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"unsupported hidden_act {c['hidden_act']!r} (only silu)")
    d_inner = c.get("expand", 2) * c["hidden_size"]
    if arch == "mamba1":
        if int(c.get("intermediate_size", d_inner)) != d_inner:
            raise CheckpointError("unsupported: intermediate_size != expand * hidden_size")
    else:
        lim = c.get("time_step_limit", (0.0, float("inf")))
        if lim is not None and not _unlimited(lim):
            raise CheckpointError(f"unsupported time_step_limit {lim} (only (0, inf))")
        if c["num_heads"] * c["head_dim"] != d_inner:
            raise CheckpointError("unsupported: num_heads * head_dim != expand * hidden_size")
    return ModelConfig(arch=arch, pad_vocab_size_multiple=1, **kw)


def _from_mamba_ssm_config(c: dict) -> ModelConfig:
    ssm = dict(c.get("ssm_cfg") or {})
    layer = ssm.pop("layer", "Mamba1")
    if c.get("d_intermediate", 0):
        raise CheckpointError("unsupported mamba-ssm config: d_intermediate > 0 (MLP blocks)")
    if c.get("attn_layer_idx"):
        raise CheckpointError("unsupported mamba-ssm config: attention layers (attn_layer_idx)")
    if not c.get("rms_norm", True):
        raise CheckpointError("unsupported mamba-ssm config: rms_norm false (LayerNorm)")
    arch = {"Mamba1": "mamba1", "Mamba2": "mamba2"}.get(layer)
    if arch is None:
        raise CheckpointError(f"unsupported mamba-ssm layer {layer!r}")
    kw = dict(arch=arch, d_model=c["d_model"], n_layer=c["n_layer"], vocab_size=c["vocab_size"],
              pad_vocab_size_multiple=c.get("pad_vocab_size_multiple", 8),
              tie_embeddings=c.get("tie_embeddings", True), residual_in_fp32=c.get("residual_in_fp32", True),
              rms_norm_eps=c.get("norm_epsilon", 1e-5))
    for k, v in ssm.items():
        if k in _SSM_READ:
            kw[k] = v
        elif k in _SSM_DEFAULTS and v != _SSM_DEFAULTS[k] and not (k == "dt_limit" and _unlimited(v)):
            raise CheckpointError(f"unsupported mamba-ssm ssm_cfg {k}={v!r}")
    kw.setdefault("d_state", 16 if arch == "mamba1" else 128)
    return ModelConfig(**kw)


def read_config(directory) -> tuple[ModelConfig, str]:
    directory = Path(directory)
    raw = _read_json(directory / "config.json")
    fmt = detect_format(directory, raw)
    try:
        if fmt == "perfmamba":
            return ModelConfig.from_dict(raw["config"]), fmt
        if fmt == "transformers":
            return _from_transformers_config(raw), fmt
        return _from_mamba_ssm_config(raw), fmt
    except KeyError as e:
        raise CheckpointError(f"{directory / 'config.json'}: missing key {e.args[0]!r}") from None
    except ConfigError as e:
        raise CheckpointError(f"{directory / 'config.json'}: {e}") from None


def _renamed(sd: dict, old: str, new: str) -> dict:
    """`sd` with the key prefix `old` replaced by `new` (transformers' embeddings vs our embedding)."""
    return {(new + k[len(old):]) if k.startswith(old) else k: v for k, v in sd.items()}


def _to_ours(sd: dict, fmt: str) -> dict:
    return _renamed(sd, "backbone.embeddings.", "backbone.embedding.") if fmt == "transformers" else dict(sd)


# writing -------------------------------------------------------------------------------------------------
def _config_json(cfg: ModelConfig, fmt: str) -> dict:
    if fmt == "perfmamba":
        return {"format": "perfmamba", "version": FORMAT_VERSION, "config": cfg.to_dict()}
    n = cfg.uniform_d_state
    if n is None:
        raise CheckpointError(f"{fmt} format needs one d_state for all layers; this model has {cfg.d_states} "
                              "(save it in the perfmamba format)")
    fields = dict(cfg.to_dict(), d_state=n)
    if fmt == "mamba_ssm":
        ssm = {"layer": "Mamba1" if cfg.arch == "mamba1" else "Mamba2",
               **{k: fields[k] for k in _SSM_WRITTEN[cfg.arch]}}
        return {"d_model": cfg.d_model, "d_intermediate": 0, "n_layer": cfg.n_layer,
                "vocab_size": cfg.vocab_size, "ssm_cfg": ssm, "attn_layer_idx": [], "attn_cfg": {},
                "rms_norm": True, "residual_in_fp32": cfg.residual_in_fp32, "fused_add_norm": True,
                "pad_vocab_size_multiple": cfg.pad_vocab_size_multiple, "tie_embeddings": cfg.tie_embeddings}
    values = dict(fields, vocab_size=cfg.padded_vocab_size, hidden_act="silu", dt_rank=cfg.dt_rank_value,
                  nheads=cfg.nheads)
    if cfg.arch == "mamba1":
        head = {"model_type": "mamba", "architectures": ["MambaForCausalLM"],
                "intermediate_size": cfg.d_inner}
    else:
        head = {"model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"],
                **{k: values[f] for f, k in _HF_MAMBA2_KEYS.items()}, "rms_norm": True}
    return {**head, **{k: values[f] for f, k in _HF_KEYS.items()}, "bos_token_id": 0, "eos_token_id": 0,
            "pad_token_id": 0}


def save(model, directory, format: str = "perfmamba", *, overwrite: bool = False,
         tokenizer_from=None) -> Path:
    """Write `model` to `directory` atomically. Tokenizer files beside the model's source are copied along."""
    from safetensors.torch import save_file

    if format not in FORMATS:
        raise CheckpointError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())) and not overwrite:
        raise CheckpointError(f"{directory}: already exists and is not empty (pass overwrite=True / --force)")
    meta = _config_json(model.config, format)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        sd.pop("lm_head.weight")
    if format == "transformers":
        sd = _renamed(sd, "backbone.embedding.", "backbone.embeddings.")
    with atomic_dir(directory) as tmp:
        (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        src = Path(tokenizer_from) if tokenizer_from else Path(getattr(model, "source", "") or "/nonexistent")
        if src.is_dir():
            for name in TOKENIZER_FILES:
                if (src / name).exists():
                    shutil.copy2(src / name, tmp / name)
    return directory
