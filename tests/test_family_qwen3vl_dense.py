"""Qwen3-VL's dense text models (`qwen3vl`: Qwen3-VL-2B, 4B, 8B, 32B): Qwen3's dense trunk with Qwen3-VL's
interleaved M-RoPE sections and DeepStack count, 262,144 tokens of context."""

import pytest
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family
from moeplan.sources.catalog import resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf

PAIRS = [("qwen3-vl-4b", "qwen3-4b"), ("qwen3-vl-8b", "qwen3-8b"), ("qwen3-vl-32b", "qwen3-32b")]


def shapes(model: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(t.name, t.shape) for t in inventory(resolve(model).spec()).tensors]


@pytest.mark.parametrize(("vl", "text"), PAIRS)
def test_the_qwen3_dense_trunk_with_mrope_and_deepstack(vl: str, text: str) -> None:
    spec = resolve(vl).spec()
    assert spec.arch == "qwen3vl" and shapes(vl) == shapes(text)  # vision tower: the mmproj file
    assert spec.context_length == 262_144 and resolve(text).spec().context_length == 40_960
    kv = family("qwen3vl").gguf_metadata(inventory(spec))
    assert kv[".rope.dimension_sections"] == [24, 20, 20, 0]
    assert kv[".n_deepstack_layers"] == 3
    n_embd = spec.n_embd  # DeepStack widens the first three layers' input rows to 4 x n_embd
    assert family("qwen3vl").embedding_activations(spec, 2, 512) == 4 * 512 * (5 * 4 * n_embd - 4 * n_embd)
    assert family("qwen3vl").embedding_activations(spec, 3, 512) == 0


def test_the_2b_ties_its_head_where_qwen3_1_7b_stores_one() -> None:
    """Qwen3-VL-2B has Qwen3-1.7B's trunk, but its head is the embedding (config tie_word_embeddings
    true, sglang PR 18024), while the Qwen3-1.7B checkpoint stores lm_head (torchtune PR 2669)."""
    text = [s for s in shapes("qwen3-1.7b") if s[0] != "output.weight"]
    assert shapes("qwen3-vl-2b") == text and len(text) == len(shapes("qwen3-1.7b")) - 1


@pytest.mark.parametrize(
    ("model", "params"),
    [("qwen3-vl-8b", 8_190_735_360), ("qwen3-vl-32b", 32_762_123_264)],  # print_info 8.19 B / 32.76 B
)
def test_parameters(model: str, params: int) -> None:
    assert sum(t.n_elements for t in inventory(resolve(model).spec()).tensors) == params


def test_thinking_releases_share_the_instruct_config() -> None:
    assert resolve("Qwen/Qwen3-VL-8B-Thinking").id == "qwen3-vl-8b"
    assert resolve("qwen3-vl-32b-thinking").id == "qwen3-vl-32b"
    assert resolve("Qwen3-VL-32B").id == "qwen3-vl-32b"


def test_file_reads_back_as_qwen3vl_with_its_deepstack() -> None:
    m = materialize(resolve("qwen3-vl-8b").spec())
    got = spec_from_gguf(read_local(m.path))
    fam = family("qwen3vl")
    assert got.arch == "qwen3vl"
    assert fam.embedding_activations(got, 0, 512) == fam.embedding_activations(m.spec, 0, 512) > 0
