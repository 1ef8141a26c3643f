"""Where the time goes: per-component attribution of prefill and decode, by two independent methods.

The models mark their components with `torch.profiler.record_function` ranges (`embedding`, `rmsnorm`,
`in_proj`, `conv1d`, `ssm` with Mamba-1's nested `ssm.x_proj`, `ssm.dt_proj`, `ssm.scan`, `gated_norm`,
`out_proj`, `lm_head`). Both methods read those ranges, and nothing else about the model:

(a) timers: `ComponentTimer` swaps the `record_function` bound in perfmamba's modules for a subclass that
    also times the range (CUDA events on a GPU; `time.perf_counter` on CPU, where an op returns when it is
    done). A component's time is the wall time inside its ranges, summed over layers (inclusive: `ssm`
    contains its sub-ranges). "other" is the call's time outside every top-level range (residual adds,
    splits, dtype casts, Python).
(b) profiler: one `torch.profiler` trace; every op's self time (self CPU time on CPU, its kernels' self
    device time on a GPU) goes to the innermost enclosing component range, a range's own self time (Python
    between ops) to itself; ops outside any range to "other". Its "total" is the sum of what it attributed:
    busy time (on a GPU, kernel time), without the Python time outside every range, so it is below the
    timers' wall time when the host is the bottleneck.

Agreement (tested on CPU in tests/test_profiling_attribution.py): for every top-level component with at
least 10 % of the time, the two shares differ by at most 10 percentage points or 25 % of the timer share,
whichever is larger (`AGREEMENT_PP`, `AGREEMENT_REL`). The profiler's per-op overhead inflates components
made of many small ops, so the methods are not expected to agree on small shares.

Prefill is "time to first token": the forward over a prompt of `seqlen` tokens into an empty cache, then
`lm_head` on the last position only. Decode is one `model.step` on a cache holding state (random-normal
state: the cost of a recurrent step does not depend on how the state was reached); `seqlen` records the
nominal context length.
"""
from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from .flops import COMPONENTS, LABELS, ProfilingError, check_shape_args
from .memory import CudaPeaks, trace_memory
from .timing import Stopwatch, Summary, no_gc, quiet_native_stderr, sync, timed_calls, warm_up

ITER_LABEL = "perfmamba.profile_iter"  # one range per repetition in a profiler trace; not a component
AGREEMENT_PP = 0.10  # absolute tolerance on a share (10 percentage points) …
AGREEMENT_REL = 0.25  # … or 25 % relative, whichever is larger, for components above 10 % of the total
METHODS = ("timers", "profiler")
SIMULTANEOUS = "simultaneous"  # both methods on the same repetitions (`attribute`)

_ORIGINAL = record_function
_ACTIVE: list["ComponentTimer"] = []


class timed_record_function(_ORIGINAL):
    """`record_function` that also feeds the innermost active `ComponentTimer`."""

    def __enter__(self):
        out = super().__enter__()
        self._timer = _ACTIVE[-1] if _ACTIVE else None
        if self._timer is not None:
            self._timer._enter(self.name)
        return out

    def __exit__(self, *exc):
        if getattr(self, "_timer", None) is not None:
            self._timer._exit(self.name)
        return super().__exit__(*exc)


def _swap(old, new) -> None:
    """Bind `new` as `record_function` in every perfmamba module that binds `old`."""
    for name, mod in list(sys.modules.items()):
        if name.split(".")[0] == "perfmamba" and getattr(mod, "record_function", None) is old:
            mod.record_function = new


