# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DATA ?=

.PHONY: setup run test lint format worker beat clean-var

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build (a local wheel where the machine has one); with it in
	# place the project's own pin installs nothing more.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

## make run: migrate, create the demo users and data (or import DATA=dir), start a worker and the server
run: setup
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py setup_demo $(if $(DATA),--data $(DATA),)
	PY=$(PY) bash scripts/run_local.sh $(HOST) $(PORT)

## make worker: a Celery worker on the configured broker (CELERY_BROKER_URL)
worker: setup
	$(PY) -m celery -A labelapp worker --loglevel INFO

## make beat: the periodic tasks (the reaper of dead workers' iterations); run exactly one
beat: setup
	$(PY) -m celery -A labelapp beat --loglevel INFO

## make test: the whole suite (ruff, then pytest); browser tests need /usr/bin/chromium
test: setup
	$(VENV)/bin/ruff check .
	bash scripts/ensure_chromium.sh || true
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean-var:
	rm -rf var
