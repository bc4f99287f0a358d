"""smollm3 (SmolLM3-3B): Llama's tensors (conversion/llama.py SmolLM3Model) as src/models/smollm3.cpp
loads them, the published parameter count, NoPE on every fourth layer (smollm3.cpp's fixed step, which
changes no tensor), the KV cache, what a file reads back as, and the configs this family refuses."""

import pytest
from validation.llamacpp import load_check
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind
from moeplan.errors import UnsupportedArchitecture
from moeplan.sources.catalog import load_catalog
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, kv_bytes_per_token, shapes, spec

MODEL = "smollm3-3b"
PARAMS = 3_075_098_624  # the published safetensors index total
TENSORS = 2 + 36 * 9  # token_embd, output_norm (tied head) and Llama's nine per block


def test_parameters_tensors_and_kv() -> None:
    s = spec(MODEL)
    inv = inventory(s)
    assert s.arch == "smollm3" and s.n_layer == 36 and s.tied_embeddings and not s.flags
    assert sum(t.n_elements for t in inv.tensors) == PARAMS == load_catalog()[MODEL].params_published.total
    assert len(inv.tensors) == TENSORS
    assert {la.attn.kind for la in s.layers} == {AttnKind.FULL}
    assert kv_bytes_per_token(s) == 36 * 2 * 4 * 128 * 2


def test_every_fourth_layer_skips_rope_with_the_same_tensors() -> None:
    s = spec(MODEL)
    assert [la.attn.rope for la in s.layers] == [True, True, True, False] * 9
    t = shapes(s)
    rope_block = {n.removeprefix("blk.2.") for n in t if n.startswith("blk.2.")}
    assert {n.removeprefix("blk.3.") for n in t if n.startswith("blk.3.")} == rope_block
    assert t["blk.3.attn_k.weight"] == (2048, 4 * 128) and "output.weight" not in t
    assert family("smollm3").gguf_metadata(inventory(s))[".rope.dimension_count"] == 128


def test_file_reads_back_as_materialised() -> None:
    m = materialize(spec(MODEL))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.tied_embeddings
    assert shapes(got) == shapes(m.spec)


def test_config_without_no_rope_layers_takes_llamacpp_step() -> None:
    cfg = {k: v for k, v in config(MODEL).items() if k != "no_rope_layers"}
    assert spec_from_config(cfg).layers == spec(MODEL).layers


@pytest.mark.parametrize(
    "changes",
    [
        {"no_rope_layers": [1, 0] * 18},  # smollm3.cpp's step is fixed at 4
        {"num_local_experts": 8, "num_experts_per_tok": 2},  # smollm3.cpp loads a dense FFN
    ],
)
def test_guards(changes: dict[str, object]) -> None:
    with pytest.raises(UnsupportedArchitecture):
        spec_from_config(config(MODEL, **changes))


@pytest.mark.llamacpp
def test_inventory_is_what_llamacpp_loads() -> None:
    """smollm3.cpp creates exactly the inventory's tensors and allocates the bytes moeplan predicts."""
    c = load_check(MODEL, completion=False)
    assert c["ok"], (c.get("failure"), c["error"])
    assert c["predicted"]["tensors"] == TENSORS