class ComponentTimer:
    """Context manager timing every component range entered while it is active.

    Use: ``with ComponentTimer(device) as t: model(ids)`` then ``t.collect()`` → {label: seconds}. With
    ``memory=True`` on a GPU it also records allocator peaks per component (`CudaPeaks`).
    """

    def __init__(self, device="cpu", labels=LABELS, memory: bool = False):
        self.device = torch.device(device)
        self.labels = set(labels)
        self.records: list[tuple[str, bool, Stopwatch]] = []  # (label, top-level, stopwatch)
        self._open: list[tuple[str, Stopwatch]] = []
        # stopwatches are reused from one call to the next (`collect` frees them): on a GPU each holds two
        # CUDA events, and creating and destroying events at every range boundary is host work in the ranges
        self._pool: list[Stopwatch] = []
        self.cuda_peaks = CudaPeaks(self.device) if memory and self.device.type == "cuda" else None

    def __enter__(self):
        if not _ACTIVE:
            _swap(_ORIGINAL, timed_record_function)
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        if not _ACTIVE:
            _swap(timed_record_function, _ORIGINAL)
        return False

    def _enter(self, name):
        if name not in self.labels:
            return
        n = len(self.records)
        if n == len(self._pool):
            self._pool.append(Stopwatch(self.device))
        sw = self._pool[n]
        self.records.append((name, not self._open, sw))
        self._open.append((name, sw))
        if self.cuda_peaks is not None:
            self.cuda_peaks.enter(name)
        sw.start()

    def _exit(self, name):
        if name not in self.labels:
            return
        open_name, sw = self._open.pop()
        sw.stop()
        if self.cuda_peaks is not None:
            self.cuda_peaks.exit(name)
        if open_name != name:  # ranges must nest; a mismatch means a range was left open
            raise RuntimeError(f"range {name!r} closed while {open_name!r} was open")

    def collect(self) -> tuple[dict[str, float], float]:
        """Seconds per label (summed over its ranges) and over top-level ranges, since the last call."""
        sync(self.device)
        per: dict[str, float] = defaultdict(float)
        top = 0.0
        for name, is_top, sw in self.records:
            dt = sw.elapsed()
            per[name] += dt
            if is_top:
                top += dt
        self.records.clear()
        return dict(per), top


# workloads --------------------------------------------------------------------------------------------
def make_call(model, phase: str, batch: int, seqlen: int, *, state_dtype=torch.float32, seed: int = 0):
    """(fn, setup) of one prefill or decode call; `setup()` is untimed and runs before each call."""
    check_shape_args(batch, seqlen, phase)
    dev = model.lm_head.weight.device
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    cache = model.allocate_cache(batch, dtype=state_dtype)
    if phase == "prefill":
        ids = torch.randint(0, vocab, (batch, seqlen), generator=g).to(dev)

        def setup():  # an empty cache: the prompt is the whole context
            for t in cache.conv_states + cache.ssm_states:
                t.zero_()
            cache.seqlen_offset = 0

        def fn():
            h = model(ids, cache, return_hidden=True)  # (b, l, d_model)
            with record_function("lm_head"):
                return model.lm_head(h[:, -1:])  # logits of the last position: the first new token

        return fn, setup
    with torch.no_grad():
        for t in cache.conv_states + cache.ssm_states:
            t.copy_(torch.randn(t.shape, generator=g).to(t))
    cache.seqlen_offset = seqlen
    ids = torch.randint(0, vocab, (batch,), generator=g).to(dev)

    def fn():
        return model.step(ids, cache)

    return fn, None


@dataclass
class Attribution:
    """Per-repetition seconds per component, and what produced them."""

    method: str
    times: dict[str, list[float]]  # label → seconds per repetition; includes "total" and "other"
    n_iter: int
    warmup: int
    memory: dict = field(default_factory=dict)  # method-specific memory results

    def summary(self) -> dict[str, Summary]:
        return {k: Summary.of(v) for k, v in self.times.items()}

    def shares(self) -> dict[str, float]:
        """Median over repetitions of each component's fraction of that repetition's total (robust to one
        slow repetition, unlike a ratio of separate medians)."""
        tot = self.times["total"]
        return {k: statistics.median(a / t if t > 0 else float("nan") for a, t in zip(v, tot))
                for k, v in self.times.items()}


