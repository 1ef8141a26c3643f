"""The `perfmamba` command: every subcommand, each a parser and a `run_*` function that calls the library.

Bad input ends with one line on stderr (`perfmamba: error: …`) and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

from . import results
from .artifact.notebooks import PROFILES
from .artifact.pipeline import Terminated, exit_on_sigterm, reproduce
from .checkpoints import FORMATS, load, save
from .claims import collect, evaluate, render, summary
from .claims.sources import SWEEP
from .config import PRESETS, preset
from .data import encode_splits, load_corpus, model_tokenizer, read_text_file
from .errors import EvaluationError, PerfmambaError, ProfilingError, PruningError, TrainError
from .evaluation import evaluate_model, write_rows
from .evaluation.lm_eval_model import run_lm_eval_cli
from .io import atomic_path
from .paths import artifacts_root
from .plots import plot_fig3_activity
from .profiling.sweep import CPU_MODELS, PATHS, PHASES, sweep
from .profiling.timing import set_flush_denormal
from .pruning import prune
from .pruning.activity import DEFAULT_SEQ_LEN, MAMBA1_READINGS, activity_rows, calibration_tokens, collect_activity
from .pruning.criteria import CRITERIA, NEEDS
from .pruning.selection import ALIGN_ROUNDING, SELECTIONS, check_align, check_ratio
from .pruning.surgery import MODES
from .train import DEFAULT_MODELS, default_tokenizer, train, train_default_models

DTYPES = ("float32", "bfloat16", "float16", "float64")

# every subcommand: its line in `perfmamba --help` and the description `perfmamba COMMAND --help` opens with
ABOUT = {
    "train": ("train small Mamba models on the offline corpus",
              "Without --preset: train the two default models (mamba-small, mamba2-small) under "
              "ARTIFACTS/models/<name>, sharing one tokenizer, skipping models already trained with the "
              "same settings. With --preset: train that preset on the corpus (vocabulary set by the "
              "tokenizer). Checkpoints are written in the perfmamba format with the tokenizer and "
              "train_log.json."),
    "eval": ("evaluate a model: perplexity per split, offline lm-eval tasks, associative recall",
             "Perplexity on the corpus splits, lm-eval tasks (default: the offline corpus_choice and "
             "corpus_cloze; also lambada_local, piqa_local, …, or stock lm-eval task names where their "
             "datasets are available) and optionally the associative-recall probe. Prints a table; --out "
             "writes tidy rows as CSV."),
    "convert": ("convert a checkpoint (or a preset) between formats",
                "Read SRC (a preset name or a directory in the perfmamba, transformers or mamba-ssm "
                "format) and write it to DST in another format. Tokenizer files beside SRC are copied. DST "
                "is written atomically."),
    "activity": ("per-layer, per-state activity E[Δ] over calibration data (paper Fig. 3)",
                 "Run SRC over calibration data and report activity(l, s) = E[Δ_t] for every layer l and "
                 "state s (Mamba-2: per-head Δ spread over blocks of states; Mamba-1: E[Δ·|A_s|] by "
                 "default). Writes tidy rows (model, arch, layer, state, d_state, activity, decay, "
                 "n_tokens) to --out and the Fig. 3 heatmap to --plot."),
    "prune": ("prune SSM states and write the pruned checkpoint",
              "Keep k = max(1, floor(N(1 - R))) states per layer (or the same total, spread by score with "
              "--selection global), chosen by a criterion computed on calibration data, and write the "
              "pruned model to DST. Modes: removed (smaller tensors, per-layer d_state), zeroed (pruned "
              "states' B/C rows set to zero, shapes unchanged), bridge (computes with the kept states, "
              "saved as the zeroed N-state model). The kept indices are recorded in the checkpoint's "
              "config (extra.pruning)."),
    "profile": ("per-component time, memory, FLOPs and bytes of prefill and decode",
                "Profile Mamba-1 / Mamba-2 models per component (rmsnorm, in_proj = the paper's \"Gated "
                "MLP\", conv1d, ssm, gated_norm, out_proj, lm_head, embedding) in prefill (time to first "
                "token) and decode (time per output token), with timers and/or torch.profiler, and write "
                "tidy rows to a CSV."),
    "claims": ("judge every claim of the paper on the rows at hand",
               "Evaluate every claim record (the paper's values in data/paper/ against the committed GPU "
               "rows, the committed CPU sweep and this machine's run) and print how many claims of each "
               "status there are per section, then one line per claim."),
    "reproduce": ("run the whole pipeline on its embedded default and build the book",
                  "Prepare the corpus, train the two small default models (reused when already trained), "
                  "evaluate them, execute every notebook with papermill and build the book. SIGTERM ends "
                  "the run (exit 143); a rerun resumes."),
}


def _csv_list(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _ints(values, what: str, error) -> list[int]:
    """Integers from arguments that may each hold several, separated by commas or spaces."""
    out = []
    for part in (p for v in values for p in str(v).replace(",", " ").split()):
        try:
            out.append(int(part))
        except ValueError:
            raise error(f"{what} takes integers, e.g. 1,4,16; not an integer: {part!r}") from None
    return out


def _refuse_existing(path, force: bool, what: str):
    p = Path(path)
    if not force and p.exists() and not (p.is_dir() and not any(p.iterdir())):
        raise PerfmambaError(f"{what} {p} already exists (pass --force to replace it)")


def _command(sub, name: str, run, **options) -> argparse.ArgumentParser:
    """The parser of subcommand `name`, which `run(args)` carries out."""
    p = sub.add_parser(name, help=ABOUT[name][0], description=ABOUT[name][1], **options)
    p.set_defaults(func=run)
    return p


def _check_known(*checks) -> None:
    for what, value, known in checks:
        if value not in known:
            raise PruningError(f"unknown {what} {value!r}; expected one of {', '.join(known)}")


# train, eval, convert ----------------------------------------------------------------------------------------
# flag, type, help of the training settings that, given, override the preset's (train.DEFAULT_MODELS)
TRAIN_SETTINGS = (("--steps", int, "optimizer steps"), ("--batch-size", int, "sequences per step"),
                  ("--seq-len", int, "tokens per sequence"), ("--lr", float, "peak learning rate"),
                  ("--warmup", int, "linear warm-up steps"),
                  ("--seed", int, "seed of the initialisation and the batch order"),
                  ("--eval-every", int, "steps between validation evaluations (and checkpoints)"),
                  ("--eval-tokens", int, "validation tokens per evaluation"))


def run_train(args):
    settings = (flag[2:].replace("-", "_") for flag, _, _ in TRAIN_SETTINGS)
    overrides = {k: getattr(args, k) for k in settings if getattr(args, k) is not None}
    if args.preset is None:
        if overrides or args.out or args.d_state:
            raise TrainError("settings (--steps, --out, …) need --preset; without it the default models are trained")
        for name, path in train_default_models(args.artifacts, progress=not args.quiet, threads=args.threads).items():
            print(f"{name}: {path}")
        return
    preset(args.preset)  # an unknown name fails here, before the corpus is read
    tokenizer = default_tokenizer(args.artifacts)
    cfg = preset(args.preset, vocab_size=len(tokenizer), **({"d_state": args.d_state} if args.d_state else {}))
    spec = {k: v for k, v in DEFAULT_MODELS.get(args.preset, {}).items() if k != "preset"} | overrides
    out = Path(args.out) if args.out else Path(args.artifacts) / "models" / args.preset
    tokens = encode_splits(load_corpus(Path(args.artifacts) / "corpus"), tokenizer)
    model, history = train(cfg, tokens["train"], tokens["validation"], out_dir=out, tokenizer=tokenizer,
                           threads=args.threads, progress=not args.quiet,
                           extra_log={"name": out.name, "preset": args.preset}, **spec)
    last = history[-1]
    print(f"wrote {out} ({model.num_parameters():,} parameters): step {last['step']}, "
          f"validation perplexity {last['val_ppl']:.2f}, {last['elapsed_s']:.0f} s")


def run_eval(args):
    recall = _ints([args.recall], "--recall", EvaluationError)
    rows = evaluate_model(load(args.model), args.tokenizer, splits=_csv_list(args.splits),
                          tasks=_csv_list(args.tasks), recall=recall or None, limit=args.limit,
                          max_tokens=args.max_tokens, seq_len=args.seq_len, batch_size=args.batch_size,
                          progress=True)
    for r in rows:
        extra = f" (n_pairs {r['n_pairs']})" if r.get("n_pairs") is not None else ""
        print(f"{r['split'] or r['task']:<20} {r['metric']:<10} {r['value']:.4f}{extra}")
    if args.out:
        write_rows(rows, args.out, model=str(args.model))
        print(f"wrote {len(rows)} rows to {args.out}")


def run_convert(args):
    model = load(args.src)
    out = save(model, args.dst, format=args.format, overwrite=args.force)
    print(f"wrote {args.format} checkpoint to {out} ({model.num_parameters():,} parameters)")


def _add_train(sub):
    p = _command(sub, "train", run_train)
    p.add_argument("--preset", help="preset name (e.g. mamba-small, mamba2-small, mamba-tiny); default: both defaults")
    p.add_argument("--out", help="output directory (default: ARTIFACTS/models/<preset>)")
    p.add_argument("--artifacts", default=str(artifacts_root()), help="artifacts directory: corpus, tokenizer, models "
                                                                  "(default: $PERFMAMBA_ARTIFACTS or ./artifacts)")
    for flag, kind, what in TRAIN_SETTINGS + (("--d-state", int, "override the preset's d_state (N)"),
                                              ("--threads", int, "torch CPU threads")):
        p.add_argument(flag, type=kind, help=what)
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = _command(sub, "eval", run_eval)
    p.add_argument("model", metavar="MODEL_DIR", help="checkpoint directory (any supported format)")
    p.add_argument("--tokenizer", help="tokenizer path (default: the files in MODEL_DIR)")
    p.add_argument("--splits", default="validation,test",
                   help="corpus splits for perplexity, comma-separated ('' for none; default: "
                        "validation,test)")
    p.add_argument("--tasks", default="corpus_choice,corpus_cloze",
                   help="lm-eval tasks, comma-separated ('' for none)")
    p.add_argument("--recall", default="",
                   help="n_pairs values for the recall probe, e.g. 1,4,16 (default: none)")
    p.add_argument("--limit", type=int, help="at most this many examples per task")
    p.add_argument("--max-tokens", type=int, help="at most this many tokens per split for perplexity")
    p.add_argument("--seq-len", type=int, default=512, help="perplexity window (default 512)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--out", help="write the rows to this CSV file")

    p = _command(sub, "convert", run_convert)
    p.add_argument("src", metavar="SRC", help="preset name or checkpoint directory")
    p.add_argument("dst", metavar="DST", help="output directory (must not exist or be empty, unless --force)")
    p.add_argument("--format", choices=FORMATS, default="perfmamba",
                   help="output format (default: perfmamba)")
    p.add_argument("--force", action="store_true", help="replace DST if it exists")


# activity, prune ----------------------------------------------------------------------------------------------
def _calibration(args, model, required: bool):
    """Token ids (b, l) for the run, or None when none were asked for and none are needed."""
    if args.calibration is not None and args.calibration_tokens is not None:
        raise PruningError("pass either --calibration or --calibration-tokens, not both")
    if args.calibration_tokens is not None:
        if args.calibration_tokens < 1:
            raise PruningError(f"--calibration-tokens must be a positive number, got {args.calibration_tokens}")
        return calibration_tokens(model, args.calibration_tokens, seed=args.seed, seq_len=args.seq_len)
    if args.calibration is None:
        if required:
            raise PruningError("calibration data needed: pass --calibration TEXTFILE or --calibration-tokens N")
        return None
    text = read_text_file(args.calibration, min_chars=1)
    tok = model_tokenizer(model, args.tokenizer, check_vocab=False)
    if tok is None:
        raise PruningError(f"{args.src} has no tokenizer; pass --tokenizer PATH")
    return calibration_tokens(model, text, tokenizer=tok, seq_len=args.seq_len)


def run_activity(args):
    _check_known(("--mamba1-reading", args.mamba1_reading, MAMBA1_READINGS))
    for path, what in ((args.out, "--out"), (args.plot, "--plot")):
        if path is not None:
            _refuse_existing(path, args.force, what)
            if Path(path).is_dir():
                raise PruningError(f"{what} {path} is a directory")
    model = load(args.src)
    tokens = _calibration(args, model, required=True)
    act = collect_activity(model, tokens, batch_size=args.batch_size, mamba1_reading=args.mamba1_reading,
                           progress=sys.stderr.isatty())
    name = Path(args.src).name if Path(args.src).is_dir() else str(args.src)
    rows = activity_rows(act, name)
    print(f"{args.src}: {model.config.arch}, {act.n_layer} layers, {act.n_tokens} calibration tokens "
          f"({act.n_sequences} × {act.n_tokens // act.n_sequences})")
    for i, a in enumerate(act.activity):
        print(f"  layer {i:3d}  N={a.numel():4d}  activity min {a.min():.4g}  mean {a.mean():.4g}  max {a.max():.4g}")
    if args.out is not None:
        with atomic_path(Path(args.out), suffix=Path(args.out).suffix) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {len(rows)} rows to {args.out}")
    if args.plot is not None:
        fig = plot_fig3_activity(act, title=f"State activity: {name}")
        try:
            with atomic_path(Path(args.plot), suffix=Path(args.plot).suffix) as tmp:
                fig.savefig(str(tmp), dpi=150, bbox_inches="tight")
        except ValueError as e:  # unknown image format from the suffix
            raise PruningError(f"--plot {args.plot}: {e}") from None
        finally:
            plt.close(fig)
        print(f"wrote heatmap to {args.plot}")


def run_prune(args):
    ratio = check_ratio(args.ratio)
    _check_known(("criterion", args.criterion, CRITERIA), ("mode", args.mode, MODES),
                 ("selection", args.selection, SELECTIONS), ("format", args.format, FORMATS))
    check_align(args.align, args.align_rounding)
    if args.pad and (args.align is None or args.align_rounding != "up" or args.mode != "removed"):
        raise PruningError("--pad needs --align M, --align-rounding up and --mode removed")
    _refuse_existing(args.out, args.force, "output directory")
    model = load(args.src)
    tokens = _calibration(args, model, required=NEEDS[args.criterion] is not None and ratio > 0)
    new = prune(model, ratio, criterion=args.criterion, calibration=tokens, mode=args.mode,
                selection=args.selection, align=args.align, align_rounding=args.align_rounding, pad=args.pad,
                seed=args.seed, batch_size=args.batch_size, progress=sys.stderr.isatty())
    tok_dir = args.tokenizer if args.tokenizer and Path(args.tokenizer).is_dir() else None
    out = save(new, args.out, format=args.format, overwrite=args.force, tokenizer_from=tok_dir)
    before = model.config.d_states
    after = new.config.d_states if args.pad else [len(k) for k in new.config.extra["pruning"]["kept"]]
    shown = (lambda v: v[0] if len(set(v)) == 1 else v)
    aligned = f" (aligned: multiples of {args.align}, rounded {args.align_rounding})" if args.align else ""
    if args.pad:
        aligned = f" (exact counts, padded with zero states to multiples of {args.align})"
    print(f"pruned {args.src}: ratio {ratio:g}, criterion {args.criterion}, mode {args.mode}, selection "
          f"{args.selection}{aligned}; d_state {shown(before)} -> {shown(after)}; "
          f"parameters {model.num_parameters():,} -> {new.num_parameters():,}")
    print(f"wrote {args.format} checkpoint to {out}")


def _add_pruning(sub):
    def common(p):
        p.add_argument("src", metavar="SRC",
                       help="preset name or checkpoint directory (perfmamba, transformers or mamba-ssm)")
        p.add_argument("--calibration", metavar="TEXTFILE",
                       help="utf-8 text file, tokenized with the tokenizer beside SRC (or --tokenizer)")
        p.add_argument("--calibration-tokens", metavar="N", type=int,
                       help="instead of text: N random token ids (seeded by --seed), e.g. for a preset without "
                            "a tokenizer")
        p.add_argument("--tokenizer", metavar="PATH",
                       help="tokenizer to use instead of the one beside SRC: a transformers directory or a "
                            "tokenizers JSON file (e.g. gpt_neox_20b_tokenizer.json)")
        p.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, metavar="L",
                       help=f"calibration tokens per sequence (default: {DEFAULT_SEQ_LEN})")
        p.add_argument("--batch-size", type=int, default=8, metavar="B",
                       help="sequences per forward pass (default: 8)")
        p.add_argument("--seed", type=int, default=0,
                       help="seed for --calibration-tokens and criterion 'random' (default: 0)")
        p.add_argument("--force", action="store_true", help="replace outputs that already exist")

    p = _command(sub, "activity", run_activity)
    common(p)
    p.add_argument("--mamba1-reading", default="delta_A", metavar="R",
                   help=f"Mamba-1 per-state reading: {' | '.join(MAMBA1_READINGS)} (default: delta_A)")
    p.add_argument("--out", metavar="CSV", help="write the rows to this CSV file")
    p.add_argument("--plot", metavar="PNG", help="write the heatmap to this image (format from the suffix)")

    p = _command(sub, "prune", run_prune)
    common(p)
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
                   help=f"{' | '.join(ALIGN_ROUNDING)}: which multiple --align takes (default: up, never fewer "
                        "states than the exact count)")
    p.add_argument("--pad", action="store_true",
                   help="with --align (rounding up) and mode removed: keep the exact counts, laid out with the "
                        "aligned count, the extra states zero (the exact model's logits at the aligned shapes)")
    p.add_argument("--out", required=True, metavar="DST", help="output directory (must not exist, unless --force)")
    p.add_argument("--format", default="perfmamba", metavar="F",
                   help="perfmamba | transformers | mamba_ssm (default: perfmamba; the other two need the same "
                        "number of states in every layer)")


# profile ----------------------------------------------------------------------------------------------------
PROFILE_EPILOG = """\
examples:
  perfmamba profile                                   # CPU smoke grid (small and 130M presets), ~1 min
  perfmamba profile -m mamba2-130m --seqlens 64 512 2048 --batches 8 --method both
  perfmamba profile -m ./my-checkpoint --phases decode --backend triton mamba_ssm --device cuda

