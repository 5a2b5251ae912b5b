# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?= -n 2

.PHONY: install demo lint test test-sqlite test-postgres chromium bench-vote-loop prod prod-smoke

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

install: $(VENV)/.installed

# Debian's chromium for the browser tests (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

# Two job workers: "default" (sampling, scoring, import, export) and "training" (reward model,
# policy build and updates), so a short job never waits behind a training run (docs/jobs.md).
demo: export PREFLOOP_JOB_QUEUES = default,training
demo: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py demo
	$(PY) manage.py demo_loop
	@set -m; $(PY) manage.py db_worker --no-reload --queue-name default > var/worker.log 2>&1 & WORKER=$$!; \
	$(PY) manage.py db_worker --no-reload --queue-name training > var/worker-training.log 2>&1 & TRAINER=$$!; \
	trap "kill $$WORKER $$TRAINER 2>/dev/null" EXIT INT TERM; \
	echo; echo "prefloop is running at http://$(HOST):$(PORT)/  (API: http://$(HOST):$(PORT)/api/projects/, schema: /api/schema/, admin: /admin/)"; \
	echo "job worker logs: var/worker.log (default queue), var/worker-training.log (training queue); stop with Ctrl-C"; echo; \
	$(PY) manage.py runserver $(HOST):$(PORT) --noreload

# The suite runs twice: on the embedded SQLite default and on PostgreSQL.
# pytest exits 5 when it collected no test, which fails here like any other error.
test: install lint chromium test-sqlite test-postgres

# ruff (lint rules and formatting) and mypy with django-stubs; configuration in pyproject.toml.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-sqlite: install
	DATABASE_URL= $(PY) -m pytest $(PYTEST_ARGS)

test-postgres: install
	DATABASE_URL=$(PG_URL) $(PY) -m pytest $(PYTEST_ARGS)

bench-vote-loop: install
	$(PY) bench/vote_loop.py

# The production profile (docs/operations.md). The environment must name DJANGO_SECRET_KEY,
# DJANGO_ALLOWED_HOSTS, DATABASE_URL (PostgreSQL) and REDIS_URL; the settings refuse to start otherwise.
WORKERS ?= 4
PROD := DJANGO_SETTINGS_MODULE=prefloop.settings.production
prod: install
	$(PROD) $(PY) manage.py check --deploy --fail-level WARNING
	$(PROD) $(PY) manage.py migrate --noinput
	$(PROD) $(PY) manage.py collectstatic --noinput -v0
	$(PROD) exec $(VENV)/bin/uvicorn prefloop.asgi:application --host $(HOST) --port $(PORT) --workers $(WORKERS) \
	  --lifespan off --no-server-header --proxy-headers --forwarded-allow-ips "$${FORWARDED_ALLOW_IPS:-127.0.0.1}"

# Starts the production profile (uvicorn, 2 workers) on the local PostgreSQL and Redis and votes through it.
prod-smoke: install
	DATABASE_URL=$(PG_URL) $(PY) -m pytest tests/prod -p no:xdist -q
