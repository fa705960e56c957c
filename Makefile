# Every target builds .venv on first use (pip, from pyproject.toml) and reuses it afterwards.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export MPLBACKEND := Agg

.PHONY: run test test-browser chromium lab bench clean-results help

help:
	@echo "make run    - the notebook series top to bottom (default profile), results in results/"
	@echo "make test   - pytest on helpers, then nbval on every notebook (profile ci, offline)"
	@echo "make test-browser - notebook 04's sliders in JupyterLab, driven by Playwright and chromium"
	@echo "make lab    - JupyterLab on notebooks/"
	@echo "make bench  - speed and memory benchmarks (benchmarks/)"

# PyTorch's CUDA build fills about 6 GB; say so up front instead of failing mid-install with ENOSPC.
# --no-cache-dir: the wheels would otherwise be copied a second time into pip's cache.
NEED_GB := 8
$(STAMP): pyproject.toml
	@$(PYTHON) -c "import shutil, sys; free = shutil.disk_usage('.').free / 1e9; \
	  sys.exit(0) if free >= $(NEED_GB) or '$(wildcard $(STAMP))' else \
	  sys.exit(f'make: only {free:.1f} GB free here; building $(VENV) (PyTorch with its CUDA libraries) needs about $(NEED_GB) GB. Free some disk and run make again.')"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir -e '.[test,lab]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m helpers notebooks --out results/notebooks

test: $(STAMP)
	HF_HUB_OFFLINE=1 EEG2IMG_PROFILE=ci $(PY) -m pytest tests
	@if [ -z "$(NOTEBOOKS)" ]; then echo "no notebooks yet"; else \
	  HF_HUB_OFFLINE=1 EEG2IMG_PROFILE=ci $(PY) -m pytest --nbval-lax -p no:cacheprovider $(NOTEBOOKS); fi

# Debian's chromium for the browser test: Playwright's own browser download needs a network it may not have.
chromium:
	@[ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium with apt-get (for the browser test)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make: the browser test needs chromium: sudo apt-get install chromium (or CHROMIUM=/path/to/chromium)"; \
	    exit 1; \
	  fi; }

test-browser: $(STAMP) chromium
	EEG2IMG_REQUIRE_BROWSER=1 HF_HUB_OFFLINE=1 EEG2IMG_PROFILE=ci $(PY) -m pytest -p no:cacheprovider tests/test_browser.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/run_all.py

clean-results:
	find results -mindepth 1 ! -name README.md -exec rm -rf {} +