Rows (model, arch, path, component, phase, batch, seqlen, metric, value, unit, median, p10, p90, …) are
appended to OUT (default data/results/<device-slug>/profile.csv) with env.json beside it; points already
in OUT are skipped, so rerunning a killed command resumes it. Metrics: time (ms), share, flops, bytes,
intensity, achieved_flops, achieved_bandwidth, memory (weights / ssm_state / conv_state bytes),
activation_peak, peak_memory, sum_of_allocations (a sum over all allocations, not a footprint), oom.
"""


def run_profile(args):
    cpu = args.device == "cpu" or (args.device is None and not torch.cuda.is_available())
    flush = cpu if args.flush_denormal is None else args.flush_denormal
    if flush and cpu:
        set_flush_denormal(True)  # before any parallel op, so that torch's worker threads inherit it
    seqlens = _ints(args.seqlens, "--seqlens", ProfilingError) if args.seqlens else None
    batches = _ints(args.batches, "--batches", ProfilingError) if args.batches else None
    methods = ("timers", "profiler") if args.method == "both" else (args.method,)
    out = args.out or results.results_path(args.experiment, args.device)
    rows = sweep(args.models, seqlens, batches, tuple(args.phases), tuple(args.paths), methods,
                 warmup=args.warmup, iters=args.iters, out=out, device=args.device, dtype=args.dtype,
                 state_dtype=args.state_dtype, cuda_graphs=args.cuda_graphs, call_totals=args.call_totals,
                 threads=args.threads, progress=not args.no_progress, flush_denormal=flush and cpu)
    _print_profile(rows)
    print(f"{len(rows)} new rows in {out}")


def _print_profile(rows):
    """Total time per point, and the top components, as a short table."""
    key = ("model", "path", "method", "phase", "batch", "seqlen")
    totals = [r for r in rows if r["metric"] == "time" and r["component"] == "total"]
    shares = {}
    for r in rows:
        if r["metric"] == "share" and r["component"] != "total" and "." not in r["component"]:
            shares.setdefault(tuple(r[c] for c in key), []).append((r["value"], r["component"]))
    if totals:
        print(f"{'model':14s} {'path':6s} {'method':8s} {'phase':7s} {'B':>3s} {'L':>6s} {'ms':>10s}  top components")
    for r in totals:
        top = ", ".join(f"{c} {v:.0%}" for v, c in sorted(shares.get(tuple(r[c] for c in key), []), reverse=True)[:3])
        print(f"{r['model']:14s} {r['path']:6s} {r['method']:8s} {r['phase']:7s} {r['batch']:3d} {r['seqlen']:6d} "
              f"{r['value']:10.2f}  {top}{' graph' if r.get('cuda_graph') else ''}")


def _add_profile(sub):
    p = _command(sub, "profile", run_profile,
                 epilog=PROFILE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-m", "--model", dest="models", nargs="+", metavar="PRESET_OR_DIR",
                   help="preset names (random init, seeded) or checkpoint directories; presets: "
                        + ", ".join(PRESETS) + " (default: CPU " + ", ".join(CPU_MODELS)
                        + "; GPU mamba-130m, mamba2-130m)")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                   help="prefill (forward over the prompt) and/or decode (one step with a cache)")
    p.add_argument("--seqlens", nargs="+", metavar="L",
                   help="prompt / context lengths (default: CPU 64 128; GPU 64 512 1024 2048 4096 8192 16384)")
    p.add_argument("--batches", nargs="+", metavar="B", help="batch sizes (default: CPU 1; GPU 1 8 64)")
    p.add_argument("--backend", dest="paths", nargs="+", choices=PATHS, default=["ref"],
                   help="compute paths to measure (default: ref)")
    p.add_argument("--method", choices=("timers", "profiler", "both"), default="timers",
                   help="timers around components, a torch.profiler trace (also gives memory per component), "
                        "or both (default: timers)")
    p.add_argument("--warmup", type=int, help="untimed calls before timing (default: CPU 2, GPU 3)")
    p.add_argument("--iters", type=int, help="timed calls; median, p10, p90 are reported (default: CPU 5, GPU 10)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--dtype", choices=DTYPES, help="model dtype (default: CPU float32, GPU bfloat16)")
    p.add_argument("--state-dtype", choices=DTYPES, default="float32", help="cache dtype (default float32)")
    p.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="also time decode with the step captured in a CUDA graph (default: on with a GPU)")
    p.add_argument("--call-totals", action=argparse.BooleanOptionalAction, default=None,
                   help="also time every call whole, with no component instrumented (method \"call\"; default: "
                        "on with a GPU, where the timers' events cost host time inside the call)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", help="results CSV (default: data/results/<device-slug>/profile.csv)")
    p.add_argument("--experiment", default="profile", help="file name under data/results/<device-slug>/ when "
                                                           "--out is not given (default: profile)")
    p.add_argument("--flush-denormal", action=argparse.BooleanOptionalAction, default=None,
                   help="flush denormal floats to zero on CPU (default: on for CPU; denormals from underflowing "
                        "decays slow x86 cores down, a cost a GPU does not have)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


# claims, reproduce ------------------------------------------------------------------------------------------
def run_claims(args):
    records = evaluate(collect(args.results, args.sweep if args.sweep != "none" else None))
    if args.section:
        records = [r for r in records if r.section.startswith(tuple(args.section))]
    if args.json:
        render.to_json(records, Path(args.json))
        print(f"{len(records)} records → {args.json}")
    with pd.option_context("display.width", 200, "display.max_colwidth", 110, "display.max_rows", None):
        print(summary(records).to_string())
        print()
        for r in records:
            print(f"{r.id:<32} {render.sentence(r)}")


def run_reproduce(args):
    exit_on_sigterm()
    try:
        reproduce(args.artifacts, profile=args.profile, build=not args.no_book, out=args.out,
                  names=args.notebooks.split(",") if args.notebooks else None)
    except Terminated:
        print("perfmamba: terminated (SIGTERM); a rerun resumes", file=sys.stderr, flush=True)
        return 143


def _add_artifact(sub):
    p = _command(sub, "claims", run_claims)
    p.add_argument("--results", default=None,
                   help="where committed GPU rows are read (default: $PERFMAMBA_RESULTS or data/results)")
    p.add_argument("--sweep", default=SWEEP, help=f"the committed CPU sweep (default: {SWEEP}; 'none': skip)")
    p.add_argument("--section", action="append", default=None,
                   help="only the sections starting with this text, e.g. 'Table 1' (repeatable)")
    p.add_argument("--json", default=None, help="also write the records as JSON to this file")

    p = _command(sub, "reproduce", run_reproduce)
    p.add_argument("--artifacts", default=None, help="where corpus, tokenizer and models go (default: artifacts, "
                                                     "or OUT/artifacts with --out)")
    p.add_argument("--out", default=None, metavar="OUT",
                   help="also write the book to OUT/book (replaced as a whole) and the result rows to OUT/results, "
                        "which later runs resume from (the Docker image's /out)")
    p.add_argument("--profile", choices=PROFILES, default=None,
                   help="notebook parameters: paper (GPU), cpu (2-core default), smoke (tiny models and settings, "
                        "minutes end to end); default: paper with a CUDA GPU, cpu otherwise")
    p.add_argument("--notebooks", default=None, help="comma-separated subset of notebooks to execute")
    p.add_argument("--no-book", action="store_true", help="skip the book build")


# the command ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfmamba",
        description="Profile and prune Mamba-1 / Mamba-2 state space models (a replication of PerfMamba, "
                    "arXiv 2511.22849).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_train, _add_pruning, _add_profile, _add_artifact):
        add(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["lm-eval"]:  # forwarded untouched to lm-eval's own parser
            return int(run_lm_eval_cli(argv[1:]) or 0)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except PerfmambaError as e:
        print(f"perfmamba: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perfmamba: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
