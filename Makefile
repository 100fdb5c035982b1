# Developer entry points. GNU make; python3.11 from PATH; everything runs from the .venv.
#   make run       first-run setup, demo data, then web + engine + task cluster (Ctrl-C stops all, exit 0)
#   make run KITE=sim   the same on the Kite path: demo accounts on Kite, served by the simulator
#   make run BROKERS=mixed   a mixed desk: master on the Kite simulator, children on Angel One, Dhan, Alice Blue (simulators) and paper
#   make demo-reset     the demo desk back to the README's starting balances (engine stopped)
#   make test      the whole suite on SQLite
#   make test-pg   the whole suite on a throwaway PostgreSQL cluster
#   make check     lint, format check, types, import contracts, migrations (CI runs it too)
#   make mutate    mutation testing of the money code (slow, not in CI; docs/mutation.md)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MANAGE := $(BIN)/python manage.py
TYPED := pms accounts replication brokers lab scripts/bootstrap_env.py scripts/run_procfile.py
# Checks that need Django settings but no .env (CI has none).
CHECK_ENV := DJANGO_SETTINGS_MODULE=pms.settings_test

# `make run KITE=sim`: the demo accounts become Kite accounts and every Kite call goes to the
# simulator (manage.py kite_sim, a lab command) on 127.0.0.1:8001. Empty (the default): the paper exchange.
KITE ?=
WEB_PORT ?= 8000
KITE_SIM_PORT ?= 8001
KITE_SIM_CONFIG := .kite-sim.json
# `make run BROKERS=mixed`: the Kite-simulator demo, then CHILD1 and CHILD2 move to Angel One (served
# by manage.py angel_sim on 127.0.0.1:8002), CHILD5 (C5 of the worked example, added) to Dhan
# (dhan_sim on 8003, order updates on 8004), CHILD4 to Alice Blue (alice_sim on 8005, order feed on
# 8006) and CHILD3 to the paper exchange; MASTER1 stays on Kite. Empty (the default): KITE decides.
BROKERS ?=
ANGEL_SIM_PORT ?= 8002
ANGEL_SIM_CONFIG := .angel-sim.json
DHAN_SIM_PORT ?= 8003
DHAN_SIM_WS_PORT ?= 8004
DHAN_SIM_CONFIG := .dhan-sim.json
ALICE_SIM_PORT ?= 8005
ALICE_SIM_WS_PORT ?= 8006
ALICE_SIM_CONFIG := .alice-sim.json
MIXED_ANGEL_DEMO := CHILD1,CHILD2
MIXED_DHAN_DEMO := CHILD5
MIXED_ALICE_DEMO := CHILD4
MIXED_PAPER_DEMO := CHILD3
STAFF_URL = http://127.0.0.1:$(WEB_PORT)/staff/
# The processes run under scripts/run_procfile.py (not `honcho start`): Ctrl-C sends each one
# SIGINT, waits for all of them and exits 0 (docs/operations.md). It loads no env file: Django
# reads .env itself and never lets it override the environment given here.
KITE_SIM_ENV := WEB_PORT=$(WEB_PORT) KITE_SIM_PORT=$(KITE_SIM_PORT) KITE_SIM_CONFIG=$(KITE_SIM_CONFIG) LAB_ENABLED=true KITE_API_ROOT=http://127.0.0.1:$(KITE_SIM_PORT) KITE_LOGIN_URL=http://127.0.0.1:$(KITE_SIM_PORT)/connect/login FREEZE_QUANTITIES=NIFTY=1800,BANKNIFTY=900
ifneq ($(strip $(BROKERS)),)
ifneq ($(strip $(BROKERS)),mixed)
ifneq ($(filter run,$(MAKECMDGOALS)),)
$(error BROKERS=$(BROKERS) is not a switch of make run: use "make run BROKERS=mixed" (Kite master; Angel One, Dhan, Alice Blue and paper children, against the simulators) or leave BROKERS empty)
endif
else ifneq ($(strip $(KITE)),)
ifneq ($(filter run,$(MAKECMDGOALS)),)
$(error BROKERS=mixed and KITE=$(KITE) do not go together: BROKERS=mixed already runs the Kite simulator)
endif
endif
endif
ifeq ($(strip $(BROKERS)),mixed)
RUN_PROCFILE := Procfile.mixed
SEED_FLAGS := --kite-sim $(KITE_SIM_CONFIG)
# Exported to every process: the Kite simulator's variables plus the Angel, Dhan and Alice Blue ones.
RUN_ENV := $(KITE_SIM_ENV) ANGEL_SIM_PORT=$(ANGEL_SIM_PORT) ANGEL_SIM_CONFIG=$(ANGEL_SIM_CONFIG) ANGEL_API_ROOT=http://127.0.0.1:$(ANGEL_SIM_PORT) \
	DHAN_SIM_PORT=$(DHAN_SIM_PORT) DHAN_SIM_WS_PORT=$(DHAN_SIM_WS_PORT) DHAN_SIM_CONFIG=$(DHAN_SIM_CONFIG) DHAN_API_ROOT=http://127.0.0.1:$(DHAN_SIM_PORT) DHAN_WS_ROOT=ws://127.0.0.1:$(DHAN_SIM_WS_PORT) \
	ALICE_SIM_PORT=$(ALICE_SIM_PORT) ALICE_SIM_WS_PORT=$(ALICE_SIM_WS_PORT) ALICE_SIM_CONFIG=$(ALICE_SIM_CONFIG) ALICE_API_ROOT=http://127.0.0.1:$(ALICE_SIM_PORT)/
