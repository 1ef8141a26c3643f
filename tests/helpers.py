"""Shared test utilities."""
import torch


def assert_close(actual, expected, *, atol=1e-6, rtol=1e-5, what=""):
    """assert_close that reports max-abs and max-relative error."""
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual.double() - expected.double()).abs()
    rel = diff / expected.double().abs().clamp_min(1e-12)
    ok = bool((diff <= atol + rtol * expected.double().abs()).all())
    assert ok, f"{what}: max abs err {diff.max().item():.3e}, max rel err {rel.max().item():.3e} (atol {atol}, rtol {rtol})"


# rows of the shape the profiling sweep writes, for the analysis and claims tests
def _share_rows(model, seqlen, shares, machine="nvidia-test", method="timers"):
    base = dict(model=model, arch="mamba2", path="triton", phase="prefill", batch=8, seqlen=seqlen, method=method,
                cuda_graph=False, metric="share", unit="fraction", machine=machine)
    return [dict(base, component=c, value=v) for c, v in shares.items()]


def _ms_rows(model, seqlen, ms, method, phase="prefill"):
    base = dict(model=model, arch="mamba1", path="triton", phase=phase, batch=8, seqlen=seqlen, method=method,
                cuda_graph=False, metric="time", unit="ms", machine="nvidia-test")
    return [dict(base, component=c, value=v) for c, v in ms.items()]


# a GPU-bound prefill whose trace misses the scan (a kernel no torch op launched) and half the conv, the rest
# agreeing within 5 %, and a host-bound one ("other" 70 % of the call)
TRACE_TIMERS = {"total": 100.0, "in_proj": 20.0, "conv1d": 10.0, "ssm": 62.0, "ssm.scan": 50.0, "ssm.x_proj": 6.0,
                "other": 8.0, "embedding": 0.5}
TRACE_PROFILER = {"total": 44.0, "in_proj": 21.0, "conv1d": 5.0, "ssm": 11.0, "ssm.scan": 0.5, "ssm.x_proj": 6.0,
                  "other": 7.6, "embedding": 0.1}


def trace_gap_rows():
    import pandas as pd

    host_bound = {"total": 100.0, "in_proj": 10.0, "ssm": 20.0, "other": 70.0}
    return pd.DataFrame(_ms_rows("m", 8192, TRACE_TIMERS, "timers") + _ms_rows("m", 8192, TRACE_PROFILER, "profiler")
                        + _ms_rows("m", 64, host_bound, "timers")
                        + _ms_rows("m", 64, {"total": 5.0, "in_proj": 2.0, "ssm": 3.0}, "profiler"))


def instrumentation_rows():
    """(rows, kernels): the timers' totals of one model at L = 512 and 8192 with a whole call at 8192, and the kernel
    campaign's do_bench latencies at L = 512 (two dense, one pruned to N = 8) on the same machine."""
    import pandas as pd

    timers = _ms_rows("m", 512, {"total": 80.0}, "timers") + _ms_rows("m", 8192, {"total": 150.0}, "timers")
    rows = pd.DataFrame(timers + _ms_rows("m", 8192, {"total": 120.0}, "call")).assign(machine="nvidia-test")
    kernels = pd.DataFrame([dict(model="m", arch="mamba1", path="triton", component="model", phase="prefill",
                                 batch=8.0, seqlen=512.0, d_state=d, metric="latency", value=v, unit="ms",
                                 machine="nvidia-test") for d, v in ((16, 14.0), (16, 16.0), (8, 9.0))])
    return rows, kernels
