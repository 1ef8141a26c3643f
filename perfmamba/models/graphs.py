"""CUDA-graph decoding: capture one `MambaLM` decode step on static buffers, replay it per token.

Eager decoding of a small Mamba is bound by kernel launches (Mamba2-130M: 26.6 ms/token eager against 1.18 ms
with one graph per step on an H100, ../shared/gpu/README.md), so decode latency is only meaningful with graphs.
This follows mamba-ssm's `utils/generation.py` `capture_graph` (state-spaces/mamba@v2.2.4): warm up on a side
stream, capture one step whose inputs (token ids, cache tensors) live at fixed addresses, then per token copy the
ids in and replay.

    step = GraphedStep(model, cache)    # captures
    logits = step(next_ids)             # (b, padded_vocab), a static buffer overwritten by the next call
"""
from __future__ import annotations

import torch

from .cache import MambaCache


def decode_body(model, ids: torch.Tensor, cache: MambaCache) -> torch.Tensor:
    """One decode step of `MambaLM` without host synchronisation: ids (b,) → logits (b, padded_vocab).

    Same computation as `MambaLM.step` (embedding → layers with the cache → norm_f → lm_head), minus the token
    range check in `MambaLM.forward`, which reads min/max back to the host and so cannot be captured.
    """
    x = model.backbone.embedding(ids[:, None])  # (b, 1, d_model)
    return model.lm_head(model.run_layers(x, cache))[:, 0]


class GraphedStep:
    """A captured decode step of `model` on `cache` (a `MambaCache` on the model's CUDA device).

    Capture does not change the cache: the warm-up steps run on a snapshot that is restored afterwards.
    Each call advances the cache by one token, like `model.step`.
    """

    def __init__(self, model, cache: MambaCache, *, warmup: int = 3):
        dev = cache.ssm_states[0].device
        if dev.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA cache, got {dev}")
        self.model, self.cache = model, cache
        self.ids = torch.zeros(cache.batch_size, dtype=torch.long, device=dev)
        snapshot = [t.clone() for t in cache.conv_states + cache.ssm_states]
        with torch.inference_mode():
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):  # compile Triton kernels and let the allocator settle off the capture
                for _ in range(warmup):
                    decode_body(model, self.ids, cache)
            torch.cuda.current_stream(dev).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = decode_body(model, self.ids, cache)
            for t, s in zip(cache.conv_states + cache.ssm_states, snapshot):
                t.copy_(s)
        torch.cuda.synchronize(dev)

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        self.ids.copy_(ids)
        self.graph.replay()
        self.cache.seqlen_offset += 1
        return self.logits
