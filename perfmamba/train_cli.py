"""`perfmamba train` (small models on the offline corpus) and `perfmamba eval MODEL_DIR`."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ARTIFACTS = os.environ.get("PERFMAMBA_ARTIFACTS", "artifacts")


def register(sub):
    p = sub.add_parser(
        "train", help="train small Mamba models on the offline corpus",
        description="Without --preset: train the two default models (mamba-small, mamba2-small) under "
                    "ARTIFACTS/models/<name>, sharing one tokenizer, skipping models already trained with the same "
                    "settings. With --preset: train that preset on the corpus (vocabulary set by the tokenizer). "
                    "Checkpoints are written in the perfmamba format with the tokenizer and train_log.json.")
    p.add_argument("--preset", help="preset name (e.g. mamba-small, mamba2-small, mamba-tiny); default: both defaults")
    p.add_argument("--out", help="output directory (default: ARTIFACTS/models/<preset>)")
    p.add_argument("--artifacts", default=DEFAULT_ARTIFACTS, help="artifacts directory: corpus, tokenizer, models "
                                                                  "(default: $PERFMAMBA_ARTIFACTS or ./artifacts)")
    p.add_argument("--steps", type=int, help="optimizer steps")
    p.add_argument("--batch-size", type=int, help="sequences per step")
    p.add_argument("--seq-len", type=int, help="tokens per sequence")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--seed", type=int, help="seed of the initialisation and the batch order")
    p.add_argument("--eval-every", type=int, help="steps between validation evaluations (and checkpoints)")
    p.add_argument("--eval-tokens", type=int, help="validation tokens per evaluation")
    p.add_argument("--d-state", type=int, help="override the preset's d_state (N)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    e = sub.add_parser(
        "eval", help="evaluate a model: perplexity per split, offline lm-eval tasks, associative recall",
        description="Perplexity on the corpus splits, lm-eval tasks (default: the offline corpus_choice and "
                    "corpus_cloze; also lambada_local, piqa_local, …, or stock lm-eval task names where their "
                    "datasets are available) and optionally the associative-recall probe. Prints a table; "
                    "--out writes tidy rows as CSV.")
    e.add_argument("model", metavar="MODEL_DIR", help="checkpoint directory (any supported format)")
    e.add_argument("--tokenizer", help="tokenizer path (default: the files in MODEL_DIR)")
    e.add_argument("--splits", default="validation,test", help="corpus splits for perplexity, comma-separated "
                                                                "('' for none; default: validation,test)")
    e.add_argument("--tasks", default="corpus_choice,corpus_cloze", help="lm-eval tasks, comma-separated ('' for none)")
    e.add_argument("--recall", default="", help="n_pairs values for the recall probe, e.g. 1,4,16 (default: none)")
    e.add_argument("--limit", type=int, help="at most this many examples per task")
    e.add_argument("--max-tokens", type=int, help="at most this many tokens per split for perplexity")
    e.add_argument("--seq-len", type=int, default=512, help="perplexity window (default 512)")
    e.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    e.add_argument("--out", help="write the rows to this CSV file")
    e.set_defaults(func=run_eval)


def run_train(args):
    from .train import DEFAULT_MODELS, default_tokenizer, train, train_default_models

    overrides = {k: getattr(args, k) for k in ("steps", "batch_size", "seq_len", "lr", "warmup", "seed", "eval_every",
                                               "eval_tokens") if getattr(args, k) is not None}
    if args.preset is None:
        if overrides or args.out or args.d_state:
            from .train import TrainError

            raise TrainError("settings (--steps, --out, …) need --preset; without it the default models are trained")
        paths = train_default_models(args.artifacts, progress=not args.quiet, threads=args.threads)
        for name, path in paths.items():
            print(f"{name}: {path}")
        return 0
    from .config import preset
    from .data import encode_splits, load_corpus

    preset(args.preset)  # an unknown name fails here, before the corpus is read
    tokenizer = default_tokenizer(args.artifacts)
    cfg = preset(args.preset, vocab_size=len(tokenizer), **({"d_state": args.d_state} if args.d_state else {}))
    spec = {k: v for k, v in DEFAULT_MODELS.get(args.preset, {}).items() if k != "preset"}
    spec.update(overrides)
    out = Path(args.out) if args.out else Path(args.artifacts) / "models" / args.preset
    tokens = encode_splits(load_corpus(Path(args.artifacts) / "corpus"), tokenizer)
    model, history = train(cfg, tokens["train"], tokens["validation"], out_dir=out, tokenizer=tokenizer,
                           threads=args.threads, progress=not args.quiet,
                           extra_log={"name": out.name, "preset": args.preset}, **spec)
    last = history[-1]
    print(f"wrote {out} ({model.num_parameters():,} parameters): step {last['step']}, "
          f"validation perplexity {last['val_ppl']:.2f}, {last['elapsed_s']:.0f} s")
    return 0


def _csv_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def run_eval(args):
    from .checkpoints import load
    from .evaluation import EvaluationError, evaluate_model, write_rows

    try:
        recall = [int(x) for x in _csv_list(args.recall)]
    except ValueError:
        raise EvaluationError(f"--recall takes integers, e.g. 1,4,16; got {args.recall!r}") from None
    model = load(args.model)
    rows = evaluate_model(model, args.tokenizer, splits=_csv_list(args.splits), tasks=_csv_list(args.tasks),
                          recall=recall or None, limit=args.limit, max_tokens=args.max_tokens, seq_len=args.seq_len,
                          batch_size=args.batch_size, progress=True)
    for r in rows:
        where = r["split"] or r["task"]
        extra = f" (n_pairs {r['n_pairs']})" if r.get("n_pairs") is not None else ""
        print(f"{where:<20} {r['metric']:<10} {r['value']:.4f}{extra}")
    if args.out:
        write_rows(rows, args.out, model=str(args.model))
        print(f"wrote {len(rows)} rows to {args.out}")
    return 0
