"""Triton kernels (perfmamba/ops/triton) against the float64 sequential references in perfmamba/ops.

Triton decides when a kernel is decorated, i.e. at import, whether to compile it or to interpret it
(TRITON_INTERPRET=1, which runs kernels on CPU tensors). So the kernel checks, the `check_*` functions at the end of
this file, run in child pytest processes that collect `check_*` instead of `test_*`:
`test_kernels_under_interpreter` runs them with TRITON_INTERPRET=1 on CPU tensors, and `test_kernels_on_gpu`
(CUDA only) runs them compiled on CUDA tensors, plus comparisons with mamba-ssm where it is importable (importing it
changes what transformers binds, so it stays out of the main test process). A failing check fails its parent test
with the child's report.
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import assert_close

ROOT = Path(__file__).resolve().parents[1]
CHILD = os.environ.get("PERFMAMBA_TRITON_CHILD")  # None in the main process, "interp" or "gpu" in a child
DEVICE = "cuda" if CHILD == "gpu" else "cpu"
HAS_TRITON = importlib.util.find_spec("triton") is not None

gpu_child = pytest.mark.skipif(CHILD != "gpu", reason="GPU check: compiled kernels on CUDA tensors")
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")

F32 = dict(atol=2e-5, rtol=1e-4)  # float32 kernels against float64 references
# whole models on the GPU: the triton backend's Mamba-2 prefill is mamba-ssm's SSD there, whose dots run in TF32
MODEL_TOL = dict(atol=1e-5, rtol=1e-4) if DEVICE == "cpu" else dict(atol=2e-3, rtol=2e-3)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _to(d, dtype=None):
    """Move a dict of CPU tensors to the test device (and dtype)."""
    return {k: (v.to(DEVICE, dtype) if isinstance(v, torch.Tensor) else v) for k, v in d.items()}


def _f64(d):
    return {k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in d.items()}


def _run_child(mode: str, timeout: int = 300):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(PERFMAMBA_TRITON_CHILD=mode, PERFMAMBA_NO_MAMBA_SSM="1" if mode == "interp" else "0")
    if mode == "interp":
        env["TRITON_INTERPRET"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "-o", "python_functions=check_*",
           str(Path(__file__).resolve())]
    proc = subprocess.run(cmd, cwd=ROOT / "tests", env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, f"child pytest ({mode}) failed:\n{out}"
    assert " passed" in proc.stdout, out


# main process: the children -------------------------------------------------------------------------------------
@needs_triton
def test_kernels_under_interpreter():
    """Every `check_*` below, with TRITON_INTERPRET=1 on CPU tensors (tiny shapes, odd sizes)."""
    _run_child("interp")


@needs_triton
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_kernels_on_gpu():
    """Every `check_*` below (the GPU ones included), compiled, on CUDA tensors."""
    _run_child("gpu", timeout=900)


# main process: namespace, signatures, import behaviour, benchmarks ----------------------------------------------
REF_NAMES = {
    "conv": "causal_conv1d_ref",
    "conv_update": "causal_conv1d_update_ref",
    "selective_scan": "selective_scan_ref",
    "selective_state_update": "selective_state_update_ref",
    "ssd_state_update": "ssd_state_update_ref",
}


@needs_triton
def test_ops_namespace_keeps_reference_signatures():
    import perfmamba.ops as ref_ops
    from perfmamba.ops.backends import get_ops

    ns = get_ops("triton")
    assert ns.name == "triton"
    for field, ref in REF_NAMES.items():
        got, want = inspect.signature(getattr(ns, field)), inspect.signature(getattr(ref_ops, ref))
        assert list(got.parameters) == list(want.parameters), field
        assert [p.default for p in got.parameters.values()] == [p.default for p in want.parameters.values()], field
    want = list(inspect.signature(ref_ops.ssd_ref).parameters)
    assert list(inspect.signature(ns.ssd).parameters) == want
    assert set(ns.impl) == {"conv", "conv_update", "selective_scan", "selective_state_update", "ssd", "ssd_state_update",
                            "rmsnorm", "gated_rmsnorm", "mamba2_step", "mamba1_step", "add_rmsnorm"}
    from perfmamba.ops import decode as ref_decode  # the fused decode steps keep their references' signatures
    for field in ("mamba2_step", "mamba1_step", "add_rmsnorm"):
        ref = getattr(ref_decode, f"{field}_ref")
        assert list(inspect.signature(getattr(ns, field)).parameters) == list(inspect.signature(ref).parameters), field
    from perfmamba.models.common import gated_rmsnorm  # the model's own, which the fused one replaces
    assert list(inspect.signature(ns.gated_rmsnorm).parameters) == list(inspect.signature(gated_rmsnorm).parameters)
    assert ns.impl["ssd"] in ("perfmamba.ops.ssd_chunked", "mamba_ssm.mamba_chunk_scan_combined")


@needs_triton
def test_ssd_prefill_falls_back_to_chunked_without_mamba_ssm(monkeypatch):
    from perfmamba.ops import ssd_chunked
    from perfmamba.ops.triton import prefill_impl

    monkeypatch.setenv("PERFMAMBA_NO_MAMBA_SSM", "1")
    assert prefill_impl() == (ssd_chunked, "perfmamba.ops.ssd_chunked")


def test_missing_triton_is_an_unavailable_backend(monkeypatch):
    """Without triton, importing the package raises ImportError and get_ops reports the backend unavailable."""
    from perfmamba.ops import backends

    for name in [m for m in sys.modules if m == "triton" or m.startswith(("triton.", "perfmamba.ops.triton"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    backends.get_ops.cache_clear()
    try:
        with pytest.raises(ImportError):
            importlib.import_module("perfmamba.ops.triton")
        with pytest.raises(backends.BackendUnavailable, match="triton"):
            backends.get_ops("triton")
    finally:
        backends.get_ops.cache_clear()


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the mamba_ssm backend may load")
def test_mamba_ssm_backend_unavailable_without_cuda():
    from perfmamba.ops.backends import BackendUnavailable, get_ops

    with pytest.raises(BackendUnavailable, match="mamba_ssm"):
        get_ops("mamba_ssm")


@needs_triton
@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="interpreter accepts CPU tensors")
def test_cpu_tensors_without_interpreter_are_refused():
    from perfmamba.ops.triton import KernelInputError, selective_scan

    u = torch.zeros(1, 2, 3)
    with pytest.raises(KernelInputError, match="TRITON_INTERPRET"):
        selective_scan(u, u, torch.zeros(2, 4), torch.zeros(1, 4, 3), torch.zeros(1, 4, 3))


@needs_triton
@pytest.mark.parametrize("call,match", [
    pytest.param(lambda k: k.selective_scan(torch.zeros(1, 4, 5), torch.zeros(1, 4, 5), torch.zeros(3, 2),
                                            torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)), "A must be", id="scan-A"),
    pytest.param(lambda k: k.selective_scan(torch.zeros(1, 6, 5), torch.zeros(1, 6, 5), torch.zeros(6, 2),
                                            torch.zeros(1, 4, 2, 5), torch.zeros(1, 4, 2, 5)), "groups", id="scan-groups"),
    pytest.param(lambda k: k.causal_conv1d(torch.zeros(1, 4, 5), torch.zeros(3, 4)), "weight", id="conv-weight"),
    pytest.param(lambda k: k.causal_conv1d(torch.zeros(1, 4, 5), torch.zeros(4, 4), activation="relu"), "activation",
                 id="conv-activation"),
    pytest.param(lambda k: k.causal_conv1d_update(torch.zeros(1, 4), torch.zeros(1, 4, 3), torch.zeros(4, 4)),
                 "weight must be", id="conv-update-width"),
    pytest.param(lambda k: k.ssd_state_update(torch.zeros(1, 3, 2, 5), torch.zeros(1, 3, 2), torch.zeros(1, 3),
                                              torch.zeros(3), torch.zeros(1, 2, 5), torch.zeros(1, 2, 5)), "g dividing",
                 id="ssd-groups"),
    pytest.param(lambda k: k.selective_state_update(torch.zeros(1, 4, 5), torch.zeros(1, 4), torch.zeros(1, 4),
                                                    torch.zeros(4, 6), torch.zeros(1, 5), torch.zeros(1, 5)), "A must be",
                 id="update-A"),
])
def test_bad_shapes_raise_one_line_errors(call, match):
    import perfmamba.ops.triton as k
    from perfmamba.errors import PerfmambaError

    with pytest.raises(PerfmambaError, match=match) as e:
        call(k)
    assert "\n" not in str(e.value)


def test_graph_decode_body_matches_model_step():
    """The capturable decode body (no host sync) computes exactly `MambaLM.step` (CPU, ref backend)."""
    from perfmamba import MambaLM, preset
    from perfmamba.models.graphs import decode_body

    for name in ("mamba-tiny", "mamba2-tiny"):
        model = MambaLM.from_config(preset(name)).eval()
        ids = torch.randint(0, 251, (2, 9), generator=_gen(1))
        c1, c2 = model.allocate_cache(2), model.allocate_cache(2)
        with torch.no_grad():
            model(ids[:, :8], c1)
            model(ids[:, :8], c2)
            want = model.step(ids[:, 8], c1)
            got = decode_body(model, ids[:, 8], c2)
        assert torch.equal(got, want), name
        for a, b in zip(c1.ssm_states + c1.conv_states, c2.ssm_states + c2.conv_states):
            assert torch.equal(a, b)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("script,flag", [("gpu_kernels", "--quick"), ("gpu_campaign", "--quick"),
                                         ("gpu_goals", "--dry-run")])
def test_benchmark_scripts_help(script, flag):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and flag in proc.stdout


def test_benchmark_ratios_from_rows():
    """The summary's ratios are computed from rows as documented (dense / pruned etc.), with goal verdicts."""
    gk = _load_script("gpu_kernels")
    R = gk.row
    rows = [
        R("mamba2-130m", "mamba2", "triton", "model", "prefill", 8, 8192, 128, "latency", 50.0, "ms"),
        R("mamba2-130m", "mamba2", "mamba_ssm", "model", "prefill", 8, 8192, 128, "latency", 115.0, "ms"),
        R("mamba2-130m", "mamba2", "triton", "model", "prefill", 8, 8192, 64, "latency", 40.0, "ms", ratio=0.5),
        R("mamba2-130m", "mamba2", "triton", "model", "decode", 64, 1, 128, "latency", 1.5, "ms/token"),
        R("mamba2-130m", "mamba2", "triton", "model", "decode", 64, 1, 64, "latency", 1.2, "ms/token", ratio=0.5),
        R("mamba2-2.7b", "mamba2", "triton", "model", "decode", 8, 1, 128, "latency", 3.0, "ms/token"),
        R("mamba2-2.7b", "mamba2", "floor", "model", "decode", 8, 1, 128, "latency", 2.0, "ms/token"),
        R("mamba-130m", "mamba1", "transformers", "model", "prefill", 8, 512, 16, "latency", 1000.0, "ms"),
        R("mamba-130m", "mamba1", "triton", "model", "prefill", 8, 512, 16, "latency", 10.0, "ms"),
    ]
    got = {label: (value, goal) for label, value, goal, _ in gk.ratios(rows)}
    assert got["Mamba2-130M prefill B=8 L=8192: mamba-ssm model / ours (triton)"] == (2.3, 2.0)
    assert got["pruned r=0.5 (N'=64) / dense decode B=64, throughput"] == (1.25, 1.5)
    assert got["pruned r=0.5 (N'=64) / dense prefill B=8 L=8192, speed"] == (1.25, 1.15)
    assert got["mamba2-2.7b decode B=8: ours / bandwidth floor"] == (1.5, 1.3)
    assert got["Mamba-1 130M prefill B=8 L=512: transformers / ours"] == (100.0, 50.0)
    import io

    buf = io.StringIO()
    gk.print_summary(rows, file=buf)
    text = buf.getvalue()
    assert "2.30x" in text and "NOT met" in text and " met" in text
    # the book reads the same rows back from a committed CSV: a DataFrame with floats and NaN cells
    import pandas as pd

    from perfmamba.experiments.gpu_goals import ratio_table

    df = pd.DataFrame(rows)
    df[["batch", "seqlen", "d_state"]] = df[["batch", "seqlen", "d_state"]].astype(float)
    table = ratio_table(df).set_index("ratio")
    assert table.loc["pruned r=0.5 (N'=64) / dense decode B=64, throughput", "measured (×)"] == 1.25
    assert table.loc["pruned r=0.5 (N'=64) / dense decode B=64, throughput", "verdict"] == "NOT met"
    assert table.loc["Mamba-1 130M prefill B=8 L=512: transformers / ours", "verdict"] == "met"
    assert len(table) == len(got)


