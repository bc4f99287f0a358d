"""dots3note (dots-studio/dots3-note-prev): two MLA geometries (DSA on the full layers, a sliding-window MLA
of its own on the others), the tensors the pinned converter writes and dots3note.cpp creates, the keys its
loader reads, parameters against llama.cpp's count and the published figure, the KV cells of
`llama_kv_cache_dsa_iswa`, the shrunk model that keeps the two geometries apart, and refused configs."""

from typing import Any

import pytest
from validation.materialize import shrink

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory, pad
from moeplan.sources.catalog import load_catalog, resolve
from tests.catalog_specs import config, shapes, spec

MODEL = "dots3-note-prev"
FULL_LAYERS = [0, 1, *range(5, 46, 4)]


def test_tensor_count_and_parameters() -> None:
    """llama.cpp's print_info counts 280.69 B for this GGUF (the MTP block kept). The published 288B is
    the multimodal release: the text model is 2.9% below it (vision and audio towers, see the entry)."""
    s = spec(MODEL)
    inv = inventory(s)
    assert len(inv.tensors) == 1003 and sum(t.n_elements for t in inv.tensors) == 280_685_923_264
    trunk = sum(t.n_elements for t in inventory(s, mtp=False).tensors)
    assert trunk == 279_551_729_536
    published = load_catalog()[MODEL].params_published.total
    assert published == 288e9 and -0.035 < (trunk - published) / published < -0.02


def test_layers() -> None:
    s = spec(MODEL)
    assert s.arch == "dots3note" and not s.tied_embeddings and s.context_length == 524288
    assert [il for il, la in enumerate(s.layers) if not la.attn.window] == FULL_LAYERS
    kinds = {
        (a.kind, a.n_head, a.kv_lora_rank, a.qk_nope_head_dim, a.qk_rope_head_dim, a.mla_v_head_dim, a.window,
         a.indexer_heads, a.indexer_head_dim, a.indexer_top_k)
        for a in (la.attn for la in s.layers)
    }  # fmt: skip
    assert kinds == {
        (AttnKind.MLA, 128, 512, 128, 64, 128, 0, 64, 128, 2048),
        (AttnKind.MLA, 64, 1024, 192, 64, 128, 513, 0, 0, 0),
    }
    assert {la.attn.q_lora_rank for la in s.layers} == {1024}
    assert s.layers[0].ffn.kind is FFNKind.DENSE and s.layers[0].ffn.n_ff == 13824
    f = s.moe_ffn
    assert f is not None and (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_shared, f.n_ff_shexp) == (
        256,
        8,
        1536,
        1,
        1536,
    )
    (mtp,) = s.mtp_layers  # the sliding geometry and the dense FFN (conversion/dots3.py, dots3note.cpp)
    assert mtp.attn == s.layers[2].attn and mtp.ffn == s.layers[0].ffn


def test_tensors() -> None:
    """dots3note.cpp `load_arch_tensors`: each layer's MLA in its own geometry, the rope-only key norm and
    the head-wise gate everywhere, the indexer on full layers only, the selection bias with `.bias`."""
    sh = shapes(spec(MODEL))
    assert sh["blk.0.attn_q_b.weight"] == (1024, 128 * 192) and sh["blk.2.attn_q_b.weight"] == (
        1024,
        64 * 256,
    )
    assert sh["blk.0.attn_kv_a_mqa.weight"] == (5120, 576) and sh["blk.2.attn_kv_a_mqa.weight"] == (
        5120,
        1088,
    )
    assert sh["blk.0.attn_k_b.weight"] == (128, 512, 128) and sh["blk.2.attn_k_b.weight"] == (192, 1024, 64)
    assert sh["blk.2.attn_v_b.weight"] == (1024, 128, 64) and sh["blk.2.attn_output.weight"] == (
        64 * 128,
        5120,
    )
    assert sh["blk.2.attn_kv_a_norm.weight"] == (1024,) and sh["blk.2.attn_k_norm.weight"] == (64,)
    assert sh["blk.0.attn_gate.weight"] == (5120, 128) and sh["blk.2.attn_gate.weight"] == (5120, 64)
    assert sh["blk.5.indexer.attn_q_b.weight"] == (1024, 64 * 128) and sh["blk.5.indexer.proj.weight"] == (
        5120,
        64,
    )
    assert "blk.2.indexer.attn_k.weight" not in sh
    assert sh["blk.1.exp_probs_b.bias"] == (256,) and sh["blk.1.ffn_up_shexp.weight"] == (5120, 1536)
    assert sh["output.weight"] == (5120, 152064)


def test_mtp_block() -> None:
    """blk.46: a sliding-geometry block without indexer, the dense FFN, the NextN projections and the
    checkpoint's own embedding (no head copy); llama.cpp creates all of it with TENSOR_SKIP."""
    kept = [t for t in inventory(spec(MODEL)).tensors if t.layer == 46]
    names = {t.name.split(".", 2)[2] for t in kept}
    assert {"nextn.eh_proj.weight", "nextn.embed_tokens.weight", "ffn_up.weight", "attn_gate.weight"} <= names
    assert not {n for n in names if "indexer" in n or "shared_head_head" in n or "_exps" in n}
    assert not any(t.loaded_without_mtp for t in kept)


