"""The experiments behind the notebooks: each computes tidy rows, caches them, and returns a DataFrame.

    latency               fig2_latency, table1_components   the profiling sweep (`perfmamba.profiling.sweep`)
    roofline              ext_roofline                      latency rows + the machine's measured ceilings
    activity              fig3_state_activity               activity(l, s) per layer and state
    pruning_quality       fig4_accuracy, ext_criteria       prune → perplexity, offline tasks, recall probe
    pruning_efficiency    table2_efficiency                 removed-mode pruned models vs dense, profiled
    tradeoff              fig6_tradeoff                     quality and efficiency rows joined on the ratio
    decode_state_traffic  ext_decode_state_traffic          weight vs recurrent-state bytes per decode step
    recall_pruning        ext_recall                        associative recall of a recall-trained model, pruned
    gpu_results           ext_kernels                       rows committed by GPU machines (`committed`: one
                                                            experiment's; `gpu_claims`: the claims on them)

Rows are cached in ``<results_root>/<device-slug>/<experiment>.csv`` (`perfmamba.results`; results_root is
the argument, else $PERFMAMBA_RESULTS, else data/results). A point whose key is already in the file is read
back, not recomputed, so a killed notebook resumes and two notebooks over the same points share the work.
Keys include a fingerprint of the model's weights (`model_ref`), so a retrained model is measured again.

Progress bars are off by default (`progress=True` turns them on): the notebooks' pages show results, not bars.

Every returned frame has `machine` (the device slug of the directory its rows came from), `device` and `path`
(the compute path: "ref", "triton", "mamba_ssm"). The analysis that turns rows into tables (`efficiency_summary`,
`method_agreement`, `trace_gap`, …) is here too; the claims and their verdicts are in `perfmamba.claims`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
from pathlib import Path

import torch

from . import results
from .config import PRESETS, preset
from .profiling.sweep import CALL as CALL_METHOD  # rows of a call timed whole, no range instrumented
from .errors import PerfmambaError


class ExperimentError(PerfmambaError, ValueError):
    """An experiment that cannot run with the arguments given."""


# ------------------------------------------------------------------------------------------------------
# places, models, data

def results_dir(results_root=None, device=None) -> Path:
    """``<results_root>/<device-slug>``: where this machine's rows go."""
    root = Path(results_root) if results_root is not None else results.results_root()
    return root / results.device_slug(device)


def _csv(experiment: str, results_root=None, device=None) -> Path:
    return results.results_path(experiment, device, root=results_root)


def _device(device=None) -> torch.device:
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def _specs(models) -> list:
    """Model specs from a list, or from the notebooks' `model_dirs` mapping ({"mamba1": dir, ...})."""
    if models is None:
        return []
    if isinstance(models, dict):
        models = list(models.values())
    if isinstance(models, (str, os.PathLike)):
        models = [models]
    out = []
    for m in models:
        if isinstance(m, torch.nn.Module):
            out.append(m)
        elif str(m) in PRESETS and not Path(str(m)).is_dir():
            out.append(str(m))
        elif Path(str(m)).expanduser().is_dir():
            out.append(str(Path(str(m)).expanduser()))
        else:
            raise ExperimentError(f"unknown model {m!r}: not a preset ({', '.join(PRESETS)}) nor a checkpoint "
                                  "directory (`make reproduce` or `perfmamba train` writes the default models)")
    return out


_SHA_CACHE: dict[tuple, str] = {}


def model_ref(spec) -> tuple[str, str]:
    """(name, fingerprint) of a model spec: a preset gives (preset, "preset"), a checkpoint directory its name
    and "sha256:" + the first 12 hex digits of the sha256 of its weight files."""
    if isinstance(spec, torch.nn.Module):
        src = getattr(spec, "source", None)
        return (Path(str(src)).name if src else type(spec).__name__), "in-memory"
    if str(spec) in PRESETS and not Path(str(spec)).is_dir():
        return str(spec), "preset"
    path = Path(str(spec))
    files = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        raise ExperimentError(f"{path}: no weight files (*.safetensors, *.bin)")
    key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        for p in files:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        _SHA_CACHE[key] = "sha256:" + h.hexdigest()[:12]  # a prefix keeps it text in CSV round trips
    return path.name, _SHA_CACHE[key]


def _load(spec, device=None, dtype=None):
    from .checkpoints import load

    if isinstance(spec, torch.nn.Module):
        return spec
    return load(spec, device=_device(device), dtype=dtype).eval()


def _tokenizer(model):
    from .evaluation.lm_eval_model import resolve_tokenizer

    try:
        return resolve_tokenizer(model, None)
    except PerfmambaError:
        return None


@contextlib.contextmanager
def _artifacts_env(artifacts):
    """$PERFMAMBA_ARTIFACTS = artifacts while evaluating: the offline tasks read their data from there."""
    old = os.environ.get("PERFMAMBA_ARTIFACTS")
    os.environ["PERFMAMBA_ARTIFACTS"] = str(Path(artifacts).resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PERFMAMBA_ARTIFACTS", None)
        else:
            os.environ["PERFMAMBA_ARTIFACTS"] = old


_TOKENS: dict[tuple, torch.Tensor] = {}


def corpus_tokens(tokenizer, split: str, artifacts="artifacts") -> torch.Tensor:
    """The whole corpus split as one token stream (documents led by eos), cached per process."""
    from .data import SPLITS, documents, encode_documents, load_corpus

    if split not in SPLITS:
        raise ExperimentError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    key = (id(tokenizer), len(tokenizer), str(Path(artifacts).resolve()), split)
    if key not in _TOKENS:
        corpus = load_corpus(Path(artifacts) / "corpus")
        _TOKENS[key] = encode_documents(documents(corpus[split]), tokenizer)
    return _TOKENS[key]


def calibration_batch(model, n_tokens: int, seq_len: int, *, artifacts="artifacts", split="validation",
                      seed: int = 0) -> torch.LongTensor:
    """(n_tokens // seq_len, seq_len) calibration ids (one row of n_tokens when n_tokens < seq_len): the corpus
    split through the model's tokenizer, or seeded random ids for a model without one (a preset)."""
    if n_tokens < 1 or seq_len < 1:
        raise ExperimentError(f"need n_tokens ≥ 1 and seq_len ≥ 1, got n_tokens={n_tokens}, seq_len={seq_len}")
    seq_len = min(seq_len, n_tokens)
    rows = n_tokens // seq_len
    tok = _tokenizer(model)
    if tok is None:
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, model.config.vocab_size, (rows, seq_len), generator=g)
    ids = corpus_tokens(tok, split, artifacts)
    if ids.numel() < rows * seq_len:
        raise ExperimentError(f"the {split} split has {ids.numel()} tokens, fewer than the {rows * seq_len} asked")
    return ids[: rows * seq_len].view(rows, seq_len)  # (b, l)


def _with_machine(df, path: Path):
    df = df.copy()
    df["machine"] = path.parent.name
    return df


def _read(path: Path):
    import pandas as pd

    df = results.read_rows(path)
    return _with_machine(df, path) if not df.empty else pd.DataFrame()


def _values(xs):
    return {results.format_value(x) for x in xs}


