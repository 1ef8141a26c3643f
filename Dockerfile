# GPU image for the full reproduction:
#   docker build -t perfmamba . && docker run --gpus all -v $PWD/out:/out perfmamba
#
# Untested: the machines this artifact was developed on have no container engine and no GPU.
# tests/test_docker.py checks statically what it can (hadolint, base torch vs. mamba-ssm's wheels,
# installs that keep the base torch, output written to /out).
#
# Base: torch 2.9.1 + CUDA 12.8. mamba-ssm 2.3.x and causal-conv1d 1.6.x publish prebuilt wheels for
# torch 2.6-2.10 with CUDA 12, so their installs download a matching wheel; the devel image keeps nvcc
# for the source build they fall back to otherwise.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-devel

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# make runs the pipeline; git records the commit in every results file.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git make \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/perfmamba

# Pin the base image's torch and triton. Every pip install below uses this file (directly or through
# /opt/constraints.txt), so a dependency asking for another torch fails the build instead of replacing
# the CUDA build of the base image.
RUN python -c "import torch, triton; print('torch==' + torch.__version__.split('+')[0]); print('triton==' + triton.__version__)" \
        > /opt/torch-constraints.txt \
 && cat /opt/torch-constraints.txt

# Upstream CUDA kernels, built against the torch above (no build isolation: their setup.py imports it).
RUN pip install --no-cache-dir -c /opt/torch-constraints.txt packaging==26.4 ninja==1.13.2 wheel==0.48.0 \
 && pip install --no-cache-dir --no-build-isolation -c /opt/torch-constraints.txt \
        causal-conv1d==1.6.2.post1 mamba-ssm==2.3.2.post1

COPY . .

# The project with the exact pins of constraints/cpu.txt, except torch and triton, which stay the base
# image's; then MathJax for the offline book, and a check that torch is still the base image's.
RUN grep -v -E '^(torch|triton)==' constraints/cpu.txt > /opt/constraints.txt \
 && cat /opt/torch-constraints.txt >> /opt/constraints.txt \
 && pip install --no-cache-dir -c /opt/constraints.txt -e ".[gpu,book]" \
 && python -m perfmamba.book --static-only \
 && python -c "import torch; v = 'torch==' + torch.__version__.split('+')[0]; assert v in open('/opt/torch-constraints.txt').read().split(), v"

VOLUME ["/out"]

# Reproduce with the paper's settings on the GPU, then copy the book and the result rows to /out.
CMD ["bash", "-c", "make reproduce PY=python STAMP= PROFILE=paper ARTIFACTS=/out/artifacts && rm -rf /out/book && cp -r _build/html /out/book && mkdir -p /out/results && cp -r data/results/. /out/results/"]
