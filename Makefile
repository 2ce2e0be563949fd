# condsynth front door. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast lint format bench summary clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# setuptools boxes an "Editable installation" notice about same-named folders in the working directory: it is
	# informational (this project is meant to run from its folder), so the install does not show it
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -e ".[dev,pose,studio]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install condsynth with its dev tools, the pose extra (MediaPipe) and the studio extra

train: $(STAMP) ## the default run: pix2pixHD stage global on synthetic scenes (a few minutes on a CPU)
	$(PY) run.py $(ARGS)

test: $(STAMP) ## the test suite
	$(PY) -m pytest tests -q $(ARGS)

test-fast: $(STAMP) ## the suite without the slow (training/subprocess) tests
	$(PY) -m pytest tests -q -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff
	$(PY) -m ruff check .

format: $(STAMP) ## ruff autofix
	$(PY) -m ruff check --fix .

bench: $(STAMP) ## benchmarks (steps/s, memory, LST/EDN speed, speed-ups over fp32 eager, per-operator profiles); ARGS="--quick"
	$(PY) scripts/bench.py $(ARGS)

summary: $(STAMP) ## the sub-networks of a config, e.g. make summary ARGS="stage=local dataset=cityscapes size=paper"
	$(PY) run.py task=summary $(ARGS)

clean: ## remove outputs and caches (keeps .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
