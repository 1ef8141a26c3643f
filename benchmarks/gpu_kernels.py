"""GPU benchmarks of the `triton` path: ratios measured in one run against mamba-ssm's Triton path, transformers'
torch path and the memory-bandwidth floor. Random-init weights (no checkpoint reaches the GPU machines), bf16.

    python benchmarks/gpu_kernels.py                       # every section, prints a ratio table
    python benchmarks/gpu_kernels.py --only prefill,decode --json rows.json

Sections (each a function returning tidy rows; benchmarks/gpu_campaign.py runs them under a time budget):
    bandwidth   device-to-device copy (bytes read + written per second): the floor's denominator
    prefill     Mamba2-130M B=8, L=8192 (and 2048): our model on `triton`, on `mamba_ssm`, and mamba-ssm's own model
    decode      one CUDA graph per step: Mamba2-130M B=8/64 and Mamba2-2.7B B=8, ours vs mamba-ssm vs the floor
    prune       kept states N' = floor(128 (1 - r)) for r = 0.5 (and the paper's odd N'), decode B=64, prefill L>=2048
    mamba1      Mamba-1 130M prefill B=8, L=512: our Triton scan vs transformers' torch path
    hf          transformers' torch paths (run in a child process that cannot see mamba-ssm; see `hf_rows`)
    kernels     single operators at model shapes: ours vs the torch references / mamba-ssm, with achieved GB/s

mamba-ssm on the GPU machines is a pure-Python wheel (Triton kernels only); `perfmamba.ops.mamba_ssm_backend`, the
one importer of mamba-ssm, registers the stand-in for its missing CUDA extension (../shared/gpu/README.md). Every
row names the code path and the kernels
that produced it (`path`, `impl`).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing the package (the GPU machine)
    sys.path.insert(0, str(ROOT))

from perfmamba.config import preset  # noqa: E402
from perfmamba.experiments.gpu_goals import PAPER_KEPT, ratios, verdict  # noqa: E402
from perfmamba.models.lm import MambaLM  # noqa: E402

SECTIONS = ("bandwidth", "prefill", "decode", "prune", "mamba1", "hf", "kernels")
VOCAB = 50277  # GPT-NeoX vocabulary of the state-spaces checkpoints (padded to 50280)
DTYPE = torch.bfloat16


# rows ------------------------------------------------------------------------------------------------------------
def row(model, arch, path, component, phase, batch, seqlen, d_state, metric, value, unit, *, ratio=0.0, impl="",
        spread=(None, None), note=""):
    """One tidy measurement (columns of data/results/<device>/*.csv)."""
    return {"model": model, "arch": arch, "path": path, "component": component, "phase": phase, "batch": batch,
            "seqlen": seqlen, "d_state": d_state, "ratio": ratio, "metric": metric, "value": value, "unit": unit,
            "spread_lo": spread[0], "spread_hi": spread[1], "impl": impl, "dtype": str(DTYPE).replace("torch.", ""),
            "note": note}


def error_row(section, case, exc):
    return row(case, "", "", section, "", None, None, None, "error", None, "",
               note=f"{type(exc).__name__}: {str(exc)[:300]}")


def guarded(section, case, fn):
    """Run one case; an error becomes a row instead of ending the run (one failure must not lose the rest)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(f"[{section}] {case}: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr, flush=True)
        return [error_row(section, case, exc)]


def run_without_mamba_ssm(cmd, out: Path, timeout: float) -> tuple[list, str | None]:
    """Run a worker `cmd` in a child process that cannot import mamba-ssm (transformers binds mamba-ssm's kernels
    wherever it can import them, and those crash on what its torch path does) and read the rows it wrote to `out`:
    (rows, the error or None)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PERFMAMBA_NO_MAMBA_SSM="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and not (Path(p) / "mamba_ssm").is_dir())
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        err = proc.stderr[-300:] if proc.returncode else None
    except subprocess.TimeoutExpired:
        err = f"timed out after {timeout} s"
    return (json.loads(out.read_text()) if out.exists() else []), err


# models ----------------------------------------------------------------------------------------------------------
def import_mamba_ssm():
    """mamba-ssm's model classes (`perfmamba.ops.mamba_ssm_backend.upstream_models`), or None where it cannot load."""
    try:
        from perfmamba.ops.mamba_ssm_backend import upstream_models
    except ImportError:
        return None
    return upstream_models()


def build_ours(name, d_state=None, backend="triton"):
    """Our MambaLM, random init built directly on the GPU (a 2.7B model is minutes of CPU init), in bf16."""
    cfg = preset(name, d_state=d_state) if d_state is not None else preset(name)
    with torch.device("cuda"):
        model = MambaLM.from_config(cfg)
    model = model.to(DTYPE).eval()
    model.backend = backend
    return model


def build_upstream(ms, d_model, n_layer, d_state, arch="mamba2"):
    layer = "Mamba2" if arch == "mamba2" else "Mamba1"
    ssm_cfg = dict(layer=layer, d_state=d_state)
    if arch == "mamba2":
        ssm_cfg["use_mem_eff_path"] = False  # the fused path needs causal-conv1d's CUDA extension
    cfg = ms.MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=VOCAB, ssm_cfg=ssm_cfg)
    torch.manual_seed(0)
    return ms.MambaLMHeadModel(cfg, device="cuda", dtype=DTYPE).eval()


def ours_impl(model, op):
    from perfmamba.ops.backends import get_ops

    return getattr(get_ops(model.backend), "impl", {}).get(op, model.backend)


def random_ids(batch, seqlen, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, seqlen), device="cuda", generator=g)


def release():
    """Return freed GPU memory to the driver between cases (callers `del` their model first)."""
    gc.collect()
    torch.cuda.empty_cache()


# timing ----------------------------------------------------------------------------------------------------------
def bench(fn, **kw):
    from perfmamba.profiling.timing import bench as _bench

    with torch.inference_mode():
        return _bench(fn, "cuda", **kw)


def bench_slow(fn, warmup=1, reps=3):
    """CUDA-event timing (`perfmamba.profiling.timing.time_call`) for calls of seconds, which do_bench would run
    at least 7 times: median and p10/p90 of `reps` calls."""
    from perfmamba.profiling.timing import Summary, time_call

    with torch.inference_mode():
        s = Summary.of(time_call(fn, "cuda", warmup=warmup, iters=reps))
    return {"ms": s.median * 1e3, "p10": s.p10 * 1e3, "p90": s.p90 * 1e3}


def prefill_ours(model, batch, seqlen):
    """Time to first token: the full forward, then the LM head on the last position only (as mamba-ssm's
    `num_last_tokens=1`; logits for all 8 x 8192 positions would be 6.6 GB and dominate)."""
    ids = random_ids(batch, seqlen)

    def fn():
        h = model(ids, return_hidden=True)
        return model.lm_head(h[:, -1])
    torch.cuda.reset_peak_memory_stats()
    t = bench(fn)
    t["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return t


def prefill_upstream(model, batch, seqlen):
    ids = random_ids(batch, seqlen)
    torch.cuda.reset_peak_memory_stats()
    t = bench(lambda: model(ids, num_last_tokens=1))
    t["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return t


def decode_upstream(ms, model, batch, steps=100, repeats=5):
    """mamba-ssm's decode with one CUDA graph per step, captured as in ../shared/gpu/gpu_decode_batch.py."""
    with torch.inference_mode():
        ip = ms.InferenceParams(max_seqlen=4096, max_batch_size=batch)
        prompt = random_ids(batch, 16)
        model(prompt, inference_params=ip, num_last_tokens=1)
        ip.seqlen_offset = 16
        tok = prompt[:, -1:].clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                model(tok, inference_params=ip, num_last_tokens=1)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(tok, inference_params=ip, num_last_tokens=1)
        for _ in range(10):
            graph.replay()
        times = []
        for _ in range(repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(steps):
                graph.replay()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / steps)
        state = sum(t.numel() * t.element_size() for kv in ip.key_value_memory_dict.values() for t in kv)
    from perfmamba.profiling.timing import Summary

    s = Summary.of(times)
    return {"ms_per_token": s.median, "p10": s.p10, "p90": s.p90, "state_bytes": state}


# sections --------------------------------------------------------------------------------------------------------
_BANDWIDTH = {}


def bandwidth_rows(quick=False):
    from perfmamba.profiling.timing import copy_bandwidth

    bw = copy_bandwidth(256 << 20 if quick else 2 << 30)
    _BANDWIDTH["bytes_per_s"] = bw
    return [row("", "", "copy", "memcpy", "", None, None, None, "bandwidth", bw / 1e9, "GB/s",
                impl="torch.Tensor.copy_", note="bytes read + written per second, device to device")]


def _bandwidth():
    if "bytes_per_s" not in _BANDWIDTH:
        bandwidth_rows()
    return _BANDWIDTH["bytes_per_s"]


def prefill_rows(quick=False, seqlens=(8192, 2048), d_states=(128,), paths=("triton", "mamba_ssm_backend", "mamba_ssm")):
    """Mamba2-130M prefill, B=8: the 2x goal is against mamba-ssm as installable (115.7 ms at L=8192 on an H100)."""
    B = 2 if quick else 8
    seqlens = (512,) if quick else seqlens
    ms = import_mamba_ssm() if "mamba_ssm" in paths else None
    rows = []
    for N in d_states:
        r = next((k for k, v in PAPER_KEPT.items() if v == N), None)
        for path in paths:
            def one(path=path, N=N):
                out = []
                if path == "mamba_ssm":
                    if ms is None:
                        return [row("mamba2-130m", "mamba2", path, "model", "prefill", B, None, N, "skipped", None, "",
                                    note="mamba_ssm not importable")]
                    model = build_upstream(ms, 768, 24, N)
                    impl, fn = f"mamba_ssm {ms.version} MambaLMHeadModel (Triton SSD, torch conv1d)", prefill_upstream
                else:
                    model = build_ours("mamba2-130m", N, "triton" if path == "triton" else "mamba_ssm")
                    impl, fn = f"conv={ours_impl(model, 'conv')}; ssd={ours_impl(model, 'ssd')}", prefill_ours
                for L in seqlens:
                    t = fn(model, B, L)
                    out.append(row("mamba2-130m", "mamba2", path, "model", "prefill", B, L, N, "latency", t["ms"], "ms",
                                   ratio=r or 0.0, impl=impl, spread=(t["p10"], t["p90"]),
                                   note=f"peak {t['peak_gib']:.2f} GiB"))
                    print(json.dumps(out[-1]), flush=True)
                del model
                release()
                return out
            rows += guarded("prefill", f"{path} N={N}", one)
    return rows


def decode_rows(quick=False, cases=None, upstream=True):
    """Decode ms/token with one CUDA graph per step; `floor` rows give (weights + 2 state) / copy bandwidth."""
    from perfmamba.profiling.timing import decode_latency
    from perfmamba.profiling.memory import weight_bytes
    from perfmamba.profiling.timing import decode_floor_ms

    cases = cases or ([("mamba2-130m", 768, 24, 8, 128)] if quick else
                      [("mamba2-130m", 768, 24, 8, 128), ("mamba2-130m", 768, 24, 64, 128),
                       ("mamba2-2.7b", 2560, 64, 8, 128)])
    if quick:  # smoke shapes only: no 2.7B model
        cases = [(n, dm, nl, min(B, 8), N) for n, dm, nl, B, N in cases if n != "mamba2-2.7b"] or \
            [("mamba2-130m", 768, 24, 8, 128)]
    ms = import_mamba_ssm() if upstream else None
    bw = _bandwidth()
    rows = []
    for name, d_model, n_layer, B, N in cases:
        r = next((k for k, v in PAPER_KEPT.items() if v == N), 0.0)

        def ours(name=name, B=B, N=N, r=r):
            model = build_ours(name, N, "triton")
            t = decode_latency(model, B)
            wb = weight_bytes(model)
            floor = decode_floor_ms(wb, t["ssm_state_bytes"] + t["conv_state_bytes"], bw)
            impl = f"conv_update={ours_impl(model, 'conv_update')}; ssd_state_update={ours_impl(model, 'ssd_state_update')}"
            out = [row(name, "mamba2", "triton", "model", "decode", B, 1, N, "latency", t["ms_per_token"], "ms/token",
                       ratio=r, impl=impl + "; CUDA graph per step", spread=(t["p10"], t["p90"])),
                   row(name, "mamba2", "floor", "model", "decode", B, 1, N, "latency", floor, "ms/token", ratio=r,
                       impl="(weights + 2 x state) / copy bandwidth",
                       note=f"weights {wb / 2**20:.0f} MiB, state {t['ssm_state_bytes'] / 2**20:.0f} MiB")]
            for x in out:
                print(json.dumps(x), flush=True)
            del model
            release()
            return out
        rows += guarded("decode", f"triton {name} B={B} N={N}", ours)
        if ms is not None:
            def up(name=name, d_model=d_model, n_layer=n_layer, B=B, N=N, r=r):
                model = build_upstream(ms, d_model, n_layer, N)
                t = decode_upstream(ms, model, B)
                del model
                release()
                out = [row(name, "mamba2", "mamba_ssm", "model", "decode", B, 1, N, "latency", t["ms_per_token"],
                           "ms/token", ratio=r, impl=f"mamba_ssm {ms.version}; CUDA graph per step",
                           spread=(t["p10"], t["p90"]))]
                print(json.dumps(out[-1]), flush=True)
                return out
            rows += guarded("decode", f"mamba_ssm {name} B={B} N={N}", up)
    return rows


def prune_rows(quick=False, kept=(128, 64), odd=False):
    """Pruned vs dense with our kernels. A state-pruned model ("removed" mode) is the same network with a smaller
    d_state, so random-init models at N' stand in for pruned checkpoints (timing does not depend on the weights).
    `odd=True` adds the paper's other kept counts (115, 89, 38, 12): does time follow N' or its power of two?"""
    Ns = tuple(kept) + ((115, 89, 38, 12) if odd else ())
    Bd = 8 if quick else 64
    rows = decode_rows(quick, cases=[("mamba2-130m", 768, 24, Bd, N) for N in Ns], upstream=False)
    seqlens = (512,) if quick else (2048, 8192)
    rows += prefill_rows(quick, seqlens=seqlens, d_states=Ns, paths=("triton",))
    return rows


def mamba1_rows(quick=False):
    """Mamba-1 130M prefill B=8, L=512 on our Triton scan (the transformers side runs in `hf_rows`)."""
    B, L = (2, 128) if quick else (8, 512)

    def one():
        model = build_ours("mamba-130m", None, "triton")
        t = prefill_ours(model, B, L)
        impl = f"conv={ours_impl(model, 'conv')}; selective_scan={ours_impl(model, 'selective_scan')}"
        del model
        release()
        out = [row("mamba-130m", "mamba1", "triton", "model", "prefill", B, L, 16, "latency", t["ms"], "ms", impl=impl,
                   spread=(t["p10"], t["p90"]), note=f"peak {t['peak_gib']:.2f} GiB")]
        print(json.dumps(out[-1]), flush=True)
        return out
    return guarded("mamba1", "triton mamba-130m", one)


def hf_rows(quick=False, timeout=300):
    """transformers' torch paths, in a child process where mamba-ssm and causal-conv1d cannot be imported: where they
    are importable transformers binds their kernels instead, and then it would not be the torch path any more."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "hf.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "hf", "--json", str(out)]
        if quick:
            cmd.append("--quick")
        rows, err = run_without_mamba_ssm(cmd, out, timeout)
        for r in rows:
            print(json.dumps(r), flush=True)
        if err:
            rows.append(error_row("hf", "transformers worker", RuntimeError(err)))
        return rows


def _hf_worker(quick, out_path):
    # transformers 5 resolves each kernel function by importing mamba_ssm / causal_conv1d and falls back to torch
    # when that fails; blocking the imports makes every function take the torch path, whatever is installed
    sys.modules["mamba_ssm"] = None
    sys.modules["causal_conv1d"] = None
    import transformers
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

    impl = f"transformers {transformers.__version__} torch path"
    rows = []
    B = 2 if quick else 8
    cases = [("mamba-130m", "mamba1", 512 if not quick else 128, 16), ("mamba2-130m", "mamba2", 2048 if not quick else 256, 128)]
    for name, arch, L, N in cases:
        def one(name=name, arch=arch, L=L, N=N):
            if arch == "mamba1":
                cfg = MambaConfig(hidden_size=768, num_hidden_layers=24, vocab_size=VOCAB, state_size=N, expand=2,
                                  tie_word_embeddings=True)
                cls = MambaForCausalLM
            else:
                cfg = Mamba2Config(hidden_size=768, num_hidden_layers=24, vocab_size=VOCAB, state_size=N, head_dim=64,
                                   num_heads=24, n_groups=1, expand=2, chunk_size=256, tie_word_embeddings=True)
                cls = Mamba2ForCausalLM
            torch.manual_seed(0)
            with torch.device("cuda"):
                model = cls(cfg)
            model = model.to(DTYPE).eval()
            ids = random_ids(B, L)
            torch.cuda.reset_peak_memory_stats()
            t = bench_slow(lambda: model(ids, use_cache=False, logits_to_keep=1))
            peak = torch.cuda.max_memory_allocated() / 2**30
            model = None  # noqa: F841  (frees it before the next case; the timed lambda holds the name)
            release()
            return [row(name, arch, "transformers", "model", "prefill", B, L, N, "latency", t["ms"], "ms", impl=impl,
                        spread=(t["p10"], t["p90"]), note=f"peak {peak:.2f} GiB")]
        rows += guarded("hf", f"transformers {name}", one)
        Path(out_path).write_text(json.dumps(rows))


def kernel_rows(quick=False):
    """Single operators at model shapes, ours vs the torch reference (and mamba-ssm where it has the op)."""
    from perfmamba.ops import causal_conv1d_ref, causal_conv1d_update_ref, selective_scan_chunked, ssd_state_update_ref
    from perfmamba.ops.triton import causal_conv1d, causal_conv1d_update, selective_scan, ssd_state_update

    rows = []
    dev = "cuda"
    bw = _bandwidth()

    def rec(model, arch, path, comp, phase, B, L, N, t, nbytes, impl):
        gbs = nbytes / (t["ms"] * 1e-3) / 1e9
        out = [row(model, arch, path, comp, phase, B, L, N, "latency", t["ms"], "ms", impl=impl,
                   spread=(t["p10"], t["p90"])),
               row(model, arch, path, comp, phase, B, L, N, "bandwidth", gbs, "GB/s", impl=impl,
                   note=f"{gbs / (bw / 1e9):.2f} of copy bandwidth")]
        print(json.dumps(out[0]), flush=True)
        return out

    # conv1d prefill, Mamba2-130M: xBC is a channel-last view of the in_proj output
    def conv():
        B, L = (2, 1024) if quick else (8, 8192)
        d, w = 1536 + 2 * 128, 4
        zxbcdt = torch.randn(B, L, 1536 + d + 24, device=dev, dtype=DTYPE)
        x = zxbcdt[..., 1536:1536 + d].transpose(1, 2)  # (b, d, l), channel-last
        wt, bias = torch.randn(d, w, device=dev, dtype=DTYPE), torch.randn(d, device=dev, dtype=DTYPE)
        nbytes = 2 * x.numel() * x.element_size()
        out = []
        for path, fn in (("triton", causal_conv1d), ("torch", causal_conv1d_ref)):
            t = bench(lambda fn=fn: fn(x, wt, bias, activation="silu"))
            out += rec("mamba2-130m", "mamba2", path, "conv1d", "prefill", B, L, 128, t, nbytes, fn.__module__ + "." + fn.__name__)
        return out
    rows += guarded("kernels", "conv1d", conv)

    # Mamba-1 scan, 130M shape
    def scan():
        B, L, d, N = (2, 128, 1536, 16) if quick else (8, 512, 1536, 16)
        xz = torch.randn(B, L, 2 * d, device=dev, dtype=DTYPE)
        u, z = xz[..., :d].transpose(1, 2), xz[..., d:].transpose(1, 2)
        delta = torch.randn(B, L, d, device=dev, dtype=DTYPE).transpose(1, 2)
        A = -torch.rand(d, N, device=dev) - 0.5
        BC = torch.randn(B, L, 48 + 2 * N, device=dev, dtype=DTYPE)
        Bm, Cm = BC[..., 48:48 + N].transpose(1, 2), BC[..., 48 + N:].transpose(1, 2)
        D, db = torch.ones(d, device=dev), torch.zeros(d, device=dev)
        nbytes = 4 * u.numel() * u.element_size() + 2 * Bm.numel() * Bm.element_size()
        out = []
        for path, fn in (("triton", selective_scan), ("torch", selective_scan_chunked)):
            t = bench(lambda fn=fn: fn(u, delta, A, Bm, Cm, D, z, db, delta_softplus=True))
            out += rec("mamba-130m", "mamba1", path, "ssm.scan", "prefill", B, L, N, t, nbytes, fn.__module__ + "." + fn.__name__)
        return out
    rows += guarded("kernels", "selective_scan", scan)

    # Mamba-2 decode step, 2.7B shape, dense and odd N'
    def state_update():
        out = []
        B, h, p = (8, 80, 64)
        mss = None
        try:
            from perfmamba.ops.mamba_ssm_backend import ssd_state_update as mss
        except ImportError:
            pass
        for N in (128, 115, 64):
            st = torch.randn(B, h, p, N, device=dev, dtype=DTYPE)
            x = torch.randn(B, h, p, device=dev, dtype=DTYPE)
            dt = torch.randn(B, h, device=dev, dtype=DTYPE)
            A, Dv, db = -torch.rand(h, device=dev), torch.ones(h, device=dev), torch.zeros(h, device=dev)
            Bm, Cm = torch.randn(B, 1, N, device=dev, dtype=DTYPE), torch.randn(B, 1, N, device=dev, dtype=DTYPE)
            nbytes = 2 * st.numel() * st.element_size()
            fns = [("triton", ssd_state_update), ("torch", ssd_state_update_ref)] + ([("mamba_ssm", mss)] if mss else [])
            for path, fn in fns:
                t = bench(lambda fn=fn: fn(st, x, dt, A, Bm, Cm, Dv, db, True))
                out += rec("mamba2-2.7b", "mamba2", path, "ssm", "decode", B, 1, N, t, nbytes, fn.__module__ + "." + fn.__name__)
        return out
    rows += guarded("kernels", "ssd_state_update", state_update)

    def conv_update():
        B, d, w = 64, 1536 + 256, 4
        x = torch.randn(B, d, device=dev, dtype=DTYPE)
        st = torch.randn(B, d, w, device=dev, dtype=DTYPE)
        wt, bias = torch.randn(d, w, device=dev, dtype=DTYPE), torch.randn(d, device=dev, dtype=DTYPE)
        out = []
        for path, fn in (("triton", causal_conv1d_update), ("torch", causal_conv1d_update_ref)):
            t = bench(lambda fn=fn: fn(x, st, wt, bias, "silu"))
            out += rec("mamba2-130m", "mamba2", path, "conv1d", "decode", B, 1, 128, t, 2 * st.numel() * st.element_size(),
                       fn.__module__ + "." + fn.__name__)
        return out
    rows += guarded("kernels", "conv_update", conv_update)
    return rows


SECTION_FUNCS = {"bandwidth": bandwidth_rows, "prefill": prefill_rows, "decode": decode_rows, "prune": prune_rows,
                 "mamba1": mamba1_rows, "hf": hf_rows, "kernels": kernel_rows}


# summary ---------------------------------------------------------------------------------------------------------
def print_summary(rows, file=sys.stdout):
    print("\nratio                                                                     measured   goal", file=file)
    for label, value, goal, higher in ratios(rows):
        g, v = verdict(value, goal, higher)
        print(f"  {label:<72} {value:8.2f}x  {g:>7} {v}", file=file)
    errors = [r for r in rows if r.get("metric") == "error"]
    for r in errors:
        print(f"  error: {r['model']} {r['component']}: {r['note']}", file=file)


# command line ----------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Sections: " + ", ".join(SECTIONS) + ". Needs a CUDA GPU (see benchmarks/README.md).")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="small shapes: checks that everything runs, not timings")
    ap.add_argument("--odd", action="store_true", help="in `prune`, also the paper's odd kept counts 115, 89, 38, 12")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--worker", choices=["hf"], help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker == "hf":
        _hf_worker(args.quick, args.json)
        return 0
    if not torch.cuda.is_available():
        print("gpu_kernels.py needs a CUDA GPU; nothing measured", file=sys.stderr)
        return 2
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(f"unknown sections: {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, dtype {DTYPE}", flush=True)
    rows = []
    t0 = time.perf_counter()
    for s in sections:
        fn = SECTION_FUNCS[s]
        rows += fn(args.quick, odd=args.odd) if s == "prune" else fn(args.quick)
        print(f"[{s}] done at {time.perf_counter() - t0:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    print_summary(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
