"""deci (Llama-3.3-Nemotron-Super-49B-v1, DeciLMForCausalLM): the per-block plan from block_configs,
the tensors conversion/deci.py writes and src/models/deci.cpp loads, the parameter count against the
published size, the KV cache of blocks without attention (zero-wide rows, V in the widest width
without flash attention), the quantizer's 70B type, and the configs this family refuses."""

from collections import Counter
from typing import Any

import pytest
from validation.check_model import CASES
from validation.materialize import materialize
from validation.runtime import Subject, memory_check, stored_weights

from moeplan.arch.families.deci import ffn_width
from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines import vllm
from moeplan.engines.sharding import Layout, kv_values_per_token
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.memory.weights import quant_model
from moeplan.sources.catalog import load_catalog
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, shapes, spec

SUPER = "llama-3.3-nemotron-super-49b-v1"
# the blocks whose attention block_configs keeps (n_heads_in_group 8); the other 31 drop it (no_op)
ATTENTION_AT = [0, 1, 2, 3, 4, 5, 8, 9, 10, *range(12, 42), 52, *range(71, 80)]


def linear_variant() -> ModelSpec:
    """Super-49B with block 6's attention replaced by a linear map (as Nemotron-51B's blocks are)."""
    blocks = [dict(b) for b in config(SUPER)["block_configs"]]
    blocks[6] = {**blocks[6], "attention": {"n_heads_in_group": None, "replace_with_linear": True}}
    return spec_from_config(config(SUPER, block_configs=blocks))


