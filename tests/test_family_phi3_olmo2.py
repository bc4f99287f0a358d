"""phi3 (Phi-4) and olmo2 (OLMo 2, Olmo 3): layer plans from config.json, the tensors the pinned
converter writes (phi3's fused attn_qkv and gate/up, olmo2's post-norms and wide q/k norms), parameter
counts against measured or published figures, the keys the loaders read, the KV cache by llama.cpp's
rules, what a file of each reads back as, and the configs these families refuse."""

from typing import Any

import pytest
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory, pad
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, shapes, spec

MODELS = {
    "phi-4": "phi3",
    "phi-4-reasoning": "phi3",
    "phi-4-mini-instruct": "phi3",
    "olmo-2-1124-7b": "olmo2",
    "olmo-2-1124-13b": "olmo2",
    "olmo-2-0325-32b": "olmo2",
    "olmo-3-7b": "olmo2",
    "olmo-3-32b": "olmo2",
}
# (parameters of the GGUF, tensors, published total in billions, allowed distance in billions)
PARAMS: dict[str, tuple[int, int, float, float]] = {
    # llama.cpp's log of the released file (ggml-org/llama.cpp#12012): 243 tensors, 81 of them F32
    "phi-4": (14_659_507_200, 243, 14, 0.7),
    "phi-4-reasoning": (14_659_507_200, 243, 14, 0.7),  # Phi-4's tensors (vllm recipes: 14B)
    # tied; 196 tensors as llama.cpp's log of a Phi-4-mini-reasoning file counts them (ollama/ollama#12722)
    "phi-4-mini-instruct": (3_836_021_856, 196, 3.8, 0.05),
    "olmo-2-1124-7b": (7_298_617_344, 355, 7, 0.3),
    "olmo-2-1124-13b": (13_716_198_400, 443, 13, 0.75),
    "olmo-2-0325-32b": (32_234_279_936, 707, 32, 0.25),
    "olmo-3-7b": (7_298_011_136, 355, 7, 0.3),  # vocabulary 100278 instead of OLMo 2's 100352
    "olmo-3-32b": (32_233_522_176, 707, 32, 0.25),
}
# a Phi-3.5-mini-style LongRoPE block for Phi-4's 128-wide heads (64 factors each)
LONGROPE = {"type": "longrope", "long_factor": [1.0] * 64, "short_factor": [1.0] * 64}


def test_catalog_holds_the_models() -> None:
    assert {m: spec(m).arch for m in MODELS} == MODELS


@pytest.mark.parametrize("model", sorted(PARAMS))
def test_parameters_tensors_and_published_total(model: str) -> None:
    n_params, n_tensors, published, tolerance = PARAMS[model]
    inv = inventory(spec(model), mtp=False)
    assert sum(t.n_elements for t in inv.tensors) == n_params
    assert len(inv.tensors) == n_tensors
    assert abs(predict(inv, FileType.BF16).params_total / 1e9 - published) <= tolerance
    assert load_catalog()[model].params_published.total == round(published * 1e9)


def test_phi4_keeps_qkv_and_gate_up_fused() -> None:
    s = spec("phi-4")
    assert s.n_layer == 40 and not s.tied_embeddings and not s.flags
    assert {la.attn.kind for la in s.layers} == {AttnKind.FULL}
    t = shapes(s)
    assert t["blk.0.attn_qkv.weight"] == (5120, 5120 + 2 * 10 * 128)
    assert t["blk.0.attn_output.weight"] == (5120, 5120)
    assert t["blk.39.ffn_up.weight"] == (5120, 2 * 17920)
    assert t["blk.39.ffn_down.weight"] == (17920, 5120)
    assert not any(n.endswith(("attn_q.weight", "ffn_gate.weight")) or "rope_factors" in n for n in t)
    assert sum(len(shape) == 1 for shape in t.values()) == 81  # as llama.cpp's log counts the F32 tensors


def test_phi3_longrope_writes_the_factor_tensors_once() -> None:
    """A LongRoPE config (Phi-3.5-mini style) gets rope_factors_long/short {head_dim/2} before the blocks."""
    t = shapes(spec_from_config(config("phi-4", rope_scaling=LONGROPE)))
    assert t["rope_factors_long.weight"] == t["rope_factors_short.weight"] == (64,)
    assert not any(n.startswith("blk.") and "rope_factors" in n for n in t)


