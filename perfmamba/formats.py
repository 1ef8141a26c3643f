"""Checkpoint formats: the three on-disk layouts, read into (ModelConfig, tensors) and written from a model, with
no import of the model classes (so the model can save itself without a cycle; `perfmamba.checkpoints` builds the
model from what is read here).

- ``perfmamba``: ``config.json`` ({"format": "perfmamba", "config": ModelConfig}) + ``model.safetensors``;
  per-layer d_state allowed.
- ``transformers``: ``MambaForCausalLM`` / ``Mamba2ForCausalLM`` ``save_pretrained`` layout
  (``config.json`` with ``model_type`` mamba / mamba2, ``model.safetensors``; key ``backbone.embeddings``).
- ``mamba_ssm``: state-spaces layout (``config.json`` with d_model, n_layer, vocab_size, ssm_cfg, …;
  ``pytorch_model.bin`` or ``model.safetensors``; key ``backbone.embedding``).

Pickles are read with ``weights_only=True``. Writes go to a temporary directory renamed into place, so a
failure never leaves a half-written checkpoint. Tokenizer files found beside the source are copied along.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

from .config import ConfigError, ModelConfig
from .errors import CheckpointError
from .io import atomic_dir

FORMATS = ("perfmamba", "transformers", "mamba_ssm")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json", "tokenizer.model")


FORMAT_VERSION = 1


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
            raise CheckpointError(f"{st}: truncated or corrupt safetensors file ({str(e).splitlines()[0]})") from None
    if pt.exists():
        try:
            sd = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # UnpicklingError for code-running pickles, RuntimeError/EOFError for truncation
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "weights_only" in str(e) or "Unsupported global" in str(e) or "GLOBAL" in str(e):
                raise CheckpointError(f"{pt}: refusing to load: the pickle contains objects other than tensors") from None
            raise CheckpointError(f"{pt}: cannot read ({msg})") from None
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
    raise CheckpointError(f"{directory}: config.json is not a perfmamba, transformers Mamba or mamba-ssm config")


def _from_transformers_config(c: dict) -> ModelConfig:
    mt = c["model_type"]
    common = dict(
        d_model=c["hidden_size"], n_layer=c["num_hidden_layers"], vocab_size=c["vocab_size"],
        pad_vocab_size_multiple=1, d_state=c["state_size"], d_conv=c.get("conv_kernel", 4),
        expand=c.get("expand", 2), bias=c.get("use_bias", False), conv_bias=c.get("use_conv_bias", True),
        rms_norm_eps=c.get("layer_norm_epsilon", 1e-5), residual_in_fp32=c.get("residual_in_fp32", True),
        tie_embeddings=c.get("tie_word_embeddings", mt == "mamba"),
    )
    if c.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"unsupported hidden_act {c['hidden_act']!r} (only silu)")
    if mt == "mamba":
        if int(c.get("intermediate_size", common["expand"] * common["d_model"])) != common["expand"] * common["d_model"]:
            raise CheckpointError("unsupported: intermediate_size != expand * hidden_size")
        return ModelConfig(arch="mamba1", dt_rank=c.get("time_step_rank", "auto"), **common)
    lim = c.get("time_step_limit", (0.0, float("inf")))
    if lim is not None and (_as_float(lim[0]) != 0.0 or not math.isinf(_as_float(lim[1]))):
        raise CheckpointError(f"unsupported time_step_limit {lim} (only (0, inf))")
    if c["num_heads"] * c["head_dim"] != common["expand"] * common["d_model"]:
        raise CheckpointError("unsupported: num_heads * head_dim != expand * hidden_size")
    return ModelConfig(arch="mamba2", headdim=c["head_dim"], ngroups=c.get("n_groups", 1),
                       chunk_size=c.get("chunk_size", 256), **common)


def _as_float(v) -> float:
    """JSON floats as written by transformers ({"__float__": "Infinity"}), strings or numbers."""
    if isinstance(v, dict) and "__float__" in v:
        v = v["__float__"]
    return float(v)


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
    mapping = {"d_state": "d_state", "d_conv": "d_conv", "expand": "expand", "conv_bias": "conv_bias",
               "bias": "bias", "dt_rank": "dt_rank", "headdim": "headdim", "ngroups": "ngroups",
               "chunk_size": "chunk_size", "dt_min": "dt_min", "dt_max": "dt_max", "dt_init_floor": "dt_init_floor"}
    for k, v in ssm.items():
        if k in mapping:
            kw[mapping[k]] = v
        elif k in ("rmsnorm", "norm_before_gate", "d_ssm", "dt_limit", "D_has_hdim"):
            default = {"rmsnorm": True, "norm_before_gate": False, "d_ssm": None, "dt_limit": [0.0, float("inf")],
                       "D_has_hdim": False}[k]
            if v != default and not (k == "dt_limit" and _as_float(v[0]) == 0.0 and math.isinf(_as_float(v[1]))):
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


def _to_ours(sd: dict, fmt: str) -> dict:
    if fmt == "transformers":
        return {("backbone.embedding." + k[len("backbone.embeddings."):]) if k.startswith("backbone.embeddings.") else k: v
                for k, v in sd.items()}
    return dict(sd)


# writing -------------------------------------------------------------------------------------------------
def _transformers_config(cfg: ModelConfig) -> dict:
    n = cfg.uniform_d_state
    if n is None:
        raise CheckpointError(f"transformers format needs one d_state for all layers; this model has {cfg.d_states} "
                              "(save it in the perfmamba format)")
    common = {
        "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layer, "vocab_size": cfg.padded_vocab_size,
        "state_size": n, "conv_kernel": cfg.d_conv, "expand": cfg.expand, "use_bias": cfg.bias,
        "use_conv_bias": cfg.conv_bias, "hidden_act": "silu", "layer_norm_epsilon": cfg.rms_norm_eps,
        "residual_in_fp32": cfg.residual_in_fp32, "tie_word_embeddings": cfg.tie_embeddings,
        "time_step_rank": cfg.dt_rank_value, "time_step_min": cfg.dt_min, "time_step_max": cfg.dt_max,
        "time_step_floor": cfg.dt_init_floor, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0,
    }
    if cfg.arch == "mamba1":
        return {"model_type": "mamba", "architectures": ["MambaForCausalLM"],
                "intermediate_size": cfg.d_inner, **common}
    return {"model_type": "mamba2", "architectures": ["Mamba2ForCausalLM"], "num_heads": cfg.nheads,
            "head_dim": cfg.headdim, "n_groups": cfg.ngroups, "chunk_size": cfg.chunk_size, "rms_norm": True,
            **common}


def _mamba_ssm_config(cfg: ModelConfig) -> dict:
    n = cfg.uniform_d_state
    if n is None:
        raise CheckpointError(f"mamba_ssm format needs one d_state for all layers; this model has {cfg.d_states} "
                              "(save it in the perfmamba format)")
    ssm = {"layer": "Mamba1" if cfg.arch == "mamba1" else "Mamba2", "d_state": n, "d_conv": cfg.d_conv,
           "expand": cfg.expand, "conv_bias": cfg.conv_bias, "bias": cfg.bias}
    if cfg.arch == "mamba1":
        ssm["dt_rank"] = cfg.dt_rank
    else:
        ssm.update(headdim=cfg.headdim, ngroups=cfg.ngroups, chunk_size=cfg.chunk_size)
    return {"d_model": cfg.d_model, "d_intermediate": 0, "n_layer": cfg.n_layer, "vocab_size": cfg.vocab_size,
            "ssm_cfg": ssm, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True,
            "residual_in_fp32": cfg.residual_in_fp32, "fused_add_norm": True,
            "pad_vocab_size_multiple": cfg.pad_vocab_size_multiple, "tie_embeddings": cfg.tie_embeddings}


def _weights_for(model, fmt: str) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        sd.pop("lm_head.weight")
    if fmt == "transformers":
        sd = {("backbone.embeddings." + k[len("backbone.embedding."):]) if k.startswith("backbone.embedding.") else k: v
              for k, v in sd.items()}
    return sd


def save(model, directory, format: str = "perfmamba", *, overwrite: bool = False, tokenizer_from=None) -> Path:
    """Write `model` to `directory` atomically. Tokenizer files beside the model's source are copied along."""
    from safetensors.torch import save_file

    if format not in FORMATS:
        raise CheckpointError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())) and not overwrite:
        raise CheckpointError(f"{directory}: already exists and is not empty (pass overwrite=True / --force)")
    cfg = model.config
    if format == "perfmamba":
        meta = {"format": "perfmamba", "version": FORMAT_VERSION, "config": cfg.to_dict()}
    elif format == "transformers":
        meta = _transformers_config(cfg)
    else:
        meta = _mamba_ssm_config(cfg)
    sd = _weights_for(model, format)
    with atomic_dir(directory) as tmp:
        (tmp / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        src = Path(tokenizer_from) if tokenizer_from else Path(getattr(model, "source", "") or "/nonexistent")
        if src.is_dir():
            for name in TOKENIZER_FILES:
                if (src / name).exists():
                    shutil.copy2(src / name, tmp / name)
    return directory
