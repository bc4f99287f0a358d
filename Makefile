# moeplan — every target sets up what it needs on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint validate instrument browser bench fuzz-web clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The web app: deploy pages, hardware checker, compare pages, JSON API (prints its URL).
run: $(STAMP)
	$(BIN)/moeplan serve --host 127.0.0.1 --port 8000

# The pinned llama.cpp source (its snapshots are our quantization oracle) and its CPU+RPC build.
instrument:
	PYTHON=$(PYTHON) validation/build_llamacpp.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests validation benchmarks
	$(BIN)/ruff format --check src tests validation benchmarks
	$(BIN)/mypy

# Debian's Chromium for the browser tests (Playwright drives it; no browser download).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test: $(STAMP) instrument lint browser
	$(BIN)/pytest -q

validate: $(STAMP) instrument
	$(BIN)/python -m validation.report

# A long schemathesis pass over the JSON API (the suite runs 40 examples per operation).
fuzz-web: $(STAMP)
	MOEPLAN_FUZZ_EXAMPLES=1500 $(BIN)/pytest -q tests/test_web_fuzz.py

clean:
	rm -rf $(VENV)

# Planning speed (benchmarks/plan_speed.json), the web app under loopback load
# (benchmarks/web_load.json) and the speed model's calibration report.
bench: $(STAMP) instrument
	$(BIN)/python -m benchmarks.plan_speed
	$(BIN)/python -m benchmarks.web_load
	$(BIN)/python -m benchmarks.calibrate
	$(BIN)/python -m validation.speed
