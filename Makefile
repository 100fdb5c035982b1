# Developer entry points. GNU make; python3.11 from PATH; everything runs from the .venv.
#   make run       first-run setup, demo data, then web + engine + task cluster (honcho)
#   make test      the whole suite on SQLite
#   make test-pg   the whole suite on a throwaway PostgreSQL cluster
#   make check     lint, format check, types, import contracts, migrations, tests

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANAGE := $(BIN)/python manage.py
TYPED := pms accounts replication brokers scripts/bootstrap_env.py
# Checks that need Django settings but no .env (CI has none).
CHECK_ENV := DJANGO_SETTINGS_MODULE=pms.settings_test

.PHONY: help install run test test-pg check lint typecheck migrations-check fmt clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found on PATH; install Python 3.11 or pass PYTHON=/path/to/python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(STAMP)  ## create .venv and install requirements-dev.txt

# Written once; an existing .env is never overwritten (it holds the credential encryption key).
.env: | $(STAMP)
	$(BIN)/python scripts/bootstrap_env.py

run: $(STAMP) .env  ## migrate, seed the paper demo, start web (127.0.0.1:8000), engine and qcluster
	$(MANAGE) migrate --noinput
	$(MANAGE) sync_schedules
	$(MANAGE) paper seed
	$(MANAGE) seed_demo
	@echo "Starting web (http://127.0.0.1:8000/admin/), engine and task cluster; Ctrl-C stops all."
	$(BIN)/honcho start -f Procfile

test: $(STAMP)  ## run the whole suite on SQLite
	$(BIN)/pytest

test-pg: $(STAMP)  ## run the whole suite on a throwaway PostgreSQL (installs it with apt-get if missing)
	scripts/pg_test.sh

lint: $(STAMP)  ## ruff lint, ruff format check, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)  ## mypy (strict, django-stubs)
	$(BIN)/mypy $(TYPED)

migrations-check: $(STAMP)  ## fail if models changed without a migration
	$(CHECK_ENV) $(MANAGE) makemigrations --check --dry-run

check: lint typecheck migrations-check test  ## everything CI and reviewers expect to pass

fmt: $(STAMP)  ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove caches and the test database (keeps .venv, .env and db.sqlite3)
	rm -rf .mypy_cache .ruff_cache .pytest_cache .import_linter_cache .hypothesis .pytest-db.sqlite3*
