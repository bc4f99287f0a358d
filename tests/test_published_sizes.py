"""Published GGUF files (shared/data/gguf_sizes.json, copied here with their sources): moeplan's
prediction from config alone is within 0.1% of every file made with the stock llama-quantize recipe.
Files made with other recipes are listed with the reason they cannot be predicted from a config."""

import dataclasses
import json

import pytest

from moeplan.api import predict_size
from moeplan.arch.inventory import inventory
from moeplan.memory.weights import file_bytes, predict
from moeplan.quant.ggml import GGMLType
from moeplan.quant.recipe import FileType, QuantOptions
from moeplan.sources.catalog import resolve

from .conftest import DATA

PUBLISHED = json.loads((DATA / "published_gguf_sizes.json").read_text())


@pytest.mark.parametrize("entry", PUBLISHED["stock"], ids=lambda e: f"{e['model']}-{e['quant']}")
def test_stock_recipe_files_within_0_1_percent(entry: dict[str, str | int]) -> None:
    """moeplan's default (`size MODEL -q QUANT`, MTP as the catalog records the published files)."""
    got, want = predict_size(str(entry["model"]), str(entry["quant"])).file_bytes, int(entry["bytes"])
    assert abs(got - want) / want < 0.001, f"{got:,} vs published {want:,}"


def test_default_mtp_follows_the_published_files() -> None:
    """The Qwen3.5 uploads lack the MTP block the pinned converter keeps: the default predicts the
    upload (within 0.005%) and says so; with --mtp the prediction is the converter's 2.4% larger file."""
    default = predict_size("qwen3.5-35b-a3b", "Q8_0")
    assert default.mtp.startswith("dropped (1 layer(s)): the published GGUFs lack them")
    assert abs(default.file_bytes - 36_903_139_968) / 36_903_139_968 < 0.00005
    kept = predict_size("qwen3.5-35b-a3b", "Q8_0", mtp=True)
    assert 0.02 < (kept.file_bytes - default.file_bytes) / default.file_bytes < 0.03
    # models without a record keep the pinned converter's default and say so
    assert "the pinned converter's default" in predict_size("glm-4.5-air", "Q4_K_M").mtp


def test_gpt_oss_keeps_mxfp4_experts_in_converter_file_types() -> None:
    """convert_hf_to_gguf.py writes gpt-oss experts as MXFP4 whatever --outtype is (a BF16 file is
    about 65 GB, not 234 GB); its default file is the native MXFP4_MOE one."""
    bf16 = predict_size("gpt-oss-120b", "BF16")
    assert 65e9 < bf16.file_bytes < 66e9
    assert bf16.type_histogram["mxfp4"] == 108 and "MXFP4 experts stay MXFP4" in " ".join(bf16.notes)
    assert predict_size("gpt-oss-120b", None).quant == "MXFP4_MOE"
    assert predict_size("qwen3-30b-a3b", None).quant == "Q4_K_M"
    # llama-quantize file types requantize them, as the pinned llama-quantize --dry-run does
    assert "mxfp4" not in predict_size("gpt-oss-120b", "Q4_K_M").type_histogram


def test_qat_files_use_a_q8_0_embedding() -> None:
    """ggml-org's Gemma 3 QAT Q4_0 files keep the (tied) embedding at Q8_0 instead of the stock Q6_K:
    the stock recipe is 2.2% small; with `--output-tensor-type q8_0` it is within 0.1%."""
    entry = next(e for e in PUBLISHED["custom"] if e["model"] == "gemma-3-27b")
    spec = resolve("gemma-3-27b").spec()
    stock = file_bytes(predict(inventory(spec), FileType.Q4_0), spec.n_vocab)
    assert (entry["bytes"] - stock) / entry["bytes"] > 0.02
    custom = predict(inventory(spec), FileType.Q4_0, QuantOptions(output_tensor_type=GGMLType.Q8_0))
    assert abs(file_bytes(custom, spec.n_vocab) - entry["bytes"]) / entry["bytes"] < 0.001