@pytest.mark.slow
@needs_triton
def test_gpu_goals_dry_run_measures_every_goal(tmp_path):
    """benchmarks/gpu_goals.py --dry-run, the CPU rehearsal of the one prepared GPU call: tiny shapes, Triton
    interpreted, every section runs, rows with device and versions land under OUT/<device>/, and the goal table
    has a row for every goal (mamba-ssm's columns empty: it cannot run here)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_goals.py"), "--dry-run", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (machine,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    import json

    import pandas as pd

    from perfmamba.experiments.gpu_goals import GOALS2, goal_table

    df = pd.read_csv(machine / "gpu_goals.csv")
    gk = _load_script("gpu_goals")
    assert set(df["section"]) == set(gk.SECTIONS) and "error" not in set(df["metric"]), df[df["metric"] == "error"]
    assert {"triton", "triton_unfused", "triton_own_ssd", "floor", "transformers", "copy", "matmul"} <= set(df["path"])
    env_json = json.loads((machine / "env.json").read_text())
    assert env_json["dry_run"] is True and "torch" in json.dumps(env_json)
    table = goal_table(df)
    targets = {t["target"] for t in table if t["target"]}
    assert {f"≥ {GOALS2[k][0]:g}" if GOALS2[k][1] else f"≤ {GOALS2[k][0]:g}" for k in GOALS2} <= targets
    assert all(t["ours"] is not None for t in table)
    assert all(t["met"] == "no data" for t in table if "mamba-ssm" in t["goal"])  # no mamba-ssm on a CPU
    assert sum("no slower than dense" in t["goal"] for t in table) == 2 * 5  # every exact N', decode and prefill
    assert "goal" in proc.stdout and "met" in proc.stdout and "ours" in proc.stdout


def test_campaign_plan_is_well_formed():
    camp = _load_script("gpu_campaign")
    names = [p[0] for p in camp.PLAN]
    assert len(names) == len(set(names))
    assert sum(p[3] for p in camp.PLAN) > 0
    for name, fn, kwargs, _ in camp.PLAN:
        params = inspect.signature(fn).parameters
        assert "quick" in params and set(kwargs) <= set(params), name
    keys = set(camp.gk.row("m", "a", "p", "c", "ph", 1, 1, 1, "metric", 1.0, "u")) | {"section", "device", "timestamp"}
    assert keys == set(camp.COLUMNS)


# children: kernels against float64 references -------------------------------------------------------------------
def _scan_inputs(b, d, n, l, g, seed=0, channel_last=False):
    gen = _gen(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    if channel_last:  # as the models pass them: transposed views of (b, l, ·) projections
        u, delta, z = (r(b, l, d).transpose(1, 2) for _ in range(3))
        B, C = (r(b, l, n).transpose(1, 2) for _ in range(2)) if g == 0 else (r(b, l, g, n).permute(0, 2, 3, 1)
                                                                               for _ in range(2))
    else:
        u, delta, z = r(b, d, l), r(b, d, l), r(b, d, l)
        B, C = (r(b, n, l), r(b, n, l)) if g == 0 else (r(b, g, n, l), r(b, g, n, l))
    return dict(u=u, delta=delta * 0.5, A=-torch.rand(d, n, generator=gen) * 3 - 0.1, B=B, C=C, D=r(d), z=z,
                delta_bias=r(d) * 0.5)


SCAN_CASES = [  # b, d, n, l, g (0: B/C without a group axis), channel_last
    pytest.param(2, 37, 13, 37, 0, False, id="B2-D37-N13-L37"),
    pytest.param(1, 38, 13, 19, 2, False, id="B1-D38-N13-L19-g2"),
    pytest.param(2, 40, 115, 9, 0, True, id="B2-D40-N115-L9-channel-last"),
    pytest.param(1, 5, 1, 3, 0, False, id="B1-D5-N1-L3"),
    pytest.param(1, 6, 16, 1, 0, True, id="B1-D6-N16-L1"),
]


@pytest.mark.parametrize("b,d,n,l,g,cl", SCAN_CASES)
def check_selective_scan_matches_reference(b, d, n, l, g, cl):
    from perfmamba.ops import selective_scan_ref
    from perfmamba.ops.triton import selective_scan

    x = _scan_inputs(b, d, n, l, g, channel_last=cl)
    h0 = torch.randn(b, d, n, generator=_gen(3))
    y, h = selective_scan(**_to(x), delta_softplus=True, return_last_state=True, initial_state=h0.to(DEVICE))
    y_ref, h_ref = selective_scan_ref(**_f64(x), delta_softplus=True, return_last_state=True, initial_state=h0.double())
    assert y.dtype == torch.float32 and y.shape == (b, d, l)
    assert_close(y.cpu(), y_ref, **F32, what="y")
    assert_close(h.cpu(), h_ref, **F32, what="last state")


def check_selective_scan_without_options_and_empty_sequence():
    """No D, z, bias or softplus (positive Δ so the state stays bounded); and L = 0 returns the initial state."""
    from perfmamba.ops import selective_scan_ref
    from perfmamba.ops.triton import selective_scan

    x = _scan_inputs(2, 37, 13, 21, 0)
    x = dict(u=x["u"], delta=x["delta"].abs(), A=x["A"], B=x["B"], C=x["C"])
    assert_close(selective_scan(**_to(x)).cpu(), selective_scan_ref(**_f64(x)), **F32)
    h0 = torch.randn(2, 37, 13, generator=_gen(4), device=DEVICE)
    e = _to(dict(u=torch.zeros(2, 37, 0), delta=torch.zeros(2, 37, 0), A=x["A"], B=torch.zeros(2, 13, 0),
                 C=torch.zeros(2, 13, 0)))
    y, h = selective_scan(**e, return_last_state=True, initial_state=h0)
    assert y.shape == (2, 37, 0) and torch.equal(h, h0)


CONV_CASES = [  # b, d, l, w, channel_last, with initial states, bias, activation
    pytest.param(2, 37, 19, 4, False, True, True, "silu", id="B2-D37-L19-W4-init"),
    pytest.param(1, 70, 150, 3, True, False, False, "silu", id="B1-D70-L150-W3-channel-last"),
    pytest.param(2, 5, 2, 4, True, True, True, None, id="B2-D5-L2-W4-shorter-than-window"),
    pytest.param(1, 3, 5, 1, False, False, True, "silu", id="B1-D3-L5-W1"),
]


@pytest.mark.parametrize("b,d,l,w,cl,init,bias,act", CONV_CASES)
def check_causal_conv1d_matches_reference(b, d, l, w, cl, init, bias, act):
    from perfmamba.ops import causal_conv1d_ref
    from perfmamba.ops.triton import causal_conv1d

    gen = _gen(5)
    x = torch.randn(b, l, d, generator=gen).transpose(1, 2) if cl else torch.randn(b, d, l, generator=gen)
    args = dict(x=x, weight=torch.randn(d, w, generator=gen), bias=torch.randn(d, generator=gen) if bias else None,
                initial_states=torch.randn(b, d, w - 1, generator=gen) if init else None)
    out, final = causal_conv1d(**_to(args), return_final_states=True, activation=act)
    out_ref, final_ref = causal_conv1d_ref(**_f64(args), return_final_states=True, activation=act)
    assert_close(out.cpu(), out_ref, **F32, what="out")
    assert_close(final.cpu(), final_ref, atol=0, rtol=0, what="final states")
    assert out.stride(1) == 1 if cl else out.is_contiguous()  # the output keeps the input's memory order


def check_causal_conv1d_update_steps_equal_prefill():
    """Token-by-token updates of the (b, d, w) state reproduce the prefill conv, and the state matches the reference."""
    from perfmamba.ops import causal_conv1d_ref, causal_conv1d_update_ref
    from perfmamba.ops.triton import causal_conv1d_update

    b, d, l, w = 2, 37, 6, 4
    gen = _gen(6)
    x, wt, bias = torch.randn(b, d, l, generator=gen), torch.randn(d, w, generator=gen), torch.randn(d, generator=gen)
    state = torch.zeros(b, d, w, device=DEVICE)
    state_ref = torch.zeros(b, d, w, dtype=torch.float64)
    outs = []
    for t in range(l):
        outs.append(causal_conv1d_update(x[:, :, t].to(DEVICE), state, wt.to(DEVICE), bias.to(DEVICE), "silu").cpu())
        ref = causal_conv1d_update_ref(x[:, :, t].double(), state_ref, wt.double(), bias.double(), "silu")
        assert_close(outs[-1], ref, **F32, what=f"step {t}")
        assert_close(state.cpu(), state_ref, atol=0, rtol=0, what=f"state after step {t}")
    assert_close(torch.stack(outs, -1), causal_conv1d_ref(x.double(), wt.double(), bias.double(), activation="silu"),
                 **F32, what="steps vs prefill")
    out = causal_conv1d_update(x[:, :, 0].to(DEVICE), state, wt.to(DEVICE))  # no bias, no activation
    assert_close(out.cpu(), causal_conv1d_update_ref(x[:, :, 0].double(), state_ref, wt.double()), **F32)


UPDATE_CASES = [  # b, d, n, g (0: no group axis), with D/z/bias
    pytest.param(2, 37, 13, 0, True, id="B2-D37-N13"),
    pytest.param(1, 38, 115, 2, True, id="B1-D38-N115-g2"),
    pytest.param(3, 5, 16, 0, False, id="B3-D5-N16-bare"),
]


@pytest.mark.parametrize("b,d,n,g,opts", UPDATE_CASES)
def check_selective_state_update_matches_reference(b, d, n, g, opts):
    from perfmamba.ops import selective_state_update_ref
    from perfmamba.ops.triton import selective_state_update

    gen = _gen(7)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    state = r(b, d, n)
    args = dict(x=r(b, d), dt=r(b, d) if opts else r(b, d).abs(), A=-torch.rand(d, n, generator=gen) * 3,
                B=r(b, n) if g == 0 else r(b, g, n), C=r(b, n) if g == 0 else r(b, g, n),
                D=r(d) if opts else None, z=r(b, d) if opts else None, dt_bias=r(d) if opts else None)
    s_dev, s_ref = state.to(DEVICE), state.double()
    y = selective_state_update(s_dev, **_to(args), dt_softplus=opts)
    y_ref = selective_state_update_ref(s_ref, **_f64(args), dt_softplus=opts)
    assert_close(y.cpu(), y_ref, **F32, what="y")
    assert_close(s_dev.cpu(), s_ref, **F32, what="state (in place)")


SSD_UPDATE_CASES = [  # b, h, p, n, g, D shape, dt_limit
    pytest.param(2, 4, 5, 13, 2, "h", None, id="B2-H4-P5-N13-g2"),
    pytest.param(1, 3, 16, 115, 1, "hp", (0.01, 0.5), id="B1-H3-P16-N115-limit"),
    pytest.param(2, 2, 7, 12, 1, None, None, id="B2-H2-P7-N12-noD"),
]


@pytest.mark.parametrize("b,h,p,n,g,dshape,limit", SSD_UPDATE_CASES)
def check_ssd_state_update_matches_reference(b, h, p, n, g, dshape, limit):
    from perfmamba.ops import ssd_state_update_ref
    from perfmamba.ops.triton import ssd_state_update

    gen = _gen(8)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    state = r(b, h, p, n)
    D = {"h": r(h), "hp": r(h, p), None: None}[dshape]
    args = dict(x=r(b, h, p), dt=r(b, h), A=-torch.rand(h, generator=gen) * 4, B=r(b, g, n), C=r(b, g, n), D=D,
                dt_bias=r(h))
    s_dev, s_ref = state.to(DEVICE), state.double()
    y = ssd_state_update(s_dev, **_to(args), dt_softplus=True, dt_limit=limit)
    y_ref = ssd_state_update_ref(s_ref, **_f64(args), dt_softplus=True, dt_limit=limit)
    assert_close(y.cpu(), y_ref, **F32, what="y")
    assert_close(s_dev.cpu(), s_ref, **F32, what="state (in place)")


def check_softplus_is_accurate_across_range():
    """The fused softplus matches torch's (threshold 20) to float32 precision, including far below 0."""
    from perfmamba.ops import selective_state_update_ref
    from perfmamba.ops.triton import selective_state_update

    dt = torch.tensor([[-30.0, -12.0, -3.0, 0.0, 1e-3, 5.0, 19.9, 20.1, 40.0]])
    d = dt.shape[1]
    # one state, A = 0, B = C = 1, x = 1, zero state: y = softplus(dt) exactly
    args = dict(x=torch.ones(1, d), dt=dt, A=torch.zeros(d, 1), B=torch.ones(1, 1), C=torch.ones(1, 1))
    y = selective_state_update(torch.zeros(1, d, 1, device=DEVICE), **_to(args), dt_softplus=True)
    y_ref = selective_state_update_ref(torch.zeros(1, d, 1, dtype=torch.float64), **_f64(args), dt_softplus=True)
    # compiled exp/log are the hardware approximations (~2^-22 relative), the interpreter's are numpy's
    assert_close(y.cpu(), y_ref, atol=0, rtol=2e-6 if DEVICE == "cpu" else 1e-5, what="softplus")


