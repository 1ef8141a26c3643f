"""The book builds with warnings as errors, names no CDN, and renders offline in headless Chromium:
math typeset by the bundled MathJax, every image, link and anchor resolving to a built file."""
from __future__ import annotations

import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from perfmamba.artifact import book

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--virtual-time-budget=5000",
]
CDN_HOSTS = re.compile(
    r"https?://(?:[\w-]+\.)*(?:jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com|googleapis\.com|gstatic\.com"
    r"|jquery\.com|plot\.ly|bootstrapcdn\.com|fontawesome\.com|polyfill\.io|mathjax\.org|cloudflare\.com)",
    re.I,
)


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory) -> Path:
    return book.build_book(ROOT, strict=True, output=tmp_path_factory.mktemp("book"))


def pages(html_dir: Path) -> list[Path]:
    return sorted(p for p in html_dir.rglob("*.html") if "_static" not in p.relative_to(html_dir).parts)


def toc_files() -> list[str]:
    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"], *walk({k: v for k, v in toc.items() if k != "root"})]


def test_every_toc_entry_is_built(html_dir):
    assert (html_dir / "index.html").is_file()
    missing = [f for f in toc_files() if not (html_dir / f"{Path(f).with_suffix('')}.html").is_file()]
    assert not missing, missing


def test_no_cdn_or_external_scripts_and_styles(html_dir):
    problems = []
    for page in pages(html_dir):
        text = page.read_text(encoding="utf-8")
        rel = page.relative_to(html_dir)
        problems += [f"{rel}: {m.group(0)}" for m in CDN_HOSTS.finditer(text)]
        problems += [f"{rel}: external {u}" for u in book.parse_page(text).resources
                     if re.match(r"(https?:)?//", u)]
    assert not problems, "\n".join(problems)


def test_mathjax_is_bundled(html_dir):
    entry = html_dir / "_static" / "mathjax" / book.MATHJAX_ENTRY
    assert entry.is_file()
    methods = (html_dir / "book" / "methods.html").read_text(encoding="utf-8")
    assert f"_static/mathjax/{book.MATHJAX_ENTRY}" in methods


def test_links_images_and_anchors_resolve(html_dir):
    problems = book.static_problems(html_dir)
    assert not problems, "\n".join(problems)


# --- in the browser ----------------------------------------------------------------------------------

class _Dom(HTMLParser):
    """Counts MathJax output and errors, and collects the text a reader sees (not code or scripts)."""

    SKIP = {"script", "style", "pre", "code", "textarea", "noscript", "svg", "mjx-assistive-mml"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.mjx = 0
        self.errors: list[str] = []
        self.text: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "mjx-container":
            self.mjx += 1
        if a.get("data-mml-node") == "merror" or "data-mjx-error" in a:
            self.errors.append(a.get("data-mjx-error") or "merror")
        if tag in self.SKIP:
            self.skip += 1

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.text.append(data)


def dump_dom(page: Path) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 0 and "<html" in proc.stdout, f"{page}: chromium failed\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def rendered(html_dir) -> dict[Path, str]:
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver)")
    # redirect stubs (index.html) are left out: the browser would show, and resolve links against, their target
    files = [p for p in pages(html_dir) if book.parse_page(p.read_text(encoding="utf-8")).redirect is None]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(files, pool.map(dump_dom, files)))


def test_math_is_typeset(html_dir, rendered):
    problems = []
    for page, dom in rendered.items():
        rel = page.relative_to(html_dir)
        expected = len(re.findall(r'class="math notranslate', page.read_text(encoding="utf-8")))
        d = _Dom()
        d.feed(dom)
        if d.mjx < expected:
            problems.append(f"{rel}: {d.mjx} typeset formulas, {expected} in the source")
        if d.errors:
            problems.append(f"{rel}: MathJax errors {d.errors[:3]}")
        visible = "".join(d.text)
        raw = [s for s in ("\\(", "\\)", "\\[", "\\]", "$$") if s in visible]
        if raw:
            problems.append(f"{rel}: raw TeX delimiters left in the text: {raw}")
    assert not problems, "\n".join(problems)
    assert sum(_count_mjx(dom) for dom in rendered.values()) > 0, "no formula typeset anywhere"


def _count_mjx(dom: str) -> int:
    return dom.count("<mjx-container")


def test_rendered_links_and_images_resolve(html_dir, rendered):
    problems = []
    cache: dict[Path, set[str]] = {}
    for page, dom in rendered.items():
        parsed = book.parse_page(dom)
        problems += book.link_problems(page.resolve(), html_dir.resolve(), parsed, cache)
        problems += [f"{page.relative_to(html_dir)}: external {u}" for u in parsed.resources
                     if re.match(r"(https?:)?//", u)]
    assert not problems, "\n".join(problems)
