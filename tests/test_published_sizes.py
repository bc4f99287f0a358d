"""Published GGUF files (shared/data/gguf_sizes.json, copied here with their sources): moeplan's
prediction from config alone is within 0.1% of every file made with the stock llama-quantize recipe.
Files made with other recipes are listed with the reason they cannot be predicted from a config."""

import json

import pytest

from moeplan.arch.inventory import inventory
from moeplan.memory.weights import file_bytes, predict
from moeplan.quant.ggml import GGMLType
from moeplan.quant.recipe import FileType, QuantOptions
from moeplan.sources.catalog import resolve

from .conftest import DATA

PUBLISHED = json.loads((DATA / "published_gguf_sizes.json").read_text())


@pytest.mark.parametrize("entry", PUBLISHED["stock"], ids=lambda e: f"{e['model']}-{e['quant']}")
def test_stock_recipe_files_within_0_1_percent(entry: dict[str, str | int]) -> None:
    spec = resolve(str(entry["model"])).spec()
    w = predict(inventory(spec, mtp=False), FileType.parse(str(entry["quant"])))
    got, want = file_bytes(w, spec.n_vocab), int(entry["bytes"])
    assert abs(got - want) / want < 0.001, f"{got:,} vs published {want:,}"


def test_qat_files_use_a_q8_0_embedding() -> None:
    """ggml-org's Gemma 3 QAT Q4_0 files keep the (tied) embedding at Q8_0 instead of the stock Q6_K:
    the stock recipe is 2.2% small; with `--output-tensor-type q8_0` it is within 0.1%."""
    entry = next(e for e in PUBLISHED["custom"] if e["model"] == "gemma-3-27b")
    spec = resolve("gemma-3-27b").spec()
    stock = file_bytes(predict(inventory(spec), FileType.Q4_0), spec.n_vocab)
    assert (entry["bytes"] - stock) / entry["bytes"] > 0.02
    custom = predict(inventory(spec), FileType.Q4_0, QuantOptions(output_tensor_type=GGMLType.Q8_0))
    assert abs(file_bytes(custom, spec.n_vocab) - entry["bytes"]) / entry["bytes"] < 0.001


def test_deepseek_r1_q4_k_m_tensor_data() -> None:
    """llama.cpp reported 376.650 GiB of tensor data for a stock DeepSeek-R1 Q4_K_M GGUF
    (shared/reference/llamacpp-internals.md §8); moeplan predicts it from the config alone."""
    w = predict(inventory(resolve("deepseek-r1").spec()), FileType.Q4_K_M)
    assert abs(w.tensor_bytes / 2**30 - 376.650) / 376.650 < 0.001