def _timers(fn, setup, dev, iters: int, labels, memory: bool, label: str | None = None) -> tuple[dict, dict]:
    """Method (a): seconds per label of `iters` calls, each timed whole and per component (with a `label`,
    each call in a range of that name). "other" is a call's total minus its top-level components (glue no
    range covers). On a GPU one untimed call first creates the timer's CUDA events, which later calls reuse;
    otherwise the first timed call would create them inside its ranges.

    With `memory`, on a GPU, the allocator peaks (`CudaPeaks`) are read in one more, untimed call: reading and
    resetting the allocator's statistics at every range boundary is host work that would otherwise sit inside
    the timed ranges. The call's peak ("call_peak") is its rise above the memory allocated before it, so
    whatever else is alive in the process (another model, say) is not the call's."""
    times: dict[str, list[float]] = defaultdict(list)
    with ComponentTimer(dev, labels) as timer, no_gc():
        if dev.type == "cuda":
            warm_up(fn, setup, 1, dev)
            timer.collect()
        for total in timed_calls(fn, setup, iters, dev, label):
            per, top = timer.collect()
            for k in labels:
                if k in per:
                    times[k].append(per[k])
            times["total"].append(total)
            times["other"].append(max(total - top, 0.0))
    if not memory or dev.type != "cuda":
        return dict(times), {}
    if setup:
        setup()
    sync(dev)
    with ComponentTimer(dev, labels, memory=True) as mem_timer:
        peaks = mem_timer.cuda_peaks
        peaks.enter("total")  # the call is the outermost frame of the peak stack
        fn()
        peaks.exit("total")
    sync(dev)
    return dict(times), {"activation_peak": {k: v for k, v in peaks.peaks.items() if k != "total"},
                         "call_peak": peaks.peaks["total"]}


def attribute_events(events, labels=LABELS, device_type: str = "cpu", iteration_label: str | None = ITER_LABEL
                     ) -> dict[str, list[float]]:
    """Method (b) on a finished trace: seconds per label per repetition.

    Each op's self time goes to its innermost enclosing label (CPU: self CPU time; CUDA: self device time
    of the kernels it launched, and a range's own kernels, those launched in it by no torch op, go to the
    range). Returns {label: [seconds per repetition]} with "other" and "total"; one repetition per
    `iteration_label` range (all of the trace if there is none).
    """
    labels = set(labels)
    cuda = torch.device(device_type).type == "cuda"
    iters = [e for e in events if e.name == iteration_label and str(e.device_type).endswith("CPU")]
    iter_index = {id(e): i for i, e in enumerate(iters)}
    acc: dict[tuple[int, str], float] = defaultdict(float)
    for e in events:
        if not str(e.device_type).endswith("CPU") or e.name == "[memory]":
            continue
        if cuda:
            if getattr(e, "is_user_annotation", False) or e.name in labels or e.name == iteration_label:
                # A range's own kernels: those launched inside it by no torch op (Triton kernels are launched
                # directly), which the trace attaches to the range itself. Also attached there is the range's
                # device-side annotation, which spans every kernel in the range and carries the range's name.
                us = sum(k.duration for k in getattr(e, "kernels", ()) if k.name != e.name)
            else:
                us = e.self_device_time_total
        elif e.name == iteration_label:
            continue
        else:
            us = e.self_cpu_time_total
        if not us:
            continue
        label, it, p = None, 0 if not iters else None, e
        while p is not None:
            if label is None and p.name in labels:
                label = p.name
            if id(p) in iter_index:
                it = iter_index[id(p)]
                break
            p = p.cpu_parent
        if it is None:  # outside every repetition (profiler setup): ignore
            continue
        acc[(it, label or "other")] += us / 1e6
    n = max(len(iters), 1)
    names = sorted({k for _, k in acc})
    out = {name: [acc.get((i, name), 0.0) for i in range(n)] for name in names}
    out["total"] = [sum(acc.get((i, k), 0.0) for k in names) for i in range(n)]
    return out


