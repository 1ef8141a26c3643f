"""State surgery: turn kept state indices into a new model, in three modes.

Where the states live (mamba-ssm @ v2.2.4 layouts, the same in our mixers and in transformers):

- Mamba-2: in_proj rows [z (d) | x (d) | B (g·N) | C (g·N) | dt (h)]; the depthwise conv1d runs over
  xBC = [x | B | C]. State s of group j is produced by in_proj row 2d + jN + s (B) and 2d + gN + jN + s
  (C), and conv channel d + jN + s / d + gN + jN + s. Pruning state s drops it in every group.
- Mamba-1: x_proj rows [dt_low (r) | B (N) | C (N)]; A_log (d, N) has one column per state.

Modes (all give the same logits for the same kept states; the tests check it in float64):

- ``zeroed``: shapes unchanged; the B and C rows of pruned states are zeroed, so h_s stays 0 and adds
  nothing to y. Mamba-2's B and C pass through the conv and a silu (silu(0) = 0 needs a zero conv output),
  so those channels' conv weights and bias are zeroed too (and the in_proj bias rows, when there is one).
- ``removed``: physically smaller: the rows, conv channels and A_log columns of pruned states are cut;
  `config.d_state` becomes the per-layer kept counts, so the state cache shrinks with it.
- ``bridge``: the paper's W_bridge ∈ R^{N×N′}, here one-hot: W[kept[j], j] = 1. The mixers compute with
  the N′ kept states (the ``removed`` weights); all else stays N-sized (config, `allocate_cache`). At every
  cached call the mixer gathers h′ = h W_bridge (and the kept conv channels), runs, and scatters
  h = h′ W_bridgeᵀ back (pruned states and channels read 0). Saving scatters the weights the same way: the
  checkpoint is exactly the ``zeroed`` model, loadable by anything that loads the original shape.
"""
from __future__ import annotations

import copy

import torch

from ..models.lm import MambaLM
from ..models.mamba1 import Mamba1Mixer
from ..models.mamba2 import Mamba2Mixer
from .selection import PruningError


# index maps -------------------------------------------------------------------------------------------------
def _bc(offset: int, g: int, n: int, states: torch.Tensor) -> torch.Tensor:
    """(2g, k) positions of B_s then C_s for each group, starting at `offset` (the first B row)."""
    j = torch.arange(g)[:, None] * n
    return torch.cat([offset + j + states[None], offset + g * n + j + states[None]])


def bc_rows(mixer, states: torch.Tensor) -> torch.Tensor:
    """Projection rows producing B_s and C_s: Mamba-2 in_proj (2g, k), Mamba-1 x_proj (2, k)."""
    states = torch.as_tensor(states, dtype=torch.long)
    if isinstance(mixer, Mamba2Mixer):
        return _bc(2 * mixer.d_inner, mixer.ngroups, mixer.d_state, states)
    return _bc(mixer.dt_rank, 1, mixer.d_state, states)


def state_entries(mixer, states) -> dict[str, tuple[int, torch.Tensor]]:
    """For each tensor that holds states: (dim, positions of the entries of `states` along it)."""
    states = torch.as_tensor(states, dtype=torch.long)
    rows = bc_rows(mixer, states).flatten()
    if isinstance(mixer, Mamba1Mixer):
        return {"x_proj.weight": (0, rows), "A_log": (1, states)}
    ch = _bc(mixer.d_inner, mixer.ngroups, mixer.d_state, states).flatten()  # B and C pass through the conv
    params = dict(mixer.named_parameters())
    entries = {"in_proj.weight": rows, "in_proj.bias": rows, "conv1d.weight": ch, "conv1d.bias": ch}
    return {name: (0, idx) for name, idx in entries.items() if name in params}


def _pruned(n_state: int, kept: torch.Tensor) -> torch.Tensor:
    return torch.tensor(sorted(set(range(n_state)) - set(kept.tolist())), dtype=torch.long)


def keep_maps(mixer, kept: torch.Tensor) -> dict[str, tuple[int, torch.Tensor]]:
    """For each tensor that holds states: (dim, positions in the full tensor of the reduced one's entries)."""
    maps = {}
    for name, (dim, idx) in state_entries(mixer, _pruned(mixer.d_state, kept)).items():
        keep = torch.ones(mixer.get_parameter(name).shape[dim], dtype=torch.bool)
        keep[idx] = False
        maps[name] = (dim, keep.nonzero().flatten())
    return maps


def _check_kept(model, kept) -> list[torch.Tensor]:
    n = model.config.d_states
    if len(kept) != len(n):
        raise PruningError(f"kept indices given for {len(kept)} layers, the model has {len(n)}")
    out = []
    for i, (k, ni) in enumerate(zip(kept, n)):
        k = torch.as_tensor(k, dtype=torch.long).flatten().cpu()
        if k.numel() == 0:
            raise PruningError(f"layer {i}: no state kept (every layer keeps at least one)")
        if int(k.min()) < 0 or int(k.max()) >= ni or k.unique().numel() != k.numel():
            raise PruningError(f"layer {i}: kept indices must be distinct and lie in [0, {ni})")
        out.append(k.sort().values)
    return out


