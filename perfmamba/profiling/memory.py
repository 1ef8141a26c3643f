"""Memory, defined. What each number means (the paper's Table 1 does not say; see book/deviations.md):

weights_bytes       unique parameters and buffers of the model (a tied embedding counted once).
ssm_state_bytes,    the decode cache for the batch: `MambaCache.nbytes()` (recurrent state h and the last
conv_state_bytes    d_conv conv inputs, summed over layers).
activation_peak     per component: the largest rise of allocated bytes above the level at the component's
                    start, while it runs (max over its calls). On a GPU from the CUDA caching allocator
                    (`torch.cuda.max_memory_allocated`, reset at every component boundary); on CPU, and
                    as a second method on GPU, from the allocation records of a `torch.profiler` trace
                    with ``profile_memory=True`` (every allocation and free with its size and timestamp,
                    replayed in time order). No tracemalloc: torch's allocations do not pass through it.
peak_memory         for the whole call: weights + cache + inputs + the call's activation peak (its rise of
                    allocated bytes above the level before it: on a GPU from the caching allocator, on CPU
                    from the trace), so tensors of anything else alive in the process do not count.
sum_of_allocations  the sum of the sizes of all allocations during the call (frees ignored), per component
                    and in total. It is not a footprint: it can exceed the device's memory many times,
                    which is how the paper's Table 1 "memory" values can exceed the GPU's 80 GB. Reported,
                    labelled, only to explain those values.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pandas as pd
import torch

from ..models.cache import MambaCache


def weight_bytes(model) -> int:
    """Bytes of unique parameters and buffers."""
    unique = {id(t): t for t in list(model.parameters()) + list(model.buffers())}  # parameters() dedupes ties
    return sum(t.numel() * t.element_size() for t in unique.values())


def cache_bytes(model, batch: int, dtype=torch.float32) -> dict[str, int]:
    """{"ssm_state": …, "conv_state": …} for a batch, from `MambaCache.nbytes()` (allocated on the meta
    device, so nothing is materialised)."""
    return MambaCache.allocate(model.config, batch, device="meta", dtype=dtype).nbytes()


def input_bytes(batch: int, seqlen: int, phase: str) -> int:
    """The call's token ids (int64): B × L for a prefill, B for a decode step."""
    return batch * (seqlen if phase == "prefill" else 1) * 8


def own_peak(rows):
    """`peak_memory` of profile rows recomputed from the rows themselves: for every point with an
    `activation_peak` row of component "total", weights + ssm_state + conv_state (`memory` rows of the same
    point) + `input_bytes` + that rise. Returns a DataFrame of the point's key columns and `value`; how the
    committed GPU rows' `peak_memory` was derived from their allocator readings (data/README.md)."""
    key = [c for c in ("model", "arch", "path", "fused", "phase", "batch", "seqlen", "d_state", "ratio",
                       "criterion", "mode", "dtype", "state_dtype") if c in rows]
    mem = rows[rows["metric"] == "memory"].pivot_table(index=key, columns="component", values="value",
                                                       aggfunc="first", dropna=False)
    rise = rows[(rows["metric"] == "activation_peak") & (rows["component"] == "total")]
    out = rise.join(mem[["weights", "ssm_state", "conv_state"]], on=key, how="inner")
    inputs = [input_bytes(int(b), int(L), ph) for b, L, ph in zip(out["batch"], out["seqlen"], out["phase"])]
    inputs = pd.Series(inputs, index=out.index)
    value = out["weights"] + out["ssm_state"] + out["conv_state"] + inputs + out["value"]
    return out[key + ["method", "cuda_graph"]].assign(value=value).reset_index(drop=True)


@dataclass
class TraceMemory:
    """Allocation accounting of one profiler trace (bytes)."""

    activation_peak: dict[str, int]  # per label: max rise while it runs
    sum_of_allocations: dict[str, int]  # per innermost label ("other" outside every label)
    peak: int  # max rise over the whole trace above its starting level
    per_range_peak: list[int]  # max rise within each `iteration_label` range


def trace_memory(prof, labels, device_type: str = "cpu", iteration_label: str | None = None) -> TraceMemory:
    """Replay the trace's allocation records against its label ranges (see the module docstring).

    A sweep over time: range starts push a frame holding the allocated level at entry, records move the
    level and raise every open frame's peak, range ends pop. Ranges named `iteration_label` bound the peak of
    each repetition but are not components (allocations in them count as "other").
    """
    comp = set(labels)
    names = comp | ({iteration_label} if iteration_label else set())
    ranges = [e for e in prof.events() if e.name in names and str(e.device_type).endswith("CPU")]
    # at equal times: range starts (0), then records (1), then range ends (2)
    events = [(e.time_range.start, 0, e.name) for e in ranges]
    events += [(e.time_range.end, 2, e.name) for e in ranges]
    # (time in µs since the trace start, 1, ±bytes) of every allocation (+) and free (−) on the device, from
    # the kineto results, which keep each record's own timestamp (the aggregated FunctionEvents fold
    # allocations inside an op into the op)
    kr, want = prof.profiler.kineto_results, torch.device(device_type).type
    t0 = kr.trace_start_ns()
    events += [((e.start_ns() - t0) / 1e3, 1, int(e.nbytes())) for e in kr.events()
               if e.name() == "[memory]" and str(e.device_type()).split(".")[-1].lower() == want]
    events.sort(key=lambda x: (x[0], x[1]))
    level, top = 0, 0
    stack: list[list] = []  # [name, base, peak]
    peaks: dict[str, int] = defaultdict(int)
    allocs: dict[str, int] = defaultdict(int)
    per_range: list[int] = []
    for _, kind, payload in events:
        if kind == 0:
            stack.append([payload, level, level])
        elif kind == 1:
            level += payload
            top = max(top, level)
            for f in stack:
                f[2] = max(f[2], level)
            if payload > 0:
                inner = next((f[0] for f in reversed(stack) if f[0] in comp), "other")
                allocs[inner] += payload
        else:
            # ranges nest on one thread; tolerate a stray end by searching down the stack
            for j in range(len(stack) - 1, -1, -1):
                if stack[j][0] == payload:
                    name, base, peak = stack.pop(j)
                    if name == iteration_label and name not in comp:
                        per_range.append(peak - base)
                    else:
                        peaks[name] = max(peaks[name], peak - base)
                    if j > 0:  # an inner frame's peak is also its parent's
                        stack[j - 1][2] = max(stack[j - 1][2], peak)
                    break
    return TraceMemory(dict(peaks), dict(allocs), top, per_range)


class CudaPeaks:
    """Allocator peaks per component on a GPU, nested correctly: every boundary folds the running
    `max_memory_allocated` into the enclosing frame before resetting it."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.stack: list[list] = []  # [name, base, peak_so_far]
        self.peaks: dict[str, int] = defaultdict(int)

    def enter(self, name: str):
        cur_max = torch.cuda.max_memory_allocated(self.device)
        if self.stack:
            self.stack[-1][2] = max(self.stack[-1][2], cur_max)
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        self.stack.append([name, base, base])

    def exit(self, name: str):
        peak = max(self.stack[-1][2], torch.cuda.max_memory_allocated(self.device))
        _, base, _ = self.stack.pop()
        self.peaks[name] = max(self.peaks[name], peak - base)
        if self.stack:
            self.stack[-1][2] = max(self.stack[-1][2], peak)
