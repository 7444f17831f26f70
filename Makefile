# Cody Batch: everything runs from a venv and an Airflow home inside this repository.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export CODYBATCH_HOME ?= $(CURDIR)/.codybatch
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION := False
# One machine: a short scheduler idle sleep, since every stage of a job waits for a loop.
export AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME ?= 0.2
export CODYBATCH_PUBLIC_URL ?= http://localhost:8080
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS ?= admin:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE ?= $(AIRFLOW_HOME)/passwords.json
export PATH := $(BIN):$(PATH)

.PHONY: install demo test up postgres bench lint format worker-image clean

install: $(STAMP)

# Re-installs only when the requirements or the project metadata change.
$(STAMP): requirements.txt pyproject.toml
	@command -v bwrap > /dev/null || { echo "installing bubblewrap (the sandbox of every command run in a checkout)"; \
		apt-get install -y -q bubblewrap > /dev/null 2>&1 || { apt-get update -q > /dev/null && apt-get install -y -q bubblewrap > /dev/null; } \
		|| echo "could not install bubblewrap: install it (Debian: apt-get install bubblewrap), or steps, verify and Claude's shell cannot run"; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet -r requirements.txt
	@$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

$(AIRFLOW_HOME)/airflow.db: $(STAMP)
	@mkdir -p $(AIRFLOW_HOME)
	@test -f $(AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE) || echo '{"admin": "admin"}' > $(AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)
	@$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (tail -20 $(AIRFLOW_HOME)/migrate.log; exit 1)
	@$(BIN)/airflow pools set codybatch 5 "Cody Batch workers" > /dev/null

demo: $(AIRFLOW_HOME)/airflow.db
	@$(BIN)/python -m codybatch.demo

test: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@# Both cores: one process per core; each test file stays on one process (browser tests share a login).
	@$(BIN)/pytest -q -n 2 --dist loadfile

# `make up` keeps Airflow's database in PostgreSQL (Debian's package, installed when missing).
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl > /dev/null 2>&1 || command -v pg_ctl > /dev/null || \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing PostgreSQL (Debian's postgresql package)..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql > /dev/null; \
	  else echo "make up needs PostgreSQL: sudo apt-get install postgresql"; exit 1; fi

# PostgreSQL + LocalExecutor + api-server, scheduler, dag-processor, triggerer, supervised:
# if one dies the stack stops with a message (see codybatch/airflow/stack.py).
up: $(STAMP) postgres
	@mkdir -p $(AIRFLOW_HOME)
	@test -f $(AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE) || echo '{"admin": "admin"}' > $(AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE)
	@$(BIN)/python -m codybatch.demo --examples
	@$(BIN)/python -c "from codybatch.airflow.campaigns import sync_campaign_stubs; sync_campaign_stubs()"
	@echo "Airflow: http://localhost:8080   login: admin / admin   (Cody Batch: http://localhost:8080/codybatch/)"
	@$(BIN)/python -m codybatch.airflow.stack

bench: $(STAMP) postgres
	@$(BIN)/python -m benchmarks

lint: $(STAMP)
	@$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	@$(BIN)/ruff check --fix . && $(BIN)/ruff format .

worker-image:
	docker build -f include/worker/Dockerfile -t codybatch-worker .

clean:
	rm -rf $(AIRFLOW_HOME) $(CODYBATCH_HOME)