def test_metadata() -> None:
    """Dots3NoteModel.set_gguf_parameters: head counts over all 47 blocks, both geometries' keys, the
    window, pattern and indexer-type arrays, and the sliding rope base the loader requires."""
    kv = family("dots3note").gguf_metadata(inventory(spec(MODEL)))
    sliding = [il not in FULL_LAYERS for il in range(46)]
    assert kv[".attention.head_count"] == [64 if s else 128 for s in sliding] + [64]
    assert kv[".attention.sliding_window_pattern"] == sliding
    assert kv[".attention.indexer.types"] == [not s for s in sliding]
    assert (kv[".attention.key_length"], kv[".attention.value_length"], kv[".attention.kv_lora_rank"]) == (
        576,
        512,
        512,
    )
    assert (kv[".attention.key_length_mla"], kv[".attention.value_length_mla"]) == (192, 128)
    assert (kv[".attention.key_length_swa"], kv[".attention.value_length_swa"]) == (1088, 1024)
    assert (kv[".attention.kv_lora_rank_swa"], kv[".attention.key_length_mla_swa"]) == (1024, 256)
    assert (kv[".attention.value_length_mla_swa"], kv[".attention.sliding_window"]) == (128, 513)
    assert (kv[".rope.freq_base_swa"], kv[".rope.dimension_count"], kv[".nextn_predict_layers"]) == (
        50000.0,
        64,
        1,
    )
    assert (kv[".attention.indexer.head_count"], kv[".attention.indexer.top_k"]) == (64, 2048)
    assert (kv[".leading_dense_block_count"], kv[".expert_shared_count"], kv[".expert_weights_scale"]) == (
        1,
        1,
        1.0,
    )


def test_kv_cells() -> None:
    """`llama_kv_cache_dsa_iswa`: the 13 DSA layers cache every cell (576 latent + 128 indexer values,
    F16); the 33 sliding MLA layers PAD256(513 + ubatch) cells of 1088 values, K only."""
    s = spec(MODEL)
    mem = layer_memory(s, CacheConfig(n_ctx=32768))
    full = [lm for lm in mem if not s.layers[lm.layer].attn.window]
    swa = [lm for lm in mem if s.layers[lm.layer].attn.window]
    assert len(full) == 13 and {lm.cells for lm in full} == {32768}
    assert {(lm.k_bytes, lm.v_bytes, lm.index_bytes) for lm in full} == {
        (32768 * 576 * 2, 0, 32768 * 128 * 2)
    }
    assert len(swa) == 33 and {lm.cells for lm in swa} == {pad(513 + 512)}
    assert {(lm.k_bytes, lm.v_bytes, lm.index_bytes) for lm in swa} == {(pad(513 + 512) * 1088 * 2, 0, 0)}
    assert all(s.layers[lm.layer].attn.sliding for lm in swa)


def test_swa_full_caches_every_cell() -> None:
    s = spec(MODEL)
    mem = layer_memory(s, CacheConfig(n_ctx=32768, swa_full=True))
    assert {lm.cells for lm in mem} == {32768}


def test_shrunk_model_keeps_the_two_geometries_apart() -> None:
    """llama.cpp reads each geometry from its own keys: in the materialised model the sliding layers
    keep a wider latent and nope part and the full layers more heads, so a swapped key cannot load."""
    small = shrink(spec(MODEL))
    full, slide = small.layers[0].attn, small.layers[2].attn
    assert (full.n_head, full.kv_lora_rank, full.qk_nope_head_dim) == (8, 256, 64)
    assert (slide.n_head, slide.kv_lora_rank, slide.qk_nope_head_dim, slide.window) == (4, 512, 128, 513)
    assert full.mla_v_head_dim == slide.mla_v_head_dim and full.qk_rope_head_dim == slide.qk_rope_head_dim
    assert shrink(spec("deepseek-v3.2")).layers[0].attn.kv_lora_rank == 256  # one geometry: unchanged


def test_dsa_layer_type_name_of_the_config_class_reads_as_full() -> None:
    types = config(MODEL)["layer_types"]
    renamed = ["deepseek_sparse_attention" if t == "full_attention" else t for t in types]
    assert spec_from_config(config(MODEL, layer_types=renamed)).layers == spec(MODEL).layers


def test_names() -> None:
    for name in ("dots-studio/dots3-note-prev", "dots3-note", "dots3 note prev"):
        assert resolve(name).id == MODEL


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"use_dsa": False}, UnsupportedArchitecture),
        ({"k_rope_only_layernorm": False}, UnsupportedArchitecture),
        ({"scoring_func": "softmax"}, UnsupportedArchitecture),
        ({"n_group": 8}, UnsupportedArchitecture),
        ({"swa_attention_gate_type": "elementwise"}, UnsupportedArchitecture),
        ({"swa_qk_rope_head_dim": 32}, BadConfig),
        ({"swa_q_lora_rank": 1536}, BadConfig),
        ({"layer_types": ["full_attention"] * 45}, BadConfig),
        ({"layer_types": ["chunked_attention"] * 46}, BadConfig),
        ({"sliding_window_size": None}, BadConfig),
        ({"swa_kv_lora_rank": None}, BadConfig),
    ],
)
def test_configs_llama_cpp_would_not_convert_are_refused(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        spec_from_config(config(MODEL, **changes))
