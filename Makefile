# perfmamba — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARTIFACTS ?= artifacts
export PERFMAMBA_ARTIFACTS := $(abspath $(ARTIFACTS))

.PHONY: help venv test reproduce notebooks book figures gpu-campaign clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints/cpu.txt -e ".[dev,book]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(STAMP)  ## create .venv with the pinned CPU environment

test: $(STAMP)  ## set up and run the whole test suite
	$(PY) -m pytest -q

reproduce: $(STAMP)  ## set up and run the whole pipeline on its embedded default, then build the book
	$(PY) -m perfmamba.cli reproduce --artifacts $(ARTIFACTS)

clean:  ## remove build outputs (keeps .venv and trained models)
	rm -rf book/_build