NORM_CASES = [  # shape, group size (None: plain RMSNorm), dtype of weight
    pytest.param((2, 7, 48), None, torch.float32, id="rmsnorm-B2-L7-D48"),
    pytest.param((3, 37), None, torch.float32, id="rmsnorm-R3-D37"),
    pytest.param((2, 5, 64), 16, torch.float32, id="gated-B2-L5-D64-G16"),
    pytest.param((1, 3, 39), 13, torch.float32, id="gated-B1-L3-D39-G13"),
]


@pytest.mark.parametrize("shape,group,wdtype", NORM_CASES)
def check_norms_match_model_versions(shape, group, wdtype):
    from perfmamba.models.common import RMSNorm, gated_rmsnorm as gated_ref
    from perfmamba.ops.triton import gated_rmsnorm, rmsnorm

    gen = _gen(12)
    x, z = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
    w = torch.randn(shape[-1], generator=gen).to(wdtype)
    if group is None:
        ref = RMSNorm(shape[-1], 1e-5)
        ref.weight.data.copy_(w)
        want = ref(x)
        got = rmsnorm(x.to(DEVICE), w.to(DEVICE), 1e-5)
    else:
        want = gated_ref(x, z, w, 1e-5, group)
        got = gated_rmsnorm(x.to(DEVICE), z.to(DEVICE), w.to(DEVICE), 1e-5, group)
    assert got.dtype == want.dtype
    assert_close(got.cpu(), want.detach(), atol=1e-5, rtol=1e-5)


