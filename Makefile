# One-command entry points (see README). Everything installs into ./.venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test pythons lint clean

$(STAMP): pyproject.toml instrumentation/capture/_capture.c instrumentation/capture/_repr.c instrumentation/capture/_repr.h \
		collector-processors/_otlp_native.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/execscope demo

test: setup
	$(BIN)/python -m pytest -q -n 2 tests

# the same suite on CPython 3.13 and 3.14 in a cached Debian testing root (needs root; see README)
pythons:
	bash tests/infra/pythons.sh

lint: setup
	$(BIN)/ruff check execscope instrumentation collector-processors storage queries dashboards tests
	$(BIN)/mypy -p execscope

clean:
	rm -rf $(VENV) .execscope .typecheck
