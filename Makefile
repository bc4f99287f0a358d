# moeplan — every target sets up what it needs on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint validate instrument clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The main job at this stage: the dense-vs-MoE comparison that motivates the project.
run: $(STAMP)
	$(BIN)/moeplan compare qwen3.5-9b qwen3.5-35b-a3b --quant Q4_K_M

# The pinned llama.cpp source (its snapshots are our quantization oracle) and its CPU+RPC build.
instrument:
	PYTHON=$(PYTHON) validation/build_llamacpp.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests validation
	$(BIN)/ruff format --check src tests validation
	$(BIN)/mypy

test: $(STAMP) instrument lint
	$(BIN)/pytest -q

validate: $(STAMP) instrument
	$(BIN)/python -m validation.report

clean:
	rm -rf $(VENV)

# Planning speed (benchmarks/plan_speed.json) and the speed model's calibration report.
bench: $(STAMP)
	$(BIN)/python -m benchmarks.plan_speed
	$(BIN)/python -m benchmarks.calibrate