def inclusive(exclusive: dict[str, list[float]], labels=LABELS) -> dict[str, list[float]]:
    """Add each dotted sub-label's time to its parent (``ssm.scan`` → ``ssm``): the timers' inclusive view."""
    out = {k: list(v) for k, v in exclusive.items()}
    for k, v in exclusive.items():
        if "." in k:
            parent = k.split(".", 1)[0]
            if parent in labels:
                base = out.setdefault(parent, [0.0] * len(v))
                out[parent] = [a + b for a, b in zip(base, v)]
    return out


def attribute(model, phase: str, batch: int, seqlen: int, *, method: str = "timers", warmup: int = 3,
              iters: int = 10, state_dtype=torch.float32, labels=LABELS, memory: bool = True):
    """Per-component time of `iters` calls (after `warmup` untimed ones) by `method`, "timers" or "profiler"
    (their memory results with `memory`); or "simultaneous": both methods on the same repetitions, the timers
    running inside the trace, so only how each reads the ranges differs (on a busy machine this isolates the
    attribution logic from the noise between runs), returned as (timers, profiler).

    A decode step runs op by op here (`fused_decode` off for the call): the fused step kernels of the triton
    backend run conv1d, the SSM and the gated norm as one, which has no per-component split; the whole step is
    timed fused by the sweep's "call" and CUDA-graph methods."""
    known = (*METHODS, SIMULTANEOUS)
    if method not in known:
        raise ProfilingError(f"unknown method {method!r}; expected one of {', '.join(known)}")
    fused = getattr(model, "fused_decode", None)
    if fused:
        model.fused_decode = False
    try:
        dev = model.lm_head.weight.device
        fn, setup = make_call(model, phase, batch, seqlen, state_dtype=state_dtype)
        with torch.inference_mode():
            warm_up(fn, setup, warmup, dev)
            if method == "timers":
                times, mem = _timers(fn, setup, dev, iters, labels, memory)
                return Attribution("timers", times, iters, warmup, mem)
            # method (b): one trace of the repetitions (allocations recorded where asked), with the garbage
            # collector and the tracer's native stderr messages off
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            trace = profile(activities=acts, profile_memory=memory and method == "profiler", record_shapes=False)
            with no_gc(), quiet_native_stderr(), trace as prof:
                if method == "profiler":
                    list(timed_calls(fn, setup, iters, dev, ITER_LABEL))  # the times are read from the trace
                else:
                    timed, _ = _timers(fn, setup, dev, iters, labels, memory=False, label=ITER_LABEL)
        times = inclusive(attribute_events(prof.events(), labels, dev.type), labels)
        profiled = Attribution("profiler", times, iters, warmup)
        if method == SIMULTANEOUS:
            return Attribution("timers", timed, iters, warmup), profiled
        if memory:  # replayed by `memory.trace_memory`; ssm includes ssm.* as for the times
            tm = trace_memory(prof, labels, dev.type, ITER_LABEL)
            allocs = inclusive({k: [v] for k, v in tm.sum_of_allocations.items()}, labels)
            profiled.memory = {"activation_peak": tm.activation_peak,
                               "sum_of_allocations": {k: v[0] for k, v in allocs.items()},
                               "sum_of_allocations_total": sum(tm.sum_of_allocations.values()),
                               "call_peak": max(tm.per_range_peak) if tm.per_range_peak else tm.peak}
        return profiled
    finally:
        if fused:
            model.fused_decode = fused


def shares_agree(a: dict[str, float], b: dict[str, float], *, min_share: float = 0.10,
                 pp: float = AGREEMENT_PP, rel: float = AGREEMENT_REL) -> list[str]:
    """Components (top-level, share ≥ `min_share` in either method) whose shares disagree beyond
    max(pp, rel · share_a). Empty list = agreement."""
    bad = []
    for k in COMPONENTS:
        sa, sb = a.get(k, 0.0), b.get(k, 0.0)
        if max(sa, sb) < min_share:
            continue
        if abs(sa - sb) > max(pp, rel * sa):
            bad.append(f"{k}: {sa:.3f} vs {sb:.3f}")
    return bad
