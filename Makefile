# The two commands of the README: `make demo` and `make test`. Both set everything up first
# (.venv with the project, the native stack from package registries) and are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test unit stack stop status venv bench dashboards chaos chaos-short

demo: venv stack
	$(BIN)/smartcity demo

test: venv stack
	$(BIN)/pytest $(PYTEST_ARGS)

# The unit tier: pure logic, no services (tests/unit), well under a minute.
unit: venv
	$(BIN)/pytest -q tests/unit $(PYTEST_ARGS)

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required (PYTHON=$(PYTHON))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

stack:
	deploy/native/up

status:
	deploy/native/status

stop:
	deploy/native/down
	-test -x $(BIN)/python && $(BIN)/python -m tests.chaos.run --down

# Fault injection against a private stack in its own network namespace (needs root): prints the
# table, writes .stack/chaos/report.md, fails on any loss, duplicate, dead process or security gap.
chaos: venv
	$(BIN)/python -m tests.chaos.run --full

# The short version (a few faults, about 3 minutes); `make test` runs it too (tests/chaos/test_chaos.py).
chaos-short: venv
	$(BIN)/python -m tests.chaos.run --short

# The issue-14 benchmark, Telegraf side by side (built once into ~/.cache/smartcity); ~20 min on
# 2 cores. Results: bench/results/<date>.json and .md, bench/results/latest.md. BENCH_ARGS: cases, sizes.
bench: venv stack $(VENV)/.bench-installed
	$(BIN)/python -m bench $(BENCH_ARGS)

$(VENV)/.bench-installed: pyproject.toml
	$(BIN)/pip install -q -e '.[test,bench]' --config-settings editable_mode=compat
	touch $@
