"""evaluate_model (tidy rows for notebooks and sweeps) and `perfmamba eval`."""
import csv

import pytest

from perfmamba import MambaLM, preset
from perfmamba.cli import main
from perfmamba.data import DOC_SEP, train_tokenizer
from perfmamba.evaluation import EvaluationError, evaluate_model, perplexity
from perfmamba.evaluation.local_tasks import build_local_tasks


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


LINES = ["the river runs under the old stone bridge near the mill",
         "a farmer counts his sheep in the cold morning light again",
         "the queen writes a letter to her brother across the sea",
         "bread and wine are set upon the table for the guests"]
TEXT = DOC_SEP.join("\n".join(LINES[(i + k) % 4] for k in range(4)) for i in range(6))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tok = train_tokenizer(TEXT, vocab_size=280)
    model = MambaLM.from_config(preset("mamba-tiny", vocab_size=len(tok)))
    model.save(root / "model")
    tok.save_pretrained(str(root / "model"))
    tasks = build_local_tasks(TEXT, root / "tasks", n=4)
    return root / "model", tok, tasks


def test_rows_cover_splits_tasks_and_recall(checkpoint, monkeypatch):
    from perfmamba import load

    path, tok, tasks = checkpoint
    monkeypatch.setenv("PERFMAMBA_CORPUS_CLOZE", str(tasks["corpus_cloze"]))
    model = load(path)
    corpus = {"validation": TEXT, "test": TEXT[:300]}
    rows = evaluate_model(model, splits=["validation", "test"], tasks=["corpus_cloze"], recall=[2], corpus=corpus,
                          seq_len=32, recall_kwargs={"n_seqs": 8, "vocab_range": (0, 64)})
    assert all(set(r) == {"split", "task", "metric", "value", "stderr", "n", "n_pairs"} for r in rows)
    got = {(r["split"], r["task"], r["metric"]): r["value"] for r in rows}
    # the perplexity row is the perplexity of the split's token stream (eos before each document)
    from perfmamba.data import documents, encode_documents

    ids = encode_documents(documents(TEXT), tok)
    assert got[("validation", "perplexity", "ppl")] == pytest.approx(perplexity(model, ids, seq_len=32)["ppl"])
    assert ("test", "perplexity", "n_tokens") in got
    assert 0 <= got[(None, "corpus_cloze", "acc")] <= 1 and (None, "corpus_cloze", "perplexity") in got
    assert 0 <= got[(None, "recall", "acc")] <= 1
    assert next(r for r in rows if r["task"] == "corpus_cloze")["n"] == 4


def test_bad_requests(checkpoint, tmp_path):
    from perfmamba import load

    path, tok, _ = checkpoint
    model = load(path)
    with pytest.raises(EvaluationError, match="unknown split 'dev'"):
        evaluate_model(model, splits=["dev"], tasks=[], corpus={"validation": TEXT})
    with pytest.raises(EvaluationError, match="unknown task 'no_such_task'"):
        evaluate_model(model, splits=[], tasks=["no_such_task", "corpus_cloze"])
    with pytest.raises(EvaluationError, match="empty or too short"):
        evaluate_model(model, splits=["validation"], tasks=[], corpus={"validation": "   "})
    bare = MambaLM.from_config(preset("mamba-tiny"))
    bare.save(tmp_path / "bare")
    with pytest.raises(EvaluationError, match="no tokenizer"):
        evaluate_model(load(tmp_path / "bare"), splits=["validation"], tasks=[], corpus={"validation": TEXT})
    # recall alone needs no tokenizer
    rows = evaluate_model(bare, splits=[], tasks=[], recall=[1], recall_kwargs={"n_seqs": 4})
    assert [r["n_pairs"] for r in rows] == [1]


def test_cli_eval_writes_csv(checkpoint, tmp_path, monkeypatch, capsys):
    import perfmamba.evaluation as evaluation

    path, tok, tasks = checkpoint
    monkeypatch.setattr(evaluation, "load_corpus", lambda root=None: {"validation": TEXT, "test": TEXT, "train": TEXT})
    monkeypatch.setenv("PERFMAMBA_CORPUS_CHOICE", str(tasks["corpus_choice"]))
    out = tmp_path / "rows.csv"
    assert main(["eval", str(path), "--splits", "test", "--tasks", "corpus_choice", "--seq-len", "32",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert {r["metric"] for r in rows} >= {"ppl", "acc", "acc_norm"} and all(r["model"] == str(path) for r in rows)
    assert "wrote" in capsys.readouterr().out


def test_cli_eval_bad_input_is_one_line(checkpoint, tmp_path, capsys):
    path, _, _ = checkpoint
    bare = tmp_path / "bare"
    MambaLM.from_config(preset("mamba-tiny")).save(bare)
    assert main(["eval", str(bare), "--tasks", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no tokenizer" in err[0]
    assert main(["eval", str(path), "--splits", "", "--tasks", "", "--recall", "x"]) == 2
    assert "--recall takes integers" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
