# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
FAIRSEQ_VERSION ?= 0.12.3.1
STAMP := $(VENV)/.emotion2vec-installed
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: install web-tools test demo demo-clean bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Install order matters: torch first and pinned (an unpinned torch pulls a multi-GB CUDA build), then
# fairseq-fixed built from source against it (--no-build-isolation, after cython and numpy), then the package.
$(STAMP): setup.py | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install "torch==$(TORCH_VERSION)"
	$(BIN)/python -c "import fairseq" >/dev/null 2>&1 || { \
	  $(BIN)/pip install cython numpy && \
	  $(BIN)/pip install --no-build-isolation "fairseq-fixed==$(FAIRSEQ_VERSION)"; }
	$(BIN)/pip install -e ".[test,train,hf,onnx,opensmile,media,serve,web-test]"
	@# fairseq-fixed declares torchaudio, whose PyPI wheel cannot load beside a CPU torch; nothing here uses it.
	$(BIN)/python -c "import torchaudio" >/dev/null 2>&1 || $(BIN)/pip uninstall -y -q torchaudio
	touch $@

install: $(STAMP)

# The service's tests need two programs of the operating system: Chromium, which the web page's test drives through
# Playwright (no browser download), and curl, which runs the commands of docs/serve.md. Installed here with apt-get
# when missing and run as root; otherwise a note says so (the browser test then skips with that reason, and fails
# where E2V_REQUIRE_BROWSER is set, as in CI).
web-tools:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="chromium"; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } || \
	  echo "note: apt-get could not install $$missing"; \
	else echo "note: $$missing missing and not installable here (needs root and apt-get: apt-get install $$missing)"; \
	fi

test: install web-tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) tests

demo: install
	$(BIN)/emotion2vec demo --out $(DEMO_OUT)

demo-clean:
	rm -rf $(DEMO_OUT)

bench: install
	$(BIN)/python benchmarks/forward.py
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/pretrain_step.py

clean: demo-clean
	rm -rf $(VENV) build *.egg-info .pytest_cache
