"""afmoe, bailingmoe2 (Ling-mini/flash-2.0, Ling-1T), exaone-moe, seed_oss, olmoe and granitemoe: layer
plans from config.json, the pinned converter's tensors, parameter counts against published figures,
and KV per token."""

from typing import Any

import pytest
from validation.materialize import materialize, metadata, shrink

from moeplan.arch.family import first_moe_layer
from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory, pad
from moeplan.sources.catalog import load_catalog
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import spec

# granite-3.1-1b-a400m-instruct's config.json, the fields read here (github.com/leok7v/nano-lamma@c16de353
# models/granite-3.1-1b-a400m-instruct/config.json). Not in the catalog: with a quantized KV cache
# llama.cpp 11434 aborts in sched_reserve on it (ggml hash set full: graph_max_nodes = 8 x n_tensors
# leaves no room for the KV rotation nodes), so check_model cannot pass.
GRANITE_1B: dict[str, Any] = {
    "architectures": ["GraniteMoeForCausalLM"],
    "attention_bias": False,
    "attention_multiplier": 0.015625,
    "embedding_multiplier": 12.0,
    "hidden_size": 1024,
    "intermediate_size": 512,
    "logits_scaling": 6.0,
    "max_position_embeddings": 131072,
    "model_type": "granitemoe",
    "num_attention_heads": 16,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 24,
    "num_key_value_heads": 8,
    "num_local_experts": 32,
    "residual_multiplier": 0.22,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1500000.0,
    "tie_word_embeddings": True,
    "vocab_size": 49155,
}


def params(s: ModelSpec, mtp: bool = False) -> int:
    return sum(t.n_elements for t in inventory(s, mtp=mtp).tensors)


def names(s: ModelSpec, mtp: bool = False) -> set[str]:
    return {t.name for t in inventory(s, mtp=mtp).tensors}


# (model, tensors without MTP, total parameters of the GGUF without MTP, published total, tolerance)
# The published totals are rounded model-card figures; the tolerance covers the rounding only.
PARAMS = [
    ("seed-oss-36b-instruct", 771, 36_151_104_512, 36e9, 0.005),  # "36B" in the name
    ("olmoe-1b-7b-0924", 195, 6_919_161_856, 6.9e9, 0.005),  # README: 6.9B total
    ("trinity-mini", 601, 26_123_974_400, 26e9, 0.005),  # tech report: 26B total
    ("trinity-large-thinking", 1113, 398_635_286_016, 398e9, 0.005),  # 398B (399B on Featherless)
    ("ling-mini-2.0", 278, 16_255_643_392, 16e9, 0.02),  # Megatron-Bridge docs: 16B (16.26B)
    ("ling-flash-2.0", 446, 102_889_705_216, 100e9, 0.03),  # README: 100B (HF counts 102.89B)
    ("ling-1t", 1103, 999_705_328_640, 1e12, 0.005),  # 1 trillion
    ("k-exaone-236b-a23b", 766, 236_571_156_352, 236e9, 0.005),  # transformers docs: 236B
]


@pytest.mark.parametrize(("model", "n_tensors", "total", "published", "tol"), PARAMS)
def test_tensor_count_and_parameters(
    model: str, n_tensors: int, total: int, published: float, tol: float
) -> None:
    s = spec(model)
    inv = inventory(s, mtp=False)
    assert len(inv.tensors) == n_tensors
    assert params(s) == total
    assert abs(total - published) / published <= tol
    assert load_catalog()[model].params_published.total == published


def test_seed_oss_is_a_biased_gqa_decoder() -> None:
    s = spec("seed-oss-36b-instruct")
    a = s.layers[0].attn
    assert (s.n_layer, a.n_head, a.n_head_kv, a.head_dim_k) == (64, 80, 8, 128)
    assert all(la.ffn.kind is FFNKind.DENSE and la.ffn.n_ff == 27648 for la in s.layers)
    n = names(s)
    assert {
        "blk.0.attn_q.bias",
        "blk.0.attn_k.bias",
        "blk.0.attn_v.bias",
        "blk.0.post_attention_norm.weight",
    } <= n
    assert "blk.0.attn_output.bias" not in n and "blk.0.ffn_norm.weight" not in n
    shapes = {t.name: t.shape for t in inventory(s).tensors}
    assert shapes["blk.0.attn_q.weight"] == (5120, 10240)  # 80 heads x 128: twice the width
    assert shapes["blk.0.attn_output.weight"] == (10240, 5120)
    # 64 full-attention layers, 8 KV heads of 128, K and V in F16
    assert bytes_per_token(s) == 64 * 2 * 8 * 128 * 2


