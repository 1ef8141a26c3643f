"""The language model: embedding → n_layer × (x + mixer(rmsnorm(x))) → rmsnorm → lm_head (tied by default).

Parameter names follow mamba-ssm's `MambaLMHeadModel` (backbone.embedding, backbone.layers.{i}.norm/mixer,
backbone.norm_f, lm_head), so the mamba-ssm format is our state dict as it is.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.profiler import record_function

from ..config import ModelConfig
from ..formats import save as save_checkpoint
from ..ops.backends import get_ops
from .cache import MambaCache
from .common import RMSNorm, check_backend
from .mamba1 import Mamba1Mixer
from .mamba2 import Mamba2Mixer


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.norm = RMSNorm(config.d_model, config.rms_norm_eps)
        mixer = Mamba1Mixer if config.arch == "mamba1" else Mamba2Mixer
        self.mixer = mixer(config, layer_idx)
        self.residual_in_fp32 = config.residual_in_fp32

    def forward(self, x, conv_state=None, ssm_state=None):
        residual = x.float() if self.residual_in_fp32 else x
        out = self.mixer(self.norm(x, get_ops(self.mixer.backend)), conv_state, ssm_state)
        return (residual + out).to(x.dtype)


class Backbone(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.padded_vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.norm_f = RMSNorm(config.d_model, config.rms_norm_eps)


class MambaLM(nn.Module):
    """A Mamba-1 or Mamba-2 language model. `model(input_ids)` → logits (b, l, padded_vocab)."""

    def __init__(self, config: ModelConfig, *, init: bool = True):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight
        if init:
            self._init_weights()

    @classmethod
    def from_config(cls, config: ModelConfig) -> "MambaLM":
        """Random initialisation, deterministic for `config.seed`."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return cls(config)

    def _init_weights(self):
        # mamba-ssm `_init_weights`: embeddings N(0, 0.02); linear biases zero except dt_proj; out_proj
        # rescaled by 1/sqrt(n_layer) ("rescale_prenorm_residual").
        nn.init.normal_(self.backbone.embedding.weight, std=self.config.initializer_range)
        for name, m in self.named_modules():
            if isinstance(m, nn.Linear) and m.bias is not None and not name.endswith("dt_proj"):
                nn.init.zeros_(m.bias)
        for layer in self.backbone.layers:
            w = layer.mixer.out_proj.weight
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            with torch.no_grad():
                w /= math.sqrt(self.config.n_layer)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=self.config.initializer_range)

    # compute path: held by the mixers, set for all of them ---------------------------------------------
    @property
    def backend(self) -> str:
        return self.backbone.layers[0].mixer.backend

    @backend.setter
    def backend(self, name: str):
        for layer in self.backbone.layers:
            layer.mixer.backend = check_backend(name)

    @property
    def fused_decode(self) -> bool:
        """Whether a decode step uses the fused step kernels of the backend, where it has them (`triton`: the
        residual add with the next RMSNorm, and per layer `mamba2_step` / `mamba1_step`). On by default; off runs
        the step op by op, with every component in its own profiler range."""
        return self.backbone.layers[0].mixer.fused_decode

    @fused_decode.setter
    def fused_decode(self, on: bool):
        for layer in self.backbone.layers:
            layer.mixer.fused_decode = bool(on)

    # forward / decode --------------------------------------------------------------------------------
    def allocate_cache(self, batch_size: int, dtype=torch.float32) -> MambaCache:
        return MambaCache.allocate(self.config, batch_size, device=self.lm_head.weight.device, dtype=dtype)

    def forward(self, input_ids: torch.Tensor, cache: MambaCache | None = None, *, return_hidden: bool = False):
        """input_ids: (b, l) → logits (b, l, padded_vocab). With `cache`, continues from it and advances it:
        a single token takes the one-step decode path, longer inputs the chunked prefill path."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        vocab = self.config.padded_vocab_size
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
            raise ValueError(f"token ids must lie in [0, {vocab}), got [{int(input_ids.min())}, {int(input_ids.max())}]")
        with record_function("embedding"):
            x = self.backbone.embedding(input_ids)
        x = self.run_layers(x, cache)
        if cache is not None:
            cache.seqlen_offset += input_ids.shape[1]
        if return_hidden:
            return x
        with record_function("lm_head"):
            return self.lm_head(x)

    def run_layers(self, x: torch.Tensor, cache: MambaCache | None = None) -> torch.Tensor:
        """Embedded tokens (b, l, d_model) → the normalised hidden states the LM head reads (norm_f included).

        On a backend with `add_rmsnorm` (`triton`), each block's residual add runs fused with the next block's
        RMSNorm (or norm_f), one read and one write of the residual stream instead of four passes: same values as
        the blocks' own code. A decode step with `fused_decode` off keeps the blocks' op-by-op code."""
        ops = get_ops(self.backend)
        layers = self.backbone.layers
        add_norm = getattr(ops, "add_rmsnorm", None)
        if cache is not None and x.shape[1] == 1 and not self.fused_decode:
            add_norm = None
        # per layer () or (conv_state, ssm_state)
        states = [()] * len(layers) if cache is None else list(zip(cache.conv_states, cache.ssm_states))
        if add_norm is None:
            for layer, st in zip(layers, states):
                x = layer(x, *st)
            return self.backbone.norm_f(x, ops)
        normed = layers[0].norm(x, ops)
        for i, (layer, st) in enumerate(zip(layers, states)):
            out = layer.mixer(normed, *st)
            norm = layers[i + 1].norm if i + 1 < len(layers) else self.backbone.norm_f
            with record_function("rmsnorm"):
                x, normed = add_norm(x, out, norm.weight, norm.eps)
        return normed

    def step(self, input_ids: torch.Tensor, cache: MambaCache) -> torch.Tensor:
        """One decode step. input_ids: (b,) → logits (b, padded_vocab)."""
        return self(input_ids[:, None], cache)[:, 0]

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, *, eos_token_id: int | None = None,
                 temperature: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Greedy (temperature 0) or sampled continuation using the state cache. Returns (b, l + new)."""
        cache = self.allocate_cache(input_ids.shape[0])
        logits = self(input_ids, cache)[:, -1]
        out = [input_ids]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            logits = logits[:, : self.config.vocab_size].float()
            if temperature > 0:
                probs = torch.softmax(logits / temperature, -1)
                nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
            else:
                nxt = logits.argmax(-1)
            if eos_token_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, eos_token_id), nxt)
                done |= nxt == eos_token_id
            out.append(nxt[:, None])
            if eos_token_id is not None and bool(done.all()):
                break
            logits = self.step(nxt, cache)
        return torch.cat(out, dim=1)

    # bookkeeping -------------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Unique parameters (a tied embedding counted once)."""
        return sum(p.numel() for p in self.parameters())

    def save(self, directory, format: str = "perfmamba", **kwargs):
        return save_checkpoint(self, directory, format=format, **kwargs)