MODEL_CASES = [
    pytest.param("mamba-tiny", {}, id="mamba-tiny-N13"),
    pytest.param("mamba2-tiny", {}, id="mamba2-tiny-N13"),
    pytest.param("mamba-tiny", {"d_state": [13, 5]}, id="mamba-tiny-pruned-N13-5"),
]


@pytest.mark.parametrize("name,overrides", MODEL_CASES)
def check_model_triton_backend_matches_ref(name, overrides):
    """Full MambaLM on backend "triton" against backend "ref": prefill logits, cached prefill, then decode steps."""
    from perfmamba import MambaLM, preset

    model = MambaLM.from_config(preset(name, **overrides)).to(DEVICE).eval()
    ids = torch.randint(0, 251, (2, 21), generator=_gen(9)).to(DEVICE)
    res = {}
    for backend in ("ref", "triton"):
        model.backend = backend
        cache = model.allocate_cache(2)
        with torch.no_grad():
            full = model(ids)
            part = model(ids[:, :18], cache)
            steps = torch.stack([model.step(ids[:, t], cache) for t in range(18, 21)], 1)
        res[backend] = (full, part, steps, cache)
    scale = max(1.0, res["ref"][0].abs().max().item())
    tol = dict(atol=MODEL_TOL["atol"] * scale, rtol=MODEL_TOL["rtol"])
    for i, what in enumerate(["prefill", "cached prefill", "decode steps"]):
        assert_close(res["triton"][i].cpu(), res["ref"][i].cpu(), **tol, what=what)
    assert_close(res["triton"][2].cpu(), res["ref"][0][:, 18:].cpu(), **tol, what="decode vs full forward")
    for a, b in zip(res["triton"][3].ssm_states, res["ref"][3].ssm_states):
        assert_close(a.cpu(), b.cpu(), **MODEL_TOL, what="ssm state")