def test_seed_oss_output_bias_is_refused() -> None:
    cfg = {**load_catalog()["seed-oss-36b-instruct"].config, "attention_out_bias": True}
    with pytest.raises(UnsupportedArchitecture):
        spec_from_config(cfg)


def test_olmoe_norms_span_the_projection() -> None:
    s = spec("olmoe-1b-7b-0924")
    assert all(la.ffn.kind is FFNKind.MOE for la in s.layers)
    f = s.layers[0].ffn
    assert (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_ff_shexp) == (64, 8, 1024, 0)
    shapes = {t.name: t.shape for t in inventory(s).tensors}
    assert shapes["blk.0.attn_q_norm.weight"] == (2048,)  # n_head x head_dim, not per head
    assert shapes["blk.0.attn_k_norm.weight"] == (2048,)
    assert shapes["blk.0.ffn_gate_exps.weight"] == (2048, 1024, 64)
    assert "output.weight" in shapes
    assert family("olmoe").gguf_metadata(inventory(s))[".attention.layer_norm_rms_epsilon"] == 1e-5
    assert bytes_per_token(s) == 16 * 2 * 16 * 128 * 2


def test_trinity_mini_layers() -> None:
    s = spec("trinity-mini")
    kinds = [la.attn.kind for la in s.layers]
    assert kinds == [AttnKind.SWA, AttnKind.SWA, AttnKind.SWA, AttnKind.FULL] * 8
    assert {la.attn.window for la in s.layers if la.attn.kind is AttnKind.SWA} == {2048}
    assert first_moe_layer(s) == 2
    f = s.moe_ffn
    assert f is not None and (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_shared, f.n_ff_shexp) == (
        128,
        8,
        1024,
        1,
        1024,
    )
    shapes = {t.name: t.shape for t in inventory(s).tensors}
    assert shapes["blk.0.attn_gate.weight"] == (2048, 32 * 128)
    assert shapes["blk.0.ffn_gate.weight"] == (2048, 6144)
    for norm in (
        "attn_norm",
        "post_attention_norm",
        "ffn_norm",
        "post_ffw_norm",
        "attn_q_norm",
        "attn_k_norm",
    ):
        assert f"blk.31.{norm}.weight" in shapes
    assert "blk.1.exp_probs_b.bias" not in shapes and shapes["blk.2.exp_probs_b.bias"] == (128,)
    kv = family("afmoe").gguf_metadata(inventory(s))
    assert (
        kv[".leading_dense_block_count"],
        kv[".expert_shared_count"],
        kv[".attention.sliding_window"],
    ) == (
        2,
        1,
        2048,
    )
    assert ".attention.sliding_window_pattern" not in kv  # the converter writes none
    # 8 full layers grow with the context; 24 SWA layers hold PAD256(2048 + ubatch) cells
    assert bytes_per_token(s) == 8 * 2 * 4 * 128 * 2
    cfg = CacheConfig(n_ctx=32768)
    swa = [lm for lm in layer_memory(s, cfg) if lm.kind is AttnKind.SWA]
    assert len(swa) == 24 and {lm.cells for lm in swa} == {pad(2048 + 512)}


def test_trinity_large_layers() -> None:
    """6 dense layers then 54 MoE of 256 experts top-4 + 1 shared; 15 full layers, 45 of window 4096."""
    s = spec("trinity-large-thinking")
    assert [la.attn.kind for la in s.layers] == [AttnKind.SWA, AttnKind.SWA, AttnKind.SWA, AttnKind.FULL] * 15
    assert {la.attn.window for la in s.layers if la.attn.kind is AttnKind.SWA} == {4096}
    assert first_moe_layer(s) == 6
    f = s.moe_ffn
    assert f is not None and (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_shared, f.n_ff_shexp) == (
        256,
        4,
        3072,
        1,
        3072,
    )
    shapes = {t.name: t.shape for t in inventory(s).tensors}
    assert shapes["blk.0.attn_gate.weight"] == (3072, 48 * 128) and shapes["blk.0.ffn_gate.weight"] == (
        3072,
        12288,
    )
    assert shapes["blk.6.ffn_gate_exps.weight"] == (3072, 3072, 256)
    assert family("afmoe").gguf_metadata(inventory(s))[".leading_dense_block_count"] == 6
    assert bytes_per_token(s) == 15 * 2 * 8 * 128 * 2


def test_afmoe_other_swa_periods_are_refused() -> None:
    cfg = {**load_catalog()["trinity-mini"].config, "global_attn_every_n_layers": 2}
    with pytest.raises(BadConfig):
        spec_from_config(cfg)


