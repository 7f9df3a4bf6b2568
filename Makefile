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

# Debian packages the integration tests run for real: Prometheus (promtool), Alertmanager (amtool), Chromium
# with its WebDriver for the console's browser tests, openssl for the TLS tests, Java for TorchServe's frontend
# (the documented TorchServe example is run), Node.js and npm for the other-languages example. As root it installs them; as a
# user through sudo; without sudo it prints the command to run as root (and fails under CI=true, where the
# tests would fail on the missing programs anyway: tests/binaries.py).
SYSTEM_PACKAGES := prometheus prometheus-alertmanager chromium chromium-driver openssl default-jre-headless nodejs npm
SYSTEM_PROGRAMS := prometheus promtool prometheus-alertmanager amtool chromium chromedriver openssl java node npm
SYSTEM_INSTALL  := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES)
system:
	@missing=; for p in $(SYSTEM_PROGRAMS); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	echo "make system: missing$$missing"; \
	if [ "$$(id -u)" = 0 ]; then sh -c '$(SYSTEM_INSTALL)' >/dev/null; \
	elif command -v sudo >/dev/null; then sudo sh -c '$(SYSTEM_INSTALL)' >/dev/null; \
	else echo "make system: no sudo; run as root: $(SYSTEM_INSTALL)"; [ "$$CI" != true ]; fi

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
