# The optimizer study. `make help` lists the targets; every target bootstraps .venv itself on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= default
ARGS ?=
RUNS ?= runs
PORT ?= 5000
HOST ?= 127.0.0.1
WORKERS ?= $(shell nproc 2>/dev/null || echo 1)
# The suite on two processes, a module each at a time (pytest-xdist, pinned), the slowest modules first
# (tests/conftest.py orders them; xdist's own reordering, by number of tests, is off): CI's machine has two cores.
# `make test PYTEST_ARGS=` runs it serially; PYTEST_ARGS="-n 2 --dist loadfile -k NAME" selects.
PYTEST_ARGS ?= -n 2 --dist loadfile --no-loadscope-reorder --durations=30
export PYTHONPATH := $(CURDIR)

.DEFAULT_GOAL := help
.PHONY: help setup system-deps test lecture sweep report ui dashboard bench worker services services-stop clean

help:  ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "  code: pipelines/ (entry points) -> study/report, study/lecture, study/tools -> study/sweep (tuning/ is"
	@echo "  Optuna's one door, tracking/ MLflow's) -> study/core (the rules, networks, training); study/schema reads"
	@echo "  every conf/ file (pydantic models, one loader); README: Layout"

setup: $(STAMP)  ## Create .venv and install the pinned packages (does nothing when all is in place)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@touch $(STAMP)

system-deps:  ## Install the Debian packages the tests need (Chromium, PostgreSQL) when missing
	@bash tests/system_deps.sh

test: setup system-deps  ## Run the test suite (what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

lecture: setup  ## Reproduce the lecture's toy problem: trajectories.csv, figures, GIF, MLflow experiment `lecture`
	$(PY) -m pipelines.lecture $(ARGS)

sweep: setup  ## Tune every optimizer x batch size x dataset, then build the report (PROFILE=smoke|default|full, ARGS="key=value ...")
	$(PY) -m pipelines.sweep --profile $(PROFILE) --runs-dir $(RUNS) --workers $(WORKERS) --report $(ARGS)

report: setup  ## Rebuild the report of the newest sweep (ARGS="--sweep NAME --out DIR")
	$(PY) -m pipelines.report --runs-dir $(RUNS) $(ARGS)

ui: setup  ## Serve the MLflow UI over the runs store on $(HOST):$(PORT)
	$(VENV)/bin/mlflow ui --backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///$(RUNS)/mlflow.db} \
		--default-artifact-root $(RUNS)/artifacts --host $(HOST) --port $(PORT)

dashboard: setup  ## Serve optuna-dashboard over the newest sweep's Optuna storage on $(HOST):8080 (PORT= to change)
	$(PY) -m pipelines.dashboard --runs-dir $(RUNS) --host $(HOST) \
		--port $(if $(filter command line environment,$(origin PORT)),$(PORT),8080) $(ARGS)

bench: setup  ## Benchmark the trainer against scikit-learn's MLPClassifier (writes runs/bench.json)
	$(PY) -m pipelines.bench $(ARGS)

worker: setup  ## Join a shared sweep (OPTUNA_STORAGE / MLFLOW_TRACKING_URI, else runs/services/env)
	$(PY) -m pipelines.sweep --worker --profile $(PROFILE) --runs-dir $(RUNS) $(ARGS)

services: setup system-deps  ## Start local PostgreSQL + MLflow server for workers (URLs in runs/services/env)
	$(PY) -m pipelines.services start --runs-dir $(RUNS) $(ARGS)

services-stop: setup  ## Stop the services started by `make services`
	$(PY) -m pipelines.services stop --runs-dir $(RUNS)

clean:  ## Remove runs/, reports/ and caches (keeps .venv)
	rm -rf $(RUNS) reports .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +
