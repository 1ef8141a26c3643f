"""`perfmamba reproduce`: the whole pipeline on its embedded default.

corpus and tokenizer → the two small trained models → their evaluation table → every notebook executed
with papermill → the jupyter-book site. Each step reuses what an earlier run finished, so a rerun is cheap
and a killed run resumes.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import notebooks

EVAL_SPLITS = ("validation", "test")
EVAL_TASKS = ("corpus_choice", "corpus_cloze")
EVAL_RECALL = (1, 4, 16)


def evaluation_table(models: dict, out, *, splits=EVAL_SPLITS, tasks=EVAL_TASKS, recall=EVAL_RECALL,
                     corpus: dict | None = None, progress: bool = True):
    """Evaluate each model ({name: checkpoint dir}): perplexity per corpus split, the offline lm-eval tasks and
    the associative-recall probe. Writes tidy rows (with a `model` column) to `out` and returns them as a
    DataFrame; reuses `out` when it is newer than every checkpoint and covers every model. `corpus`
    ({split: text}) replaces the offline corpus."""
    import pandas as pd

    from .checkpoints import load
    from .evaluation import evaluate_model, write_rows

    out = Path(out)
    newest = max(f.stat().st_mtime for d in models.values() for f in Path(d).glob("*.safetensors"))
    if out.exists() and out.stat().st_mtime > newest:
        old = pd.read_csv(out)
        if set(models) <= set(old.get("model", ())):
            return old[old["model"].isin(list(models))]
    rows = []
    for name, d in models.items():
        rows += [{"model": name, **r} for r in evaluate_model(load(d), splits=splits, tasks=tasks, corpus=corpus,
                                                              recall=list(recall) or None, progress=progress)]
    write_rows(rows, out)
    return pd.DataFrame(rows)


def format_evaluation(df) -> str:
    """The evaluation rows as a text table: one row per (what, metric), one column per model."""
    import pandas as pd

    d = df.copy()
    d["what"] = d["split"].fillna(d["task"])
    d["metric"] = [m if pd.isna(n) else f"{m} @ {int(n)} pairs" for m, n in zip(d["metric"], d["n_pairs"])]
    d = d[d["metric"] != "n_tokens"]
    wide = d.pivot_table(index=["what", "metric"], columns="model", values="value", aggfunc="first", sort=False)
    return wide.to_string(float_format=lambda v: f"{v:.4g}")


def check_run(profile: str, names=None) -> None:
    """Refuse, before any work, what the notebooks would refuse after the corpus, the training and the
    evaluation: an unknown profile or notebook, and the paper profile (our Triton kernels) without a GPU."""
    import os

    import torch

    if profile not in notebooks.PROFILES:
        raise notebooks.NotebookError(f"unknown profile {profile!r} (known: {', '.join(notebooks.PROFILES)})")
    unknown = [n for n in names or () if n not in notebooks.NOTEBOOKS]
    if unknown:
        raise notebooks.NotebookError(f"no notebook {unknown[0]!r} (known: {', '.join(notebooks.NOTEBOOKS)})")
    if profile == "paper" and not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        raise notebooks.NotebookError("the paper profile runs our Triton kernels and needs a CUDA GPU, which this "
                                      "machine lacks; use --profile cpu (or set TRITON_INTERPRET=1 to interpret "
                                      "the kernels on the CPU, very slowly)")


def reproduce(artifacts="artifacts", *, profile: str | None = None, names=None, build: bool = True) -> Path | None:
    from .data import load_corpus
    from .train import train_default_models

    t0 = time.perf_counter()
    artifacts = Path(artifacts).resolve()
    profile = profile or notebooks.default_profile()
    check_run(profile, names)
    print(f"[1/5] corpus → {artifacts / 'corpus'}", flush=True)
    load_corpus(artifacts / "corpus")
    print(f"[2/5] default models → {artifacts / 'models'}", flush=True)
    models = train_default_models(artifacts)
    table = artifacts / "models" / "evaluation.csv"
    print(f"[3/5] evaluation of the default models → {table}", flush=True)
    print(format_evaluation(evaluation_table(models, table)))
    print("(recall: the associative-recall probe, chance 1/32; these language models were not trained on its "
          "format; ext_recall trains one that is)", flush=True)
    print(f"[4/5] notebooks ({profile} parameters) → {notebooks.OUTPUT_DIR}", flush=True)
    arch = {"mamba-small": "mamba1", "mamba2-small": "mamba2"}
    overrides = {"artifacts": str(artifacts), "model_dirs": {arch[k]: str(v) for k, v in models.items()}}
    notebooks.execute_all(profile, names=names, overrides=overrides)
    html = None
    if build:
        from .book import build_book

        print("[5/5] book", flush=True)
        html = build_book(notebooks.ROOT)
        print(f"book built: {html / 'index.html'}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return html


def register(sub):
    p = sub.add_parser("reproduce", help="run the whole pipeline on its embedded default and build the book",
                       description="Prepare the corpus, train the two small default models (reused when already "
                                   "trained), evaluate them, execute every notebook with papermill and build the "
                                   "book.")
    p.add_argument("--artifacts", default="artifacts", help="where corpus, tokenizer and models go (default: artifacts)")
    p.add_argument("--profile", choices=notebooks.PROFILES, default=None,
                   help="notebook parameters: paper (GPU), cpu (2-core default), smoke (tiny); default: paper "
                        "with a CUDA GPU, cpu otherwise")
    p.add_argument("--notebooks", default=None, help="comma-separated subset of notebooks to execute")
    p.add_argument("--no-book", action="store_true", help="skip the book build")
    p.set_defaults(func=lambda a: reproduce(a.artifacts, profile=a.profile, build=not a.no_book,
                                            names=a.notebooks.split(",") if a.notebooks else None) and None)
