"""Every catalog model at full size, header only, in the pinned llama.cpp: its loader counts the
parameters moeplan's inventory holds (print_info), and llama-quantize's Q4_K_M size at real shapes
is moeplan's prediction."""

from typing import Any

import pytest
from validation.fullsize import run_fullsize

from moeplan.sources.catalog import load_catalog

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, Any]]:
    return {c["model"]: c for c in run_fullsize()["comparisons"]}  # writes validation/results/fullsize.json


@pytest.mark.parametrize("model_id", sorted(load_catalog()))
def test_fullsize_params_and_q4_k_m_size(results: dict[str, dict[str, Any]], model_id: str) -> None:
    c = results[model_id]
    assert c["ok"], (c["predicted"], c["measured"], c["error"], c["command"])
    # published totals are names ("0.6B" counts Qwen3-0.6B without its 0.16B output matrix, which
    # the GGUF holds): only a gross inventory error shows against them; the report lists every one
    assert abs(c["error"]["params_vs_published_pct"]) < 30, (c["predicted"], c["published"])
