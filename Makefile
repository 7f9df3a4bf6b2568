# Everything a fresh machine needs, from the project's own files.
#   make demo   - run the instrumented model server under load and print its telemetry report
#   make test   - lint and run the whole test suite (what .ci/run calls)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= test,frameworks,heavy,serving,serving2
# One OpenTelemetry release train for the framework extras (pip's resolver gives up without it).
CONSTRAINTS := tests/instr/constraints.txt

MLSERVER_VENV := .venv-mlserver
RAY_VENV      := .venv-ray

.PHONY: setup system demo test test-mlserver test-ray bench lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]' -c $(CONSTRAINTS)
	touch $@

# Debian packages the integration tests run for real: Prometheus and Alertmanager.
system:
	@if command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null; \
	else echo "note: install prometheus and prometheus-alertmanager (Debian packages) to run the integration tests"; fi

demo: setup
	$(BIN)/modeltel demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup system lint
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-mlserver
	$(MAKE) --no-print-directory test-ray

# MLServer cannot share the main environment (see pyproject's mlserver extra): its tests get their own.
$(MLSERVER_VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install -q --upgrade pip
	$(MLSERVER_VENV)/bin/pip install -q -e '.[test,mlserver]' -c $(CONSTRAINTS)
	touch $@

test-mlserver: $(MLSERVER_VENV)/.installed
	$(MLSERVER_VENV)/bin/pytest -q tests/test_instr_mlserver.py

# Ray Serve neither: ray[serve] upgrades protobuf past what kserve accepts (see pyproject's rayserve extra).
$(RAY_VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/pip install -q --upgrade pip
	$(RAY_VENV)/bin/pip install -q -e '.[test,rayserve]' -c $(CONSTRAINTS)
	touch $@

test-ray: $(RAY_VENV)/.installed
	timeout 600 $(RAY_VENV)/bin/pytest -q tests/test_instr_rayserve.py  # a hang fails the run instead of wedging CI

bench: setup
	$(BIN)/python benchmarks/overhead.py
