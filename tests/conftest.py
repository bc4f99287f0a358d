"""Shared fixtures: where the pinned llama.cpp lives (made by `make instrument`)."""

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
LLAMACPP_VERSION = "11434.0.0"


def llamacpp_cache() -> Path:
    default = Path.home() / ".cache" / "moeplan" / f"llamacpp-{LLAMACPP_VERSION}"
    return Path(os.environ.get("MOEPLAN_LLAMACPP_CACHE", default))


@pytest.fixture(scope="session")
def llamacpp_src() -> Path:
    src = llamacpp_cache() / "src" / "llama.cpp"
    if not (src / "tests" / "snapshots").is_dir():
        pytest.fail(f"pinned llama.cpp source not found at {src}: run `make instrument` first")
    return src


def pytest_configure(config: pytest.Config) -> None:
    """Runner results written by the llama.cpp tests go to a temporary folder, not validation/results/."""
    os.environ.setdefault("MOEPLAN_VALIDATION_RESULTS", tempfile.mkdtemp(prefix="moeplan-results-"))
