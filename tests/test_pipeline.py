"""`perfmamba reproduce`: its evaluation table (rows per model, reused while the checkpoints are unchanged) and the
checks it makes before any work."""
import os

import pytest

from perfmamba import MambaLM, preset
from perfmamba.artifact import pipeline
from perfmamba.data import DOC_SEP, train_tokenizer

TEXT = DOC_SEP.join(" ".join(f"word{(i * 7 + j) % 23}" for j in range(60)) for i in range(8))


@pytest.fixture()
def model_dir(tmp_path):
    tok = train_tokenizer(TEXT, vocab_size=300)
    d = tmp_path / "m"
    MambaLM.from_config(preset("mamba2-tiny", vocab_size=len(tok))).save(d)
    tok.save_pretrained(str(d))
    return d


def test_evaluation_table_rows_reuse_and_text(model_dir, tmp_path, monkeypatch):
    out = tmp_path / "evaluation.csv"
    kw = dict(splits=("test",), tasks=(), recall=(1, 2), corpus={"test": TEXT}, progress=False)
    df = pipeline.evaluation_table({"tiny": model_dir}, out, **kw)
    assert out.is_file() and set(df["model"]) == {"tiny"}
    ppl = df[(df["split"] == "test") & (df["metric"] == "ppl")]["value"].iloc[0]
    assert 1 < ppl < 2 * 300  # a random-init model: near the vocabulary size, not a broken number
    assert sorted(df[df["task"] == "recall"]["n_pairs"].astype(int)) == [1, 2]
    text = pipeline.format_evaluation(df)
    assert "tiny" in text and "ppl" in text and "acc @ 2 pairs" in text and "n_tokens" not in text

    # unchanged checkpoints: the table is read back, nothing is evaluated
    def boom(*a, **k):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(pipeline, "evaluate_model", boom)
    again = pipeline.evaluation_table({"tiny": model_dir}, out, **kw)
    assert again["value"].tolist() == pytest.approx(df["value"].tolist())
    # a newer checkpoint is evaluated again
    later = out.stat().st_mtime + 10
    os.utime(model_dir / "model.safetensors", (later, later))
    with pytest.raises(AssertionError, match="evaluated again"):
        pipeline.evaluation_table({"tiny": model_dir}, out, **kw)


def test_reproduce_refuses_a_run_it_cannot_finish_before_doing_any_work(tmp_path, monkeypatch):
    import torch

    from perfmamba.artifact import notebooks, pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    for kwargs, msg in [({"profile": "paper"}, "needs a CUDA GPU"),
                        ({"profile": "cpu", "names": ["fig2_latency", "fig9"]}, "no notebook 'fig9'"),
                        ({"profile": "gpu"}, "unknown profile 'gpu'")]:
        with pytest.raises(notebooks.NotebookError, match=msg):
            pipeline.reproduce(tmp_path / "artifacts", build=False, **kwargs)
    assert not (tmp_path / "artifacts").exists()  # nothing prepared, nothing half-written
