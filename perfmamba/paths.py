"""Where files live: the artifacts folder (corpus, tokenizer, models, task data) and the results root, each
overridable by an environment variable that the notebooks' kernels inherit, and `environ` to set such a
variable for a while."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

ARTIFACTS = "PERFMAMBA_ARTIFACTS"
RESULTS = "PERFMAMBA_RESULTS"
REPO = Path(__file__).resolve().parent.parent


def artifacts_root() -> Path:
    """$PERFMAMBA_ARTIFACTS, else ./artifacts."""
    return Path(os.environ.get(ARTIFACTS) or "artifacts")


def results_root() -> Path:
    """$PERFMAMBA_RESULTS, else data/results of the source checkout, else ./data/results."""
    if os.environ.get(RESULTS):
        return Path(os.environ[RESULTS])
    return (REPO if (REPO / "pyproject.toml").exists() else Path.cwd()) / "data" / "results"


@contextlib.contextmanager
def environ(**values: str):
    """Set environment variables while the block runs; restore (or remove) them afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update({k: str(v) for k, v in values.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
