# Everything a fresh machine needs, from the project's own files.
#   make demo   - run the instrumented model server under load, print its telemetry report, and leave
#                 the collector's web console running at the printed URL (Ctrl-C stops it)
#   make test   - lint and run the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= test,frameworks,heavy,serving,serving2
# One OpenTelemetry release train for the framework extras (pip's resolver gives up without it).
CONSTRAINTS := tests/instr/constraints.txt

MLSERVER_VENV := .venv-mlserver

.PHONY: setup system demo test test-mlserver bench lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]' -c $(CONSTRAINTS)
	touch $@

# Debian packages the integration tests run for real: Prometheus, Alertmanager, and Chromium with its
# WebDriver for the console's browser tests.
SYSTEM_PACKAGES := prometheus prometheus-alertmanager chromium chromium-driver
system:
	@if command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null \
	    && command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	else echo "note: install $(SYSTEM_PACKAGES) (Debian packages) to run the integration and browser tests"; fi

demo: setup
	$(BIN)/modeltel demo --keep

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup system lint
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-mlserver

# MLServer cannot share the main environment (see pyproject's mlserver extra): its tests get their own.
$(MLSERVER_VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install -q --upgrade pip
	$(MLSERVER_VENV)/bin/pip install -q -e '.[test,mlserver]' -c $(CONSTRAINTS)
	touch $@

test-mlserver: $(MLSERVER_VENV)/.installed
	$(MLSERVER_VENV)/bin/pytest -q tests/test_instr_mlserver.py

bench: setup
	$(BIN)/python benchmarks/overhead.py
