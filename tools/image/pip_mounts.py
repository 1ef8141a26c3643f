"""Print the read-only volume options that let pip inside `podman build` use this host's package-index settings.

pip's configuration files (those `pip config debug` reports as existing) and every local path they or the
PIP_* environment name (CA bundle, constraints, find-links folders, file:// indexes) are mounted at the same
path, read-only, for the RUN steps only: nothing of them is copied into an image. One option per line:

    --volume=/etc/pip.conf:/etc/pip.conf:ro

Values of PIP_* variables themselves are not forwarded (they could hold credentials); the configuration files
are. Usage: python3 tools/image/pip_mounts.py [PYTHON]   (PYTHON: the interpreter whose pip to ask)
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

# keys whose values name files, folders or file:// URLs
PATH_KEYS = ("cert", "client-cert", "constraint", "constraints", "find-links", "index-url", "extra-index-url",
             "requirement")


def pip(python: str, *args: str) -> str:
    proc = subprocess.run([python, "-m", "pip", *args], capture_output=True, text=True,
                          env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    return proc.stdout if proc.returncode == 0 else ""


def config_files(debug: str) -> list[Path]:
    """The files `pip config debug` lists with `exists: True`."""
    return [Path(m[1]) for m in re.finditer(r"^\s+(/\S.*?), exists: True$", debug, re.M)]


def named_paths(values) -> list[Path]:
    out = []
    for value in values:
        for word in str(value).strip().strip("'\"").split():
            if word.startswith("file:"):
                word = unquote(urlsplit(word).path).rstrip("/")
                if word.endswith("/simple"):  # a PEP 503 index links its files relative to it (../../files/…)
                    word = os.path.dirname(word)
            if word.startswith("/") and os.path.exists(word):
                out.append(Path(word))
    return out


def mounts(python: str = sys.executable) -> list[Path]:
    files = config_files(pip(python, "config", "debug"))
    values = []
    for line in pip(python, "config", "list").splitlines():  # e.g. global.cert='/etc/ssl/certs/ca.crt'
        key, _, value = line.partition("=")
        if key.rsplit(".", 1)[-1] in PATH_KEYS:
            values.append(value)
    values += [v for k, v in os.environ.items()
               if k.startswith("PIP_") and k[4:].lower().replace("_", "-") in PATH_KEYS]
    paths = sorted({p.resolve() if p.is_symlink() else p for p in files + named_paths(values)})
    # also the targets of symlinked files (the CA bundle often is one), at their own path
    paths += sorted({p.resolve() for p in paths if p.resolve() != p} - set(paths))
    keep = []
    for p in sorted(set(paths)):
        if not any(p != q and q in p.parents for q in paths):  # a folder already mounted covers it
            keep.append(p)
    return keep


def main(argv: list[str]) -> int:
    python = argv[1] if len(argv) > 1 else sys.executable
    for p in mounts(python):
        print(f"--volume={p}:{p}:ro")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