def _isin(df, col, values):
    """Rows whose `col` equals one of `values`, compared as CSV text (so 64 matches 64 and "64")."""
    want = _values(values)
    return df[df[col].map(results.format_value).isin(want)]


def _write_env(path: Path, extra: dict, device=None):
    try:
        results.write_env(path.parent, extra, device=device)
    except OSError:
        pass


# ------------------------------------------------------------------------------------------------------
# profiling: latency and the roofline

def _flush_denormals(device) -> str:
    from .profiling.timing import set_flush_denormal

    return set_flush_denormal(True) if _device(device).type == "cpu" else "off"


def latency(models, seqlens, batches=(1,), phases=("prefill", "decode"), *, paths=("ref",), methods=("timers",),
            warmup=None, iters=None, dtype=None, device=None, threads=None, results_root=None,
            experiment: str = "latency", progress: bool = False):
    """Per-component time (and memory with the "profiler" method), FLOPs and bytes of every model × path ×
    phase × batch × seqlen point: `perfmamba.profiling.sweep` into ``<experiment>.csv``. Returns the rows of
    the requested grid (measured now or earlier), with `machine`.

    models: preset names, checkpoint directories, or the notebooks' model_dirs mapping.
    """
    from .profiling.sweep import sweep

    specs = _specs(models)
    if not specs:
        raise ExperimentError("latency: no models given")
    out = _csv(experiment, results_root, device)
    _flush_denormals(device)
    sweep(specs, list(seqlens), list(batches), tuple(phases), tuple(paths), tuple(methods), warmup=warmup,
          iters=iters, out=out, device=device, dtype=dtype, threads=threads, progress=progress,
          flush_denormal=_device(device).type == "cpu")
    df = _read(out)
    names = [model_ref(s)[0] for s in specs]
    df = _isin(_isin(_isin(df, "model", names), "seqlen", seqlens), "batch", batches)
    df = _isin(_isin(df, "phase", phases), "path", paths)
    df = _isin(df, "method", list(methods) + ["analytic", CALL_METHOD])
    return df[(df["mode"] == "dense")].reset_index(drop=True)


PEAK_COLUMNS = ["device", "dtype", "metric", "value", "unit", "method", "size", "n_iter"]


def machine_peaks(device=None, *, dtype="float32", results_root=None, experiment: str = "machine_peaks"):
    """Measured ceilings of this machine: matmul FLOP/s (an n×n×n product) and copy bandwidth (bytes read +
    written per second of a large tensor copy). Cached; returns rows (metric peak_flops / peak_bandwidth)."""
    import statistics

    from .profiling.sweep import parse_dtype
    from .profiling.timing import time_call

    dev = _device(device)
    out = _csv(experiment, results_root, dev)
    done = results.existing_keys(out, ["device", "dtype"])
    key = results.row_key({"device": str(dev), "dtype": dtype}, ["device", "dtype"])
    if key not in done:
        dt = parse_dtype(dtype)
        n = 4096 if dev.type == "cuda" else 1024
        a = torch.randn(n, n, device=dev).to(dt)
        b = torch.randn(n, n, device=dev).to(dt)
        mm = statistics.median(time_call(lambda: a @ b, dev, warmup=2, iters=7))
        numel = (1 << 28) if dev.type == "cuda" else (1 << 25)
        x = torch.empty(numel, device=dev, dtype=dt).fill_(1)
        y = torch.empty_like(x)
        cp = statistics.median(time_call(lambda: y.copy_(x), dev, warmup=2, iters=7))
        rows = [dict(device=str(dev), dtype=dtype, metric="peak_flops", value=2 * n ** 3 / mm, unit="flop/s",
                     method=f"matmul {n}x{n}x{n}", size=n, n_iter=7),
                dict(device=str(dev), dtype=dtype, metric="peak_bandwidth", value=2 * x.numel() * x.element_size() / cp,
                     unit="byte/s", method="tensor copy (read + write)", size=x.numel() * x.element_size(), n_iter=7)]
        results.append_rows(out, rows, PEAK_COLUMNS)
        _write_env(out, {"experiment": experiment}, dev)
    df = _read(out)
    return _isin(_isin(df, "device", [str(dev)]), "dtype", [dtype]).reset_index(drop=True)


def roofline(models, seqlens, batches=(1,), phases=("prefill", "decode"), *, peak_flops=None, peak_bw=None,
             paths=("ref",), warmup=None, iters=None, dtype=None, device=None, results_root=None,
             experiment: str = "latency", progress: bool = False):
    """Latency rows (`latency`) plus two rows with component "machine": the compute and bandwidth ceilings,
    given (`peak_flops` FLOP/s, `peak_bw` byte/s, e.g. a GPU's data sheet) or measured (`machine_peaks`)."""
    import pandas as pd

    rows = latency(models, seqlens, batches, phases, paths=paths, methods=("timers",), warmup=warmup, iters=iters,
                   dtype=dtype, device=device, results_root=results_root, experiment=experiment, progress=progress)
    if peak_flops is None or peak_bw is None:
        dt = dtype or ("bfloat16" if _device(device).type == "cuda" else "float32")
        peaks = machine_peaks(device, dtype=dt, results_root=results_root)
        measured = dict(zip(peaks["metric"], peaks["value"]))
        src = "measured"
    else:
        measured, src = {}, "given"
    flops = float(peak_flops if peak_flops is not None else measured["peak_flops"])
    bw = float(peak_bw if peak_bw is not None else measured["peak_bandwidth"])
    machine = rows["machine"].iloc[0] if len(rows) else results.device_slug(device)
    extra = pd.DataFrame([
        dict(component="machine", metric="peak_flops", value=flops, unit="flop/s", method=src, machine=machine),
        dict(component="machine", metric="peak_bandwidth", value=bw, unit="byte/s", method=src, machine=machine)])
    return pd.concat([rows, extra], ignore_index=True)


# ------------------------------------------------------------------------------------------------------
# state activity

ACTIVITY_COLUMNS = ["model", "model_sha", "arch", "layer", "state", "d_state", "activity", "decay", "n_tokens",
                    "seq_len", "split", "device", "path"]
ACTIVITY_KEY = ["model", "model_sha", "n_tokens", "seq_len", "split"]


