# musicrec — common tasks. `make demo` and `make test` are all a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= artifacts/demo
API_PORT ?= 8000
UI_PORT ?= 8501
PYTEST_ARGS ?=

.PHONY: install lock images os-deps demo demo-data demo-train demo-serve stop test test-fast lint format clean repro dvc-remote mlflow-ui

install: $(VENV)/.installed ## Create .venv: the locked dependencies (dev, spark, postgres), then musicrec

# requirements.lock pins every dependency with its hashes; `make lock` regenerates it. uv (pinned
# in the same lock) installs it, pip when uv cannot be had: scripts/install-python-deps.sh.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	bash scripts/install-python-deps.sh $(VENV) requirements.lock
	@$(BIN)/python -m pip check >/dev/null || { $(BIN)/python -m pip check; \
		echo "requirements.lock does not satisfy pyproject.toml: run make lock" >&2; exit 1; }
	touch $@

# Resolve pyproject.toml into the hashed locks (uv, from the dev extra). Existing pins are kept
# unless UPGRADE=1; the image lock is the runtime subset of the full one (with the PostgreSQL
# driver, for a shared event store), at the same versions.
UV_COMPILE = UV_CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/uv pip compile pyproject.toml \
	--universal --python-version 3.10 --generate-hashes --quiet
lock: $(BIN)/uv ## Refresh requirements.lock and requirements-runtime.lock (UPGRADE=1: newest allowed)
	$(UV_COMPILE) --extra dev --extra spark --extra postgres $(if $(UPGRADE),--upgrade) -o requirements.lock
	$(UV_COMPILE) --extra postgres -c requirements.lock -o requirements-runtime.lock

# uv comes from the lock; a stale lock may not have it yet, so any uv bootstraps the first lock.
$(BIN)/uv:
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv

images: install ## Build the container images with podman or docker (see docs/deploy.md)
	PYTHON=$(BIN)/python bash scripts/build-images.sh

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
