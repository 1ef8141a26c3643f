"""Offline tasks: corpus_choice / corpus_cloze built from held-out text, lambada_local, and the paper's four
tasks (piqa, arc_easy, hellaswag, openbookqa) run through their stock processing on local files."""
import json
from pathlib import Path

import lm_eval
import pytest

from perfmamba import MambaLM, preset
from perfmamba.data import DOC_SEP, train_tokenizer
from perfmamba.evaluation import EvaluationError, local_task_names, task_manager
from perfmamba.evaluation.lm_eval_model import TASKS_DIR, PerfmambaLM
from perfmamba.evaluation.local_tasks import build_local_tasks, load_task_dataset, read_jsonl, task_file


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


STOCK = Path(lm_eval.__file__).parent / "tasks"

DOCS = [
    "Act one, in the hall of the old castle\nThe king speaks to his daughter about the harvest and the sea\n"
    "She answers that the river floods the lower fields every spring\nAnd the farmers move their sheep to the hills",
    "A chapter of the chronicle of kings\nIn those days the people gathered corn in the valley of stones\n"
    "And the elders counted the sheaves before the feast of lights\nThen they sang until the morning came",
    "The merchant and the sailor\nWe sailed from the harbour before the dawn with salt and iron\n"
    "The wind turned cold and the waves rose higher than the mast\nYet the captain laughed and called for wine",
]
TEXT = DOC_SEP.join(DOCS)


def test_build_local_tasks_is_deterministic_and_well_formed(tmp_path):
    a = build_local_tasks(TEXT, tmp_path / "a", n=5)
    b = build_local_tasks(TEXT, tmp_path / "b", n=5)
    c = build_local_tasks(TEXT, tmp_path / "c", n=5, seed=1)
    for task in ("corpus_choice", "corpus_cloze"):
        assert a[task].read_bytes() == b[task].read_bytes()
    assert a["corpus_choice"].read_bytes() != c["corpus_choice"].read_bytes()
    for item in read_jsonl(a["corpus_choice"]):
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4 and 0 <= item["label"] < 4
        true_line = item["context"].split("\n")[-1] + " " + item["choices"][item["label"]]
        source = next(d for d in DOCS if true_line in d.split("\n"))  # the true choice completes a real line
        assert item["context"] in source
        for k, wrong in enumerate(item["choices"]):  # distractors come from other documents
            if k != item["label"]:
                assert not any(line.endswith(wrong) for line in source.split("\n"))
    for item in read_jsonl(a["corpus_cloze"]):
        *_, last = item["text"].split(" ")
        assert last.isalpha() and len(last) >= 3
        assert any(item["text"] in d for d in DOCS)


@pytest.mark.parametrize("text,msg", [("", "empty text"), ("a b c", "too short")], ids=["empty", "too-short"])
def test_build_local_tasks_rejects_unusable_text(tmp_path, text, msg):
    with pytest.raises(EvaluationError, match=msg):
        build_local_tasks(text, tmp_path)


def test_task_data_comes_from_data_files_then_env_then_default(tmp_path, monkeypatch):
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"text": "one two three"}) + "\n")
    assert load_task_dataset("lambada_local", data_files=str(f))["test"][0]["text"] == "one two three"
    monkeypatch.setenv("PERFMAMBA_LAMBADA", str(f))
    assert task_file("lambada_local") == f
    monkeypatch.setenv("PERFMAMBA_LAMBADA", str(tmp_path / "missing.jsonl"))
    with pytest.raises(EvaluationError, match="missing.jsonl.*PERFMAMBA_LAMBADA"):
        load_task_dataset("lambada_local")
    monkeypatch.delenv("PERFMAMBA_PIQA", raising=False)
    with pytest.raises(EvaluationError, match="PERFMAMBA_PIQA"):
        load_task_dataset("piqa_local")
    # corpus tasks are built from the corpus test split on first use
    import perfmamba.evaluation.local_tasks as local_tasks

    monkeypatch.delenv("PERFMAMBA_CORPUS_CHOICE", raising=False)
    monkeypatch.setenv("PERFMAMBA_ARTIFACTS", str(tmp_path / "art"))
    monkeypatch.setattr(local_tasks, "load_corpus", lambda root=None: {"test": TEXT})
    ds = load_task_dataset("corpus_choice")
    assert (tmp_path / "art" / "tasks" / "corpus_choice.jsonl").is_file() and len(ds["test"]) >= 4