def test_phi4_mini_rotates_three_quarters_and_ties_its_head() -> None:
    """Phi-4-mini: rope.dimension_count 96 of 128 (partial_rotary_factor 0.75), LongRoPE factors {48},
    no output.weight (phi3.cpp reuses token_embd), full attention despite sliding_window 262144."""
    s = spec("phi-4-mini-instruct")
    assert s.tied_embeddings and s.rope_fraction == 0.75
    assert {(la.attn.kind, la.attn.window) for la in s.layers} == {(AttnKind.FULL, 0)}
    t = shapes(s)
    assert t["rope_factors_long.weight"] == t["rope_factors_short.weight"] == (48,)
    assert t["blk.0.attn_qkv.weight"] == (3072, 3072 + 2 * 8 * 128) and "output.weight" not in t
    kv = family("phi3").gguf_metadata(inventory(s))
    assert kv[".rope.dimension_count"] == 96 and ".attention.sliding_window" not in kv


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"partial_rotary_factor": 0.0}, BadConfig),
        ({"rope_scaling": {**LONGROPE, "long_factor": [1.0] * 48}}, BadConfig),  # not rope_dims/2
        ({"head_dim": 96}, UnsupportedArchitecture),  # query rows narrower than hidden_size
        ({"attention_bias": True}, UnsupportedArchitecture),  # phi3.cpp loads no biases
        ({"lm_head_bias": True}, UnsupportedArchitecture),
    ],
)
def test_phi3_guards(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        spec_from_config(config("phi-4", **changes))


@pytest.mark.parametrize(
    "name", ["Phi-4-reasoning", "Phi-4-reasoning-plus", "microsoft/Phi-4-reasoning-plus"]
)
def test_phi4_reasoning_is_phi4s_model_with_a_longer_context(name: str) -> None:
    """The reasoning releases keep Phi-4's tensors but double its rope base and context (16384 to
    32768), so they have an entry of their own; -plus shares every key with -reasoning."""
    entry = resolve(name)
    assert entry.id == "phi-4-reasoning"
    phi4 = load_catalog()["phi-4"]
    differ = {
        k for k in entry.config.keys() | phi4.config.keys() if entry.config.get(k) != phi4.config.get(k)
    }
    assert differ == {"max_position_embeddings", "original_max_position_embeddings", "rope_theta"}
    assert shapes(entry.spec()) == shapes(phi4.spec())
    assert (entry.spec().context_length, phi4.spec().context_length) == (32768, 16384)


def test_phi4_kv_per_token() -> None:
    """40 full-attention layers cache K and V of 10 heads x 128 (F16)."""
    layers = layer_memory(spec("phi-4"), CacheConfig(n_ctx=4096))
    assert {lm.cells for lm in layers} == {4096}
    assert sum(lm.k_bytes + lm.v_bytes for lm in layers) == 4096 * 40 * 2 * 10 * 128 * 2


@pytest.mark.parametrize("model", ["phi-4", "phi-4-mini-instruct"])
def test_phi3_file_reads_back_as_materialised(model: str) -> None:
    """A phi3 file gives back its layers (n_ff from the fused ffn_up's 2·n_ff rows, full attention:
    phi3.cpp ignores a sliding window), its rotary share and its LongRoPE factor tensors."""
    m = materialize(spec(model))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.tied_embeddings == m.spec.tied_embeddings
    assert got.rope_fraction == m.spec.rope_fraction
    assert shapes(got) == shapes(m.spec)


def test_olmo2_block_has_post_norms_and_wide_qk_norms() -> None:
    s = spec("olmo-2-0325-32b")
    assert {la.attn.kind for la in s.layers} == {AttnKind.FULL} and not s.tied_embeddings
    assert {la.ffn.kind for la in s.layers} == {FFNKind.DENSE}
    t = shapes(s)
    block = {n.removeprefix("blk.7.") for n in t if n.startswith("blk.7.")}
    assert block == {
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "attn_q_norm.weight",
        "attn_k_norm.weight",
        "post_attention_norm.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
        "post_ffw_norm.weight",
    }
    assert t["blk.7.attn_q_norm.weight"] == (40 * 128,) and t["blk.7.attn_k_norm.weight"] == (8 * 128,)
    assert "output.weight" in t
    assert ".attention.sliding_window" not in family("olmo2").gguf_metadata(inventory(s))


@pytest.mark.parametrize("model", ["olmo-3-7b", "olmo-3-32b"])
def test_olmo3_slides_on_three_layers_of_four(model: str) -> None:
    s = spec(model)
    kinds = [la.attn.kind for la in s.layers]
    assert kinds == ([AttnKind.SWA] * 3 + [AttnKind.FULL]) * (s.n_layer // 4)
    assert {la.attn.window for la in s.layers if la.attn.kind is AttnKind.SWA} == {4096}
    kv = family("olmo2").gguf_metadata(inventory(s))
    assert kv[".attention.sliding_window"] == 4096
    assert kv[".attention.sliding_window_pattern"] == [k is AttnKind.SWA for k in kinds]


def test_olmo3_default_pattern_without_layer_types() -> None:
    """Olmo2Model.set_gguf_parameters: with a window and no layer_types, every fourth layer is full."""
    cfg = {k: v for k, v in config("olmo-3-7b").items() if k != "layer_types"}
    assert spec_from_config(cfg).layers == spec("olmo-3-7b").layers


def test_olmo3_kv() -> None:
    """8 full layers grow with the context (32 KV heads of 128, F16); 24 SWA layers hold
    PAD256(4096 + ubatch) cells."""
    layers = layer_memory(spec("olmo-3-7b"), CacheConfig(n_ctx=32768))
    full = [lm for lm in layers if lm.kind is AttnKind.FULL]
    swa = [lm for lm in layers if lm.kind is AttnKind.SWA]
    assert len(full) == 8 and {lm.cells for lm in full} == {32768}
    assert sum(lm.k_bytes + lm.v_bytes for lm in full) == 32768 * 8 * 2 * 32 * 128 * 2
    assert len(swa) == 24 and {lm.cells for lm in swa} == {pad(4096 + 512)}


def test_olmo3_file_reads_back_with_its_pattern() -> None:
    m = materialize(spec("olmo-3-7b"))
    got = spec_from_gguf(read_local(m.path))
    assert [la.attn.kind for la in got.layers] == [la.attn.kind for la in m.spec.layers]
    assert {la.attn.window for la in got.layers} == {la.attn.window for la in m.spec.layers}


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"tie_word_embeddings": True}, UnsupportedArchitecture),  # olmo2.cpp requires output.weight
        ({"sliding_window": None}, BadConfig),  # sliding layer_types without a window
        ({"layer_types": ["full_attention"] * 31}, BadConfig),
        ({"head_dim": 64}, UnsupportedArchitecture),
    ],
)
def test_olmo2_guards(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        spec_from_config(config("olmo-3-7b", **changes))