@pytest.mark.parametrize("name", ["mamba-tiny", "mamba2-tiny"])
def check_model_runs_the_fused_norms_on_the_triton_backend(name):
    """On backend "triton" every RMSNorm (one per layer, and norm_f) and Mamba-2's gated norm (one per layer) run
    the fused kernels, the RMSNorms after the first fused with the residual add before them; on "ref" none does.
    Counted by wrapping the namespace's functions."""
    from perfmamba import load
    from perfmamba.ops.backends import get_ops

    ops = get_ops("triton")
    calls = {"rmsnorm": 0, "gated_rmsnorm": 0, "add_rmsnorm": 0}
    saved = {k: getattr(ops, k) for k in calls}

    def counting(k):
        def fn(*args, **kwargs):
            calls[k] += 1
            return saved[k](*args, **kwargs)
        return fn

    model = load(name).to(DEVICE).eval()
    ids = torch.randint(0, 251, (1, 7), generator=_gen(3)).to(DEVICE)
    try:
        for k in calls:
            setattr(ops, k, counting(k))
        for backend, want in (("ref", 0), ("triton", 1)):
            model.backend = backend
            for k in calls:
                calls[k] = 0
            with torch.no_grad():
                model(ids)
            n = model.config.n_layer
            assert calls["rmsnorm"] == want and calls["add_rmsnorm"] == want * n, (backend, calls)
            assert calls["gated_rmsnorm"] == want * (n if model.config.arch == "mamba2" else 0), (backend, calls)
    finally:
        for k, f in saved.items():
            setattr(ops, k, f)


MAMBA2_STEP_CASES = [  # b, nheads, headdim, N', ngroups, conv width, conv bias, D, dt_limit
    pytest.param(2, 4, 5, 115, 2, 4, True, True, None, id="B2-H4-P5-N115-g2"),
    pytest.param(1, 3, 7, 89, 1, 4, True, True, (0.01, 0.5), id="B1-H3-P7-N89-limit"),
    pytest.param(3, 2, 16, 38, 2, 3, False, False, None, id="B3-H2-P16-N38-g2-W3-bare"),
    pytest.param(2, 6, 3, 12, 3, 4, True, True, None, id="B2-H6-P3-N12-g3"),
    pytest.param(1, 2, 4, 1, 1, 2, True, True, None, id="B1-H2-P4-N1-W2"),
]


@pytest.mark.parametrize("b,h,p,n,g,w,cbias,hasD,limit", MAMBA2_STEP_CASES)
def check_mamba2_step_matches_reference(b, h, p, n, g, w, cbias, hasD, limit):
    """The fused Mamba-2 layer step (two kernels) against the op-by-op float64 reference, three steps in a row:
    output, conv state and SSM state after each."""
    from perfmamba.ops.decode import mamba2_step_ref
    from perfmamba.ops.triton import mamba2_step

    gen = _gen(21)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    d = h * p
    conv_dim = d + 2 * g * n
    params = dict(conv_weight=r(conv_dim, w) * 0.5, conv_bias=r(conv_dim) if cbias else None,
                  A_log=torch.rand(h, generator=gen) * 2, dt_bias=r(h) * 0.5, D=r(h) if hasD else None,
                  norm_weight=r(d), eps=1e-5, ngroups=g, dt_limit=limit)
    conv, ssm = r(b, conv_dim, w), r(b, h, p, n)
    conv_dev, ssm_dev, conv_ref, ssm_ref = conv.to(DEVICE), ssm.to(DEVICE), conv.double(), ssm.double()
    for t in range(3):
        zx = r(b, d + conv_dim + h)
        got = mamba2_step(zx.to(DEVICE), conv_dev, ssm_state=ssm_dev, **_to(params))
        want = mamba2_step_ref(zx.double(), conv_ref, ssm_state=ssm_ref, **_f64(params))
        assert got.dtype == torch.float32 and got.shape == (b, d)
        assert_close(got.cpu(), want, **F32, what=f"step {t}: out")
        assert_close(conv_dev.cpu(), conv_ref, atol=0, rtol=0, what=f"step {t}: conv state")
        assert_close(ssm_dev.cpu(), ssm_ref, **F32, what=f"step {t}: ssm state")


MAMBA1_STEP_CASES = [  # b, d, N', dt_rank, with D / z / dt bias
    pytest.param(2, 37, 13, 3, True, id="B2-D37-N13-R3"),
    pytest.param(1, 21, 115, 5, True, id="B1-D21-N115-R5"),
    pytest.param(3, 10, 12, 2, False, id="B3-D10-N12-R2-bare"),
]


