# musicrec — common tasks. `make demo` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= artifacts/demo
API_PORT ?= 8000
UI_PORT ?= 8501
PYTEST_ARGS ?=

.PHONY: install os-deps demo demo-data demo-train demo-serve stop test test-fast lint format clean repro dvc-remote mlflow-ui

install: $(VENV)/.installed ## Create .venv and install musicrec with its dev extras

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,spark]'
	touch $@

os-deps: ## Install OS packages used by the tests (Prometheus, Chromium, Java)
	bash scripts/install-os-deps.sh

demo: install ## Synthesize data, prepare, train, evaluate, then serve API + UI
	bash scripts/demo.sh

stop: ## Stop the API and UI started by `make demo`
	bash scripts/demo.sh stop

repro: install ## Run the DVC pipeline (data -> prepare -> train -> evaluate); see docs/pipeline.md
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

dvc-remote: install ## Set the DVC remote: a local dir by default, or S3 with REMOTE=s3://bucket/path
	DVC=$(BIN)/dvc bash scripts/dvc-remote.sh $(if $(REMOTE),s3 $(REMOTE),local)

mlflow-ui: install ## MLflow UI on the project's tracking store (MLFLOW_PORT, default 5000)
	$(BIN)/musicrec tracking ui --port $(or $(MLFLOW_PORT),5000)

test: install os-deps ## Run the whole test suite (slow tests included)
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: install ## Unit tests only (skips tests marked slow)
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

lint: install ## ruff (lint + format check) and mypy
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
