"""Build the replication book (jupyter-book 1.x) so that it works offline.

`prepare_static` puts MathJax 3 into ``book/_static/mathjax`` (``_config.yml`` points Sphinx's
``mathjax_path`` there), `build_book` runs ``jupyter-book build`` with warnings as errors, and
`static_problems` checks built HTML for external scripts or stylesheets and for links, images and
anchors that do not resolve. ``python -m perfmamba.artifact.book`` does all three.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit
from ..errors import BookBuildError

MATHJAX_VERSION = "3.2.2"
# npm's `dist.integrity` of mathjax-3.2.2.tgz, checked when the tarball is fetched without npm.
MATHJAX_INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
MATHJAX_TARBALL = f"https://registry.npmjs.org/mathjax/-/mathjax-{MATHJAX_VERSION}.tgz"
MATHJAX_ENTRY = "tex-svg.js"  # must match `mathjax_path` in _config.yml
RESOURCE_RELS = {"stylesheet", "preload", "icon", "modulepreload"}  # <link rel=…> that a page loads


def prepare_static(root: str | os.PathLike = ".") -> Path:
    """Install MathJax's ``es5/`` bundle into book/_static/mathjax unless it is already there.

    Uses ``npm install --no-save --prefix <tmp> mathjax@3`` when npm exists, otherwise the same
    tarball from the npm registry, checked against its published sha512. Returns the directory.
    """
    dest = Path(root) / "book" / "_static" / "mathjax"
    if (dest / MATHJAX_ENTRY).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        tmp = Path(tmp)
        if shutil.which("npm"):
            npm = ["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(tmp)]
            subprocess.run([*npm, f"mathjax@{MATHJAX_VERSION}"], check=True, stdout=subprocess.DEVNULL)
            es5 = tmp / "node_modules" / "mathjax" / "es5"
        else:
            with urllib.request.urlopen(MATHJAX_TARBALL, timeout=60) as r:
                blob = r.read()
            digest = "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()
            if digest != MATHJAX_INTEGRITY:
                raise BookBuildError(f"{MATHJAX_TARBALL}: sha512 mismatch ({digest})")
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
                safe_extract(tar, tmp)
            es5 = tmp / "package" / "es5"
        if not (es5 / MATHJAX_ENTRY).is_file():
            raise BookBuildError(f"MathJax {MATHJAX_VERSION} has no es5/{MATHJAX_ENTRY}")
        try:  # one rename into place: never a half-copied bundle
            es5.rename(dest)
        except OSError:
            if not (dest / MATHJAX_ENTRY).is_file():  # else a concurrent build installed it first
                raise
    return dest


def safe_extract(tar: tarfile.TarFile, dest: str | os.PathLike) -> None:
    """Extract regular files and directories of `tar` below `dest`; refuse absolute paths, `..`, links and devices.

    Python >= 3.11.4 (and 3.8.17, 3.9.17, 3.10.12) has ``extractall(filter="data")`` for this; older 3.11 releases
    such as Debian 12's 3.11.2, which ``requires-python = ">=3.11"`` admits, do not, so the check is done here.
    """
    dest = Path(dest).resolve()
    members = tar.getmembers()
    for m in members:
        target = (dest / m.name).resolve()
        if os.path.isabs(m.name) or (target != dest and dest not in target.parents):
            raise BookBuildError(f"tar member {m.name!r} would land outside {dest}")
        if not (m.isfile() or m.isdir()):
            raise BookBuildError(f"tar member {m.name!r} is not a regular file or directory")
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=members, filter="data")
    else:  # the members were checked above
        tar.extractall(dest, members=members)


def build_book(root: str | os.PathLike = ".", strict: bool = True, output: str | os.PathLike | None = None) -> Path:
    """Run ``jupyter-book build`` on `root`; return the HTML directory (``<output>/_build/html``).

    strict: warnings are errors (``-W -n --keep-going``: every warning is reported, then the build fails).
    output: where ``_build/`` goes (default: `root`).
    """
    root = Path(root).resolve()
    prepare_static(root)
    out = Path(output).resolve() if output is not None else root
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(root),
           "--path-output", str(out), "--all"]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    html = out / "_build" / "html"
    if proc.returncode != 0 or not (html / "index.html").is_file():
        log = (proc.stdout + proc.stderr).strip().splitlines()
        warnings = [ln for ln in log if "WARNING" in ln or "ERROR" in ln]
        detail = "\n".join(warnings or log[-30:])
        raise BookBuildError(f"jupyter-book build failed (exit {proc.returncode}):\n{detail}")
    return html


# --- static checks of the built HTML -------------------------------------------------------------------

class _Page(HTMLParser):
    """Collects ids, links, images, scripts and stylesheets of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []  # <a href>
        self.images: list[str] = []  # <img src>
        self.resources: list[str] = []  # <script src>, <link rel=RESOURCE_RELS href>
        self.redirect: str | None = None  # <meta http-equiv="refresh" content="0; url=...">

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        if tag == "a" and a.get("href") is not None:
            self.links.append(a["href"])
        elif tag == "img" and a.get("src"):
            self.images.append(a["src"])
        elif tag == "script" and a.get("src"):
            self.resources.append(a["src"])
        elif tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            url = (a.get("content") or "").partition("url=")[2].strip()
            if url:
                self.redirect = url
                self.links.append(url)
        elif tag == "link" and a.get("href") and set((a.get("rel") or "").split()) & RESOURCE_RELS:
            self.resources.append(a["href"])