def test_qwen_uploads_of_tied_qwen2_5_carry_an_output_tensor() -> None:
    """Qwen's own Qwen2.5-1.5B-Instruct Q4_K_M file counts 1,777,088,000 parameters: the tied
    embedding plus a separate output.weight. With that tensor the stock recipe is within 0.02% of the
    file; the pinned converter's file (no output.weight: the checkpoint has no lm_head) is 12% smaller."""
    entry = next(e for e in PUBLISHED["custom"] if e["model"] == "qwen2.5-1.5b-instruct")
    tied = resolve("qwen2.5-1.5b-instruct").spec()
    untied = dataclasses.replace(tied, tied_embeddings=False)
    assert sum(t.n_elements for t in inventory(untied).tensors) == entry["params"]
    copy = file_bytes(predict(inventory(untied), FileType.Q4_K_M), untied.n_vocab)
    assert abs(copy - entry["bytes"]) / entry["bytes"] < 0.0002
    stock = predict_size("qwen2.5-1.5b-instruct", "Q4_K_M").file_bytes
    assert 0.11 < (entry["bytes"] - stock) / entry["bytes"] < 0.13


def test_deepseek_r1_q4_k_m_tensor_data() -> None:
    """llama.cpp reported 376.650 GiB of tensor data for a stock DeepSeek-R1 Q4_K_M GGUF
    (shared/reference/llamacpp-internals.md §8); moeplan predicts it from the config alone."""
    w = predict(inventory(resolve("deepseek-r1").spec()), FileType.Q4_K_M)
    assert abs(w.tensor_bytes / 2**30 - 376.650) / 376.650 < 0.001


def test_ling_flash_q4_k_m_tensor_data() -> None:
    """llama-bench on a Ling-flash-2.0 Q4_K_M GGUF printed `bailingmoe2 100B.A6B Q4_K - Medium | 58.13 GiB
    | 102.89 B` (find_string index file id 36004122646, a user's benchmark table): the size and the
    parameter count moeplan predicts from the config alone."""
    inv = inventory(resolve("ling-flash-2.0").spec())
    assert round(predict(inv, FileType.Q4_K_M).tensor_bytes / 2**30, 2) == 58.13
    assert round(sum(t.n_elements for t in inv.tensors) / 1e9, 2) == 102.89


@pytest.mark.parametrize(
    ("model", "printed"),
    [
        # llama-bench `params` of published GGUFs (find_string index file ids 36004122646, 53250428215)
        ("glm-4.5-air", 110.47),  # "glm4moe 106B.A12B Q4_K - Small | 62.27 GiB | 110.47 B"
        ("glm-4.7", 358.34),  # bartowski zai-org_GLM-4.7-IQ2_XXS: "glm4moe 355B.A32B ... | 358.34 B"
    ],
)
def test_glm_mtp_block_keeps_its_embedding_and_head_copies(model: str, printed: float) -> None:
    """The GGUF's MTP block holds the checkpoint's own embedding and head copies (2 x n_vocab x n_embd),
    which the published files' parameter counts include; --no-mtp drops the whole block."""
    spec = resolve(model).spec()
    kept, dropped = inventory(spec), inventory(spec, mtp=False)
    names = {t.name for t in kept.tensors}
    nextn = f"blk.{spec.n_layer}.nextn"
    assert {f"{nextn}.embed_tokens.weight", f"{nextn}.shared_head_head.weight"} <= names
    assert round(sum(t.n_elements for t in kept.tensors) / 1e9, 2) == printed
    assert not any(t.name.startswith(f"blk.{spec.n_layer}.") for t in dropped.tensors)


def test_glm_4_5_air_q4_k_s_tensor_data() -> None:
    """The same llama-bench table's GLM-4.5-Air Q4_K_S file: 62.27 GiB of tensor data, moeplan's stock
    Q4_K_S prediction with the MTP block and its head copies."""
    w = predict(inventory(resolve("glm-4.5-air").spec()), FileType.Q4_K_S)
    assert round(w.tensor_bytes / 2**30, 2) == 62.27
