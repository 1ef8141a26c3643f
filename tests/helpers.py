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