@pytest.mark.parametrize("ours,stock", [
    ("piqa_local", "piqa/piqa.yaml"), ("arc_easy_local", "arc/arc_easy.yaml"),
    ("hellaswag_local", "hellaswag/hellaswag.yaml"), ("openbookqa_local", "openbookqa/openbookqa.yaml"),
    ("lambada_local", "lambada/lambada_openai.yaml"), ("corpus_cloze", "lambada/lambada_openai.yaml"),
])
def test_local_task_prompts_are_the_stock_ones(ours, stock):
    from lm_eval.tasks._yaml_loader import load_yaml

    if not (STOCK / stock).is_file():
        pytest.skip(f"lm-eval has no {stock}")
    a = load_yaml(TASKS_DIR / f"{ours}.yaml", resolve_func=False)
    b = load_yaml(STOCK / stock, resolve_func=False)
    for key in ("output_type", "doc_to_text", "doc_to_target", "doc_to_choice", "metric_list"):
        assert a.get(key) == b.get(key), key
    if "process_docs" in b:  # hellaswag: the stock function itself
        from lm_eval.tasks.hellaswag.utils import process_docs

        assert load_yaml(TASKS_DIR / f"{ours}.yaml")["process_docs"] is process_docs


# a few hand-written examples in each dataset's own schema
PAPER_TASKS = {
    "piqa_local": ("validation", [
        {"goal": "How do you keep bread fresh?", "sol1": "Store it in a sealed bag.", "sol2": "Leave it in the rain.",
         "label": 0},
        {"goal": "To dry wet shoes,", "sol1": "fill them with ice.", "sol2": "stuff them with newspaper.", "label": 1},
        {"goal": "How to light a candle?", "sol1": "Use a match.", "sol2": "Pour water on it.", "label": 0},
    ]),
    "arc_easy_local": ("test", [
        {"id": "q1", "question": "Which is a source of light?",
         "choices": {"text": ["the sun", "a rock", "a spoon", "sand"], "label": ["A", "B", "C", "D"]}, "answerKey": "A"},
        {"id": "q2", "question": "What do plants need to grow?",
         "choices": {"text": ["noise", "water", "plastic"], "label": ["1", "2", "3"]}, "answerKey": "2"},
        {"id": "q3", "question": "Ice is water in which state?",
         "choices": {"text": ["gas", "liquid", "solid", "plasma"], "label": ["A", "B", "C", "D"]}, "answerKey": "C"},
    ]),
    "hellaswag_local": ("validation", [
        {"ind": 1, "activity_label": "Baking", "ctx_a": "A man puts flour in a bowl.", "ctx_b": "he",
         "ctx": "", "endings": ["adds eggs and stirs.", "drives a car [title] away.", "sings loudly.", "sleeps."],
         "source_id": "x", "split": "val", "split_type": "indomain", "label": "0"},
        {"ind": 2, "activity_label": "Rowing", "ctx_a": "Two women sit in a boat.", "ctx_b": "they",
         "ctx": "", "endings": ["paint a wall.", "pull the oars together.", "eat soup.", "read books."],
         "source_id": "y", "split": "val", "split_type": "indomain", "label": "1"},
        {"ind": 3, "activity_label": "Gardening", "ctx_a": "A girl digs a hole.", "ctx_b": "she",
         "ctx": "", "endings": ["flies away.", "swims.", "plants a small tree.", "bakes bread."],
         "source_id": "z", "split": "val", "split_type": "indomain", "label": "2"},
    ]),
    "openbookqa_local": ("test", [
        {"id": "o1", "question_stem": "The moon is seen at night because it",
         "choices": {"text": ["reflects sunlight", "makes light", "is hot", "is wet"], "label": ["A", "B", "C", "D"]},
         "answerKey": "A"},
        {"id": "o2", "question_stem": "A magnet attracts",
         "choices": {"text": ["wood", "iron", "glass", "paper"], "label": ["A", "B", "C", "D"]}, "answerKey": "B"},
        {"id": "o3", "question_stem": "Water boils when it is",
         "choices": {"text": ["frozen", "shaken", "heated", "painted"], "label": ["A", "B", "C", "D"]},
         "answerKey": " C"},
    ]),
}


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    text = TEXT + DOC_SEP + json.dumps(PAPER_TASKS)
    tok = train_tokenizer(text, vocab_size=300)
    model = MambaLM.from_config(preset("mamba2-tiny", vocab_size=len(tok)))
    return PerfmambaLM(model=model, tokenizer=tok, batch_size=8)