def test_block_plan() -> None:
    s = spec(SUPER)
    assert s.arch == "deci" and s.n_layer == 80 and not s.tied_embeddings and s.has("rope_freqs")
    assert [i for i, la in enumerate(s.layers) if la.attn.n_head_kv] == ATTENTION_AT
    assert {(la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers} == {
        (64, 8, 128),
        (0, 0, 128),
    }
    assert {la.attn.kind for la in s.layers} == {AttnKind.FULL}
    assert {la.ffn.kind for la in s.layers} == {FFNKind.DENSE}
    widths = Counter(la.ffn.n_ff for la in s.layers)
    assert widths == {28672: 49, 7168: 10, 5632: 8, 2816: 6, 14336: 6, 17920: 1}


@pytest.mark.parametrize(
    ("mult", "width"), [(5.25, 28672), (2.625, 14336), (1.3125, 7168), (0.5, 2816), (1.0, 5632)]
)
def test_ffn_width_from_multiplier(mult: float, width: int) -> None:
    """int(2 x mult x 8192 / 3) up to a multiple of 256: 0.5 gives 2730 -> 2816, 1.0 gives 5461 -> 5632."""
    assert ffn_width(mult, 8192) == width


def test_parameters_tensors_and_published_total() -> None:
    inv = inventory(spec(SUPER))
    n = sum(t.n_elements for t in inv.tensors)
    assert n == 49_867_145_280 and len(inv.tensors) == 569
    published = load_catalog()[SUPER].params_published.total
    assert published == 49_000_000_000 and abs(n - published) / published < 0.02


def test_tensors_of_each_block_kind() -> None:
    t = shapes(spec(SUPER))
    assert t["rope_freqs.weight"] == (64,) and t["output.weight"] == (8192, 128256)
    assert {n.removeprefix("blk.0.") for n in t if n.startswith("blk.0.")} == {
        "attn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "ffn_norm.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    }
    assert t["blk.0.attn_k.weight"] == (8192, 1024) and t["blk.0.ffn_up.weight"] == (8192, 14336)
    # a block without attention: no attn_norm either (deci.cpp creates it only where n_head > 0)
    assert {n.removeprefix("blk.6.") for n in t if n.startswith("blk.6.")} == {
        "ffn_norm.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    }
    assert t["blk.62.ffn_down.weight"] == (2816, 8192)


def test_linear_replacement_and_ffn_free_blocks() -> None:
    s = linear_variant()
    assert (s.layers[6].attn.n_head, s.layers[6].attn.n_head_kv) == (64, 0)
    t = shapes(s)
    assert t["blk.6.attn_output.weight"] == (8192, 8192) and "blk.6.attn_norm.weight" in t
    assert "blk.6.attn_q.weight" not in t
    blocks = [dict(b) for b in config(SUPER)["block_configs"]]
    blocks[7] = {**blocks[7], "ffn": {"ffn_mult": None}}  # Ultra-253B's "dummy" FFN
    empty = spec_from_config(config(SUPER, block_configs=blocks))
    assert empty.layers[7].ffn.kind is FFNKind.NONE
    assert not any(n.startswith("blk.7.") for n in shapes(empty))


def test_gguf_arrays_the_loader_reads() -> None:
    kv = family("deci").gguf_metadata(inventory(linear_variant()))
    assert kv[".attention.head_count"][5:8] == [64, 64, 0]
    assert kv[".attention.head_count_kv"][5:8] == [8, 0, 0]
    assert kv[".feed_forward_length"][5:8] == [28672, 14336, 14336]
    assert kv[".attention.key_length"] == kv[".rope.dimension_count"] == 128


@pytest.mark.parametrize("variant", ["catalog", "linear"])
def test_file_reads_back_as_materialised(variant: str) -> None:
    m = materialize(spec(SUPER) if variant == "catalog" else linear_variant())
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.flags == m.spec.flags
    assert shapes(got) == shapes(m.spec)


def test_kv_only_on_attention_blocks_and_v_for_all_without_flash_attention() -> None:
    """F16, 49 attention blocks of 8 kv x 128: 196 KiB a token. Without flash attention llama.cpp
    transposes V and gives every one of the 80 layers a V row of the widest width (n_embd_v_gqa_max)."""
    s = spec(SUPER)
    fa = layer_memory(s, CacheConfig(n_ctx=8192))
    assert sum(m.k_bytes + m.v_bytes for m in fa) == 8192 * 49 * 2 * 8 * 128 * 2
    assert sum(m.state_bytes for m in fa) == 0
    no_fa = layer_memory(s, CacheConfig(n_ctx=8192, flash_attn=False))
    assert sum(m.k_bytes for m in no_fa) == 8192 * 49 * 8 * 128 * 2
    assert sum(m.v_bytes for m in no_fa) == 8192 * 80 * 8 * 128 * 2


def test_vllm_caches_only_the_attention_blocks() -> None:
    """vLLM builds no attention (so no cache) on a no-op block (model_executor/models/nemotron_nas.py
    DeciLMDecoderLayer: self_attn only when not attention.no_op): at TP2 each of the 49 attention blocks
    caches 4 KV heads of K and V (128 each) per rank, the other 31 nothing."""
    sh = vllm.ENGINE.sharding(Layout(2))
    per_layer = [kv_values_per_token(la.attn, sh) for la in spec(SUPER).layers]
    assert sum(per_layer) == 49 * 4 * 256 and per_layer.count(0) == 31


def test_quantizer_sees_a_70b() -> None:
    """deci.cpp load_arch_hparams: 80 blocks are LLM_TYPE_70B, which lifts Q4_K attn_v to Q5_K."""
    assert quant_model(inventory(spec(SUPER))).is_70b


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"block_configs": None}, UnsupportedArchitecture),
        ({"num_hidden_layers": 79}, BadConfig),
        ({"attention_bias": True}, BadConfig),
    ],
)
def test_config_guards(change: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        spec_from_config(config(SUPER, **change))


@pytest.mark.parametrize(
    ("il", "block", "error"),
    [
        (3, {"attention": {"n_heads_in_group": 7}, "ffn": {"ffn_mult": 1.0}}, BadConfig),
        (
            3,
            {"attention": {"n_heads_in_group": 8}, "ffn": {"ffn_mult": 1.0, "replace_with_linear": True}},
            UnsupportedArchitecture,
        ),
        (
            3,
            {"attention": {"n_heads_in_group": 8, "window_length": 4096}, "ffn": {"ffn_mult": 1.0}},
            UnsupportedArchitecture,
        ),
        (3, {"attention": {"n_heads_in_group": 8}}, BadConfig),
        (0, {"attention": {"n_heads_in_group": None}, "ffn": {"ffn_mult": 1.0}}, UnsupportedArchitecture),
    ],
)
def test_block_guards(il: int, block: dict[str, Any], error: type[Exception]) -> None:
    blocks = list(config(SUPER)["block_configs"])
    blocks[il] = block
    with pytest.raises(error):
        spec_from_config(config(SUPER, block_configs=blocks))


@pytest.mark.llamacpp
def test_linear_replacement_loads_with_its_kv_in_llamacpp() -> None:
    """The pinned llama.cpp loads the variant with a linear-replacement block (its tensor set is
    what deci.cpp creates) and logs the KV moeplan predicts, with and without flash attention."""
    m = materialize(linear_variant())
    s = Subject("deci-linear", SUPER, m.path, m.spec, m.inventory, stored_weights(m), False, m.holes)
    for case in (c for c in CASES if c.n_seq == 1):
        r = memory_check(s, case)
        assert r["ok_kv"], (case.label, r["predicted"], r["measured"], r.get("failure"))
