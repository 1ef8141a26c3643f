"""Evaluation tasks that run offline: built from our held-out text, or read from local files.

`build_local_tasks(test_text, out_dir, n=…)` writes two tasks from the corpus test split, deterministically:

- corpus_choice.jsonl — HellaSwag/PIQA schema: {"context", "choices" (4), "label"}. The context is up to two
  lines of a passage plus the first half of the next line; the true choice is that line's second half, the
  three distractors are second halves of lines from other documents. Metrics acc and acc_norm.
- corpus_cloze.jsonl — LAMBADA schema: {"text"}, a passage of a few lines whose last word (letters only, at
  least 3) is the target. Metrics acc and perplexity.

The lm-eval task YAMLs in perfmamba/evaluation/tasks load their data through `load_task_dataset`, which takes
`data_files` (from the YAML's dataset_kwargs or lm-eval metadata), else an environment variable, else the
default file, so the same YAML works in tests, in the pipeline and on machines with other copies of the data.
"""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

from ..data import documents, load_corpus
from ..io import atomic_write_text
from ..paths import artifacts_root
from .perplexity import EvaluationError

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS_DIR = Path(__file__).resolve().parent / "tasks"  # the lm-eval task YAMLs

# task → (environment variable, default file, the split name the task YAML evaluates)
TASK_FILES = {
    "lambada_local": ("PERFMAMBA_LAMBADA", REPO_ROOT.parent / "shared" / "data" / "lambada_openai_test.jsonl",
                      "test"),
    "corpus_choice": ("PERFMAMBA_CORPUS_CHOICE", None, "test"),
    "corpus_cloze": ("PERFMAMBA_CORPUS_CLOZE", None, "test"),
    "piqa_local": ("PERFMAMBA_PIQA", None, "validation"),
    "arc_easy_local": ("PERFMAMBA_ARC_EASY", None, "test"),
    "hellaswag_local": ("PERFMAMBA_HELLASWAG", None, "validation"),
    "openbookqa_local": ("PERFMAMBA_OPENBOOKQA", None, "test"),
}
CORPUS_TASKS = ("corpus_choice", "corpus_cloze")
DEFAULT_N = 500


def _doc_lines(text: str) -> list[list[str]]:
    return [[ln.strip() for ln in d.split("\n") if ln.strip()] for d in documents(text)]


