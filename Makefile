# idlevm: `make demo` runs the whole system locally, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
export DEBUG ?= 1

.PHONY: help venv test lint typecheck pytest demo bench clean

help:
	@echo "make demo   - run simulator + suspension service + web console (http://127.0.0.1:8000)"
	@echo "make test   - lint, type-check and run the tests (SQLite, and PostgreSQL if it answers)"
	@echo "make bench  - run the benchmarks in bench/ and print their numbers"

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy suspend_service idlevm/one idlevm/onesim idlevm/inventory idlevm/web

# The suite runs on SQLite, then again on PostgreSQL when one answers at $(PG_URL).
pytest: $(STAMP)
	@set -e; used="sqlite"; \
	echo "=== pytest on SQLite ==="; \
	env -u DATABASE_URL $(BIN)/pytest -q; \
	if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_URL)'.replace('postgres://','postgresql://',1), connect_timeout=3).close()" 2>/dev/null; then \
	  echo "=== pytest on PostgreSQL ($(PG_URL)) ==="; \
	  DATABASE_URL=$(PG_URL) $(BIN)/pytest -q -m "not slow"; used="$$used, postgresql"; \
	else \
	  echo "=== PostgreSQL does not answer at $(PG_URL): skipped ==="; \
	fi; \
	echo "=== databases used: $$used ==="

test: lint typecheck pytest

demo: $(STAMP)
	bash deploy/demo.sh

bench: $(STAMP)
	$(BIN)/python bench/collect.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
