"""`perfmamba activity` and `perfmamba prune`."""
from __future__ import annotations

import csv
from pathlib import Path

from ..checkpoints import load
from ..io import atomic_path
from .activity import DEFAULT_SEQ_LEN, MAMBA1_READINGS
from .criteria import CRITERIA, NEEDS
from .selection import ALIGN_ROUNDING, SELECTIONS, PruningError, check_align
from .surgery import MODES


def _common(p):
    p.add_argument("src", metavar="SRC",
                   help="preset name or checkpoint directory (perfmamba, transformers or mamba-ssm)")
    p.add_argument("--calibration", metavar="TEXTFILE",
                   help="utf-8 text file, tokenized with the tokenizer beside SRC (or --tokenizer)")
    p.add_argument("--calibration-tokens", metavar="N", type=int,
                   help="instead of text: N random token ids (seeded by --seed), e.g. for a preset without a tokenizer")
    p.add_argument("--tokenizer", metavar="PATH",
                   help="tokenizer to use instead of the one beside SRC: a transformers directory or a tokenizers "
                        "JSON file (e.g. gpt_neox_20b_tokenizer.json)")
    p.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, metavar="L",
                   help=f"calibration tokens per sequence (default: {DEFAULT_SEQ_LEN})")
    p.add_argument("--batch-size", type=int, default=8, metavar="B", help="sequences per forward pass (default: 8)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for --calibration-tokens and criterion 'random' (default: 0)")
    p.add_argument("--force", action="store_true", help="replace outputs that already exist")


def register(sub):
    p = sub.add_parser(
        "activity", help="per-layer, per-state activity E[Δ] over calibration data (paper Fig. 3)",
        description="Run SRC over calibration data and report activity(l, s) = E[Δ_t] for every layer l and "
                    "state s (Mamba-2: per-head Δ spread over blocks of states; Mamba-1: E[Δ·|A_s|] by default). "
                    "Writes tidy rows (model, arch, layer, state, d_state, activity, decay, n_tokens) to --out "
                    "and the Fig. 3 heatmap to --plot.")
    _common(p)
    p.add_argument("--mamba1-reading", default="delta_A", metavar="R",
                   help=f"Mamba-1 per-state reading: {' | '.join(MAMBA1_READINGS)} (default: delta_A)")
    p.add_argument("--out", metavar="CSV", help="write the rows to this CSV file")
    p.add_argument("--plot", metavar="PNG", help="write the heatmap to this image (format from the suffix)")
    p.set_defaults(func=run_activity)

    p = sub.add_parser(
        "prune", help="prune SSM states and write the pruned checkpoint",
        description="Keep k = max(1, floor(N(1 - R))) states per layer (or the same total, spread by score "
                    "with --selection global), chosen by a criterion computed on calibration data, and write "
                    "the pruned model to DST. Modes: removed (smaller tensors, per-layer d_state), zeroed "
                    "(pruned states' B/C rows set to zero, shapes unchanged), bridge (computes with the kept "
                    "states, saved as the zeroed N-state model). The kept indices are recorded in the "
                    "checkpoint's config (extra.pruning).")
    _common(p)
    p.add_argument("--ratio", required=True, metavar="R", help="pruning ratio r in [0, 1)")
    p.add_argument("--criterion", default="delta", metavar="C",
                   help=f"{' | '.join(CRITERIA)} (default: delta, the paper's E[Δ])")
    p.add_argument("--mode", default="removed", metavar="M", help=f"{' | '.join(MODES)} (default: removed)")
    p.add_argument("--selection", default="uniform", metavar="S",
                   help=f"{' | '.join(SELECTIONS)} (default: uniform, the paper's per-layer top-k)")
    p.add_argument("--align", type=int, default=None, metavar="M",
                   help="round each layer's kept count to a multiple of M that the GPU kernels run fast (e.g. 8: "
                        "115 -> 120), clamped to [1, N]; default: the exact counts")
    p.add_argument("--align-rounding", default="up", metavar="HOW",
                   help=f"{' | '.join(ALIGN_ROUNDING)}: which multiple --align takes (default: up, never fewer states "
                        "than the exact count)")
    p.add_argument("--pad", action="store_true",
                   help="with --align (rounding up) and mode removed: keep the exact counts, laid out with the "
                        "aligned count, the extra states zero (the exact model's logits at the aligned shapes)")
    p.add_argument("--out", required=True, metavar="DST", help="output directory (must not exist, unless --force)")
    p.add_argument("--format", default="perfmamba", metavar="F",
                   help="perfmamba | transformers | mamba_ssm (default: perfmamba; the other two need the same "
                        "number of states in every layer)")
    p.set_defaults(func=run_prune)


# shared steps ---------------------------------------------------------------------------------------------
def _refuse_existing(path, force: bool, what: str):
    p = Path(path)
    if force or not p.exists():
        return
    if p.is_dir() and not any(p.iterdir()):
        return
    raise PruningError(f"{what} {p} already exists (pass --force to replace it)")


