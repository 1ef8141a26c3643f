"""`perfmamba convert SRC DST --format F`."""
from __future__ import annotations

from .checkpoints import FORMATS, load, save


def register(sub):
    p = sub.add_parser("convert", help="convert a checkpoint (or a preset) between formats",
                       description="Read SRC (a preset name or a directory in the perfmamba, transformers or "
                                   "mamba-ssm format) and write it to DST in another format. Tokenizer files "
                                   "beside SRC are copied. DST is written atomically.")
    p.add_argument("src", metavar="SRC", help="preset name or checkpoint directory")
    p.add_argument("dst", metavar="DST", help="output directory (must not exist or be empty, unless --force)")
    p.add_argument("--format", choices=FORMATS, default="perfmamba", help="output format (default: perfmamba)")
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.set_defaults(func=run)


def run(args):
    model = load(args.src)
    out = save(model, args.dst, format=args.format, overwrite=args.force)
    print(f"wrote {args.format} checkpoint to {out} ({model.num_parameters():,} parameters)")