def activity(model_dirs, *, n_tokens: int = 16384, seq_len: int = 256, split: str = "validation",
             artifacts="artifacts", device=None, results_root=None, experiment: str = "activity",
             progress: bool = False):
    """activity(l, s) (`perfmamba.pruning.collect_activity`) of every model on the first `n_tokens` of the corpus
    split, in rows of `seq_len`: one row per (model, layer, state). Returns the rows of these models."""
    from .pruning import activity_rows, collect_activity

    specs = _specs(model_dirs)
    if not specs:
        raise ExperimentError("activity: no models given")
    out = _csv(experiment, results_root, device)
    done = results.existing_keys(out, ACTIVITY_KEY)
    refs = [model_ref(s) for s in specs]
    for spec, (name, sha) in zip(specs, refs):
        point = dict(model=name, model_sha=sha, n_tokens=n_tokens, seq_len=seq_len, split=split)
        if results.row_key(point, ACTIVITY_KEY) in done:
            continue
        model = _load(spec, device)
        ids = calibration_batch(model, n_tokens, seq_len, artifacts=artifacts, split=split)
        with torch.inference_mode():
            act = collect_activity(model, ids, progress=progress)
        rows = []
        for r in activity_rows(act, name):
            r.pop("energy", None)
            rows.append(dict(r, model_sha=sha, n_tokens=n_tokens, seq_len=seq_len, split=split,
                             device=str(_device(device)), path=model.backend))
        results.append_rows(out, rows, ACTIVITY_COLUMNS)
        _write_env(out, {"experiment": experiment}, device)
    df = _read(out)
    keep = set(refs)
    df = df[[(m, s) in keep for m, s in zip(df["model"], df["model_sha"].astype(str))]]
    return _isin(_isin(_isin(df, "n_tokens", [n_tokens]), "seq_len", [seq_len]), "split", [split]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------------
# pruning quality

QUALITY_COLUMNS = ["model", "model_sha", "arch", "ratio", "criterion", "mode", "selection", "seed", "d_state",
                   "d_state_kept", "task", "split", "n_pairs", "metric", "value", "stderr", "n", "calib_tokens",
                   "calib_seq_len", "eval_tokens", "eval_seq_len", "limit", "recall_seqs", "device", "path"]
QUALITY_KEY = ["model", "model_sha", "ratio", "criterion", "mode", "selection", "seed", "task", "split", "n_pairs",
               "calib_tokens", "calib_seq_len", "eval_tokens", "eval_seq_len", "limit", "recall_seqs"]
DENSE = dict(ratio=0.0, criterion="none", mode="dense", selection="none", seed=0)


def _points(ratios, criteria, modes, selection, seeds):
    from .pruning import CRITERIA, MODES, SELECTIONS
    from .pruning.selection import check_ratio

    for c in criteria:
        if c not in CRITERIA:
            raise ExperimentError(f"unknown criterion {c!r}; expected one of {', '.join(CRITERIA)}")
    for m in modes:
        if m not in MODES:
            raise ExperimentError(f"unknown mode {m!r}; expected one of {', '.join(MODES)}")
    if selection not in SELECTIONS:
        raise ExperimentError(f"unknown selection {selection!r}; expected one of {', '.join(SELECTIONS)}")
    pts = [dict(DENSE)]
    for r in ratios:
        r = check_ratio(r)
        if r == 0.0:
            continue
        for c in criteria:
            for m in modes:
                for s in (seeds if c == "random" else (0,)):
                    pts.append(dict(ratio=r, criterion=c, mode=m, selection=selection, seed=int(s)))
    return pts


def _units(splits, tasks, recall):
    return ([dict(task="perplexity", split=s, n_pairs=None) for s in splits]
            + [dict(task=t, split=None, n_pairs=None) for t in tasks]
            + [dict(task="recall", split=None, n_pairs=int(n)) for n in recall])


def _kept_mean(model) -> float:
    info = model.config.extra.get("pruning")
    sizes = [len(k) for k in info["kept"]] if info else model.config.d_states
    return sum(sizes) / len(sizes)


def _evaluate(model, tok, units, *, artifacts, eval_tokens, eval_seq_len, limit, batch_size, recall_kwargs):
    """Rows {task, split, n_pairs, metric, value, stderr, n} for the work units of one model."""
    from .evaluation import evaluate_model
    from .evaluation.perplexity import perplexity_rows

    rows = []
    splits = [u["split"] for u in units if u["task"] == "perplexity"]
    tasks = [u["task"] for u in units if u["task"] not in ("perplexity", "recall")]
    pairs = [u["n_pairs"] for u in units if u["task"] == "recall"]
    if (splits or tasks) and tok is None:
        raise ExperimentError(f"{getattr(model, 'source', 'model')}: perplexity and tasks need a tokenizer beside "
                              "the checkpoint")
    if splits:
        toks = {s: corpus_tokens(tok, s, artifacts)[:eval_tokens] for s in splits}
        with torch.inference_mode():
            for r in perplexity_rows(model, toks, seq_len=eval_seq_len, batch_size=batch_size):
                rows.append(dict(task="perplexity", split=r["split"], metric=r["metric"], value=r["value"],
                                 n=int(toks[r["split"]].numel())))
    if tasks or pairs:
        # lm-eval prints progress bars and notes for every task; a notebook page is not the place for them
        with _artifacts_env(artifacts), contextlib.redirect_stderr(io.StringIO()), \
                contextlib.redirect_stdout(io.StringIO()):
            for r in evaluate_model(model, tok, splits=(), tasks=tasks, recall=pairs or None, limit=limit,
                                    batch_size=batch_size, recall_kwargs=recall_kwargs):
                rows.append({k: r.get(k) for k in ("task", "split", "n_pairs", "metric", "value", "stderr", "n")})
    return rows


def pruning_quality(model_dirs, ratios, *, criteria=("delta",), modes=("removed",), selection: str = "uniform",
                    seeds=(0,), splits=("test",), tasks=("corpus_choice", "corpus_cloze"), recall=(),
                    calib_tokens: int = 16384, calib_seq_len: int = 256, eval_tokens: int = 32768,
                    eval_seq_len: int = 256, limit: int | None = 200, recall_seqs: int = 256, batch_size: int = 8,
                    artifacts="artifacts",
                    device=None, results_root=None, experiment: str = "pruning_quality", progress: bool = False):
    """Quality of pruned models against the dense one: for every model × ratio × criterion × mode (× seed for
    the random criterion), `perfmamba.prune` then perplexity on corpus `splits` (first `eval_tokens` tokens,
    windows of `eval_seq_len`), the offline lm-eval `tasks` (first `limit` items) and the associative-recall
    probe for each n_pairs in `recall` (`recall_seqs` sequences each). The dense model is the row with ratio 0, criterion "none".

    One activity collection per model (on `calib_tokens` of the validation split) serves every ratio and
    criterion (`prune(..., stats=...)`); it runs the float64 scan only when a criterion needs it. Rows are
    appended per pruned model, so a killed run resumes at the next one.
    """
    from .pruning import NEEDS, collect_activity, prune

    specs = _specs(model_dirs)
    if not specs:
        raise ExperimentError("pruning_quality: no models given")
    points = _points(ratios, criteria, modes, selection, seeds)
    units = _units(splits, tasks, recall)
    if not units:
        raise ExperimentError("pruning_quality: nothing to measure (no splits, tasks or recall)")
    out = _csv(experiment, results_root, device)
    done = results.existing_keys(out, QUALITY_KEY)
    settings = dict(calib_tokens=calib_tokens, calib_seq_len=calib_seq_len, eval_tokens=eval_tokens,
                    eval_seq_len=eval_seq_len, limit=limit, recall_seqs=recall_seqs)
    need_scan = any(NEEDS[c] == "scan" for c in criteria)
    refs = [model_ref(s) for s in specs]
    from tqdm.auto import tqdm

    for spec, (name, sha) in zip(specs, refs):
        todo = []
        for p in points:
            left = [u for u in units if results.row_key(dict(p, **u, **settings, model=name, model_sha=sha),
                                                        QUALITY_KEY) not in done]
            if left:
                todo.append((p, left))
        if not todo:
            continue
        model = _load(spec, device)
        tok = _tokenizer(model)
        stats = None
        for p, left in tqdm(todo, desc=f"quality {name}", unit="model", disable=not progress):
            if p["mode"] == "dense":
                pruned = model
            else:
                if stats is None and any(NEEDS[q["criterion"]] for q, _ in todo if q["mode"] != "dense"):
                    ids = calibration_batch(model, calib_tokens, calib_seq_len, artifacts=artifacts)
                    with torch.inference_mode():
                        stats = collect_activity(model, ids, scan=need_scan)
                pruned = prune(model, p["ratio"], criterion=p["criterion"], mode=p["mode"],
                               selection=p["selection"], seed=p["seed"], stats=stats)
            rows = _evaluate(pruned, tok, left, artifacts=artifacts, eval_tokens=eval_tokens,
                             eval_seq_len=eval_seq_len, limit=limit, batch_size=batch_size,
                             recall_kwargs={"n_seqs": recall_seqs})
            base = dict(p, model=name, model_sha=sha, arch=model.config.arch,
                        d_state=sum(model.config.d_states) / model.config.n_layer, d_state_kept=_kept_mean(pruned),
                        device=str(_device(device)), path=model.backend, **settings)
            results.append_rows(out, [dict(base, **r) for r in rows], QUALITY_COLUMNS)
            del pruned
        _write_env(out, {"experiment": experiment}, device)
    df = _read(out)
    keep = set(refs)
    df = df[[(m, s) in keep for m, s in zip(df["model"], df["model_sha"].astype(str))]]
    df = _isin(df, "ratio", [0.0] + [float(r) for r in ratios])
    df = df[df["criterion"].isin(["none", *criteria]) & df["mode"].isin(["dense", *modes])]
    df = df[df["selection"].isin(["none", selection])]
    df = df[df["task"].isin(["perplexity", "recall", *tasks])]
    for col, v in settings.items():
        df = _isin(df, col, [v])
    return df.reset_index(drop=True)


# ------------------------------------------------------------------------------------------------------
# pruning efficiency

def pruning_efficiency(models, ratios, *, batches=(1,), seqlens=(64,), phases=("prefill", "decode"),
                       criterion: str = "magnitude", modes=("removed",), paths=("ref",), methods=("timers",),
                       warmup=None, iters=None, dtype=None, state_dtype="float32", device=None, results_root=None,
                       experiment: str = "pruning_efficiency", progress: bool = False):
    """Time, memory and state bytes of pruned models against the dense model, through the profiling sweep:
    states physically removed (mode "removed", the default) and, when `modes` asks for them, masked ("zeroed")
    or masked and bridged back to N ("bridge"), whose shapes are the dense ones. Rows are profile rows
    (`perfmamba.profiling.PROFILE_COLUMNS`) tagged with ratio, criterion and mode ("dense" for r = 0).

    Which states are removed does not change the work, only how many: the default criterion "magnitude" reads
    the weights only, so presets (random init) can be timed without calibration data.
    """
    from .profiling.sweep import sweep
    from .pruning import NEEDS, prune
    from .pruning.selection import check_ratio

    if NEEDS.get(criterion, "calibration") is not None:
        raise ExperimentError(f"pruning_efficiency times the pruned shapes; use a criterion that needs no "
                              f"calibration data (magnitude, random), not {criterion!r}")
    specs = _specs(models)
    if not specs:
        raise ExperimentError("pruning_efficiency: no models given")
    ratios = sorted({check_ratio(r) for r in ratios} - {0.0})
    out = _csv(experiment, results_root, device)
    _flush_denormals(device)
    names = []
    for spec in specs:
        dense = _load(spec, device)
        names.append(model_ref(spec)[0])
        for r, mode in [(0.0, "dense"), *((r, mode) for r in ratios for mode in modes)]:
            m = dense if r == 0.0 else prune(dense, r, criterion=criterion, mode=mode)
            tags = dict(ratio=r, criterion="none" if r == 0.0 else criterion, mode=mode)
            sweep([m], list(seqlens), list(batches), tuple(phases), tuple(paths), tuple(methods), warmup=warmup,
                  iters=iters, out=out, device=device, dtype=dtype, state_dtype=state_dtype, tags=tags,
                  progress=progress, flush_denormal=_device(device).type == "cpu")
            del m
    df = _read(out)
    df = _isin(_isin(_isin(df, "model", names), "seqlen", seqlens), "batch", batches)
    df = _isin(_isin(df, "phase", phases), "path", paths)
    df = _isin(df, "method", list(methods) + ["analytic", CALL_METHOD])
    df = _isin(df, "ratio", [0.0, *ratios])
    df = df[df["criterion"].isin(["none", criterion]) & df["mode"].isin(["dense", *modes])]
    return df.reset_index(drop=True)


def tradeoff(quality, efficiency):
    """One row per (model, ratio): quality metrics beside speed-up and memory reduction against r = 0.

    quality: `pruning_quality` rows; efficiency: `pruning_efficiency` rows of the same models (matched on the
    model name, e.g. the trained mamba2-small). Columns: model, arch, ratio, d_state_kept, the quality metrics
    (``ppl_<split>``, ``<task>_<metric>``), and per phase ``speedup_<phase>`` (dense time / pruned time) and
    ``state_reduction`` (1 − pruned / dense cache bytes), ``weights_reduction``, and ``dense_ms_<phase>``, the
    dense model's time of that phase (the longest of its points).
    """
    import pandas as pd

    if quality is None or quality.empty or efficiency is None or efficiency.empty:
        raise ExperimentError("tradeoff needs both quality and efficiency rows")
    q = quality[quality["metric"].isin(["ppl", "acc", "acc_norm"])].copy()
    q["name"] = [f"ppl_{s}" if t == "perplexity" else (f"recall{int(n)}_{m}" if t == "recall" else f"{t}_{m}")
                 for t, s, n, m in zip(q["task"], q["split"], q["n_pairs"], q["metric"])]
    qw = q.pivot_table(index=["model", "arch", "ratio", "criterion"], columns="name", values="value",
                       aggfunc="mean").reset_index()
    kept = q.groupby(["model", "ratio", "criterion"])["d_state_kept"].first().reset_index()
    qw = qw.merge(kept, on=["model", "ratio", "criterion"])
    e = efficiency_summary(efficiency)
    if e.empty:
        raise ExperimentError("tradeoff: the efficiency rows hold no timings")
    ew = e.pivot_table(index=["model", "ratio"], columns="phase", values="speedup", aggfunc="max")
    ew.columns = [f"speedup_{c}" for c in ew.columns]
    dense = e[e["ratio"].astype(float) == 0.0].pivot_table(index="model", columns="phase", values="time_ms",
                                                           aggfunc="max")
    dense.columns = [f"dense_ms_{c}" for c in dense.columns]
    ew = ew.join(dense, on="model")
    mem = e.groupby(["model", "ratio"])[["state_reduction", "weights_reduction"]].max()
    ew = ew.join(mem).reset_index()
    qw["ratio"] = qw["ratio"].astype(float).round(6)
    ew["ratio"] = ew["ratio"].astype(float).round(6)
    out = qw.merge(ew, on=["model", "ratio"], how="inner")
    if out.empty:
        raise ExperimentError("tradeoff: no model has both quality and efficiency rows (models: quality "
                              f"{sorted(set(quality['model']))}, efficiency {sorted(set(efficiency['model']))})")
    return pd.DataFrame(out).sort_values(["model", "ratio"]).reset_index(drop=True)


def graphed(rows):
    """Boolean mask of the rows timed as a CUDA graph (the column is read back from CSV as bool or text)."""
    import pandas as pd

    if "cuda_graph" not in rows:
        return pd.Series(False, index=rows.index)
    return rows["cuda_graph"].astype(str).str.lower() == "true"


def both_methods(rows, metric=None):
    """The eager rows of the two attribution methods (optionally of one `metric`), with a `machine` column."""
    if rows is None or rows.empty:
        raise ExperimentError("no profiling rows")
    keep = rows["method"].isin(["timers", "profiler"]) & ~graphed(rows)
    if metric is not None:
        keep &= rows["metric"] == metric
    d = rows[keep]
    return d if "machine" in d else d.assign(machine="")


def point_label(key: dict, several: dict) -> str:
    """A model's name, with its batch, path and machine where the rows hold several of them."""
    return key["model"] + "".join(f" (B {key[c]})" if c == "batch" else f" ({c} {key[c]})"
                                  for c in ("batch", "path", "machine") if several.get(c))


def method_agreement(rows):
    """The two attribution methods side by side, one row per (machine, model, path, phase, batch, seqlen) measured
    by both (eager calls): each method's total (ms), the SSM and "other" shares, and the components whose shares
    disagree beyond the tolerance of `perfmamba.profiling.attribution.shares_agree` ("" = the methods agree)."""
    import pandas as pd

    from .profiling.attribution import shares_agree
    from .profiling.flops import COMPONENTS

    d = both_methods(rows)
    keys = ["machine", "model", "path", "phase", "batch", "seqlen"]
    out = []
    for key, g in d.groupby(keys, sort=False):
        by = {}
        for method, h in g.groupby("method"):
            sh = h[h["metric"] == "share"].groupby("component")["value"].median().to_dict()
            tot = h[(h["metric"] == "time") & (h["component"] == "total")]["value"]
            by[method] = (sh, float(tot.median()) if len(tot) else math.nan)
        if set(by) != {"timers", "profiler"}:
            continue
        (a, ta), (b, tb) = by["timers"], by["profiler"]
        top = [c for c in COMPONENTS if c not in ("embedding", "lm_head")]
        bad = shares_agree({c: a.get(c, 0.0) for c in top}, {c: b.get(c, 0.0) for c in top})
        out.append(dict(zip(keys, key), **{
            "timers total (ms)": ta, "profiler total (ms)": tb, "ssm timers": a.get("ssm", math.nan),
            "ssm profiler": b.get("ssm", math.nan), "other timers": a.get("other", math.nan),
            "disagree": "; ".join(bad)}))
    if not out:
        raise ExperimentError("no point was measured with both methods (methods timers and profiler)")
    return pd.DataFrame(out)


def instrumentation_cost(rows, kernel_rows=None):
    """The timers' total against the same call timed whole, one row per eager point of `rows` (machine, model,
    path, fused, dtype, phase, batch, seqlen) where both exist.

    The whole-call time comes from the rows' own method "call" (the same call, nothing instrumented), else from
    `kernel_rows` (`gpu_kernels.csv`): the dense model's prefill latency on our Triton path at the same shape and
    dtype, timed by `triton.testing.do_bench` in another process. That is a near relative of the call, not the
    call: a forward without a cache, L2 flushed between repetitions. Columns: timers total (ms), whole call (ms;
    min–max where several), ratio (timers / median whole call), source."""
    import pandas as pd

    if rows is None or rows.empty:
        raise ExperimentError("no profiling rows")
    shape = ["machine", "model", "path", "dtype", "phase", "batch", "seqlen"]
    keys = shape[:3] + ["fused"] + shape[3:]
    d = rows.assign(**{k: "" for k in ("machine", "fused", "dtype") if k not in rows})
    d = d[~graphed(d) & (d["metric"] == "time") & (d["component"] == "total")]
    if "ratio" in d:
        d = d[d["ratio"].astype(float) == 0.0]
    timers = d[d["method"] == "timers"].groupby(keys)["value"].median()
    call = d[d["method"] == CALL_METHOD].groupby(keys)["value"]
    bench = None
    if kernel_rows is not None and not kernel_rows.empty:
        k = kernel_rows.assign(**{c: "" for c in ("machine", "dtype") if c not in kernel_rows})
        k = k[(k["component"] == "model") & (k["metric"] == "latency") & (k["path"] == "triton")
              & (k["phase"] == "prefill")]
        # the dense model, the one with the most states: pruned kept counts are other models
        k = k[k["d_state"] == k.groupby("model")["d_state"].transform("max")]
        bench = k.assign(batch=k["batch"].astype(int), seqlen=k["seqlen"].astype(int)).groupby(shape)["value"]
        bench = {key: g for key, g in bench}
    calls = {key: g for key, g in call}
    out = []
    for key, t in timers.items():
        kd = dict(zip(keys, key))
        if key in calls:
            v, src = calls[key], "call rows"
        elif bench is not None and tuple(kd[c] for c in shape) in bench:
            v, src = bench[tuple(kd[c] for c in shape)], "kernel campaign, do_bench"
        else:
            continue
        v = v.astype(float)
        out.append(dict(kd, **{"timers total (ms)": float(t), "whole call (ms)": span_text(v, ".1f"),
                               "ratio": float(t) / float(v.median()), "source": src}))
    if not out:
        raise ExperimentError("no call was timed both with the timers and whole")
    return pd.DataFrame(out).sort_values(keys).reset_index(drop=True)


TRACE_GAP_MIN = 0.01  # components below this share of the call are left out of the "others agree" figure


def trace_gap(rows, max_other: float | None = None):
    """Where the profiler's total falls short of the timers', in milliseconds, one row per point measured by
    both methods (eager calls).

    With `max_other`, only the points where "other" (the call's time outside every component, by the timers) is
    at most that share of the call: calls bound by the device, where the timers' CUDA events and the trace's
    kernel times should see the same work. Per point: both totals, the gap, the components the trace
    under-counts (its time below ``1 − AGREEMENT_REL`` of the timers', each with the sub-range that differs
    most) and the time they miss together, and the largest relative difference among the other components.
    Components below `TRACE_GAP_MIN` of the call are left out; "other" is one of the components."""
    import pandas as pd

    from .profiling.attribution import AGREEMENT_REL
    from .profiling.flops import COMPONENTS

    d = both_methods(rows, metric="time")
    keys = ["machine", "model", "path", "phase", "batch", "seqlen"]
    out = []
    for key, g in d.groupby(keys, sort=False):
        ms = g.groupby(["method", "component"])["value"].median()
        if not {"timers", "profiler"} <= set(ms.index.get_level_values(0)):
            continue
        t, p = ms["timers"].to_dict(), ms["profiler"].to_dict()
        tt, tp = t.get("total", math.nan), p.get("total", math.nan)
        if not (tt > 0 and tp >= 0):
            continue
        other = t.get("other", 0.0) / tt
        if max_other is not None and other > max_other:
            continue
        gap = tt - tp
        under, explained, rel = [], 0.0, math.nan
        for c in [*COMPONENTS, "other"]:
            a, b = t.get(c, 0.0), p.get(c, 0.0)
            if a < TRACE_GAP_MIN * tt:
                continue
            if b < (1 - AGREEMENT_REL) * a:
                subs = {s: t[s] - p.get(s, 0.0) for s in t if s.startswith(c + ".")}
                note = ""
                if subs:
                    s = max(subs, key=subs.get)
                    note = f" ({s} {t[s]:.1f} vs {p.get(s, 0.0):.1f})"
                under.append(f"{c} {a:.1f} vs {b:.1f} ms{note}")
                explained += a - b
            else:
                rel = abs(a - b) / a if math.isnan(rel) else max(rel, abs(a - b) / a)
        out.append(dict(zip(keys, key), **{
            "timers total (ms)": tt, "profiler total (ms)": tp, "gap (ms)": gap, "other timers": other,
            "under-counted (timers vs profiler)": ", ".join(under), "under-counted (ms)": explained,
            "others max rel. diff": rel}))
    if not out:
        why = f" with 'other' at most {max_other:.0%} of the call" if max_other is not None else ""
        raise ExperimentError(f"no point was measured with both methods{why}")
    return pd.DataFrame(out)


def efficiency_summary(rows, mode: str = "removed"):
    """Per (model, phase, batch, seqlen, ratio): total time (ms, timers), speed-up against r = 0, and the memory
    readings (weights, recurrent state = ssm + conv cache, peak) with their reduction against r = 0, for the
    pruned models of one `mode` (default "removed").

    Decode time is the step captured in a CUDA graph where the rows have one (a GPU; `timing` says "cuda graph"),
    else the eager step: eager decoding of a small model on a GPU measures the host's launch overhead. An eager
    time is the call timed whole where the rows have it (method "call", `timing` "eager, whole call"), else the
    timers' total ("eager"), which on a GPU includes the host cost of their events."""
    import pandas as pd

    if rows is None or rows.empty:
        return pd.DataFrame()
    if "mode" in rows:
        rows = rows[rows["mode"].isin(["dense", mode])]
    keys = ["model", "arch", "phase", "batch", "seqlen", "ratio", "machine", "path", "fused"]
    point = [k for k in keys if k != "ratio"]  # the dense model and its pruned versions share these
    rows = rows.assign(**{k: "" for k in ("machine", "fused") if k not in rows})
    rows = rows.assign(**{k: rows[k].fillna("") for k in keys if not pd.api.types.is_numeric_dtype(rows[k])})
    graph = graphed(rows)
    d = rows[~graph]

    def totals(x, method="timers"):
        x = x[(x["metric"] == "time") & (x["component"] == "total") & (x["method"] == method)]
        return x.groupby(keys, dropna=False)["value"].median().rename("time_ms")

    t = pd.DataFrame(totals(d)).assign(timing="eager")
    c = totals(d, CALL_METHOD)
    if len(c):  # the call timed whole (no range instrumented), where every ratio of the point has it
        have = set(c.index)
        whole = {p for p, g in t.groupby(point, dropna=False) if set(g.index) <= have}
        c = c[[tuple(i[keys.index(k)] for k in point) in whole for i in c.index]]
        t = pd.concat([t.drop(index=c.index, errors="ignore"), pd.DataFrame(c).assign(timing="eager, whole call")])
    g = totals(rows[graph & (rows["phase"] == "decode")])
    if len(g):
        t = pd.concat([t.drop(index=g.index, errors="ignore"), pd.DataFrame(g).assign(timing="cuda graph")])
    mem = d[d["metric"] == "memory"].pivot_table(index=keys, columns="component", values="value", aggfunc="max")
    out = t.join(mem, how="outer")
    peak = d[(d["metric"] == "peak_memory") & (d["component"] == "total")]
    if len(peak):
        out = out.join(peak.groupby(keys, dropna=False)["value"].max().rename("peak_bytes"), how="left")
    out = out.reset_index()
    if "ssm_state" in out:
        out["state_bytes"] = out["ssm_state"] + out.get("conv_state", 0)
    base = out[out["ratio"].astype(float) == 0.0].set_index(point)
    ref = base.reindex(pd.MultiIndex.from_frame(out[point]))
    out["d_state"] = rows.groupby(keys, dropna=False)["d_state"].first().reindex(
        pd.MultiIndex.from_frame(out[keys])).to_numpy() if "d_state" in rows else math.nan
    out["speedup"] = ref["time_ms"].to_numpy() / out["time_ms"].to_numpy()
    for col, name in (("weights", "weights_reduction"), ("state_bytes", "state_reduction"),
                      ("peak_bytes", "peak_reduction")):
        if col in out:
            out[name] = 1 - out[col].to_numpy() / ref[col].to_numpy()
    return out.sort_values(["model", "phase", "batch", "seqlen", "ratio"]).reset_index(drop=True)


def mode_comparison(rows):
    """The three pruning modes side by side: per (model, phase, batch, seqlen, ratio), the speed-up against the
    dense model and the recurrent-state reduction of each mode present in `rows` (`pruning_efficiency` rows
    with several `modes`). Zeroed and bridged models keep the dense shapes, so neither number should move."""
    import pandas as pd

    if rows is None or rows.empty or "mode" not in rows:
        raise ExperimentError("no pruning_efficiency rows with a mode column")
    modes = [m for m in ("zeroed", "bridge", "removed") if m in set(rows["mode"])]
    if not modes:
        raise ExperimentError("no pruned rows (modes zeroed, bridge or removed) to compare")
    parts = []
    for mode in modes:
        s = efficiency_summary(rows, mode=mode)
        s = s[s["ratio"].astype(float) > 0]
        cols = {"speedup": f"speedup {mode}"}
        if "state_reduction" in s:
            cols["state_reduction"] = f"state reduction {mode}"
        parts.append(s.set_index(["model", "phase", "batch", "seqlen", "ratio"])[list(cols)].rename(columns=cols))
    return pd.concat(parts, axis=1).reset_index()


# ------------------------------------------------------------------------------------------------------
# decode: weight bytes vs recurrent-state bytes

TRAFFIC_COLUMNS = ["model", "arch", "batch", "ratio", "d_state", "dtype", "state_dtype", "metric", "value", "unit",
                   "source", "device", "path"]
TRAFFIC_KEY = ["model", "batch", "ratio", "dtype", "state_dtype"]


def traffic_rows(name, batch, ratio, dtype, state_dtype):
    from .models.lm import MambaLM
    from .profiling.flops import component_counts
    from .profiling.memory import cache_bytes
    from .profiling.sweep import parse_dtype
    from .pruning.selection import n_keep

    cfg = preset(name)
    cfg = cfg.replace(d_state=[n_keep(n, ratio) for n in cfg.d_states])
    dt, sdt = parse_dtype(dtype), parse_dtype(state_dtype)
    with torch.device("meta"):
        model = MambaLM(cfg, init=False)
    size = torch.empty((), dtype=dt).element_size()
    weights = sum(t.numel() for t in {id(p): p for p in model.parameters()}.values()) * size
    cache = cache_bytes(model, batch, sdt)
    step = component_counts(cfg, batch, 1, "decode", dtype=dt, state_dtype=sdt)["total"]["bytes"]
    state = cache["ssm_state"] + cache["conv_state"]
    base = dict(model=name, arch=cfg.arch, batch=batch, ratio=ratio, d_state=sum(cfg.d_states) / cfg.n_layer,
                dtype=dtype, state_dtype=state_dtype, source="analytic", device="any", path="analytic")
    return [dict(base, metric="weights_bytes", value=weights, unit="byte"),
            dict(base, metric="ssm_state_bytes", value=cache["ssm_state"], unit="byte"),
            dict(base, metric="conv_state_bytes", value=cache["conv_state"], unit="byte"),
            dict(base, metric="step_bytes", value=step, unit="byte"),
            dict(base, metric="state_traffic_fraction", value=2 * state / step, unit="fraction")]


def decode_state_traffic(presets, batches, ratios, *, dtype="bfloat16", state_dtype=None, measure=(),
                         measure_batches=None, measure_seqlen: int = 64, warmup=None, iters=None, device=None,
                         results_root=None, experiment: str = "decode_state_traffic", progress: bool = False):
    """Bytes one decode step must move: weights (read once) against the recurrent state (conv + SSM cache,
    read and written), per preset × batch × ratio (analytic, `perfmamba.profiling.flops` and the cache
    shapes), with `ideal_speedup` = dense step bytes / pruned step bytes, the most a bandwidth-bound step can
    gain from pruning. For the presets in `measure`, decode is also timed on this machine
    (`pruning_efficiency`, phase decode) and `measured_speedup` reported beside the ideal one.
    """
    import pandas as pd

    from .pruning.selection import check_ratio

    state_dtype = state_dtype or dtype
    names = list(presets)
    for n in names:
        if n not in PRESETS:
            raise ExperimentError(f"decode_state_traffic takes preset names, got {n!r}")
    ratios = sorted({0.0} | {check_ratio(r) for r in ratios})
    out = _csv(experiment, results_root, device)
    done = results.existing_keys(out, TRAFFIC_KEY)
    rows = []
    for n in names:
        for b in batches:
            for r in ratios:
                key = dict(model=n, batch=b, ratio=r, dtype=dtype, state_dtype=state_dtype)
                if results.row_key(key, TRAFFIC_KEY) not in done:
                    rows += traffic_rows(n, int(b), r, dtype, state_dtype)
    if rows:
        results.append_rows(out, rows, TRAFFIC_COLUMNS)
    df = _read(out)
    df = _isin(_isin(_isin(df, "model", names), "batch", batches), "ratio", ratios)
    df = _isin(_isin(df, "dtype", [dtype]), "state_dtype", [state_dtype])
    step = df[df["metric"] == "step_bytes"].copy()
    dense = step[step["ratio"].astype(float) == 0.0].set_index(["model", "batch"])["value"]
    step["value"] = [dense.get((m, b), math.nan) / v for m, b, v in zip(step["model"], step["batch"], step["value"])]
    step["metric"], step["unit"] = "ideal_speedup", "x"
    frames = [df, step]
    if measure:
        eff = pruning_efficiency(list(measure), [r for r in ratios if r > 0], batches=measure_batches or batches,
                                 seqlens=(measure_seqlen,), phases=("decode",), methods=("timers",), warmup=warmup,
                                 iters=iters, dtype=None, device=device, results_root=results_root,
                                 experiment=f"{experiment}_measured", progress=progress)
        s = efficiency_summary(eff)
        if not s.empty:
            for metric, col, unit in (("time", "time_ms", "ms"), ("measured_speedup", "speedup", "x")):
                frames.append(pd.DataFrame(dict(model=s["model"], arch=s["arch"], batch=s["batch"],
                                                ratio=s["ratio"], d_state=s["d_state"], metric=metric,
                                                value=s[col], unit=unit, source="measured", path=s["path"],
                                                device=str(_device(device)), machine=s["machine"],
                                                dtype=eff["dtype"].iloc[0], state_dtype=eff["state_dtype"].iloc[0])))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------------
# associative recall

RECALL_COLUMNS = ["model", "model_sha", "arch", "ratio", "criterion", "seed", "d_state_kept", "n_pairs", "metric",
                  "value", "chance", "n_seqs", "train_steps", "device", "path"]
RECALL_KEY = ["model", "model_sha", "ratio", "criterion", "seed", "n_pairs", "n_seqs"]


def _recall_defaults(train_steps, max_pairs) -> tuple[int, int]:
    """The training steps and pair count to use: as given, else `train_recall_model`'s own defaults."""
    import inspect

    from .evaluation import train_recall_model

    params = inspect.signature(train_recall_model).parameters
    return (int(train_steps if train_steps is not None else params["steps"].default),
            int(max_pairs if max_pairs is not None else params["max_pairs"].default))


def recall_model(artifacts="artifacts", *, train_steps: int | None = None, max_pairs: int | None = None,
                 progress: bool = False):
    """The tiny Mamba-2 trained on associative recall (`perfmamba.evaluation.train_recall_model`; None takes its
    defaults), trained once and kept in ``<artifacts>/models/recall-s<steps>-p<max_pairs>``; returns the directory."""
    from .evaluation import train_recall_model
    from .train import save_checkpoint

    train_steps, max_pairs = _recall_defaults(train_steps, max_pairs)
    path = Path(artifacts) / "models" / f"recall-s{train_steps}-p{max_pairs}"
    if not (path / "model.safetensors").is_file():
        model, history = train_recall_model(steps=train_steps, max_pairs=max_pairs, progress=progress)
        save_checkpoint(model, path, log={"task": "associative recall", "steps": train_steps, "max_pairs": max_pairs,
                                          "final_loss": history[-1]["loss"], "complete": True})
    return path


def recall_pruning(ratios, *, criteria=("delta", "random"), n_pairs=(1, 2, 4, 8, 16), seeds=(0,),
                   train_steps: int | None = None, max_pairs: int | None = None, n_seqs: int = 256,
                   calib_seqs: int = 64, artifacts="artifacts", device=None, results_root=None,
                   experiment: str = "recall_pruning", progress: bool = False):
    """Associative-recall accuracy (MQAR, `perfmamba.evaluation.recall`) of a model trained on the task
    (`recall_model`), dense and pruned (mode "removed") at each ratio and criterion, for each n_pairs.
    Calibration: `calib_seqs` recall sequences with `max_pairs` pairs (another seed than the test ones)."""
    from .evaluation.recall import RECALL_VOCAB, recall_accuracy, recall_batch
    from .pruning import NEEDS, collect_activity, prune

    train_steps, max_pairs = _recall_defaults(train_steps, max_pairs)
    pts = [p for p in _points(ratios, criteria, ("removed",), "uniform", seeds)]
    path = recall_model(artifacts, train_steps=train_steps, max_pairs=max_pairs, progress=progress)
    name, sha = model_ref(path)
    out = _csv(experiment, results_root, device)
    done = results.existing_keys(out, RECALL_KEY)
    model = stats = None
    for p in pts:
        left = [n for n in n_pairs if results.row_key(dict(p, model=name, model_sha=sha, n_pairs=n, n_seqs=n_seqs),
                                                      RECALL_KEY) not in done]
        if not left:
            continue
        if model is None:
            model = _load(path, device)
        if p["mode"] == "dense":
            pruned = model
        else:
            if stats is None and NEEDS[p["criterion"]] is not None:
                x, _ = recall_batch(calib_seqs, max_pairs, generator=torch.Generator().manual_seed(12345))
                with torch.inference_mode():
                    stats = collect_activity(model, x, scan=any(NEEDS[c] == "scan" for c in criteria))
            pruned = prune(model, p["ratio"], criterion=p["criterion"], mode="removed", seed=p["seed"], stats=stats)
        rows = []
        for n in left:
            acc = recall_accuracy(pruned, n_pairs=int(n), n_seqs=n_seqs, seed=1)
            rows.append(dict(model=name, model_sha=sha, arch=model.config.arch, ratio=p["ratio"],
                             criterion=p["criterion"], seed=p["seed"], d_state_kept=_kept_mean(pruned),
                             n_pairs=int(n), metric="acc", value=acc, chance=1 / (RECALL_VOCAB - RECALL_VOCAB // 2),
                             n_seqs=n_seqs, train_steps=train_steps, device=str(_device(device)), path=model.backend))
        results.append_rows(out, rows, RECALL_COLUMNS)
    if model is not None:
        _write_env(out, {"experiment": experiment}, device)
    df = _read(out)
    df = _isin(_isin(_isin(df, "model", [name]), "model_sha", [sha]), "n_pairs", n_pairs)
    df = _isin(_isin(df, "ratio", [0.0] + [float(r) for r in ratios]), "n_seqs", [n_seqs])
    return df[df["criterion"].isin(["none", *criteria])].reset_index(drop=True)


def recall_probe_pairs(rows, min_acc: float = 0.5) -> int:
    """The number of pairs at which pruning is judged: the largest n_pairs the dense model still answers with
    accuracy ≥ `min_acc` (a harder probe measures the model's failure, not the pruning), else the smallest."""
    dense = rows[rows["criterion"] == "none"].groupby("n_pairs")["value"].mean()
    ok = [int(n) for n, v in dense.items() if v >= min_acc]
    return max(ok) if ok else int(rows["n_pairs"].min())


# ------------------------------------------------------------------------------------------------------
# committed GPU results

NO_GPU_MESSAGE = ("No GPU results are committed: data/results/ holds no directory of a GPU machine. Run "
                  "`python benchmarks/gpu_campaign.py` (or `make reproduce` with the paper profile) on a CUDA "
                  "machine and commit data/results/<gpu-slug>/; this page then renders those rows.")


def gpu_results(results_root=None, experiment: str | None = None):
    """Every row committed by GPU machines: the CSVs under ``<results_root>/<slug>/`` whose slug is not a CPU's,
    with `experiment` (the file name), `machine` (the slug) and `device_name` (env.json's GPU, else the slug).
    Empty frame, with ``attrs["message"]`` saying so, when there are none."""
    import pandas as pd

    root = Path(results_root) if results_root is not None else results.results_root()
    frames = []
    if root.is_dir():
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("cpu-")):
            name = d.name
            env = d / "env.json"
            if env.is_file():
                try:
                    info = json.loads(env.read_text())
                    name = info.get("gpu_name") or name
                except (ValueError, OSError):
                    pass
            for f in sorted(d.glob(f"{experiment or '*'}.csv")):
                df = results.read_rows(f)
                if df.empty:
                    continue
                df = df.assign(experiment=f.stem, machine=d.name, device_name=str(name))
                frames.append(df)
    if not frames:
        df = pd.DataFrame(columns=["experiment", "machine", "device_name", "metric", "value", "unit"])
        df.attrs["message"] = NO_GPU_MESSAGE
        return df
    return pd.concat(frames, ignore_index=True)


def committed(experiment: str, results_root=None):
    """The rows of one experiment (``<experiment>.csv``) committed by GPU machines, with `machine` and
    `device_name`; columns no row fills are dropped. Empty frame with ``attrs["message"]`` when there are none."""
    rows = gpu_results(results_root, experiment)
    if rows.empty:
        rows.attrs["message"] = (f"No GPU machine has committed {experiment}.csv under data/results/<gpu-slug>/ "
                                 "(benchmarks/gpu_book.sh measures it).")
        return rows
    return rows.dropna(axis=1, how="all").reset_index(drop=True)


def span_text(xs, fmt: str) -> str:
    lo, hi = min(xs), max(xs)
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}–{hi:{fmt}}"


