"""Provenance and timing primitives."""
import re

import pytest
import torch

from perfmamba import provenance as env
from perfmamba.profiling import timing


def test_collect_env_cpu():
    e = env.collect_env("cpu", torch.float32)
    assert e["device"] == "cpu" and e["dtype"] == "float32" and e["torch_threads"] == torch.get_num_threads()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", e["date"])
    assert e["versions"]["torch"] and e["versions"]["perfmamba"]
    assert e["device_slug"].startswith("cpu-")
    assert e["git_sha"] is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", e["git_sha"])
    assert env.package_version("no-such-package-xyz") is None


def test_percentile_and_summary():
    assert timing.percentile([1, 2, 3, 4, 5], 50) == 3
    assert timing.percentile([10, 20], 10) == pytest.approx(11.0)  # linear interpolation (numpy default)
    s = timing.Summary.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.n) == (3.0, 5) and s.p10 == pytest.approx(1.4) and s.p90 == pytest.approx(4.6)


def test_time_call_counts_and_setup():
    calls = []
    out = timing.time_call(lambda: calls.append("f"), warmup=2, iters=3, setup=lambda: calls.append("s"))
    assert len(out) == 3 and all(t >= 0 for t in out)
    assert calls == ["s", "f"] * 5
    with pytest.raises(ValueError):
        timing.time_call(lambda: None, iters=0)


@pytest.mark.gpu
def test_cuda_graph_decoder_matches_eager_step():
    import perfmamba

    model = perfmamba.load("mamba2-tiny", device="cuda")
    c1, c2 = model.allocate_cache(3), model.allocate_cache(3)
    from perfmamba.models.graphs import GraphedStep

    dec = GraphedStep(model, c2)
    ids = torch.randint(0, 251, (5, 3), device="cuda")
    with torch.inference_mode():
        for t in range(5):
            torch.testing.assert_close(dec(ids[t]).clone(), model.step(ids[t], c1), rtol=1e-4, atol=1e-4)
