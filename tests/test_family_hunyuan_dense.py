"""hunyuan-dense (Hunyuan-7B-Instruct, HunYuanDenseV1ForCausalLM): the llama layout with the per-head
query/key norms llama_model_hunyuan_vl::load_arch_tensors requires, the 256K context the converter
writes for NTK-alpha rope, the parameter count the release's BF16 shards hold, the KV cache, the
configs this family refuses, and a materialised file read back."""

from typing import Any

import pytest
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig
from moeplan.sources.catalog import load_catalog
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, full_kv_per_token, shapes, spec

HY7B = "hunyuan-7b-instruct"


def test_parameters_against_the_release_shards() -> None:
    """The release's BF16 shards (4.98 + 5 + 4.92 GB + 117 MB, rounded) hold 2 bytes of each
    parameter: the tied count fits them, an untied head (8.03B) does not."""
    inv = inventory(spec(HY7B))
    total = sum(t.n_elements for t in inv.tensors)
    assert len(inv.tensors) == 354 and total == 7_504_568_320
    shards = 4.98e9 + 5e9 + 4.92e9 + 117e6
    assert abs(2 * total - shards) / shards < 0.002
    assert load_catalog()[HY7B].params_published.total == 7e9


def test_layers_tensors_and_context() -> None:
    s = spec(HY7B)
    assert s.arch == "hunyuan-dense" and s.tied_embeddings and s.context_length == 256 * 1024
    assert {(la.attn.kind, la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers} == {
        (AttnKind.FULL, 32, 8, 128)
    }
    assert {(la.ffn.kind, la.ffn.n_ff) for la in s.layers} == {(FFNKind.DENSE, 14336)}
    sh = shapes(s)
    assert sh["blk.3.attn_q_norm.weight"] == (128,) and sh["blk.3.attn_k_norm.weight"] == (128,)
    assert sh["blk.3.ffn_gate.weight"] == (4096, 14336) and "output.weight" not in sh
    assert full_kv_per_token(s) == 32 * 2 * 8 * 128 * 2


def test_without_dynamic_rope_the_context_is_the_config_s() -> None:
    s = spec_from_config(config(HY7B, rope_scaling=None, max_position_embeddings=32768))
    assert s.context_length == 32768 and s.layers == spec(HY7B).layers


@pytest.mark.parametrize("changes", [{"use_cla": True}, {"use_qk_norm": False}, {"num_experts": 8}])
def test_configs_llama_cpp_would_run_otherwise_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(BadConfig):
        spec_from_config(config(HY7B, **changes))


def test_file_reads_back_as_materialised() -> None:
    m = materialize(spec(HY7B))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.tied_embeddings
    assert shapes(got) == shapes(m.spec)