@pytest.mark.parametrize("task", sorted(PAPER_TASKS))
def test_paper_task_runs_on_local_files_with_stock_processing(task, tiny_lm, tmp_path):
    split, docs = PAPER_TASKS[task]
    f = tmp_path / f"{task}.jsonl"
    f.write_text("".join(json.dumps(d) + "\n" for d in docs))
    # the YAML-override path: the task's own config, data_files pointing at the local file
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = load_yaml(TASKS_DIR / f"{task}.yaml")
    cfg["dataset_kwargs"] = {"data_files": {split: str(f)}}
    tm = task_manager(include_defaults=False)
    res = lm_eval.simple_evaluate(model=tiny_lm, tasks=[cfg], task_manager=tm, log_samples=True, bootstrap_iters=0)
    samples = sorted(res["samples"][task], key=lambda s: s["doc_id"])
    assert len(samples) == len(docs)
    assert {"acc,none", "acc_norm,none"} <= set(res["results"][task])
    first = samples[0]["arguments"]
    n_choices = len(first)
    if task == "piqa_local":
        assert first[0][0] == "Question: How do you keep bread fresh?\nAnswer:" and n_choices == 2
    elif task == "arc_easy_local":
        assert first[0][0] == "Question: Which is a source of light?\nAnswer:" and first[0][1] == " the sun"
        assert [s["target"] for s in samples] == [0, 1, 2]
    elif task == "hellaswag_local":  # stock process_docs: "label: ctx_a Ctx_b", brackets removed
        assert first[0][0] == "Baking: A man puts flour in a bowl. He" and n_choices == 4
        assert samples[0]["arguments"][1][1] == " drives a car. away."
    else:
        assert first[0][0] == "The moon is seen at night because it"
        assert [s["target"] for s in samples] == [0, 1, 2]  # " C" → answerKey.lstrip()


def test_lambada_local_on_the_reference_file(tiny_lm, shared_data):
    tm = task_manager(include_defaults=False)
    res = lm_eval.simple_evaluate(model=tiny_lm, tasks=["lambada_local"], task_manager=tm, limit=4,
                                  log_samples=True, bootstrap_iters=0)
    s = res["samples"]["lambada_local"][0]
    line = json.loads((shared_data / "lambada_openai_test.jsonl").open().readline())["text"]
    assert s["arguments"][0][0] + s["arguments"][0][1] == line
    assert 0 <= res["results"]["lambada_local"]["acc,none"] <= 1


def test_every_shipped_task_is_indexed():
    tm = task_manager(include_defaults=False)
    assert set(local_task_names()) == {"lambada_local", "corpus_choice", "corpus_cloze", "piqa_local",
                                       "arc_easy_local", "hellaswag_local", "openbookqa_local"}
    assert set(local_task_names()) <= set(tm.all_tasks)
