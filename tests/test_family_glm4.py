"""glm4 (GLM-4-32B-0414, GLM-4-9B-0414): the tensors conversion/glm.py writes and src/models/glm4.cpp
loads (norms before and after attention and FFN, the fused gate_up kept as one ffn_up, q/k/v biases
where attention_bias), parameter counts against llama.cpp's logs and the published safetensors total,
the half-rotated heads, the KV cache, what a file reads back as, and the configs this family refuses."""

import dataclasses
from typing import Any

import pytest
from validation.llamacpp import load_check
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.sources.catalog import load_catalog
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import hparams as gguf_hparams
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, kv_bytes_per_token, shapes, spec

# (parameters, tensors, layers, F16 KV bytes per token)
MODELS: dict[str, tuple[int, int, int, int]] = {
    # llama.cpp's log of a GLM-Z1-32B-0414 file (ikawrakow/ik_llama.cpp#344): 32.57 B, 613 tensors, 245 F32
    "glm-4-32b-0414": (32_566_081_536, 613, 61, 61 * 2 * 2 * 128 * 2),
    # the published safetensors total of GLM-4-9B-0414, biases included
    "glm-4-9b-0414": (9_400_279_040, 3 + 40 * 13, 40, 40 * 2 * 2 * 128 * 2),
}
BLOCK = {
    "attn_norm.weight",
    "attn_q.weight",
    "attn_k.weight",
    "attn_v.weight",
    "attn_output.weight",
    "post_attention_norm.weight",
    "ffn_norm.weight",
    "ffn_up.weight",
    "ffn_down.weight",
    "post_ffw_norm.weight",
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_parameters_tensors_layers_and_kv(model: str) -> None:
    n_params, n_tensors, n_layer, kv = MODELS[model]
    s = spec(model)
    inv = inventory(s)
    assert s.arch == "glm4" and s.n_layer == n_layer and not s.tied_embeddings
    assert {(la.attn.kind, la.ffn.kind) for la in s.layers} == {(AttnKind.FULL, FFNKind.DENSE)}
    assert sum(t.n_elements for t in inv.tensors) == n_params
    assert len(inv.tensors) == n_tensors
    assert kv_bytes_per_token(s) == kv


def test_published_totals() -> None:
    catalog = load_catalog()
    assert catalog["glm-4-9b-0414"].params_published.total == MODELS["glm-4-9b-0414"][0]
    assert abs(MODELS["glm-4-32b-0414"][0] / catalog["glm-4-32b-0414"].params_published.total - 1) < 0.02


def test_32b_block_keeps_gate_up_fused_and_has_no_biases() -> None:
    t = shapes(spec("glm-4-32b-0414"))
    assert {n.removeprefix("blk.60.") for n in t if n.startswith("blk.60.")} == BLOCK
    assert t["blk.60.ffn_up.weight"] == (6144, 2 * 23040)
    assert t["blk.60.ffn_down.weight"] == (23040, 6144)
    assert t["blk.60.attn_k.weight"] == (6144, 2 * 128)
    assert t["output.weight"] == (6144, 151552)
    assert sum(len(shape) == 1 for shape in t.values()) == 245  # the F32 count of llama.cpp's log


def test_9b_block_has_qkv_biases() -> None:
    t = shapes(spec("glm-4-9b-0414"))
    block = {n.removeprefix("blk.0.") for n in t if n.startswith("blk.0.")}
    assert block == BLOCK | {"attn_q.bias", "attn_k.bias", "attn_v.bias"}
    assert (t["blk.0.attn_q.bias"], t["blk.0.attn_k.bias"]) == ((4096,), (256,))


def test_half_of_each_head_rotates() -> None:
    for model in MODELS:
        kv = family("glm4").gguf_metadata(inventory(spec(model)))
        assert kv[".rope.dimension_count"] == 64 and kv[".attention.key_length"] == 128


def test_config_without_bias_or_rotary_keys_takes_glm4config_defaults() -> None:
    """Glm4Config defaults: attention_bias true, partial_rotary_factor 0.5."""
    cfg = {
        k: v
        for k, v in config("glm-4-32b-0414").items()
        if k not in ("attention_bias", "partial_rotary_factor")
    }
    s = spec_from_config(cfg)
    assert s.has("attn_bias") and s.rope_fraction == 0.5
    rope = spec_from_config(
        config("glm-4-32b-0414", partial_rotary_factor=None, rope_parameters={"partial_rotary_factor": 1.0})
    )
    assert rope.rope_fraction == 1.0


@pytest.mark.parametrize("model", sorted(MODELS))
def test_file_reads_back_as_materialised(model: str) -> None:
    """A glm4 file gives back n_ff from the fused ffn_up's 2·n_ff rows, its biases and its rotary share."""
    m = materialize(spec(model))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.flags == m.spec.flags
    assert got.rope_fraction == m.spec.rope_fraction
    assert shapes(got) == shapes(m.spec)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"partial_rotary_factor": 0.0}, BadConfig),
        ({"rope_parameters": {"mrope_section": [8, 12, 12]}}, UnsupportedArchitecture),
        ({"num_nextn_predict_layers": 1}, UnsupportedArchitecture),
    ],
)
def test_guards(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        spec_from_config(config("glm-4-9b-0414", **changes))


@pytest.mark.llamacpp
@pytest.mark.parametrize("model", sorted(MODELS))
def test_inventory_is_what_llamacpp_loads(model: str) -> None:
    """glm4.cpp creates exactly the inventory's tensors (its loader refuses a missing or an extra one)
    and allocates the bytes moeplan predicts."""
    c = load_check(model, completion=False)
    assert c["ok"], (c.get("failure"), c["error"])
    assert c["predicted"]["tensors"] == MODELS[model][1]


def test_files_with_nextn_layers_are_refused() -> None:
    """The loader keeps NextN blocks this family does not model (their tensors differ)."""
    hp = gguf_hparams(read_local(materialize(spec("glm-4-9b-0414")).path))
    blocks = hp.integer("block_count")
    meta = {**hp.meta, "glm4.block_count": blocks + 1, "glm4.nextn_predict_layers": 1}
    with pytest.raises(UnsupportedArchitecture):
        family("glm4").spec_from_gguf(dataclasses.replace(hp, meta=meta))