@pytest.mark.parametrize("b,d,n,rank,opts", MAMBA1_STEP_CASES)
def check_mamba1_step_matches_reference(b, d, n, rank, opts):
    from perfmamba.ops.decode import mamba1_step_ref
    from perfmamba.ops.triton import mamba1_step

    gen = _gen(22)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    state = r(b, d, n)
    args = dict(x=r(b, d), x_dbl=r(b, rank + 2 * n), dt_proj_weight=r(d, rank) * 0.5,
                dt_proj_bias=r(d) if opts else None, A_log=torch.rand(d, n, generator=gen),
                D=r(d) if opts else None, z=r(b, d) if opts else None)
    s_dev, s_ref = state.to(DEVICE), state.double()
    y = mamba1_step(s_dev, **_to(args))
    y_ref = mamba1_step_ref(s_ref, **_f64(args))
    assert_close(y.cpu(), y_ref, **F32, what="y")
    assert_close(s_dev.cpu(), s_ref, **F32, what="state (in place)")


@pytest.mark.parametrize("shape", [(3, 1, 37), (2, 48)], ids=["B3-L1-D37", "R2-D48"])
def check_add_rmsnorm_matches_reference(shape):
    from perfmamba.ops.decode import add_rmsnorm_ref
    from perfmamba.ops.triton import add_rmsnorm

    gen = _gen(23)
    x, out = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
    w = torch.randn(shape[-1], generator=gen)
    s, normed = add_rmsnorm(x.to(DEVICE), out.to(DEVICE), w.to(DEVICE), 1e-5)
    s_ref, n_ref = add_rmsnorm_ref(x.double(), out.double(), w.double(), 1e-5)
    assert_close(s.cpu(), s_ref, **F32, what="sum")
    assert_close(normed.cpu(), n_ref, **F32, what="normed")


PRUNED_DECODE_CASES = [  # preset, overrides: per-layer kept counts N' (odd, as the paper's r = 0.1, 0.3, 0.7, 0.9 give)
    pytest.param("mamba2-tiny", {"d_state": [115, 12], "ngroups": 2}, id="mamba2-N115-12-g2"),
    pytest.param("mamba2-tiny", {"d_state": [89, 38], "headdim": 8}, id="mamba2-N89-38-P8"),
    pytest.param("mamba-tiny", {"d_state": [89, 38], "d_model": 24}, id="mamba1-N89-38-D48"),
    pytest.param("mamba2-tiny", {"bridge": 0.3}, id="mamba2-bridge-r0.3"),  # N′ = 9 behind W_bridge, N = 13 cache
]


@pytest.mark.parametrize("name,overrides", PRUNED_DECODE_CASES)
def check_fused_decode_step_of_pruned_model_matches_ref(name, overrides):
    """Whole decode steps of a tiny model with odd per-layer N' on backend "triton" (fused step kernels, through the
    capturable `decode_body`) against backend "ref": logits and both caches, from the same prefilled cache. Also
    checks that the fused kernels are the ones that ran (one `*_step` per layer and step, one add+norm per layer)."""
    from perfmamba import MambaLM, preset
    from perfmamba.models.graphs import decode_body
    from perfmamba.ops.backends import get_ops

    overrides = dict(overrides)
    bridge = overrides.pop("bridge", None)
    model = MambaLM.from_config(preset(name, **overrides)).to(DEVICE).eval()
    if bridge is not None:
        from perfmamba.pruning import prune

        model = prune(model, bridge, criterion="random", mode="bridge")
    ids = torch.randint(0, 251, (2, 8), generator=_gen(24)).to(DEVICE)
    cache = model.allocate_cache(2)
    with torch.no_grad():
        model(ids[:, :5], cache)  # prefill on "ref"
    caches = {"ref": cache, "triton": cache.clone()}
    ops = get_ops("triton")
    step_name = "mamba2_step" if model.config.arch == "mamba2" else "mamba1_step"
    calls = {step_name: 0, "add_rmsnorm": 0}
    saved = {k: getattr(ops, k) for k in calls}

    def counting(k):
        def fn(*args, **kwargs):
            calls[k] += 1
            return saved[k](*args, **kwargs)
        return fn

    logits = {}
    try:
        for k in calls:
            setattr(ops, k, counting(k))
        for backend in ("ref", "triton"):
            model.backend = backend
            with torch.no_grad():
                logits[backend] = torch.stack([decode_body(model, ids[:, t], caches[backend]) for t in range(5, 8)], 1)
    finally:
        for k, f in saved.items():
            setattr(ops, k, f)
    n = model.config.n_layer
    assert calls == {step_name: 3 * n, "add_rmsnorm": 3 * n}, calls
    scale = max(1.0, logits["ref"].abs().max().item())
    assert_close(logits["triton"].cpu(), logits["ref"].cpu(), atol=MODEL_TOL["atol"] * scale, rtol=MODEL_TOL["rtol"],
                 what="logits")
    for kind in ("conv_states", "ssm_states"):
        for a, b in zip(getattr(caches["triton"], kind), getattr(caches["ref"], kind)):
            assert_close(a.cpu(), b.cpu(), **MODEL_TOL, what=kind)


CHUNKED_SSD_CASES = [  # b, l, h, p, g, N', chunk, dt_limit, with D (h, p) / initial state / final state
    pytest.param(2, 37, 2, 5, 2, 13, 16, None, True, id="B2-L37-H2-P5-g2-N13-T16"),
    pytest.param(1, 40, 2, 16, 1, 115, 32, (0.01, 0.5), True, id="B1-L40-H2-P16-N115-T32-limit"),
    pytest.param(1, 1, 2, 3, 1, 12, 16, None, True, id="B1-L1-N12"),
    pytest.param(1, 32, 3, 4, 1, 38, 16, None, False, id="B1-L32-H3-N38-bare"),
]


@pytest.mark.parametrize("b,l,h,p,g,n,chunk,limit,opts", CHUNKED_SSD_CASES)
def check_chunked_ssd_matches_reference(b, l, h, p, g, n, chunk, limit, opts):
    """Our chunked SSD (four kernels) against the sequential float64 reference: y and the final state."""
    from perfmamba.ops import ssd_ref
    from perfmamba.ops.triton import chunked_ssd

    gen = _gen(31)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    args = dict(x=r(b, l, h, p), dt=r(b, l, h), A=-torch.rand(h, generator=gen) * 3, B=r(b, l, g, n), C=r(b, l, g, n),
                D=r(h, p) if opts else None, dt_bias=r(h) * 0.5, initial_states=r(b, h, p, n) if opts else None)
    out = chunked_ssd(**_to(args), dt_softplus=True, return_final_states=opts, dt_limit=limit, chunk_size=chunk)
    want = ssd_ref(**_f64(args), dt_softplus=True, return_final_states=opts, dt_limit=limit)
    y, y_ref = (out[0], want[0]) if opts else (out, want)
    scale = max(1.0, y_ref.abs().max().item())
    assert_close(y.cpu(), y_ref, atol=F32["atol"] * scale, rtol=F32["rtol"], what="y")
    if opts:
        assert_close(out[1].cpu(), want[1], **F32, what="final state")


