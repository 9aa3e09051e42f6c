# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make run    install into .venv and serve on the embedded SQLite default
#   make test   install into .venv and run lint, types and the whole test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/chatlog serve

lint: $(STAMP)
	$(VENV)/bin/ruff check chatlog tests migrations benchmarks
	$(VENV)/bin/ruff format --check chatlog tests migrations benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest -q
