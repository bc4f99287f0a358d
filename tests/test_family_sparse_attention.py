"""DeepSeek sparse attention (deepseek32: DeepSeek-V3.2; glm-dsa: GLM-5.1 / GLM-5.2) and its MLA
relative mistral4 (Mistral-Small-4): layer plans from config.json, the pinned converter's tensors
(lightning indexer, kept MTP block, fused expert stacks), parameter counts against published and
checkpoint figures, KV bytes per token including the indexer key cache, and the DSA compute terms."""

import dataclasses

import numpy as np
import pytest
from validation.materialize import metadata
from validation.runtime import predicted_caches

from moeplan.arch.from_gguf import GGUFHParams
from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines.llamacpp import compute_bytes
from moeplan.errors import BadConfig
from moeplan.memory.kv import CACHE_TYPES, CacheConfig, layer_memory
from moeplan.quant.ggml import GGMLType
from moeplan.sources.catalog import load_catalog
from tests.catalog_specs import spec

DS32, GLM51, GLM52, MISTRAL4 = "deepseek-v3.2", "glm-5.1", "glm-5.2", "mistral-small-4-119b-2603"


def params(s: ModelSpec, mtp: bool = False, checkpoint: bool = False) -> int:
    return sum(t.n_elements for t in inventory(s, mtp=mtp, checkpoint=checkpoint).tensors)


def per_token(s: ModelSpec, cache: str = "f16") -> tuple[int, int]:
    """(MLA latent bytes, indexer key bytes) per token of context over all decoder layers."""
    t = CACHE_TYPES[cache]
    lms = layer_memory(s, CacheConfig(n_ctx=4096, type_k=t, type_v=t))
    return sum(lm.k_bytes + lm.v_bytes for lm in lms) // 4096, sum(lm.index_bytes for lm in lms) // 4096


def test_layer_plans_follow_the_configs() -> None:
    ds = spec(DS32)
    assert (ds.arch, ds.n_layer, len(ds.mtp_layers)) == ("deepseek32", 61, 1)
    assert [la.ffn.kind for la in ds.layers[:4]] == [FFNKind.DENSE] * 3 + [FFNKind.MOE]
    assert all(la.attn.kind is AttnKind.MLA for la in (*ds.layers, *ds.mtp_layers))
    assert {(la.attn.indexer_heads, la.attn.indexer_head_dim, la.attn.indexer_top_k) for la in ds.layers} == {
        (64, 128, 2048)
    }
    g51, g52 = spec(GLM51), spec(GLM52)
    assert (g51.arch, g51.n_layer, g52.n_layer) == ("glm-dsa", 78, 78)
    assert all(la.attn.indexer_heads == 32 for la in g51.layers)
    full = [il for il, la in enumerate(g52.layers) if la.attn.indexer_heads]
    assert full == [0, 1, 2, *range(6, 78, 4)] and len(full) == 21  # indexer_types "full"
    assert all(la.attn.indexer_top_k == 2048 for la in g52.layers)  # shared layers reuse a top-k
    assert g52.mtp_layers[0].attn.indexer_heads == 32  # the MTP block has its own indexer
    m = spec(MISTRAL4)
    assert (m.arch, m.n_layer, m.mtp_layers) == ("mistral4", 36, ())
    assert all(la.ffn.kind is FFNKind.MOE and not la.attn.indexer_top_k for la in m.layers)
    assert (m.layers[0].attn.kv_lora_rank, m.layers[0].attn.qk_rope_head_dim) == (256, 64)


def test_indexer_tensors_as_the_converter_writes_them() -> None:
    inv = inventory(spec(DS32))
    by = {t.name: t for t in inv.tensors}
    assert by["blk.0.indexer.attn_q_b.weight"].shape == (1536, 64 * 128)
    assert by["blk.0.indexer.attn_k.weight"].shape == (7168, 128)
    assert by["blk.0.indexer.k_norm.weight"].shape == by["blk.0.indexer.k_norm.bias"].shape == (128,)
    assert by["blk.0.indexer.proj.weight"].shape == (7168, 64)
    assert by["blk.0.indexer.proj.weight"].stored is GGMLType.F32  # INDEXER_PROJ forced to F32
    assert by["blk.0.indexer.attn_k.weight"].stored is None  # the --outtype
    g52 = {t.name for t in inventory(spec(GLM52)).tensors}
    assert "blk.2.indexer.attn_k.weight" in g52 and "blk.3.indexer.attn_k.weight" not in g52
    assert "blk.78.indexer.attn_k.weight" in g52


