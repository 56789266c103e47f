# Two commands on a fresh machine:
#   make demo   set up .venv, then compare WebSocket, SSE/1.1 and SSE/2 and print the report
#   make test   set up .venv, then ruff, mypy --strict and the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := servers loadgen reports rtbench

.PHONY: demo test lint typecheck clean

$(BIN)/rtbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/rtbench
	$(BIN)/rtbench run scenarios/quickstart.toml

lint: $(BIN)/rtbench
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/rtbench
	$(BIN)/mypy --strict $(PACKAGES)

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