def parse_page(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def link_problems(html_file: Path, html_dir: Path, page: _Page, id_cache: dict[Path, set[str]]) -> list[str]:
    """Unresolvable internal links, images and resources of one page (`page` parsed from it)."""
    problems = []
    rel = html_file.relative_to(html_dir)
    for kind, urls in (("link", page.links), ("image", page.images), ("resource", page.resources)):
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme or url.startswith("//") or url in ("", "#"):
                continue  # external (mailto:, https:, javascript:, data:) or the page itself
            target = (html_file.parent / unquote(parts.path)).resolve() if parts.path else html_file
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{rel}: {kind} {url!r} does not exist")
            elif kind == "link" and parts.fragment and target.suffix == ".html":
                if target not in id_cache:
                    id_cache[target] = parse_page(target.read_text(encoding="utf-8", errors="replace")).ids
                if unquote(parts.fragment) not in id_cache[target]:
                    problems.append(f"{rel}: {kind} {url!r}: no anchor #{parts.fragment}")
    return problems


def static_problems(html_dir: str | os.PathLike) -> list[str]:
    """Problems found in the built HTML without a browser: external scripts/stylesheets (the book must
    work offline) and internal links, images, resources or anchors that do not resolve."""
    html_dir = Path(html_dir).resolve()
    problems: list[str] = []
    cache: dict[Path, set[str]] = {}
    for f in sorted(html_dir.rglob("*.html")):
        if "_static" in f.relative_to(html_dir).parts:
            continue
        page = parse_page(f.read_text(encoding="utf-8", errors="replace"))
        cache[f.resolve()] = page.ids
        rel = f.relative_to(html_dir)
        problems += [f"{rel}: external resource {u}" for u in page.resources
                     if u.startswith("//") or urlsplit(u).scheme in {"http", "https"}]
        problems += link_problems(f.resolve(), html_dir, page, cache)
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perfmamba.artifact.book",
                                description="Build the replication book offline.")
    p.add_argument("--root", default=".", help="repository root (where _config.yml is)")
    p.add_argument("--output", default=None, help="where _build/ goes (default: ROOT)")
    p.add_argument("--no-strict", action="store_true", help="do not turn warnings into errors")
    p.add_argument("--static-only", action="store_true", help="only install MathJax into book/_static")
    args = p.parse_args(argv)
    try:
        if args.static_only:
            print(prepare_static(args.root))
            return 0
        html = build_book(args.root, strict=not args.no_strict, output=args.output)
    except (BookBuildError, subprocess.CalledProcessError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    problems = static_problems(html)
    for line in problems:
        print(line, file=sys.stderr)
    print(html)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
