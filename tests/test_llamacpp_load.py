"""Every catalog model, materialised from moeplan's inventory, passes the pinned llama.cpp's loader
(exact dry run), and the weight bytes llama.cpp allocates match the inventory's."""

from typing import Any

import pytest
from validation.llamacpp import run_load

from moeplan.sources.catalog import load_catalog

pytestmark = pytest.mark.llamacpp

# The architectures of the core issue; the catalog must keep covering each of them.
ARCHITECTURES = {
    "llama",
    "qwen2",
    "qwen3",
    "qwen3moe",
    "qwen3next",
    "qwen35",
    "qwen35moe",
    "deepseek2",
    "llama4",
    "gpt-oss",
    "glm4moe",
    "deepseek32",
    "glm-dsa",
    "mistral4",
    "gemma3",
    "nemotron_h_moe",
    "granitehybrid",
    "step35",
    "mimo2",
    "minimax-m2",
    "afmoe",
    "bailingmoe2",
    "bailingmoe3",
    "exaone-moe",
    "seed_oss",
    "olmoe",
    "olmo2",
    "phi3",
    "gemma4",
    "ernie4_5-moe",
    "hunyuan-moe",
    "dots1",
    "phimoe",
    "qwen3vlmoe",
    "kimi-linear",
    "kimi-k3",
    "lfm2moe",
    "lfm2",
    "minimax-m3",
    "cohere2",
    "cohere2moe",
    "deci",
    "deepseek4",
    "dots3note",
    "exaone4",
    "gemma3n",
    "glm4",
    "granite",
    "hunyuan-dense",
    "hy_v3",
    "laguna",
    "mellum",
    "mistral3",
    "muse-glimmer",
    "nemotron_h",
    "qwen3vl",
    "qwen4exp",
    "smollm3",
}


@pytest.fixture(scope="module")
def load_results() -> dict[str, dict[str, Any]]:
    payload = run_load()  # writes validation/results/load.json
    return {c["model"]: c for c in payload["comparisons"]}


def test_catalog_covers_every_architecture() -> None:
    archs = {e.spec().arch for e in load_catalog().values()}
    assert archs >= ARCHITECTURES
    # Mixtral: the llama arch with experts
    assert any(e.spec().arch == "llama" and e.spec().is_moe for e in load_catalog().values())


@pytest.mark.parametrize("model_id", sorted(load_catalog()))
def test_materialised_model_loads(load_results: dict[str, dict[str, Any]], model_id: str) -> None:
    c = load_results[model_id]
    assert c["measured"]["loads"], f"llama.cpp refused {model_id}: {c.get('failure')}\n{c['command']}"
    assert c["ok"], (
        f"{model_id}: predicted {c['predicted']}, measured {c['measured']}, error {c['error']}, "
        f"completion {c.get('completion')}\n{c['command']}"
    )
