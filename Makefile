# moeplan — every target sets up what it needs on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint validate instrument browser bench clean fuzz fuzz-web screenshots

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

# The README's screenshots (docs/*.png), taken by the browser tests at 1400 px.
screenshots: $(STAMP) browser
	shots=$$(mktemp -d) && MOEPLAN_SCREENSHOTS=$$shots $(BIN)/pytest -q tests/test_web_browser.py \
	  -k "deploy_page_shows_command or checker_with_typed_rig" && \
	  cp $$shots/deploy-qwen3.5-35b-a3b.png $$shots/checker-rtx-4090-64gb.png docs/

validate: $(STAMP) instrument
	$(BIN)/python -m validation.report

# A long schemathesis pass over the JSON API (the suite runs 40 examples per operation).
fuzz-web: $(STAMP)
	MOEPLAN_FUZZ_EXAMPLES=1500 $(BIN)/pytest -q tests/test_web_fuzz.py

clean:
	rm -rf $(VENV)

# Planning speed (benchmarks/plan_speed.json), the CLI's cold start against a bare interpreter
# (benchmarks/cold_start.json), the web app under loopback load (benchmarks/web_load.json) and the
# speed model's calibration report.
bench: $(STAMP) instrument
	$(BIN)/python -m benchmarks.plan_speed
	$(BIN)/python -m benchmarks.cold_start
	$(BIN)/python -m benchmarks.web_load
	$(BIN)/python -m benchmarks.calibrate
	$(BIN)/python -m validation.speed

# Longer fuzzing of the GGUF header reader and `inspect` (the suite runs 60 examples of each), with the
# full-size worst shapes of issue 17 (a 256 MB header among them) and their figures.
fuzz: $(STAMP)
	MOEPLAN_FUZZ_EXAMPLES=5000 MOEPLAN_FUZZ_FULL=1 $(BIN)/pytest -q tests/test_gguf_fuzz.py
	$(BIN)/python -m tests.gguf_shapes --full
