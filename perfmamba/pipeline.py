"""`perfmamba reproduce`: the whole pipeline on its embedded default.

corpus and tokenizer → the two small trained models → every notebook executed with papermill →
the jupyter-book site. Each step reuses what an earlier run finished, so a rerun is cheap and a killed run
resumes.
"""
from __future__ import annotations

import time
from pathlib import Path

from . import notebooks


def reproduce(artifacts="artifacts", *, profile: str | None = None, names=None, build: bool = True) -> Path | None:
    from .data import load_corpus
    from .train import train_default_models

    t0 = time.perf_counter()
    artifacts = Path(artifacts).resolve()
    profile = profile or notebooks.default_profile()
    print(f"[1/4] corpus → {artifacts / 'corpus'}", flush=True)
    load_corpus(artifacts / "corpus")
    print(f"[2/4] default models → {artifacts / 'models'}", flush=True)
    models = train_default_models(artifacts)
    print(f"[3/4] notebooks ({profile} parameters) → {notebooks.OUTPUT_DIR}", flush=True)
    arch = {"mamba-small": "mamba1", "mamba2-small": "mamba2"}
    overrides = {"artifacts": str(artifacts), "model_dirs": {arch[k]: str(v) for k, v in models.items()}}
    notebooks.execute_all(profile, names=names, overrides=overrides)
    html = None
    if build:
        from .book import build_book

        print("[4/4] book", flush=True)
        html = build_book(notebooks.ROOT)
        print(f"book built: {html / 'index.html'}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return html


def register(sub):
    p = sub.add_parser("reproduce", help="run the whole pipeline on its embedded default and build the book",
                       description="Prepare the corpus, train the two small default models (reused when already "
                                   "trained), execute every notebook with papermill and build the book.")
    p.add_argument("--artifacts", default="artifacts", help="where corpus, tokenizer and models go (default: artifacts)")
    p.add_argument("--profile", choices=notebooks.PROFILES, default=None,
                   help="notebook parameters: paper (GPU), cpu (2-core default), smoke (tiny); default: paper "
                        "with a CUDA GPU, cpu otherwise")
    p.add_argument("--notebooks", default=None, help="comma-separated subset of notebooks to execute")
    p.add_argument("--no-book", action="store_true", help="skip the book build")
    p.set_defaults(func=lambda a: reproduce(a.artifacts, profile=a.profile, build=not a.no_book,
                                            names=a.notebooks.split(",") if a.notebooks else None) and None)
