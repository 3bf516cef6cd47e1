# posegen: `make run` starts the local stack, `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export POSEGEN_HOME ?= $(CURDIR)/.posegen
export REMBG_HOME ?= $(POSEGEN_HOME)/models
export NUMBA_CACHE_DIR ?= $(POSEGEN_HOME)/numba-cache
export PREFECT_HOME ?= $(POSEGEN_HOME)/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install lock run demo test soak lint format clean browser prometheus

# Installs are exactly uv.lock (every package, with its hashes): uv, itself pinned by hash in
# requirements-uv.txt, syncs the virtualenv to it and refuses a lock that pyproject.toml has
# outgrown (--locked). No Python download: uv uses the interpreter the venv was made with.
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON_DOWNLOADS := never
UV := $(BIN)/uv

$(UV): requirements-uv.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements-uv.txt
	touch $@

$(BIN)/.installed: pyproject.toml uv.lock $(UV)
	$(UV) sync --locked --all-extras --python $(BIN)/python --quiet
	touch $@

install: $(BIN)/.installed

# Refresh the lock: newest releases pyproject.toml's ranges allow, then every pinned non-Python
# file (posegen/pins.py) fetched afresh and checked. Commit uv.lock after `make test` passes.
lock: $(UV)
	$(UV) lock --upgrade --python $(BIN)/python
	$(UV) sync --locked --all-extras --python $(BIN)/python --quiet
	$(BIN)/posegen assets verify

$(REMBG_HOME)/models/u2netp/u2netp.onnx: | $(BIN)/.installed
	$(BIN)/posegen models fetch --model u2netp

# The selfie model (MediaPipe's, converted to ONNX at fetch time); its tests need it.
$(REMBG_HOME)/models/selfie/selfie.onnx: | $(BIN)/.installed
	$(BIN)/posegen models fetch --model selfie

models: $(REMBG_HOME)/models/u2netp/u2netp.onnx $(REMBG_HOME)/models/selfie/selfie.onnx

# The browser tests: Debian's Chromium (never a downloaded browser) and axe-core from the npm
# registry, pinned and sha256-checked (posegen/web/vendor.py; a verified copy is reused).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	apt-get update -q && apt-get install -y -q chromium

browser: $(CHROMIUM) | $(BIN)/.installed
	$(BIN)/posegen assets fetch axe-core

# promtool, which unit-tests the Prometheus alerting rules in deployments/prometheus/
# (tests/alerts/test_prometheus_rules.py): Debian's `prometheus` package, like chromium above.
PROMTOOL ?= /usr/bin/promtool
$(PROMTOOL):
	apt-get update -q && apt-get install -y -q --no-install-recommends prometheus

prometheus: $(PROMTOOL)

run: install models
	$(BIN)/posegen up

demo: install models
	$(BIN)/python -m posegen.demo

# pytest's exit code 5 (no tests collected) is a failure too: make stops on any non-zero code.
test: install models browser prometheus
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The long reliability runs (tests/reliability, marker `soak`), not part of `make test`.
soak: install models
	$(BIN)/python -m pytest -m soak tests/reliability $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .posegen
