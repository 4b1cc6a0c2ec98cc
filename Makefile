# Every target sets up what it needs: a virtual environment with the CPU build of torch and the package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

$(BIN)/deepem: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned, so that installing the project never pulls a CUDA build.
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(BIN)/deepem

.PHONY: setup demo test lint bench docs docs-screenshots
setup: $(BIN)/deepem

demo: setup
	$(BIN)/deepem compare --dataset digits --methods vae,iwae --particles 5 --epochs 20 --out runs/demo --force

test: setup
	DEEPEM_DATA=$${DEEPEM_DATA:-$(abspath ../shared/data)} $(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks examples

bench: setup
	$(BIN)/python benchmarks/throughput.py

# The documentation site (docs/, mkdocs.yml) into site/: open site/index.html. Warnings are errors.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# Refresh the screenshots kept for review in docs/screenshots/ (needs Chromium: apt-get install chromium).
docs-screenshots: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m tests.docs.browser
