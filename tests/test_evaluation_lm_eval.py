"""The lm-eval model type `perfmamba`: same numbers as lm-eval's `hf` model on the same weights, generation
with the state cache, model_args (pruning), bad input, and `perfmamba lm-eval`."""
import random

import lm_eval
import pytest
import torch
from lm_eval.api.instance import Instance

from perfmamba import MambaLM, preset
from perfmamba.cli import main
from perfmamba.data import DOC_SEP, train_tokenizer
from perfmamba.evaluation import EvaluationError, task_manager
from perfmamba.evaluation.lm_eval_model import PerfmambaLM
from perfmamba.evaluation.local_tasks import build_local_tasks
from perfmamba.train import train


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.one_thread


WORDS = ("the king and queen of a small town walked along river while old men sang songs about bread wine "
         "and green hills where sheep and goats slept under bright stars near cold water and warm fire").split()


def make_text(n_docs=12, lines=12, seed=0) -> str:
    """Documents of word lines with a simple grammar (a word tends to follow its neighbour in WORDS)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        out = []
        for _ in range(lines):
            i = rng.randrange(len(WORDS))
            ws = []
            for _ in range(rng.randint(6, 12)):
                ws.append(WORDS[i])
                i = (i + rng.choice((1, 1, 1, 2, 5))) % len(WORDS)
            out.append(" ".join(ws).capitalize() + rng.choice((".", ",", "")))
        docs.append("\n".join(out))
    return DOC_SEP.join(docs)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tokenizer, and for each arch a briefly trained tiny model saved in our and in transformers format."""
    root = tmp_path_factory.mktemp("lm_eval")
    text = make_text()
    tok = train_tokenizer(text, vocab_size=300)
    ids = torch.tensor(tok(text)["input_ids"])
    dirs = {}
    for arch in ("mamba-tiny", "mamba2-tiny"):
        model, _ = train(preset(arch, vocab_size=len(tok)), ids, ids[:400], steps=25, batch_size=8, seq_len=32,
                         lr=1e-2, warmup=5, eval_every=25, eval_tokens=200, seed=1, progress=False)
        ours, hf = root / arch, root / f"{arch}-hf"
        model.save(ours)
        tok.save_pretrained(str(ours))
        model.save(hf, format="transformers")
        tok.save_pretrained(str(hf))
        dirs[arch] = (ours, hf)
    tasks = build_local_tasks(make_text(seed=1), root / "tasks", n=6)
    return tok, dirs, tasks


def _per_sample(results, task):
    return [[r[0] for r in s["resps"]] for s in sorted(results["samples"][task], key=lambda s: s["doc_id"])]


@pytest.mark.parametrize("arch", ["mamba-tiny", "mamba2-tiny"])
def test_same_numbers_as_lm_eval_hf_model(arch, setup, monkeypatch):
    tok, dirs, tasks = setup
    monkeypatch.setenv("PERFMAMBA_CORPUS_CHOICE", str(tasks["corpus_choice"]))
    monkeypatch.setenv("PERFMAMBA_CORPUS_CLOZE", str(tasks["corpus_cloze"]))
    ours, hf = dirs[arch]
    tm = task_manager(include_defaults=False)
    names = ["corpus_choice", "corpus_cloze"]
    kw = dict(tasks=names, task_manager=tm, log_samples=True, batch_size=4, device="cpu", bootstrap_iters=0)
    r_hf = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(hf), "dtype": "float32"}, **kw)
    r_pm = lm_eval.simple_evaluate(model="perfmamba", model_args={"pretrained": str(ours)}, **kw)
    for task in names:
        a, b = _per_sample(r_hf, task), _per_sample(r_pm, task)
        assert len(a) == len(b) == 6
        for sa, sb in zip(a, b):
            assert [g for _, g in sa] == [g for _, g in sb]  # is-greedy flags
            assert [lp for lp, _ in sa] == pytest.approx([lp for lp, _ in sb], abs=1e-4)
        for metric, value in r_hf["results"][task].items():
            if metric.startswith("acc"):
                assert r_pm["results"][task][metric] == value, (task, metric)
    # the choices differ clearly, so the comparison above can fail
    spread = [max(lp) - min(lp) for lp in ([x for x, _ in s] for s in _per_sample(r_pm, "corpus_choice"))]
    assert max(spread) > 1.0