def choice_items(test_text: str, n: int, seed: int = 0) -> list[dict]:
    """n sentence-completion items with 4 choices (see the module docstring)."""
    docs = _doc_lines(test_text)
    # candidate split lines: ≥ 6 words so both halves have ≥ 3; (doc, line) pairs in text order
    cands = [(d, i) for d, lines in enumerate(docs) for i, ln in enumerate(lines) if len(ln.split()) >= 6]
    if len(cands) < 4 or len({d for d, _ in cands}) < 2:
        raise EvaluationError(f"text too short to build choice items: {len(cands)} usable lines "
                              "(need lines of at least 6 words in at least 2 documents)")
    rng = random.Random(seed)
    picks = rng.sample(cands, min(n, len(cands)))
    items = []
    for d, i in picks:
        words = docs[d][i].split()
        cut = len(words) // 2
        context = "\n".join(docs[d][max(0, i - 2):i] + [" ".join(words[:cut])])
        true = " ".join(words[cut:])
        others = []
        for _ in range(100 * len(cands)):
            if len(others) == 3:
                break
            d2, i2 = cands[rng.randrange(len(cands))]
            w2 = docs[d2][i2].split()
            alt = " ".join(w2[len(w2) // 2:])
            if d2 != d and alt != true and alt not in others:
                others.append(alt)
        if len(others) < 3:
            raise EvaluationError("text too short to build choice items: fewer than 3 distinct "
                                  "continuations from other documents")
        label = rng.randrange(4)
        choices = others[:label] + [true] + others[label:]
        items.append({"context": context, "choices": choices, "label": label, "source": f"doc{d}:line{i}"})
    return items


_WORD = re.compile(r"[A-Za-z]{3,}")
_TRAILING = re.compile(r"[^\w']+$")  # punctuation after the last word


def _cloze_target(line: str) -> bool:
    words = _TRAILING.sub("", line).split()
    return len(words) >= 3 and _WORD.fullmatch(words[-1]) is not None


def cloze_items(test_text: str, n: int, seed: int = 0, n_lines: int = 4) -> list[dict]:
    """n LAMBADA-style passages: up to n_lines lines ending in a line whose last word is the target."""
    docs = _doc_lines(test_text)
    # lines after at least one full line of context
    cands = [(d, i) for d, lines in enumerate(docs) for i, ln in enumerate(lines)
             if i >= 1 and _cloze_target(ln)]
    if not cands:
        raise EvaluationError("text too short to build cloze items: no line of at least 3 words after "
                              "another line")
    rng = random.Random(seed)
    items = []
    for d, i in rng.sample(cands, min(n, len(cands))):
        lines = docs[d][max(0, i - n_lines + 1):i + 1]
        lines[-1] = _TRAILING.sub("", lines[-1])  # end on the target word, as LAMBADA does
        items.append({"text": "\n".join(lines), "source": f"doc{d}:line{i}"})
    return items


def build_local_tasks(corpus_test_text: str, out_dir, *, n: int = DEFAULT_N,
                      seed: int = 0) -> dict[str, Path]:
    """Write corpus_choice.jsonl and corpus_cloze.jsonl (n items each) into out_dir; returns their paths."""
    if not corpus_test_text or not corpus_test_text.strip():
        raise EvaluationError("cannot build tasks from empty text")
    if n < 1:
        raise EvaluationError(f"n must be positive, got {n}")
    paths = {task: Path(out_dir) / f"{task}.jsonl" for task in CORPUS_TASKS}
    for task, items in zip(CORPUS_TASKS, (choice_items, cloze_items)):
        rows = items(corpus_test_text, n, seed)
        atomic_write_text(paths[task], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return paths


def task_file(task: str, data_files=None) -> Path | dict:
    """Where a local task's data comes from: data_files, else $PERFMAMBA_<TASK>, else the default file.

    The corpus tasks default to $PERFMAMBA_ARTIFACTS/tasks/<task>.jsonl, built from the corpus on first use.
    """
    env, default, _ = TASK_FILES[task]
    if data_files:
        return data_files
    if os.environ.get(env):
        return Path(os.environ[env])
    if task in CORPUS_TASKS:
        path = artifacts_root() / "tasks" / f"{task}.jsonl"
        if not path.is_file():
            build_local_tasks(load_corpus()["test"], path.parent)
        return path
    if default is None:
        raise EvaluationError(f"task {task} has no data: set {env}=FILE.jsonl or pass "
                              f"dataset_kwargs data_files (see perfmamba/evaluation/tasks/{task}.yaml)")
    return default


def read_jsonl(path) -> list[dict]:
    path = Path(str(path))
    if not path.is_file():
        raise EvaluationError(f"data file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as f:
        for k, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise EvaluationError(f"{path}:{k}: not a JSON line ({e.msg})") from None
    if not rows:
        raise EvaluationError(f"{path} holds no examples")
    return rows


def load_task_dataset(task: str, data_files=None, **_ignored):
    """{split: datasets.Dataset} for an lm-eval `custom_dataset`; lm-eval passes its metadata as keywords.

    data_files: a path (the task's evaluation split) or {split: path}, as for `dataset_path: json`.
    """
    import datasets

    files = task_file(task, data_files)
    split = TASK_FILES[task][2]
    spec = dict(files) if isinstance(files, dict) else {split: files}
    if split not in spec:
        raise EvaluationError(f"task {task}: data_files must provide the split {split!r}, got "
                              f"{', '.join(spec)}")
    try:
        return datasets.DatasetDict({k: datasets.Dataset.from_list(read_jsonl(v)) for k, v in spec.items()})
    except EvaluationError as e:
        raise EvaluationError(f"task {task}: {e} (set {TASK_FILES[task][0]} or data_files)") from None