else ifeq ($(strip $(KITE)),)
RUN_PROCFILE := Procfile
SEED_FLAGS :=
RUN_ENV := WEB_PORT=$(WEB_PORT)
else ifeq ($(strip $(KITE)),sim)
RUN_PROCFILE := Procfile.kite-sim
SEED_FLAGS := --kite-sim $(KITE_SIM_CONFIG)
# Exported to every process.
RUN_ENV := $(KITE_SIM_ENV)
else ifneq ($(filter run,$(MAKECMDGOALS)),)
$(error KITE=$(KITE) is not a switch of make run: use "make run KITE=sim" (Kite path against the simulator) or plain "make run" (paper exchange))
endif

.PHONY: help install run demo-reset test test-pg test-slow check lint typecheck migrations-check fmt clean

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

run: $(STAMP) .env  ## migrate, seed the paper demo, start web (http://127.0.0.1:8000/staff/), engine and qcluster (KITE=sim: on the Kite path; BROKERS=mixed: Kite, Angel One, Dhan, Alice Blue and paper)
	$(MANAGE) migrate --noinput
	$(MANAGE) sync_schedules
	$(MANAGE) paper seed
	$(MANAGE) seed_demo $(SEED_FLAGS) --site http://127.0.0.1:$(WEB_PORT)
ifeq ($(RUN_PROCFILE),Procfile.mixed)
	LAB_ENABLED=true $(MANAGE) angel_sim --link-demo $(MIXED_ANGEL_DEMO) --paper-demo $(MIXED_PAPER_DEMO) --write-config $(ANGEL_SIM_CONFIG)
	LAB_ENABLED=true $(MANAGE) dhan_sim --link-demo $(MIXED_DHAN_DEMO) --write-config $(DHAN_SIM_CONFIG)
	LAB_ENABLED=true $(MANAGE) alice_sim --link-demo $(MIXED_ALICE_DEMO) --write-config $(ALICE_SIM_CONFIG)
	@echo "Starting the simulators of Kite (http://127.0.0.1:$(KITE_SIM_PORT)), Angel One (http://127.0.0.1:$(ANGEL_SIM_PORT)), Dhan (http://127.0.0.1:$(DHAN_SIM_PORT)) and Alice Blue (http://127.0.0.1:$(ALICE_SIM_PORT)/), web, engine and task cluster on a mixed desk."
	@echo "MASTER1 on Kite, $(MIXED_ANGEL_DEMO) on Angel One, $(MIXED_DHAN_DEMO) on Dhan, $(MIXED_ALICE_DEMO) on Alice Blue, $(MIXED_PAPER_DEMO) on paper."
else ifeq ($(RUN_PROCFILE),Procfile.kite-sim)
	@echo "Starting the Kite simulator (http://127.0.0.1:$(KITE_SIM_PORT)), web, engine and task cluster on the Kite path."
else
	@echo "Starting web, engine and task cluster."
endif
	@echo "Open $(STAFF_URL) (staff dashboards; sign in as staff). Ctrl-C stops everything."
	$(RUN_ENV) $(BIN)/python scripts/run_procfile.py $(RUN_PROCFILE)

demo-reset: $(STAMP) .env  ## the demo desk back to the README's starting balances (stop make run first)
	$(MANAGE) migrate --noinput
	$(MANAGE) paper seed
	LAB_ENABLED=true $(MANAGE) demo_reset

