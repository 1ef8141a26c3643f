"""The `perfmamba` command. Each subcommand lives beside the code it drives and registers itself here.

Bad input ends with one line on stderr (`perfmamba: error: …`) and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import PerfmambaError

# modules exposing `register(subparsers)`; each adds its subcommand(s) with `set_defaults(func=...)`
COMMANDS = [
    "perfmamba.train_cli",
    "perfmamba.checkpoints_cli",
    "perfmamba.pruning.cli",
    "perfmamba.profiling.cli",
    "perfmamba.pipeline",
    "perfmamba.claims.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perfmamba",
        description="Profile and prune Mamba-1 / Mamba-2 state space models (a replication of PerfMamba, "
                    "arXiv 2511.22849).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["lm-eval"]:  # forwarded untouched to lm-eval's own parser
        from .evaluation.lm_eval_model import run_lm_eval_cli

        return _guard(lambda: run_lm_eval_cli(argv[1:]))
    args = build_parser().parse_args(argv)
    return _guard(lambda: args.func(args))


def _guard(fn) -> int:
    try:
        rc = fn()
    except PerfmambaError as e:
        print(f"perfmamba: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perfmamba: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