def test_mtp_blocks_kept_with_or_without_head_copies() -> None:
    ds = {t.name for t in inventory(spec(DS32)).tensors}  # DeepseekV32Model keeps model.layers.61.*
    assert {"blk.61.nextn.eh_proj.weight", "blk.61.nextn.embed_tokens.weight"} <= ds
    assert "blk.61.nextn.shared_head_head.weight" in ds
    glm = {t.name for t in inventory(spec(GLM51)).tensors}  # GLM-5's MTP block has no head copies
    assert "blk.78.nextn.eh_proj.weight" in glm and "blk.78.nextn.embed_tokens.weight" not in glm
    assert not any(
        n.startswith("blk.61.") for n in (t.name for t in inventory(spec(DS32), mtp=False).tensors)
    )
    assert inventory(spec(DS32)).mtp_kept == 1 and inventory(spec(DS32)).block_count == 62


def test_mistral4_writes_fused_gate_up_expert_stacks() -> None:
    by = {t.name: t for t in inventory(spec(MISTRAL4)).tensors}
    assert by["blk.0.ffn_gate_up_exps.weight"].shape == (4096, 2 * 2048, 128)
    assert by["blk.0.ffn_down_exps.weight"].shape == (2048, 4096, 128)
    assert "blk.0.ffn_gate_exps.weight" not in by and "blk.0.exp_probs_b.bias" not in by


# (model, GGUF tensors without MTP, parameters without MTP, whether the published total counts the
# checkpoint's MTP block). The published totals are rounded; 0.5% covers the rounding only.
COUNTS = [
    (DS32, 1391, 671_877_944_064, True),  # 685B: the HF checkpoint incl. model.layers.61
    (GLM51, 1782, 743_911_218_432, False),  # 744B: GLM-5 report, 78 layers
    (GLM52, 1497, 743_377_019_904, False),  # 744B (753B on HF with the MTP block)
    (MISTRAL4, 579, 118_972_826_624, False),  # 119B (with the 0.43B vision tower)
]


@pytest.mark.parametrize(("model_id", "n_tensors", "n_params", "with_mtp"), COUNTS)
def test_tensor_and_parameter_counts(model_id: str, n_tensors: int, n_params: int, with_mtp: bool) -> None:
    s = spec(model_id)
    assert len(inventory(s, mtp=False).tensors) == n_tensors
    assert params(s) == n_params
    published = load_catalog()[model_id].params_published.total
    counted = params(s, checkpoint=True) if with_mtp else n_params
    assert abs(counted - published) / published < 0.005


def test_deepseek_v32_is_the_v3_trunk_plus_61_indexers_and_685b_with_mtp() -> None:
    """DeepSeek's 685B counts the HF checkpoint with its MTP block; the indexer adds 13,959,424
    parameters per layer (1536x8192 + 7168x128 + 2x128 + 7168x64) to DeepSeek-V3's trunk."""
    indexer = 1536 * 64 * 128 + 7168 * 128 + 2 * 128 + 7168 * 64
    assert params(spec(DS32)) - params(spec("deepseek-v3.1")) == 61 * indexer
    assert round(params(spec(DS32), checkpoint=True) / 1e9) == 685


def test_glm5_counts_match_the_checkpoint_audits() -> None:
    """Megatron-Bridge's audits: GLM-5 reloads as 743,911,199,232 parameters without the MTP layer
    (transformers does not count the 75 e_score_correction_bias buffers); GLM-5.2's HF revision holds
    753,329,940,480 elements in 59,585 tensors (per-expert tensors, kv_b_proj unsplit)."""
    buffers = 75 * 256
    assert params(spec(GLM51)) - buffers == 743_911_199_232
    assert params(spec(GLM52)) - buffers == 743_377_000_704
    ckpt = inventory(spec(GLM52), checkpoint=True)
    assert sum(t.n_elements for t in ckpt.tensors) == 753_329_940_480
    hf_tensors = sum(
        t.shape[2] if "_exps." in t.name else 1 for t in ckpt.tensors if ".attn_v_b." not in t.name
    )
    assert hf_tensors == 59_585


def test_mistral4_count_with_the_vision_tower_is_the_checkpoint_total() -> None:
    """model.safetensors.index.json: 119,401,317,952 = text + Pixtral tower/projector + FP8 scales."""
    vision = 24 * (4 * 1024 * 1024 + 3 * 1024 * 4096 + 2 * 1024) + 3 * 14 * 14 * 1024 + 1024
    projector = 1024 + 4 * 1024 * 1024 + 1024 * 4096 + 4096 * 4096
    scales = 36 * (8 * 2 + 2 * 2 * 128)
    assert params(spec(MISTRAL4)) + vision + projector + scales == 119_401_317_952


