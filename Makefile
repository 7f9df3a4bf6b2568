# Everything a fresh machine needs, from the project's own files.
#   make demo   - run the instrumented model server under load, print its telemetry report, and leave
#                 the collector's web console running at the printed URL (Ctrl-C stops it); installs
#                 only the `examples` extra, into .venv-demo
#   make test   - lint and run the whole test suite (what .ci/run calls); installs the CI stack into .venv
#   make dist   - build the sdist and wheel into dist/ and check them with twine
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= test,frameworks,heavy,serving,serving2
# One OpenTelemetry release train for the framework extras (pip's resolver gives up without it).
CONSTRAINTS := tests/instr/constraints.txt

.PHONY: setup system demo dist test test-mlserver test-ray bench lint

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

# The demo needs only the `examples` extra (FastAPI, scikit-learn, SciPy, uvicorn), not the CI stack.
DEMO_VENV := .venv-demo
$(DEMO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install -q -e '.[examples]'
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/modeltel demo --keep

dist: setup
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup system lint
	$(BIN)/pytest -q
	$(MAKE) --no-print-directory test-mlserver
	$(MAKE) --no-print-directory test-ray

# Frameworks that cannot share the main environment get one each, named after their pyproject extra:
# MLServer pins fastapi<0.116 and protobuf<7; ray[serve] needs protobuf 7, which kserve refuses.
.venv-%/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv .venv-$*
	.venv-$*/bin/pip install -q --upgrade pip
	.venv-$*/bin/pip install -q -e '.[test,$*]' -c $(CONSTRAINTS)
	touch $@

test-mlserver: .venv-mlserver/.installed
	.venv-mlserver/bin/pytest -q tests/test_instr_mlserver.py

test-ray: .venv-rayserve/.installed
	timeout 600 .venv-rayserve/bin/pytest -q tests/test_instr_rayserve.py  # a hang fails the run instead of wedging CI

bench: setup
	$(BIN)/python benchmarks/overhead.py
