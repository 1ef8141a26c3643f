# perfmamba — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARTIFACTS ?= artifacts
export PERFMAMBA_ARTIFACTS := $(abspath $(ARTIFACTS))

.PHONY: help venv sysdeps test image-test reproduce notebooks book gpu-campaign clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints/cpu.txt -e ".[dev,book]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(STAMP)  ## create .venv with the pinned CPU environment

sysdeps:  ## Debian's chromium for the browser test (installed only when running as root with apt)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null) \
	  || echo "chromium not installed: the browser test will be skipped"; }

test: $(STAMP) sysdeps  ## set up and run the whole test suite
	$(PY) -m pytest -q

image-test:  ## build the Dockerfile on a local Debian 12 stand-in base (podman), run it with the smoke profile, check /out
	bash tools/image_test.sh

reproduce: $(STAMP)  ## set up and run the whole pipeline on its embedded default, then build the book
	$(PY) -m perfmamba.cli reproduce --artifacts $(ARTIFACTS) $(if $(PROFILE),--profile $(PROFILE),)

notebooks: $(STAMP)  ## execute every notebook with papermill (PROFILE=cpu|paper|smoke; default: paper on a GPU, else cpu)
	$(PY) -m perfmamba.cli reproduce --artifacts $(ARTIFACTS) --no-book $(if $(PROFILE),--profile $(PROFILE),)

gpu-campaign:  ## on a CUDA machine: kernel and decode benchmarks → data/results/<device>/ (see benchmarks/README.md)
	$(PY) benchmarks/gpu_campaign.py

book: $(STAMP)  ## build the jupyter-book site from the executed notebooks (warnings are errors)
	$(PY) -m perfmamba.book

clean:  ## remove build outputs (keeps .venv and trained models)
	rm -rf book/_build
