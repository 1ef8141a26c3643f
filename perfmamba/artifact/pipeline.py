"""`perfmamba reproduce`: the whole pipeline on its embedded default.

corpus and tokenizer → the two small trained models → their evaluation table → every notebook executed
with papermill → the jupyter-book site. Each step reuses what an earlier run finished, so a rerun is cheap
and a killed run resumes.
"""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import torch

from ..checkpoints import load
from ..config import preset
from ..data import load_corpus
from .. import paths
from ..evaluation import evaluate_model, write_rows
from ..io import atomic_dir
from ..train import DEFAULT_MODELS, SMOKE_MODELS, train_default_models
from . import notebooks
from .book import build_book

# The smoke profile is small end to end: tiny models trained for seconds, evaluated on a slice (CI, the
# image test).
SMOKE_EVALUATION = {"splits": ("validation",), "tasks": ("corpus_choice",), "recall": (1,),
                    "max_tokens": 2048, "limit": 8}


def evaluation_table(models: dict, out, *, splits=("validation", "test"),
                     tasks=("corpus_choice", "corpus_cloze"), recall=(1, 4, 16), corpus: dict | None = None,
                     progress: bool = True, **settings):
    """Evaluate each model ({name: checkpoint dir}): perplexity per corpus split, the offline lm-eval tasks and
    the associative-recall probe. Writes tidy rows (with a `model` column) to `out` and returns them as a
    DataFrame; reuses `out` when it is newer than every checkpoint and covers every model. `corpus`
    ({split: text}) replaces the offline corpus; `settings` (max_tokens, limit, …) go to `evaluate_model`."""
    out = Path(out)
    newest = max(f.stat().st_mtime for d in models.values() for f in Path(d).glob("*.safetensors"))
    if out.exists() and out.stat().st_mtime > newest:
        old = pd.read_csv(out)
        if set(models) <= set(old.get("model", ())):
            return old[old["model"].isin(list(models))]
    rows = []
    for name, d in models.items():
        rows += [{"model": name, **r} for r in evaluate_model(load(d), splits=splits, tasks=tasks, corpus=corpus,
                                                              recall=list(recall) or None, progress=progress,
                                                              **settings)]
    write_rows(rows, out)
    return pd.DataFrame(rows)


def format_evaluation(df) -> str:
    """The evaluation rows as a text table: one row per (what, metric), one column per model."""
    d = df.copy()
    d["what"] = d["split"].fillna(d["task"])
    d["metric"] = [m if pd.isna(n) else f"{m} @ {int(n)} pairs" for m, n in zip(d["metric"], d["n_pairs"])]
    d = d[d["metric"] != "n_tokens"]
    wide = d.pivot_table(index=["what", "metric"], columns="model", values="value", aggfunc="first", sort=False)
    return wide.to_string(float_format=lambda v: f"{v:.4g}")


def check_run(profile: str, names) -> None:
    """Refuse, before any work, what the notebooks would refuse after the corpus, the training and the
    evaluation: an unknown profile or notebook, and the paper profile (our Triton kernels) without a GPU."""
    if profile not in notebooks.PROFILES:
        raise notebooks.NotebookError(f"unknown profile {profile!r} (known: {', '.join(notebooks.PROFILES)})")
    notebooks.check_names(names or ())
    if profile == "paper" and not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        raise notebooks.NotebookError("the paper profile runs our Triton kernels and needs a CUDA GPU, which this "
                                      "machine lacks; use --profile cpu (or set TRITON_INTERPRET=1 to interpret "
                                      "the kernels on the CPU, very slowly)")


def reproduce(artifacts=None, *, profile: str | None = None, names=None, build: bool = True,
              out=None) -> Path | None:
    """The whole pipeline; returns the book's HTML directory (None without `build`).

    artifacts: where corpus, tokenizer and models go (default `artifacts`, or `out/artifacts` with `out`).
    out: a directory that receives everything a run produces (the container's /out): the book as `out/book`
    (replaced as a whole once built), the result rows under `out/results` ($PERFMAMBA_RESULTS, so sweeps resume
    from them) and, unless `artifacts` says otherwise, corpus, tokenizer and models under `out/artifacts`.
    """
    t0 = time.perf_counter()
    profile = profile or ("paper" if torch.cuda.is_available() else "cpu")
    check_run(profile, names)
    env = {}
    if out is not None:
        out = Path(out).resolve()
        artifacts = artifacts or out / "artifacts"
        env[paths.RESULTS] = str(out / "results")  # the notebooks' kernels inherit it
    artifacts = Path(artifacts or "artifacts").resolve()
    smoke = profile == "smoke"
    kind = "smoke" if smoke else "default"
    specs = SMOKE_MODELS if smoke else DEFAULT_MODELS
    with paths.environ(**env):
        print(f"[1/5] corpus → {artifacts / 'corpus'}", flush=True)
        load_corpus(artifacts / "corpus")
        print(f"[2/5] {kind} models → {artifacts / 'models'}", flush=True)
        models = train_default_models(artifacts, models=specs)
        table = artifacts / "models" / ("evaluation.smoke.csv" if smoke else "evaluation.csv")
        print(f"[3/5] evaluation of the {kind} models → {table}", flush=True)
        print(format_evaluation(evaluation_table(models, table, **(SMOKE_EVALUATION if smoke else {}))))
        print("(recall: the associative-recall probe, chance 1/32; these language models were not trained on "
              "its format; ext_recall trains one that is)", flush=True)
        print(f"[4/5] notebooks ({profile} parameters) → {notebooks.OUTPUT_DIR}", flush=True)
        overrides = {"artifacts": str(artifacts),
                     "model_dirs": {preset(specs[k]["preset"]).arch: str(v) for k, v in models.items()}}
        notebooks.execute_all(profile, names=names, overrides=overrides)
        html = None
        if build:
            print("[5/5] book", flush=True)
            html = build_book(notebooks.ROOT)
            print(f"book built: {html / 'index.html'}")
            if out is not None:
                html = publish_book(html, out / "book")
                print(f"book published: {html / 'index.html'}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return html


def publish_book(html, dest) -> Path:
    """Copy the built book to `dest`, replacing what is there in one rename: a reader (or a run stopped half-way)
    sees the old book or the new one, never a mixture."""
    with atomic_dir(dest) as tmp:
        shutil.copytree(html, tmp, dirs_exist_ok=True)
    return Path(dest)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`docker stop`) received: unwinds like Ctrl-C, so temporary files are removed on the way out."""


def exit_on_sigterm() -> None:
    """Turn SIGTERM into `Terminated`. A process without a handler ignores SIGTERM when it is a container's PID 1,
    and `docker stop` then waits its whole timeout and kills the run mid-write. A second SIGTERM exits at once."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, lambda *_: os._exit(128 + signal.SIGTERM))
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
