# GPU image for the full reproduction:
#   docker build -t perfmamba . && docker run --gpus all -v $PWD/out:/out perfmamba
# writes the book to out/book, the result rows to out/results and the corpus, tokenizer and trained models to
# out/artifacts; a second run on the same out/ resumes (trained models and measured rows are reused).
#
# BASE: torch 2.9.1 + CUDA 12.8. mamba-ssm 2.3.x and causal-conv1d 1.6.x publish prebuilt wheels for torch
# 2.6-2.10 with CUDA 12, so their installs download a matching wheel; the devel image keeps nvcc for the source
# build they fall back to otherwise.
#
# A stand-in base (`--build-arg BASE=…`): any image whose `python`/`pip` on PATH have a torch installed. When that
# torch has no CUDA, the CUDA kernels of causal-conv1d and mamba-ssm are not built (their Python code and
# dependencies are still installed). `make image-test` builds and runs this file on a Debian 12 stand-in with
# the CPU torch of constraints/cpu.txt (tools/image_test.sh); the CUDA base itself has not been built here.
ARG BASE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-devel
FROM ${BASE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# git records the commit in results files where there is one; make for `make` targets inside the image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git make \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/perfmamba

# Pin the base image's torch (and its triton, where it has one). Every pip install below uses
# /opt/constraints.txt, which ends with these pins, so a dependency asking for another torch fails the build
# instead of replacing the torch of the base image.
RUN python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > /opt/torch-constraints.txt \
 && { python -c "import triton; print('triton==' + triton.__version__)" >> /opt/torch-constraints.txt 2>/dev/null || true; } \
 && cat /opt/torch-constraints.txt

# The exact pins: constraints/cpu.txt without its CPU torch (and without triton when the base has one), the
# kernels and everything their install pulls in (constraints/gpu.txt), then the base image's torch.
COPY constraints/ constraints/
RUN grep -v -E "^($(cut -d= -f1 /opt/torch-constraints.txt | paste -sd'|'))==" constraints/cpu.txt > /opt/constraints.txt \
 && cat constraints/gpu.txt /opt/torch-constraints.txt >> /opt/constraints.txt

# Upstream CUDA kernels, built against the torch above (no build isolation: their setup.py imports it). With a
# torch without CUDA, *_SKIP_CUDA_BUILD installs their Python code only and *_FORCE_BUILD stops setup.py from
# guessing a prebuilt wheel's URL from the (absent) CUDA version.
RUN pip install -c /opt/constraints.txt packaging ninja wheel setuptools \
 && if python -c "import sys, torch; sys.exit(torch.version.cuda is None)"; then \
        echo "torch has CUDA: building the kernels"; \
    else \
        echo "torch has no CUDA: kernels not built (stand-in base)"; \
        export CAUSAL_CONV1D_SKIP_CUDA_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE \
               MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE; \
    fi \
 && pip install --no-build-isolation -c /opt/constraints.txt causal-conv1d mamba-ssm

# The project's dependencies (a layer that changes only with pyproject.toml or the pins), then MathJax for the
# offline book (perfmamba/artifact/book.py needs only the standard library and perfmamba/errors.py).
COPY pyproject.toml ./
COPY perfmamba/errors.py /tmp/pmbook/perfmamba/
COPY perfmamba/artifact/book.py /tmp/pmbook/perfmamba/artifact/
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; x = p['optional-dependencies']; print('\n'.join(p['dependencies'] + x['gpu'] + x['book']))" > /tmp/requirements.txt \
 && pip install -c /opt/constraints.txt -r /tmp/requirements.txt \
 && touch /tmp/pmbook/perfmamba/__init__.py /tmp/pmbook/perfmamba/artifact/__init__.py \
 && PYTHONPATH=/tmp/pmbook python -m perfmamba.artifact.book --root . --static-only \
 && rm -r /tmp/pmbook /tmp/requirements.txt

# The project itself; then a check that torch is still the base image's.
COPY . .
RUN pip install --no-deps --no-build-isolation -c /opt/constraints.txt -e ".[gpu,book]" \
 && python -c "import torch; v = 'torch==' + torch.__version__.split('+')[0]; assert v in open('/opt/torch-constraints.txt').read().split(), v" \
 && perfmamba --help > /dev/null

VOLUME ["/out"]

# Exec form: perfmamba is PID 1 and ends on SIGTERM (`docker stop`) within seconds; everything it writes to /out
# is replaced atomically, and a second run on the same /out resumes. `--profile smoke` (tiny settings, CPU) and
# `--profile cpu` replace the paper's settings as arguments: docker run … perfmamba perfmamba reproduce --profile smoke --out /out
CMD ["perfmamba", "reproduce", "--profile", "paper", "--out", "/out"]