@pytest.mark.parametrize("arch", ["mamba-tiny", "mamba2-tiny"])
def test_rolling_loglikelihood_matches_hf_over_several_windows(arch, setup):
    from lm_eval.models.huggingface import HFLM

    tok, dirs, _ = setup
    ours, hf = dirs[arch]
    text = make_text(n_docs=1, lines=6, seed=5)
    reqs = [Instance("loglikelihood_rolling", {}, (text,), 0), Instance("loglikelihood_rolling", {}, (text[:40],), 1)]
    assert len(tok(text)["input_ids"]) > 3 * 16  # several windows of max_length 16
    want = HFLM(pretrained=str(hf), max_length=16, device="cpu", dtype="float32").loglikelihood_rolling(reqs)
    got = PerfmambaLM(pretrained=str(ours), max_length=16).loglikelihood_rolling(reqs)
    assert got == pytest.approx(want, abs=1e-4)


def test_generate_until_decodes_greedily_with_the_state_cache(setup):
    tok, dirs, _ = setup
    lm = PerfmambaLM(pretrained=str(dirs["mamba2-tiny"][0]))
    ctx = "The king and queen"
    reqs = [Instance("generate_until", {}, (ctx, {"until": ["\n"], "max_gen_toks": 12}), 0),
            Instance("generate_until", {}, (ctx, {"until": ["zzz"], "max_gen_toks": 7}), 1)]
    got = lm.generate_until(reqs)
    ids = torch.tensor([tok(ctx)["input_ids"]])
    full = lm.model.generate(ids, 12)[0, ids.shape[1]:].tolist()  # greedy, no stop strings
    text = tok.decode(full)
    assert got[0] == text.split("\n")[0]
    assert got[1] == tok.decode(full[:7])


@pytest.mark.parametrize("arch", ["mamba-tiny", "mamba2-tiny"])
def test_generate_until_matches_hf(arch, setup):
    """Greedy continuations equal those of lm-eval's `hf` model (transformers' own decoding) on the same weights."""
    from lm_eval.models.huggingface import HFLM

    tok, dirs, _ = setup
    ours, hf = dirs[arch]
    reqs = [Instance("generate_until", {}, (ctx, {"until": until, "max_gen_toks": n, "do_sample": False}), i)
            for i, (ctx, until, n) in enumerate([("The king and queen", ["\n"], 12), ("Old men sang", ["zzz"], 9),
                                                 ("Bread wine and", [","], 16)])]
    want = HFLM(pretrained=str(hf), device="cpu", dtype="float32", batch_size=1).generate_until(reqs)
    got = PerfmambaLM(pretrained=str(ours)).generate_until(reqs)
    assert got == want, (got, want)
    assert sum(len(g) for g in got) > 10  # something was generated


def test_prune_ratio_model_arg(setup, tmp_path):
    pruning = pytest.importorskip("perfmamba.pruning")
    tok, dirs, _ = setup
    calib = tmp_path / "calib.txt"
    calib.write_text(make_text(seed=7))
    dense = PerfmambaLM(pretrained=str(dirs["mamba2-tiny"][0]))
    lm = PerfmambaLM(pretrained=str(dirs["mamba2-tiny"][0]), prune_ratio="0.5", criterion="delta",
                     calibration=str(calib))
    n = dense.model.config.d_states
    assert lm.model.config.d_states == [pruning.n_keep(x, 0.5) for x in n] != n


def test_bad_model_args(setup, tmp_path):
    tok, dirs, _ = setup
    bare = tmp_path / "bare"
    MambaLM.from_config(preset("mamba-tiny")).save(bare)
    with pytest.raises(EvaluationError, match="no tokenizer"):
        PerfmambaLM(pretrained=str(bare))
    big = train_tokenizer(make_text(seed=3), vocab_size=400)
    assert len(big) > 256  # more tokens than the tiny model's (padded) vocabulary
    with pytest.raises(EvaluationError, match=rf"tokenizer has {len(big)} tokens but the model's vocabulary has 256"):
        PerfmambaLM(pretrained=str(bare), tokenizer=big)
    with pytest.raises(EvaluationError, match="batch_size"):
        PerfmambaLM(pretrained=str(dirs["mamba-tiny"][0]), batch_size="many")
    with pytest.raises(EvaluationError, match="unknown dtype"):
        PerfmambaLM(pretrained=str(dirs["mamba-tiny"][0]), dtype="float8")


def test_perfmamba_lm_eval_cli_registers_the_model_and_our_tasks(setup, tmp_path, monkeypatch, capsys):
    tok, dirs, tasks = setup
    monkeypatch.setenv("PERFMAMBA_CORPUS_CLOZE", str(tasks["corpus_cloze"]))
    rc = main(["lm-eval", "run", "--model", "perfmamba", "--model_args", f"pretrained={dirs['mamba-tiny'][0]}",
               "--tasks", "corpus_cloze", "--limit", "3"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "corpus_cloze" in out and "acc" in out
    assert main(["lm-eval", "run", "--help"]) == 0