def test_ling_mini_fuses_qkv() -> None:
    s = spec("ling-mini-2.0")
    assert first_moe_layer(s) == 1 and s.n_layer == 20 and not s.mtp_layers
    shapes = {t.name: t.shape for t in inventory(s).tensors}
    assert shapes["blk.0.attn_qkv.weight"] == (2048, 2048 + 2 * 4 * 128)
    assert "blk.0.attn_q.weight" not in shapes
    assert shapes["blk.1.ffn_gate_shexp.weight"] == (2048, 512)
    assert shapes["blk.1.exp_probs_b.bias"] == (256,)
    kv = family("bailingmoe2").gguf_metadata(inventory(s))
    assert kv[".rope.dimension_count"] == 64  # half of each 128-wide head
    assert (kv[".expert_gating_func"], kv[".leading_dense_block_count"], kv[".expert_shared_count"]) == (
        2,
        1,
        1,
    )
    assert bytes_per_token(s) == 20 * 2 * 4 * 128 * 2


def test_ling_1t_fuses_qkv_over_the_whole_width() -> None:
    """80 layers, 4 dense; 64 q / 8 kv heads of 128 = hidden 8192, so the fused QKV is square plus KV."""
    s = spec("ling-1t")
    assert first_moe_layer(s) == 4 and s.n_layer == 80 and not s.mtp_layers
    shapes = {t.name: t.shape for t in inventory(s).tensors}
    assert shapes["blk.0.attn_qkv.weight"] == (8192, 8192 + 2 * 8 * 128)
    assert shapes["blk.0.ffn_gate.weight"] == (8192, 18432)
    assert shapes["blk.4.ffn_gate_exps.weight"] == (8192, 2048, 256)
    assert bytes_per_token(s) == 80 * 2 * 8 * 128 * 2


def test_ring_1t_is_ling_1t_base_with_64k_context() -> None:
    """Ring-1T is RL-trained from Ling-1T-base: Ling-1T's tensors, its own 64K context."""
    ring, ling = spec("ring-1t"), spec("ling-1t")
    shapes = [[(t.name, t.shape) for t in inventory(s).tensors] for s in (ring, ling)]
    assert shapes[0] == shapes[1]
    assert (ring.context_length, ling.context_length) == (65536, 32768)


def test_ling_flash_is_one_dense_layer_and_31_moe() -> None:
    s = spec("ling-flash-2.0")
    assert first_moe_layer(s) == 1 and s.n_layer == 32 and not s.mtp_layers
    shapes = {t.name: t.shape for t in inventory(s).tensors}
    assert shapes["blk.0.attn_qkv.weight"] == (4096, 4096 + 2 * 4 * 128)
    assert shapes["blk.1.ffn_gate_shexp.weight"] == (4096, 1024)
    assert shapes["blk.31.exp_probs_b.bias"] == (256,)


def test_ling_1_0_configs_are_refused() -> None:
    """model_type bailing_moe also names Ling 1.0 (BailingMoeForCausalLM, llama.cpp `bailingmoe`): refused,
    where Ling-1T's BailingMoeV2ForCausalLM under the same model_type is read."""
    cfg = {**load_catalog()["ling-1t"].config, "architectures": ["BailingMoeForCausalLM"]}
    with pytest.raises(UnsupportedArchitecture, match="BailingMoeForCausalLM"):
        spec_from_config(cfg)


def test_shrunk_bailing_keeps_query_width_equal_to_n_embd() -> None:
    """llama.cpp sizes bailingmoe2's fused QKV as {n_embd, n_embd + 2·n_embd_gqa}: Ling-1T's GQA ratio 8
    shrinks to 8 heads, which must then be 32 wide to fill the 256-wide materialised model."""
    small = shrink(spec("ling-1t"))
    assert {(la.attn.n_head, la.attn.head_dim_k) for la in small.layers} == {(8, 32)}
    assert small.n_embd == 256


def test_ling_mtp_blocks_are_refused() -> None:
    cfg = {**load_catalog()["ling-mini-2.0"].config, "num_nextn_predict_layers": 1}
    with pytest.raises(UnsupportedArchitecture):
        spec_from_config(cfg)


