# The README's commands. `make demo` sets everything up and runs the live recognizer on its
# embedded demo stream; `make test` sets everything up and runs the whole test suite (all three tiers:
# unit, integration, device; what CI runs); `make test-fast` runs the unit tier only (under a minute).
PY := .venv/bin/python
DATA_ROOT ?= $(if $(wildcard ../shared/data),../shared/data,)

.PHONY: setup demo test test-fast
setup:
	@scripts/bootstrap.sh

demo: setup
	$(PY) run_live.py --demo $(if $(DATA_ROOT),--data-root $(DATA_ROOT),)

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m unit