test: $(STAMP)  ## run the whole suite on SQLite (the long random runs are `make test-slow`)
	$(BIN)/pytest -m "not slow"

test-pg: $(STAMP)  ## run the whole suite on a throwaway PostgreSQL (installs it with apt-get if missing)
	scripts/pg_test.sh -m "not slow"

test-slow: $(STAMP)  ## the long random runs: the money-rules state machine with 200 examples of 60 steps
	$(BIN)/pytest -m slow

lint: $(STAMP)  ## ruff lint, ruff format check, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)  ## mypy (strict, django-stubs)
	$(BIN)/mypy $(TYPED)

migrations-check: $(STAMP)  ## fail if models changed without a migration
	$(CHECK_ENV) $(MANAGE) makemigrations --check --dry-run

check: lint typecheck migrations-check  ## the gates: ruff, format, import contracts, mypy strict, migrations (CI runs them; tests are `make test`)

fmt: $(STAMP)  ## format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove caches and the test database (keeps .venv, .env and db.sqlite3)
	rm -rf .mypy_cache .ruff_cache .pytest_cache .import_linter_cache .hypothesis .pytest-db.sqlite3*

.PHONY: test-browser
test-browser: $(STAMP)  ## browser tests in headless Chromium (installs Debian's chromium with apt-get if missing)
	scripts/browser_deps.sh
	$(BIN)/pytest -m browser tests/browser

.PHONY: scale
scale: $(STAMP)  ## scale benchmarks: bench_fanout over HTTP to kite_sim (memory simulator: 1,000 and 5,000 children, poll and stream; the paper-persisting simulator; queue mode on Redis, 2 and 4 workers)
	scripts/scale.sh

.PHONY: soak
# Chaos soak. Without SOAK_SEED a new seed is drawn (and printed with the command that replays it);
# `make soak SOAK_SEED=42` replays one. A throwaway database; nothing of yours is touched. Exits
# non-zero on a duplicate, a lost order, a starved exit (a child still holding where the master is
# flat, settle ticks after faults cleared) or a child order above its caps (issue 11).
SOAK_SEED ?=
SOAK_EVENTS ?= 300
SOAK_CHILDREN ?= 10
SOAK_FAULT_RATE ?= 0.3
soak: $(STAMP)  ## chaos soak on the Kite path: kite_sim faults, halts, dry-run, disables, RMS rejections, caps; fails on a duplicate, lost order, starved exit or cap breach
	$(CHECK_ENV) LOG_LEVEL=$${LOG_LEVEL:-ERROR} $(MANAGE) soak $(if $(strip $(SOAK_SEED)),--seed $(SOAK_SEED)) \
		--events $(SOAK_EVENTS) --children $(SOAK_CHILDREN) --fault-rate $(SOAK_FAULT_RATE)

.PHONY: mutate
# Mutation testing of the money code (docs/mutation.md). Slow, never in CI. A fresh mutants/ each
# run (the score is of today's code and tests); MUTATE narrows it to mutant names matching any of
# its globs (`make mutate MUTATE='replication.sizing.*'`; `MUTATE='*__mutmut_*5'` is a 10 % sample). One worker: the forked workers share the test
# database file (pms.settings_test names it after the parent's pid; TMPDIR keeps it in mutants/).
MUTATE ?=
mutate: $(STAMP)  ## mutation testing of replication/sizing/ and replication/allocation/ (mutmut; slow; docs/mutation.md)
	rm -rf mutants
	mkdir -p mutants/tmp
	@start=$$(date +%s); TMPDIR=$(CURDIR)/mutants/tmp $(BIN)/mutmut run --max-children 1 $(foreach m,$(MUTATE),'$(m)'); \
		echo "mutmut run took $$(( $$(date +%s) - start )) s"
	@$(BIN)/mutmut results --all true | awk -F': ' '\
		{ split($$1, part, "."); mod = part[1] "." part[2]; sub(/^ +/, "", mod); \
		  if ($$2 == "not checked") { skipped[mod]++; next } total[mod]++; \
		  if ($$2 == "killed" || $$2 == "timeout") killed[mod]++; else rest = rest "\n  " $$1 ": " $$2 } \
		END { for (m in total) printf "%s: %d of %d mutants killed (%.1f %%)%s\n", m, killed[m], total[m], \
		        100 * killed[m] / total[m], skipped[m] ? sprintf(", %d not run", skipped[m]) : ""; \
		      if (rest != "") printf "not killed (each needs a test or a line in docs/mutation.md):%s\n", rest }'