def check_model_prefill_on_our_chunked_ssd_matches_ref():
    """Mamba-2 with N' = 115 and ngroups 2 on backend "triton" with our SSD (`use_ssd`): prefill and cached
    prefill logits and the cache against backend "ref"."""
    from perfmamba import MambaLM, preset
    from perfmamba.ops.backends import get_ops
    from perfmamba.ops.triton import use_ssd

    model = MambaLM.from_config(preset("mamba2-tiny", d_state=115, ngroups=2, n_layer=1)).to(DEVICE).eval()
    ids = torch.randint(0, 251, (1, 19), generator=_gen(32)).to(DEVICE)  # a chunk (16) and a ragged one
    ns = get_ops("triton")
    old = use_ssd(ns, "triton")
    try:
        assert ns.impl["ssd"] == "perfmamba.ops.triton.chunked_ssd"
        res = {}
        for backend in ("ref", "triton"):
            model.backend = backend
            cache = model.allocate_cache(1)
            with torch.no_grad():
                res[backend] = (model(ids), model(ids[:, :5], cache), cache)
    finally:
        ns.ssd, ns.impl["ssd"] = old
    scale = max(1.0, res["ref"][0].abs().max().item())
    for i, what in enumerate(["prefill", "cached prefill"]):
        assert_close(res["triton"][i].cpu(), res["ref"][i].cpu(), atol=MODEL_TOL["atol"] * scale,
                     rtol=MODEL_TOL["rtol"], what=what)
    for a, b in zip(res["triton"][2].ssm_states, res["ref"][2].ssm_states):
        assert_close(a.cpu(), b.cpu(), **MODEL_TOL, what="ssm state")


# GPU child: bf16, mamba-ssm, CUDA graphs ------------------------------------------------------------------------
@gpu_child
@pytest.mark.parametrize("n", [16, 64, 115, 128])
def check_gpu_bf16_scan_and_conv_at_model_shapes(n):
    """bf16 inputs at a Mamba-1 130M-like shape, against the float64 reference (bf16 input rounding only)."""
    from perfmamba.ops import causal_conv1d_ref, selective_scan_ref
    from perfmamba.ops.triton import causal_conv1d, selective_scan

    b, d, l = 2, 1536, 64
    x = _scan_inputs(b, d, n, l, 0, channel_last=True)
    xb = _to(x, torch.bfloat16)
    xb["A"] = xb["A"].float()
    y = selective_scan(**xb, delta_softplus=True)
    y_ref = selective_scan_ref(**_f64({k: v.cpu() for k, v in xb.items()}), delta_softplus=True)
    assert_close(y.float().cpu(), y_ref.float(), atol=2e-2, rtol=2e-2, what="bf16 scan")
    w = torch.randn(d, 4, device=DEVICE, dtype=torch.bfloat16)
    out = causal_conv1d(xb["u"], w, None, activation="silu")
    assert_close(out.float().cpu(), causal_conv1d_ref(xb["u"].double().cpu(), w.double().cpu(), activation="silu").float(),
                 atol=2e-2, rtol=2e-2, what="bf16 conv")


@gpu_child
def check_gpu_bf16_norms_match_model_versions():
    """bf16 activations and weights, Mamba2-130M widths: same rounding steps as the torch versions."""
    from perfmamba.models.common import gated_rmsnorm as gated_ref
    from perfmamba.ops.triton import gated_rmsnorm, rmsnorm

    gen = torch.Generator(device=DEVICE).manual_seed(1)
    y, z = (torch.randn(4, 33, 1536, generator=gen, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    w = torch.randn(1536, generator=gen, device=DEVICE, dtype=torch.bfloat16)
    assert_close(gated_rmsnorm(y, z, w, 1e-5, 1536).float(), gated_ref(y, z, w, 1e-5, 1536).float(), atol=1e-2,
                 rtol=1e-2)
    x, wx = y[..., :768], w[:768]
    want = wx * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-5)).to(x.dtype)
    assert_close(rmsnorm(x, wx, 1e-5).float(), want.float(), atol=1e-2, rtol=1e-2)


@gpu_child
@pytest.mark.parametrize("h,n", [(24, 128), (24, 115), (80, 128), (80, 89), (24, 12)],
                         ids=["130M-N128", "130M-N115", "2.7B-N128", "2.7B-N89", "130M-N12"])
def check_gpu_bf16_fused_decode_steps_at_model_shapes(h, n):
    """The fused step kernels compiled, bf16 activations and cache at Mamba2-130M / 2.7B widths (headdim 64) and
    Mamba-1 2.8B (r = 160), against the float64 references fed the same bf16 values."""
    from perfmamba.ops.decode import add_rmsnorm_ref, mamba1_step_ref, mamba2_step_ref
    from perfmamba.ops.triton import add_rmsnorm, mamba1_step, mamba2_step

    gen = torch.Generator(device=DEVICE).manual_seed(2)
    bf = torch.bfloat16
    r = lambda *s, dtype=bf: torch.randn(*s, generator=gen, device=DEVICE).to(dtype)  # noqa: E731
    b, p = 8, 64
    d = h * p
    conv_dim = d + 2 * n
    params = dict(conv_weight=r(conv_dim, 4), conv_bias=r(conv_dim), A_log=torch.rand(h, generator=gen, device=DEVICE),
                  dt_bias=r(h, dtype=torch.float32), D=r(h, dtype=torch.float32), norm_weight=r(d), eps=1e-5,
                  ngroups=1)
    conv, ssm, zx = r(b, conv_dim, 4), r(b, h, p, n), r(b, d + conv_dim + h)
    c2, s2 = conv.clone(), ssm.clone()
    got = mamba2_step(zx, c2, ssm_state=s2, **params)
    f64 = {k: (v.double() if isinstance(v, torch.Tensor) else v) for k, v in params.items()}
    c_ref, s_ref = conv.double(), ssm.double()
    want = mamba2_step_ref(zx.double(), c_ref, ssm_state=s_ref, **f64)
    assert_close(got.float(), want.float(), atol=5e-2, rtol=5e-2, what="mamba2 step out")
    assert_close(s2.float(), s_ref.float(), atol=2e-2, rtol=2e-2, what="mamba2 ssm state")
    assert torch.equal(c2.double(), c_ref), "conv state"
    dm, N, rank = 2560, 16, 160
    st = r(b, 2 * dm, N)
    st2 = st.clone()
    args = (r(b, 2 * dm), r(b, rank + 2 * N), r(2 * dm, rank) * 0.1, r(2 * dm), torch.rand(2 * dm, N, device=DEVICE),
            r(2 * dm), r(b, 2 * dm))
    y = mamba1_step(st2, *args)
    y_ref = mamba1_step_ref(st.double(), *(a.double() for a in args))
    assert_close(y.float(), y_ref.float(), atol=5e-2, rtol=5e-2, what="mamba1 step")
    x, out, w = r(b, 1, 2560), r(b, 1, 2560), r(2560)
    s, nrm = add_rmsnorm(x, out, w)
    s_ref, n_ref = add_rmsnorm_ref(x.double(), out.double(), w.double())
    assert_close(s.float(), s_ref.float(), atol=2e-2, rtol=1e-2, what="sum")
    assert_close(nrm.float(), n_ref.float(), atol=5e-2, rtol=2e-2, what="normed")


