# Two commands: `make demo` runs the main job, `make test` runs the checks. Each sets up .venv first.
# `make docs` builds the site into docs/_build/html.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test test-order lint bench docs clean

# torch is pinned and installed first: the CPU wheel is on disk, any other version pulls CUDA.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)

$(VENV)/.lab: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[lab]"
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.lab

$(VENV)/.docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	touch $@ $(VENV)/.lab

demo: $(VENV)/.lab
	$(BIN)/smoothlab demo

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks examples docs
	$(BIN)/ruff format --check src tests benchmarks examples docs
	$(BIN)/mypy

# pytest exits 5 when it collected nothing: a suite that tests nothing is a failure, said so.
test: lint
	@$(BIN)/pytest -n 2; status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

# The same suite in a shuffled order (pytest-randomly prints its seed; rerun one with
# `.venv/bin/pytest -n 2 -p randomly --randomly-seed=N`): no test may depend on order.
test-order: lint
	$(BIN)/pytest -n 2 -p randomly

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/bench_losses.py

# The site, rebuilt from scratch (-E) so that every guide's code runs against the current code;
# warnings (broken references, bad docstrings, failing guide code) are errors.
docs: $(VENV)/.docs
	$(BIN)/sphinx-build -E -b html -W --keep-going -q docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

clean:
	rm -rf $(VENV) build docs/_build docs/reference *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