# (model, MLA latent bytes per token, indexer key bytes per token) at F16
KV = [
    (DS32, 61 * (512 + 64) * 2, 61 * 128 * 2),
    (GLM51, 78 * (512 + 64) * 2, 78 * 128 * 2),
    (GLM52, 78 * (512 + 64) * 2, 21 * 128 * 2),  # only "full" layers cache indexer keys
    (MISTRAL4, 36 * (256 + 64) * 2, 0),
]


@pytest.mark.parametrize(("model_id", "mla", "indexer"), KV)
def test_kv_bytes_per_token(model_id: str, mla: int, indexer: int) -> None:
    assert per_token(spec(model_id)) == (mla, indexer)


def test_indexer_cache_follows_the_k_cache_type() -> None:
    """`llama_kv_cache_dsa` builds the indexer cache with type_k: q8_0 is 34 bytes per 32 values."""
    assert per_token(spec(DS32), "q8_0") == (61 * 576 // 32 * 34, 61 * 128 // 32 * 34)


def test_indexer_cache_is_its_own_log_line() -> None:
    caches = predicted_caches(spec(GLM52), CacheConfig(n_ctx=4096, n_seq=4))
    assert set(caches) == {"full", "indexer"}
    assert (caches["indexer"]["layers"], caches["indexer"]["cells"]) == (21, 1024)
    assert caches["indexer"]["v_mib"] == 0.0
    assert caches["full"]["layers"] == 78  # the MTP block is never in the trunk's cache


def test_sparse_layers_hold_a_top_k_leaf_each() -> None:
    """Each sparse layer keeps its {1, top-k, n_tokens} F32 zero tensor for the whole graph."""
    s = spec(DS32)
    cfg = CacheConfig(n_ctx=32768)
    on = np.ones(s.n_layer, dtype=np.bool_)
    less = on.copy()
    less[30] = False
    diff = compute_bytes(s, cfg, 512, True, on, on) - compute_bytes(s, cfg, 512, True, less, on)
    assert diff == 4 * 2048 * 512
    dense = dataclasses.replace(
        s,
        layers=tuple(
            dataclasses.replace(la, attn=dataclasses.replace(la.attn, indexer_top_k=0)) for la in s.layers
        ),
    )
    assert compute_bytes(dense, cfg, 512, True, on, on) - compute_bytes(dense, cfg, 512, True, less, on) == 0


def _header(model_id: str) -> GGUFHParams:
    inv = inventory(spec(model_id))
    arch = inv.spec.arch
    meta = {(arch + k if k.startswith(".") else k): v for k, v in metadata(inv).items()}
    return GGUFHParams(arch, meta, {t.name: t.shape for t in inv.tensors}, model_id)


@pytest.mark.parametrize("model_id", [DS32, GLM51, GLM52])
def test_indexer_metadata_and_spec_from_gguf(model_id: str) -> None:
    hp = _header(model_id)
    s = spec(model_id)
    assert hp.value("attention.indexer.key_length") == 128
    assert (hp.value("attention.indexer.types") is not None) == (model_id == GLM52)
    back = family(s.arch).spec_from_gguf(hp)
    assert [la.attn.indexer_heads for la in back.layers] == [la.attn.indexer_heads for la in s.layers]
    assert per_token(back) == per_token(s)


def test_glm52_default_indexer_pattern_without_the_key() -> None:
    """A 1M-context glm-dsa file without `indexer.types` gets llama.cpp's GLM-5.2 table."""
    hp = _header(GLM52)
    meta = {k: v for k, v in hp.meta.items() if not k.endswith("indexer.types")}
    back = family("glm-dsa").spec_from_gguf(dataclasses.replace(hp, meta=meta))
    assert [bool(la.attn.indexer_heads) for la in back.layers] == [
        bool(la.attn.indexer_heads) for la in spec(GLM52).layers
    ]


def test_bad_indexer_types_are_refused() -> None:
    cfg = dict(load_catalog()[GLM52].config)
    cfg["indexer_types"] = ["full"] * 77
    with pytest.raises(BadConfig):
        spec_from_config(cfg)


def test_mistral4_from_its_own_header() -> None:
    """The generic reader sees the MLA latent and the fused gate/up stacks of a mistral4 file."""
    back = family("mistral4").spec_from_gguf(_header(MISTRAL4))
    assert per_token(back) == per_token(spec(MISTRAL4))
    assert {(la.ffn.n_expert, la.ffn.n_ff_exp, la.ffn.n_ff_shexp) for la in back.layers} == {
        (128, 2048, 2048)
    }