# modes ------------------------------------------------------------------------------------------------------
@torch.no_grad()
def zeroed(model: MambaLM, kept) -> MambaLM:
    """A deep copy with the B/C rows (and Mamba-2 conv channels) of pruned states set to zero."""
    kept = _check_kept(model, kept)
    new = copy.deepcopy(model)
    for layer, k in zip(new.backbone.layers, kept):
        for name, (dim, idx) in state_entries(layer.mixer, _pruned(layer.mixer.d_state, k)).items():
            if name != "A_log":  # with B_s = 0, h_s stays 0 whatever its decay
                t = layer.mixer.get_parameter(name)
                t.index_fill_(dim, idx.to(t.device), 0)
    return new


@torch.no_grad()
def removed(model: MambaLM, kept) -> MambaLM:
    """A new, smaller model holding only the kept states; config.d_state = per-layer kept counts."""
    kept = _check_kept(model, kept)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    for i, (layer, k) in enumerate(zip(model.backbone.layers, kept)):
        prefix = f"backbone.layers.{i}.mixer."
        for name, (dim, idx) in keep_maps(layer.mixer, k).items():
            t = sd[prefix + name]
            sd[prefix + name] = t.index_select(dim, idx.to(t.device))
    cfg = copy.deepcopy(model.config).replace(d_state=[int(k.numel()) for k in kept])
    with torch.device("meta"):
        new = MambaLM(cfg, init=False)
    new.load_state_dict(sd, assign=True)
    if cfg.tie_embeddings:
        new.lm_head.weight = new.backbone.embedding.weight
    for name in ("source", "source_format"):
        if hasattr(model, name):
            setattr(new, name, getattr(model, name))
    new.backend, new.fused_decode = model.backend, model.fused_decode
    return new.train(model.training)


class _BridgeMixin:
    """Adds W_bridge to a mixer built with the N′ kept states (see the module docstring)."""

    def _attach_bridge(self, full, kept: torch.Tensor):
        """W_bridge and the index maps into `full`, the N-state mixer whose `kept` states this one runs."""
        p = self.in_proj.weight
        maps = keep_maps(full, kept)
        self._full_maps = {name: (dim, idx, full.get_parameter(name).shape[dim])  # (dim, positions, N-size)
                           for name, (dim, idx) in maps.items()}
        conv_keep = maps["conv1d.weight"][1].to(p.device) if "conv1d.weight" in maps else None  # Mamba-2
        # W_bridge (N, N′), one-hot: W[kept[j], j] = 1
        bridge = torch.eye(full.d_state, dtype=p.dtype, device=p.device)[:, kept.to(p.device)]
        self.register_buffer("bridge", bridge, persistent=False)
        self.register_buffer("conv_keep", conv_keep, persistent=False)
        self.register_state_dict_post_hook(_scatter_state_dict)
        self.register_load_state_dict_pre_hook(_gather_state_dict)

    def forward(self, hidden, conv_state=None, ssm_state=None):
        if ssm_state is None:
            return super().forward(hidden, conv_state, None)
        W = self.bridge.to(ssm_state.dtype)
        inner = ssm_state @ W  # (..., N′): gather the kept states
        conv = conv_state
        if conv_state is not None and self.conv_keep is not None:
            conv = conv_state.index_select(1, self.conv_keep)  # (b, conv_dim′, w)
        out = super().forward(hidden, conv, inner)
        ssm_state.copy_(inner @ W.t())  # (..., N): scatter back, pruned states read 0
        if conv is not conv_state:
            conv_state.zero_().index_copy_(1, self.conv_keep, conv)
        return out


class BridgedMamba1Mixer(_BridgeMixin, Mamba1Mixer):
    pass


class BridgedMamba2Mixer(_BridgeMixin, Mamba2Mixer):
    pass


def _scatter_state_dict(module, state_dict, prefix, local_metadata):
    """Saving: write the N-state tensors, zero where a state was pruned."""
    for name, (dim, idx, size) in module._full_maps.items():
        t = state_dict[prefix + name]
        shape = list(t.shape)
        shape[dim] = size
        state_dict[prefix + name] = t.new_zeros(shape).index_copy_(dim, idx.to(t.device), t)


def _gather_state_dict(module, state_dict, prefix, *args):
    """Loading N-state tensors (as saved) into a bridged mixer: keep the kept states' entries."""
    for name, (dim, idx, size) in module._full_maps.items():
        t = state_dict.get(prefix + name)
        if t is not None and t.shape[dim] == size:
            state_dict[prefix + name] = t.index_select(dim, idx.to(t.device))


def is_bridged(mixer) -> bool:
    return isinstance(mixer, _BridgeMixin)


@torch.no_grad()
def bridge(model: MambaLM, kept) -> MambaLM:
    """N′-state mixers behind a one-hot W_bridge (N×N′); N-sized config, cache and checkpoints."""
    kept = _check_kept(model, kept)
    small = removed(model, kept)
    for layer, small_layer, k in zip(model.backbone.layers, small.backbone.layers, kept):
        full, m = layer.mixer, small_layer.mixer
        cls = BridgedMamba2Mixer if isinstance(m, Mamba2Mixer) else BridgedMamba1Mixer
        with torch.device("meta"):
            b = cls(small.config, m.layer_idx)
        b.load_state_dict(m.state_dict(), assign=True)
        b.backend, b.fused_decode = m.backend, m.fused_decode
        b._attach_bridge(full, k)
        small_layer.mixer = b
    small.config = copy.deepcopy(model.config)
    return small


MODES = {"removed": removed, "zeroed": zeroed, "bridge": bridge}
