# idlevm: `make demo` runs the whole system locally, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
comma := ,
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)-$(subst $(comma),-,$(EXTRAS))
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
MYSQL_URL ?= mysql://root@127.0.0.1:3306/test
export DEBUG ?= 1

.PHONY: help venv test lint typecheck pytest demo bench clean

help:
	@echo "make demo   - run simulator + suspension service + web console (http://127.0.0.1:8000)"
	@echo "make test   - lint, type-check and run the tests (SQLite, then PostgreSQL and MariaDB if they answer)"
	@echo "make bench  - run the benchmarks in bench/ and print their numbers"

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy suspend_service idlevm/one idlevm/onesim idlevm/inventory idlevm/web

# The suite runs on SQLite, then again on each server database that answers: PostgreSQL
# (production) and MariaDB (when mysqlclient is installed: EXTRAS=dev,mysql).
pytest: $(STAMP)
	@set -e; used="sqlite"; \
	echo "=== pytest on SQLite ==="; \
	env -u DATABASE_URL $(BIN)/pytest -q; \
	for url in $(PG_URL) $(MYSQL_URL); do \
	  if $(BIN)/python -m suspend_service.dbcheck "$$url"; then \
	    echo "=== pytest on $$url ==="; \
	    DATABASE_URL=$$url $(BIN)/pytest -q -m "not slow"; used="$$used, $${url%%:*}"; \
	  else \
	    echo "=== $$url does not answer: skipped ==="; \
	  fi; \
	done; \
	echo "=== databases used: $$used ==="

test: lint typecheck pytest

demo: $(STAMP)
	bash deploy/demo.sh

bench: $(STAMP)
	$(BIN)/python bench/collect.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
