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

.PHONY: help venv test lint typecheck pytest demo bench clean agent

help:
	@echo "make demo   - run simulator + suspension service + web console (http://127.0.0.1:8000)"
	@echo "make test   - lint, type-check and run the tests (SQLite, then PostgreSQL and MariaDB if they answer)"
	@echo "make bench  - run the benchmarks in bench/ and print their numbers"
	@echo "make agent  - build dist/idlevm-agent.pyz, the single-file agent for VM images"

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
	$(BIN)/mypy suspend_service idlevm/one idlevm/onesim idlevm/inventory idlevm/rules idlevm/web idlevm/host

# The suite runs on SQLite, then again on each server database that answers: PostgreSQL
# (production) and MariaDB (when mysqlclient is installed: EXTRAS=dev,mysql), there only the
# tests that use the database (DB_TESTS_ONLY, tests/conftest.py): the others cannot differ.
pytest: $(STAMP)
	@set -e; used="sqlite"; \
	echo "=== pytest on SQLite ==="; \
	env -u DATABASE_URL $(BIN)/pytest -q; \
	for url in $(PG_URL) $(MYSQL_URL); do \
	  if $(BIN)/python -m suspend_service.dbcheck "$$url"; then \
	    echo "=== pytest on $$url ==="; \
	    DATABASE_URL=$$url DB_TESTS_ONLY=1 $(BIN)/pytest -q -m "not slow"; used="$$used, $${url%%:*}"; \
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
	$(BIN)/python bench/agent.py
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/probe.py
	$(BIN)/python bench/web.py

# The agent as one file a VM image can carry: only idlevm/__init__.py, idlevm/protocol.py and
# idlevm/agent/ go in (standard library only, Python 3.6+).
agent: dist/idlevm-agent.pyz

dist/idlevm-agent.pyz: idlevm/__init__.py idlevm/protocol.py $(wildcard idlevm/agent/*.py)
	rm -rf build/agent && mkdir -p build/agent/idlevm/agent dist
	cp idlevm/__init__.py idlevm/protocol.py build/agent/idlevm/
	cp idlevm/agent/*.py build/agent/idlevm/agent/
	$(PYTHON) -m zipapp build/agent -m "idlevm.agent.__main__:main" -p "/usr/bin/env python3" -o $@
	@echo "built $@ ($$(wc -c < $@) bytes)"

clean:
	rm -rf $(VENV) var build dist .pytest_cache .mypy_cache .ruff_cache