def _calibration(args, model, required: bool):
    """Token ids (b, l) for the run, or None when none were asked for and none are needed."""
    import torch

    from ..data import read_text_file
    from ..data import model_tokenizer
    from .activity import calibration_tokens

    if args.calibration is not None and args.calibration_tokens is not None:
        raise PruningError("pass either --calibration or --calibration-tokens, not both")
    if args.calibration_tokens is not None:
        if args.calibration_tokens < 1:
            raise PruningError(f"--calibration-tokens must be a positive number, got {args.calibration_tokens}")
        g = torch.Generator().manual_seed(args.seed)
        ids = torch.randint(0, model.config.vocab_size, (args.calibration_tokens,), generator=g)
        return calibration_tokens(model, ids, seq_len=args.seq_len)
    if args.calibration is None:
        if required:
            raise PruningError("calibration data needed: pass --calibration TEXTFILE or --calibration-tokens N")
        return None
    text = read_text_file(args.calibration, min_chars=1)
    tok = model_tokenizer(model, args.tokenizer, check_vocab=False)
    if tok is None:
        raise PruningError(f"{args.src} has no tokenizer; pass --tokenizer PATH")
    return calibration_tokens(model, text, tokenizer=tok, seq_len=args.seq_len)


def _write_atomic(path: Path, write):
    with atomic_path(path, suffix=path.suffix) as tmp:
        write(str(tmp))


def _model_name(src: str) -> str:
    p = Path(src)
    return p.name if p.is_dir() else str(src)


# commands -------------------------------------------------------------------------------------------------
def run_activity(args):
    import sys

    from .activity import activity_rows, collect_activity

    if args.mamba1_reading not in MAMBA1_READINGS:
        raise PruningError(f"unknown --mamba1-reading {args.mamba1_reading!r}; "
                           f"expected one of {', '.join(MAMBA1_READINGS)}")
    for path, what in ((args.out, "--out"), (args.plot, "--plot")):
        if path is not None:
            _refuse_existing(path, args.force, what)
            if Path(path).is_dir():
                raise PruningError(f"{what} {path} is a directory")
    model = load(args.src)
    tokens = _calibration(args, model, required=True)
    act = collect_activity(model, tokens, batch_size=args.batch_size, mamba1_reading=args.mamba1_reading,
                           progress=sys.stderr.isatty())
    rows = activity_rows(act, _model_name(args.src))
    print(f"{args.src}: {model.config.arch}, {act.n_layer} layers, {act.n_tokens} calibration tokens "
          f"({act.n_sequences} × {act.n_tokens // act.n_sequences})")
    for i, a in enumerate(act.activity):
        print(f"  layer {i:3d}  N={a.numel():4d}  activity min {a.min():.4g}  mean {a.mean():.4g}  max {a.max():.4g}")
    if args.out is not None:
        def write_csv(tmp):
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        _write_atomic(Path(args.out), write_csv)
        print(f"wrote {len(rows)} rows to {args.out}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from ..plots import plot_fig3_activity

        fig = plot_fig3_activity(act, title=f"State activity: {_model_name(args.src)}")
        try:
            _write_atomic(Path(args.plot), lambda tmp: fig.savefig(tmp, dpi=150, bbox_inches="tight"))
        except ValueError as e:  # unknown image format from the suffix
            raise PruningError(f"--plot {args.plot}: {e}") from None
        finally:
            plt.close(fig)
        print(f"wrote heatmap to {args.plot}")


def run_prune(args):
    import sys

    from ..checkpoints import FORMATS, save
    from . import prune
    from .selection import check_ratio

    ratio = check_ratio(args.ratio)
    if args.criterion not in CRITERIA:
        raise PruningError(f"unknown criterion {args.criterion!r}; expected one of {', '.join(CRITERIA)}")
    if args.mode not in MODES:
        raise PruningError(f"unknown mode {args.mode!r}; expected one of {', '.join(MODES)}")
    if args.selection not in SELECTIONS:
        raise PruningError(f"unknown selection {args.selection!r}; expected one of {', '.join(SELECTIONS)}")
    if args.format not in FORMATS:
        raise PruningError(f"unknown format {args.format!r}; expected one of {', '.join(FORMATS)}")
    check_align(args.align, args.align_rounding)
    if args.pad and (args.align is None or args.align_rounding != "up" or args.mode != "removed"):
        raise PruningError("--pad needs --align M, --align-rounding up and --mode removed")
    _refuse_existing(args.out, args.force, "output directory")
    model = load(args.src)
    tokens = _calibration(args, model, required=NEEDS[args.criterion] is not None and ratio > 0)
    new = prune(model, ratio, criterion=args.criterion, calibration=tokens, mode=args.mode,
                selection=args.selection, align=args.align, align_rounding=args.align_rounding, pad=args.pad,
                seed=args.seed,
                batch_size=args.batch_size, progress=sys.stderr.isatty())
    tok_dir = args.tokenizer if args.tokenizer and Path(args.tokenizer).is_dir() else None
    out = save(new, args.out, format=args.format, overwrite=args.force, tokenizer_from=tok_dir)
    before, after = model.config.d_states, [len(k) for k in new.config.extra["pruning"]["kept"]]
    if args.pad:
        after = new.config.d_states
    shown = (lambda v: v[0] if len(set(v)) == 1 else v)
    aligned = f" (aligned: multiples of {args.align}, rounded {args.align_rounding})" if args.align else ""
    if args.pad:
        aligned = f" (exact counts, padded with zero states to multiples of {args.align})"
    print(f"pruned {args.src}: ratio {ratio:g}, criterion {args.criterion}, mode {args.mode}, selection "
          f"{args.selection}{aligned}; d_state {shown(before)} -> {shown(after)}; "
          f"parameters {model.num_parameters():,} -> {new.num_parameters():,}")
    print(f"wrote {args.format} checkpoint to {out}")