@gpu_child
def check_gpu_state_updates_match_mamba_ssm():
    mss = pytest.importorskip("perfmamba.ops.mamba_ssm_backend", reason="mamba_ssm not importable")
    from perfmamba.ops.triton import selective_state_update, ssd_state_update

    gen = torch.Generator(device=DEVICE).manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=gen, device=DEVICE)  # noqa: E731
    b, h, p, n = 4, 24, 64, 128
    s1 = r(b, h, p, n)
    s2 = s1.clone()
    args = (r(b, h, p), r(b, h), -torch.rand(h, device=DEVICE) * 4, r(b, 1, n), r(b, 1, n), r(h), r(h))
    assert_close(ssd_state_update(s1, *args, dt_softplus=True), mss.ssd_state_update(s2, *args, dt_softplus=True),
                 atol=1e-4, rtol=1e-4)
    assert_close(s1, s2, atol=1e-5, rtol=1e-5)
    d, n = 1536, 16
    s1 = r(b, d, n)
    s2 = s1.clone()
    args = (r(b, d), r(b, d), -torch.rand(d, n, device=DEVICE), r(b, n), r(b, n), r(d), r(b, d), r(d))
    assert_close(selective_state_update(s1, *args, dt_softplus=True),
                 mss.selective_state_update(s2, *args, dt_softplus=True), atol=1e-4, rtol=1e-4)


@gpu_child
@pytest.mark.parametrize("n", [128, 115, 64, 12])
def check_gpu_chunked_ssd_at_model_shapes(n):
    """Our chunked SSD compiled at Mamba2-130M widths (24 heads × 64, chunk 256, a length that is not a multiple of
    it): float32 against the float64 reference, bf16 against the reference fed the same bf16 values, and beside
    mamba-ssm's kernel where it is importable."""
    from perfmamba.ops import ssd_ref
    from perfmamba.ops.triton import chunked_ssd

    gen = torch.Generator(device=DEVICE).manual_seed(5)
    b, l, h, p = 2, 600, 24, 64
    r = lambda *s: torch.randn(*s, generator=gen, device=DEVICE)  # noqa: E731
    args = dict(x=r(b, l, h, p), dt=r(b, l, h) - 2, A=-torch.rand(h, generator=gen, device=DEVICE) * 4 - 0.5,
                B=r(b, l, 1, n), C=r(b, l, 1, n), D=r(h), dt_bias=r(h) * 0.5, initial_states=r(b, h, p, n))
    kw = dict(dt_softplus=True, return_final_states=True, chunk_size=256)
    want = ssd_ref(**{k: v.double().cpu() for k, v in args.items()}, **kw)
    for dtype, tol in ((torch.float32, dict(atol=5e-3, rtol=5e-3)), (torch.bfloat16, dict(atol=1e-1, rtol=5e-2))):
        a = {k: (v.to(dtype) if k in ("x", "B", "C") else v) for k, v in args.items()}
        ref = want if dtype == torch.float32 else ssd_ref(**{k: v.double().cpu() for k, v in a.items()}, **kw)
        y, fin = chunked_ssd(**a, **kw)
        scale = ref[0].abs().max().item()
        assert_close(y.float().cpu(), ref[0].float(), atol=tol["atol"] * scale, rtol=tol["rtol"], what=f"{dtype} y")
        assert_close(fin.float().cpu(), ref[1].float(), atol=tol["atol"] * 10, rtol=tol["rtol"], what=f"{dtype} state")


@gpu_child
def check_gpu_mamba2_prefill_with_mamba_ssm_ssd_matches_ref():
    pytest.importorskip("perfmamba.ops.mamba_ssm_backend", reason="mamba_ssm not importable")
    from perfmamba.ops.backends import get_ops

    assert get_ops("triton").impl["ssd"] == "mamba_ssm.mamba_chunk_scan_combined"
    from perfmamba import MambaLM, preset

    model = MambaLM.from_config(preset("mamba2-tiny", chunk_size=64)).to(DEVICE).eval()
    ids = torch.randint(0, 251, (2, 150), generator=_gen(10)).to(DEVICE)
    with torch.no_grad():
        model.backend = "ref"
        want = model(ids)
        model.backend = "triton"
        got = model(ids)
    assert_close(got, want, **MODEL_TOL)


@gpu_child
@pytest.mark.parametrize("name", ["mamba-tiny", "mamba2-tiny"])
def check_gpu_cuda_graph_decode_matches_eager(name):
    from perfmamba import MambaLM, preset
    from perfmamba.models.graphs import GraphedStep
    from perfmamba.profiling.timing import decode_latency

    model = MambaLM.from_config(preset(name)).to(DEVICE).eval()
    model.backend = "triton"
    ids = torch.randint(0, 251, (3, 12), generator=_gen(11)).to(DEVICE)
    c_eager, c_graph = model.allocate_cache(3), model.allocate_cache(3)
    with torch.no_grad():
        model(ids[:, :8], c_eager)
        model(ids[:, :8], c_graph)
        step = GraphedStep(model, c_graph)
        for t in range(8, 12):
            want = model.step(ids[:, t], c_eager)
            got = step(ids[:, t]).clone()
            assert_close(got, want, atol=1e-5, rtol=1e-5, what=f"token {t}")
    assert c_graph.seqlen_offset == c_eager.seqlen_offset
    stats = decode_latency(model, 4, steps=5, repeats=2)
    assert stats["ms_per_token"] > 0


@pytest.mark.slow
def test_gpu_book_script_runs_its_steps_on_tiny_presets(tmp_path):
    """benchmarks/gpu_book.sh, the one prepared call of a GPU session, in its CPU smoke mode (tiny presets, the
    Triton kernels interpreted): every step exits 0 and writes the files the book reads."""
    env = dict(os.environ, GPU_BOOK_SMOKE="1", TRITON_INTERPRET="1", PERFMAMBA_RESULTS=str(tmp_path),
               PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_book.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("exit 0") == 3, proc.stdout[-3000:]
    (machine,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    import pandas as pd

    prof = pd.read_csv(machine / "profile.csv")
    assert set(prof["model"]) == {"mamba-tiny", "mamba2-tiny"} and set(prof["path"]) == {"triton"}
    assert {"timers", "profiler"} <= set(prof["method"])
    assert set(prof["fused"]) == {True}  # the triton path runs the fused norms, and its rows say so
    eff = pd.read_csv(machine / "pruning_efficiency.csv")
    assert set(eff["mode"]) == {"dense", "removed", "zeroed"}
    assert (machine / "env.json").is_file()
