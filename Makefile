# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make run    install chatlog into .venv (serving needs only that) and serve on ./chatlog.db
#               at http://127.0.0.1:8080 (another port: CHATLOG_PORT=8081 make run, or
#               make run ARGS="--port 8081 --db chat.db")
#   make test   also install the test tools into .venv, then run lint, types, the import
#               contracts and the whole test suite (skipped tests say why: pytest -rs)
PYTHON ?= python3
VENV := .venv
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test lint

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml $(RUN_STAMP)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/chatlog serve $(ARGS)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check chatlog tests migrations benchmarks
	$(VENV)/bin/ruff format --check chatlog tests migrations benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest -q -rs
