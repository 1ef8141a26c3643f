"""Model configuration and named presets.

`ModelConfig` describes a Mamba-1 or Mamba-2 language model. `d_state` is either one int (all layers) or a
list with one value per layer, which is how state-pruned models are described.

Preset shapes follow the state-spaces checkpoints (mamba-ssm ``MambaConfig`` defaults: vocab 50277 padded
to a multiple of 8, tied embeddings, d_conv 4, expand 2; Mamba-2: headdim 64, ngroups 1, chunk 256).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .errors import ConfigError

ARCHS = ("mamba1", "mamba2")


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


@dataclass
class ModelConfig:
    arch: str  # "mamba1" | "mamba2"
    d_model: int
    n_layer: int
    vocab_size: int = 50277  # before padding; the embedding has `padded_vocab_size` rows
    d_state: int | list[int] = 16  # N, per model or per layer
    d_conv: int = 4
    expand: int = 2
    pad_vocab_size_multiple: int = 8
    tie_embeddings: bool = True
    rms_norm_eps: float = 1e-5
    residual_in_fp32: bool = True
    conv_bias: bool = True
    bias: bool = False  # in_proj / out_proj bias
    # Mamba-1
    dt_rank: int | str = "auto"  # "auto" = ceil(d_model / 16)
    # Mamba-2
    headdim: int = 64
    ngroups: int = 1
    chunk_size: int = 256
    # initialisation (mamba-ssm defaults)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    initializer_range: float = 0.02
    seed: int = 0
    extra: dict = field(default_factory=dict)  # free-form provenance (e.g. source checkpoint)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        for name in ("d_model", "n_layer", "vocab_size", "d_conv", "expand", "pad_vocab_size_multiple"):
            if not _positive_int(v := getattr(self, name)):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.d_state, list) and len(self.d_state) != self.n_layer:
            raise ConfigError(f"d_state lists {len(self.d_state)} values for {self.n_layer} layers")
        if bad := [s for s in self.d_states if not _positive_int(s)]:
            raise ConfigError(f"d_state values must be integers >= 1, got {bad[0]!r}")
        self.d_state = self.uniform_d_state or self.d_state  # one value for all layers: an int
        if self.arch == "mamba2":
            if self.d_inner % self.headdim:
                raise ConfigError(f"d_inner {self.d_inner} is not a multiple of headdim {self.headdim}")
            if self.nheads % self.ngroups:
                raise ConfigError(f"nheads {self.nheads} is not a multiple of ngroups {self.ngroups}")

    # derived sizes -----------------------------------------------------------------------------------
    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def nheads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def dt_rank_value(self) -> int:
        return math.ceil(self.d_model / 16) if self.dt_rank == "auto" else int(self.dt_rank)

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return self.vocab_size + (-self.vocab_size) % m

    @property
    def d_states(self) -> list[int]:
        """N per layer."""
        return list(self.d_state) if isinstance(self.d_state, list) else [self.d_state] * self.n_layer

    @property
    def uniform_d_state(self) -> int | None:
        s = set(self.d_states)
        return s.pop() if len(s) == 1 else None

    def conv_dim(self, layer: int) -> int:
        """Channels of the depthwise conv: x for Mamba-1, xBC for Mamba-2."""
        if self.arch == "mamba1":
            return self.d_inner
        return self.d_inner + 2 * self.ngroups * self.d_states[layer]

    def in_proj_dim(self, layer: int) -> int:
        if self.arch == "mamba1":
            return 2 * self.d_inner
        return self.d_inner + self.conv_dim(layer) + self.nheads  # [z, xBC, dt]

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    # serialisation -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        try:
            return cls(**d)
        except TypeError as e:  # missing required keys
            raise ConfigError(f"incomplete config: {e}") from None


# (d_model, n_layer) of the state-spaces checkpoints (github.com/state-spaces/mamba README, configs on the
# hub), then small models for tests and the CPU pipeline. Parameter counts: tests/test_config.py.
_MAMBA1 = {"mamba-130m": (768, 24), "mamba-370m": (1024, 48), "mamba-790m": (1536, 48),
           "mamba-1.4b": (2048, 48), "mamba-2.8b": (2560, 64)}
_MAMBA2 = {"mamba2-130m": (768, 24), "mamba2-370m": (1024, 48), "mamba2-780m": (1536, 48),
           "mamba2-1.3b": (2048, 48), "mamba2-2.7b": (2560, 64)}
PRESETS: dict[str, ModelConfig] = {
    **{name: ModelConfig("mamba1", d_model=d, n_layer=n, d_state=16) for name, (d, n) in _MAMBA1.items()},
    **{name: ModelConfig("mamba2", d_model=d, n_layer=n, d_state=128) for name, (d, n) in _MAMBA2.items()},
    # tiny models for tests (odd sizes on purpose)
    "mamba-tiny": ModelConfig(arch="mamba1", d_model=32, n_layer=2, vocab_size=251, d_state=13),
    "mamba2-tiny": ModelConfig(
        arch="mamba2", d_model=32, n_layer=2, vocab_size=251, d_state=13, headdim=16, ngroups=1, chunk_size=16
    ),
    # small models trained by the CPU pipeline (vocab set by the trained tokenizer)
    "mamba-small": ModelConfig(arch="mamba1", d_model=256, n_layer=4, vocab_size=4096, d_state=16),
    "mamba2-small": ModelConfig(
        arch="mamba2", d_model=256, n_layer=4, vocab_size=4096, d_state=64, headdim=32, chunk_size=64
    ),
}


def preset(name: str, **overrides) -> ModelConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)