# ------------------------------------------------------------------------------------------------------
# provenance

def _env_of(machine: str, results_root=None) -> dict:
    root = Path(results_root) if results_root is not None else results.results_root()
    try:
        return json.loads((root / machine / "env.json").read_text())
    except (OSError, ValueError):
        return {}


def machine_label(rows, results_root=None) -> str:
    """"<device name> · <path> · <dtype> · <threads> threads" for the rows' machine(s), from their env.json."""
    if rows is None or rows.empty or "machine" not in rows:
        return "no rows"
    if results_root is None:
        results_root = rows.attrs.get("results_root")  # set by read_sweep
    labels = []
    for m in dict.fromkeys(rows["machine"].dropna()):
        sub = rows[rows["machine"] == m]
        env = _env_of(m, results_root)
        if env.get("gpu_name"):
            dev = env["gpu_name"]
        elif env.get("cpu_model"):
            dev = f"{env['cpu_model']} CPU ({env.get('cpu_count', '?')} cores)"
        else:
            dev = m
        parts = [str(dev)]
        if "path" in sub and sub["path"].notna().any():
            parts.append("/".join(sorted({str(p) for p in sub["path"].dropna()})))
        if "dtype" in sub and sub["dtype"].notna().any():
            parts.append("/".join(sorted({str(p) for p in sub["dtype"].dropna()})))
        if "threads" in sub and sub["threads"].notna().any():
            parts.append(f"threads: {int(sub['threads'].dropna().iloc[0])}")
        torch_version = (env.get("versions") or {}).get("torch")
        if torch_version:
            parts.append(f"torch {torch_version}")
        labels.append(" · ".join(parts))
    return "; ".join(labels)


def is_gpu(rows) -> bool:
    return rows is not None and not rows.empty and "machine" in rows and \
        any(not str(m).startswith("cpu-") for m in rows["machine"].dropna())


def read_sweep(path):
    """The rows of a committed results CSV (``data/results/<slug>/<name>.csv``) with `machine` set to its
    folder's name and ``attrs["results_root"]`` to the folder above, so that `machine_label` finds the
    env.json beside it. Empty frame, with ``attrs["message"]``, when `path` is None or holds no rows."""
    import pandas as pd

    rows = results.read_rows(path) if path else pd.DataFrame()
    if rows.empty:
        rows.attrs["message"] = f"No committed rows at {path!r}."
        return rows
    rows = _with_machine(rows, Path(path))
    rows.attrs["results_root"] = str(Path(path).parent.parent)
    return rows


