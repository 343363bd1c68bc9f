# One-command entry points (see README). Everything installs into ./.venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml instrumentation/_capture.c instrumentation/_repr.c instrumentation/_repr.h
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/execscope demo

test: setup
	$(BIN)/python -m pytest -q -n 2 tests

# mypy needs the import layout (execscope.instrumentation, ...) on disk: a symlinked view of it.
lint: setup
	$(BIN)/ruff check execscope instrumentation collector-processors storage queries dashboards tests
	rm -rf .typecheck && mkdir -p .typecheck && cp -rs "$(CURDIR)/execscope" .typecheck/execscope
	ln -s "$(CURDIR)/instrumentation" .typecheck/execscope/instrumentation
	ln -s "$(CURDIR)/collector-processors" .typecheck/execscope/collector
	ln -s "$(CURDIR)/storage" .typecheck/execscope/storage
	ln -s "$(CURDIR)/queries" .typecheck/execscope/queries
	ln -s "$(CURDIR)/dashboards" .typecheck/execscope/dashboards
	cd .typecheck && ../$(BIN)/mypy -p execscope

clean:
	rm -rf $(VENV) .execscope