def test_k_exaone_layers_and_mtp() -> None:
    s = spec("k-exaone-236b-a23b")
    kinds = [la.attn.kind for la in s.layers]
    assert kinds == [AttnKind.SWA, AttnKind.SWA, AttnKind.SWA, AttnKind.FULL] * 12
    assert first_moe_layer(s) == 1
    assert len(s.mtp_layers) == 1 and s.mtp_layers[0].ffn.kind is FFNKind.DENSE
    with_mtp = inventory(s)  # the converter keeps the MTP block by default
    assert with_mtp.block_count == 49 and with_mtp.mtp_kept == 1
    shapes = {t.name: t.shape for t in with_mtp.tensors}
    assert shapes["blk.48.ffn_gate.weight"] == (6144, 18432)  # dense, not experts
    assert shapes["blk.48.nextn.eh_proj.weight"] == (2 * 6144, 6144)
    assert {
        "blk.48.nextn.enorm.weight",
        "blk.48.nextn.hnorm.weight",
        "blk.48.nextn.shared_head_norm.weight",
    } <= set(shapes)
    assert "blk.48.ffn_gate_exps.weight" not in shapes
    # HF counts 237.1B for the checkpoint: the GGUF with its MTP block
    assert params(s, mtp=True) == 237_099_669_632
    kv = family("exaone-moe").gguf_metadata(with_mtp)
    assert kv[".attention.sliding_window_pattern"] == [k is AttnKind.SWA for k in kinds]
    assert (kv[".nextn_predict_layers"], kv[".block_count"], kv[".attention.sliding_window"]) == (1, 49, 128)
    # 12 full layers of 8 KV heads x 128 grow with the context; the MTP block holds no cache
    assert bytes_per_token(s) == 12 * 2 * 8 * 128 * 2
    assert len(layer_memory(s, CacheConfig(n_ctx=4096))) == 48


def test_granite_moe_family() -> None:
    s = spec_from_config(GRANITE_1B)
    a = s.layers[0].attn
    assert (s.n_layer, a.n_head, a.n_head_kv, a.head_dim_k) == (24, 16, 8, 64)
    assert s.tied_embeddings
    inv = inventory(s)
    assert len(inv.tensors) == 2 + 24 * 10  # no output.weight: tied
    assert "output.weight" not in {t.name for t in inv.tensors}
    # model card: 1.3B parameters (1.33B in the GGUF)
    assert params(s) == 1_334_628_352
    kv = family("granitemoe").gguf_metadata(inv)
    assert (kv[".attention.scale"], kv[".embedding_scale"], kv[".residual_scale"], kv[".logit_scale"]) == (
        0.015625,
        12.0,
        0.22,
        6.0,
    )
    # the materialised file carries them too (llama_model_granite_moe requires logit_scale)
    assert metadata(inventory(shrink(s)))[".logit_scale"] == 6.0
    # head_dim in config.json is ignored by the converter (GraniteModel pops it)
    assert spec_from_config({**GRANITE_1B, "head_dim": 128}).layers[0].attn.head_dim_k == 64
    assert bytes_per_token(s) == 24 * 2 * 8 * 64 * 2


def test_granite_shared_expert_is_refused() -> None:
    with pytest.raises(UnsupportedArchitecture):
        spec_from_config({**GRANITE_1B, "shared_intermediate_size": 1024})


def bytes_per_token(s: ModelSpec) -> int:
    """F16 K+V bytes per token of context of the layers whose cache grows with it (full attention):
    the difference of two context sizes, both multiples of 256."""
    small, large = CacheConfig(n_ctx=256), CacheConfig(n_ctx=512)

    def full(cfg: CacheConfig) -> int:
        return sum(lm.k_bytes + lm.v_bytes for lm in layer_memory(s, cfg) if lm.kind is AttnKind.FULL)

    return (full(large) - full(small)) // 256


@pytest.mark.parametrize(
    "model",
    [
        "seed-oss-36b-instruct",
        "olmoe-1b-7b-0924",
        "trinity-mini",
        "trinity-large-thinking",
        "ling-mini-2.0",
        "ling-1t",
        "k-exaone-236b-a23b",
    ],
)
def test_spec_read_back_from_the_gguf_header(model: str) -> None:
    """What the family writes is what its `spec_from_gguf` (llama.cpp's `load_arch_hparams`) reads:
    afmoe's fixed 3:1 pattern, exaone-moe's pattern array and its NextN block."""
    m = materialize(spec(model))
    back = spec_from_gguf(read_local(str(m.path)))
    assert back.layers == m.spec.layers
    assert back.mtp_layers == m.spec.mtp_layers


def test_granite_spec_read_back_from_the_gguf_header() -> None:
    m = materialize(spec_from_config(GRANITE_1B))
    back = spec_from_gguf(read_local(str(m.path)))
    assert back.layers == m.spec.layers and back.tied_embeddings
