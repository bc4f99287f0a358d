"""Linear-attention and convolution hybrids: Kimi-Linear and Kimi-K3 (KDA + MLA) and LFM2-MoE
(short convolution + GQA). Layer kinds from the catalog configs, tensor counts and parameter sums
of the inventory against an independent count from the config dims and the published figures, and
KV / recurrent state by llama.cpp's rules (llama_hparams::n_embd_r/n_embd_s, llama_kv_cache)."""

from typing import Any

import pytest
from validation.materialize import shrink

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.quant.ggml import GGMLType
from moeplan.sources.catalog import load_catalog
from tests.catalog_specs import kv_bytes_per_token, state_bytes_per_sequence

KIMI_LINEAR = "kimi-linear-48b-a3b-instruct"
KIMI_K3 = "kimi-k3"
LFM2 = "lfm2-8b-a1b"


def spec(model: str) -> ModelSpec:
    return load_catalog()[model].spec()


def config(model: str) -> dict[str, Any]:
    return load_catalog()[model].config


def total_params(model: str) -> int:
    return sum(t.n_elements for t in inventory(spec(model), mtp=False).tensors)


def kimi_expected_params(cfg: dict[str, Any], *, k3: bool) -> int:
    """Parameters of a Kimi KDA/MLA hybrid counted from config.json alone, as the loaders
    (src/models/kimi-linear.cpp, kimi-k3.cpp) size the tensors."""
    e, n, v = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    la = cfg["linear_attn_config"]
    h, hd, k = cfg["num_attention_heads"], la["head_dim"], la["short_conv_kernel_size"]
    d = h * hd
    n_mla = len(la["full_attn_layers"])
    kda = 3 * e * d + 3 * k * d + e * hd + hd * d + e * h + h + d + hd + d * e
    kda += e * d if k3 else e * hd + hd * d  # K3's full-rank gate vs Kimi-Linear's g_a/g_b
    kv_lora, rope, nope, vd = (
        cfg["kv_lora_rank"],
        cfg["qk_rope_head_dim"],
        cfg["qk_nope_head_dim"],
        cfg["v_head_dim"],
    )
    q_lora = cfg.get("q_lora_rank") or 0
    q = e * q_lora + q_lora + q_lora * h * (nope + rope) if q_lora else e * h * (nope + rope)
    mla = q + e * (kv_lora + rope) + kv_lora + nope * kv_lora * h + kv_lora * vd * h + h * vd * e
    if k3:
        mla += e * h * vd  # the sigmoid output gate
    k_dense = cfg["first_k_dense_replace"]
    dense = 3 * e * cfg["intermediate_size"]
    x, ff = cfg["num_experts"], cfg["moe_intermediate_size"]
    latent = cfg.get("routed_expert_hidden_size") or e
    moe = e * x + x + 3 * latent * ff * x + 3 * e * ff * cfg["num_shared_experts"]
    if latent != e:
        moe += 2 * e * latent + latent
    per_layer_norms = 2 * e + (2 * e if k3 else 0)
    head = 2 * v * e + e + (e if k3 else 0)
    return (
        head + (n - n_mla) * kda + n_mla * mla + k_dense * dense + (n - k_dense) * moe + n * per_layer_norms
    )


# ---- Kimi-Linear ---------------------------------------------------------------------------------


def test_kimi_linear_layers_follow_the_one_based_lists() -> None:
    s = spec(KIMI_LINEAR)
    assert s.arch == "kimi-linear" and s.n_layer == 27
    mla = [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.MLA]
    assert mla == [3, 7, 11, 15, 19, 23, 26]  # full_attn_layers [4, 8, ..., 24, 27] are 1-based
    assert sum(la.attn.kind is AttnKind.LINEAR for la in s.layers) == 20
    assert [la.ffn.kind for la in s.layers[:2]] == [FFNKind.DENSE, FFNKind.MOE]
    kda = s.layers[0].attn
    assert (kda.n_head, kda.linear_k_head_dim, kda.conv_kernel) == (32, 128, 4)
    assert s.context_length == 1048576  # model_max_length: the config has no max_position_embeddings
    assert not s.tied_embeddings and not s.mtp_layers


def test_kimi_linear_inventory() -> None:
    inv = inventory(spec(KIMI_LINEAR), mtp=False)
    # 3 head/tail + 20 KDA x 15 + 7 MLA x 6 + 27 x 2 norms + dense 3 + 26 MoE x 8
    assert len(inv.tensors) == 3 + 20 * 15 + 7 * 6 + 27 * 2 + 3 + 26 * 8 == 610
    by_name = {t.name: t for t in inv.tensors}
    conv = by_name["blk.0.ssm_conv1d_q.weight"]
    assert conv.shape == (4, 1, 4096, 1) and conv.stored is GGMLType.F32  # converter forces F32
    assert by_name["blk.0.ssm_a"].shape == (1, 32, 1, 1)
    assert by_name["blk.3.attn_k_b.weight"].shape == (128, 512, 32)
    assert "blk.3.attn_q_a.weight" not in by_name  # q_lora_rank null: a plain attn_q


def test_kimi_linear_params_vs_published() -> None:
    got = total_params(KIMI_LINEAR)
    assert got == kimi_expected_params(config(KIMI_LINEAR), k3=False) == 49_122_681_728
    # published "48B" (README, model name): the count is 49.1B, 2.3% above the rounded figure;
    # llama.cpp's print_info of the full-size (header-only) file says 49.12 B
    assert abs(got / load_catalog()[KIMI_LINEAR].params_published.total - 1) < 0.03


def test_kimi_linear_state_and_kv() -> None:
    s = spec(KIMI_LINEAR)
    # KDA: conv 3*(4-1)*32*128 and state 128*128*32 F32 values per layer, 20 layers
    assert state_bytes_per_sequence(s) == 20 * 4 * (3 * 3 * 32 * 128 + 128 * 128 * 32) == 44_892_160
    # MLA caches the latent only (kv_lora 512 + rope 64, K only), 7 layers, F16
    assert kv_bytes_per_token(s) == 7 * 576 * 2


# ---- Kimi-K3 -------------------------------------------------------------------------------------


def test_kimi_k3_layers() -> None:
    s = spec(KIMI_K3)
    assert s.arch == "kimi-k3" and s.n_layer == 93
    mla = [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.MLA]
    assert len(mla) == 24 and mla[-2:] == [91, 92]
    assert sum(la.attn.kind is AttnKind.LINEAR for la in s.layers) == 69
    moe = s.moe_ffn
    assert moe is not None and (moe.n_expert, moe.n_expert_used, moe.n_latent) == (896, 16, 3584)
    assert moe.n_ff_shexp == 2 * 3072


def test_kimi_k3_text_config_routes_to_kimi_k3() -> None:
    """The real config.json nests the text model under model_type kimi_linear; it is still K3."""
    cfg = dict(config(KIMI_K3))
    nested = {"model_type": "kimi_k3", "text_config": {**cfg, "model_type": "kimi_linear"}}
    assert spec_from_config(nested).arch == "kimi-k3"
    plain = dict(config(KIMI_LINEAR))
    assert spec_from_config(plain).arch == "kimi-linear"


def test_kimi_k3_inventory_and_params() -> None:
    inv = inventory(spec(KIMI_K3), mtp=False)
    by_name = {t.name: t for t in inv.tensors}
    assert by_name["blk.0.ssm_a"].shape == (96,)  # A_log sliced to n_head, 1-D
    assert by_name["blk.0.ssm_g.weight"].shape == (7168, 96 * 128)
    assert "blk.0.ssm_g_a.weight" not in by_name
    assert by_name["blk.3.attn_gate.weight"].shape == (7168, 96 * 128)
    assert by_name["blk.1.ffn_gate_exps.weight"].shape == (3584, 3072, 896)
    assert by_name["blk.1.ffn_gate_exps.weight"].stored is GGMLType.MXFP4  # repacked natively
    assert by_name["blk.1.ffn_routed_down.weight"].shape == (7168, 3584)
    assert by_name["output_res_score.weight"].stored is GGMLType.F32
    got = total_params(KIMI_K3)
    assert got == kimi_expected_params(config(KIMI_K3), k3=True) == 2_779_483_135_584
    # llama.cpp's model type for the 93-layer model is "2.8T" (LLM_TYPE_2_8T_A50B); print_info 2.78 T
    assert abs(got / 2.8e12 - 1) < 0.01


def test_kimi_k3_state_and_kv() -> None:
    s = spec(KIMI_K3)
    assert state_bytes_per_sequence(s) == 69 * 4 * (3 * 3 * 96 * 128 + 128 * 128 * 96)
    assert kv_bytes_per_token(s) == 24 * 576 * 2


def test_kimi_k3_residual_stack_under_attention() -> None:
    """`resi_stack` (n_ckpt rows of n_embd F32 per token, banked every attn_res_block_size layers)
    plus the hole of the (n_ckpt-1)-row stack it was concatenated from; nothing for Kimi-Linear."""
    s, fam = spec(KIMI_K3), family("kimi-k3")
    assert "attn_res:12" in s.flags
    assert fam.residual_activations(s, 11, 2048) == 0  # one checkpoint: a view of the layer input
    assert fam.residual_activations(s, 12, 2048) == 4 * 2048 * s.n_embd * 3
    assert fam.residual_activations(s, 91, 2048) == 4 * 2048 * s.n_embd * 15  # 8 checkpoints
    assert family("kimi-linear").residual_activations(spec(KIMI_LINEAR), 91, 2048) == 0


# ---- LFM2-8B-A1B ---------------------------------------------------------------------------------


def test_lfm2_layers() -> None:
    s = spec(LFM2)
    assert s.arch == "lfm2moe" and s.n_layer == 24
    attn = [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL]
    assert attn == [2, 6, 10, 14, 18, 21]
    conv = [la.attn for la in s.layers if la.attn.kind is AttnKind.LINEAR]
    assert len(conv) == 18 and {(a.conv_kernel, a.conv_channels) for a in conv} == {(3, 2048)}
    assert [la.ffn.kind for la in s.layers[1:3]] == [FFNKind.DENSE, FFNKind.MOE]
    assert s.tied_embeddings


def test_lfm2_inventory_and_params() -> None:
    inv = inventory(spec(LFM2), mtp=False)
    names = {t.name: t for t in inv.tensors}
    assert "output.weight" not in names and "token_embd_norm.weight" in names
    assert names["blk.0.shortconv.conv.weight"].shape == (3, 2048)
    assert names["blk.0.shortconv.conv.weight"].stored is GGMLType.F32
    assert names["blk.2.attn_q_norm.weight"].shape == (64,)
    # token_embd + norm; 18 conv x 3 + 6 attention x 6, 24 x 2 norms, 2 dense x 3, 22 MoE x 5
    assert len(inv.tensors) == 2 + 18 * 3 + 6 * 6 + 24 * 2 + 2 * 3 + 22 * 5 == 256
    e, v, ff, x, fe = 2048, 65536, 7168, 32, 1792
    conv = 3 * e + 3 * e * e + e * e
    gqa = e * e + 2 * e * 512 + e * e + 2 * 64
    moe = e * x + x + 3 * e * fe * x
    expected = v * e + e + 18 * conv + 6 * gqa + 24 * 2 * e + 2 * 3 * e * ff + 22 * moe
    got = total_params(LFM2)
    assert got == expected == 8_339_930_560
    assert abs(got / 8.3e9 - 1) < 0.01  # published 8.3B total


def test_lfm2_state_and_kv() -> None:
    s = spec(LFM2)
    assert state_bytes_per_sequence(s) == 18 * 4 * 2048 * (3 - 1)  # n_embd * (L_cache - 1), no S
    assert kv_bytes_per_token(s) == 6 * 2 * 8 * 64 * 2


def test_lfm2_5_is_the_same_architecture_with_the_larger_vocabulary() -> None:
    """LFM2.5-8B-A1B: 128000-token vocabulary (tied); the rest as LFM2-8B-A1B."""
    s, base = spec("lfm2.5-8b-a1b"), spec(LFM2)
    assert (s.arch, s.n_vocab, s.tied_embeddings) == ("lfm2moe", 128000, True)
    assert [la.attn.kind for la in s.layers] == [la.attn.kind for la in base.layers]
    got = total_params("lfm2.5-8b-a1b")
    assert got == total_params(LFM2) + (128000 - 65536) * 2048 == 8_467_856_832
    # published 8.3B (carried over from LFM2-8B-A1B): the added vocabulary rows put it 2% above
    assert abs(got / 8.3e9 - 1) < 0.025
    assert state_bytes_per_sequence(s) == state_bytes_per_sequence(base)


# ---- MiniMax-M3 (block-sparse attention) ---------------------------------------------------------

MINIMAX_M3 = "minimax-m3"


def test_minimax_m3_layers_and_indexer() -> None:
    s = spec(MINIMAX_M3)
    assert s.arch == "minimax-m3" and s.n_layer == 60
    assert [la.ffn.kind for la in s.layers[:4]] == [FFNKind.DENSE] * 3 + [FFNKind.MOE]
    sparse = [il for il, la in enumerate(s.layers) if la.attn.indexer_heads]
    assert sparse == list(range(3, 60))  # the MoE layers; one indexer head per KV head
    a = s.layers[3].attn
    assert (a.n_head, a.n_head_kv, a.indexer_heads, a.indexer_head_dim, a.indexer_v_dim) == (
        64,
        4,
        4,
        128,
        128,
    )
    moe = s.moe_ffn
    assert moe is not None and (moe.n_expert, moe.n_expert_used, moe.n_ff_exp, moe.n_ff_shexp) == (
        128,
        4,
        3072,
        3072,
    )


def test_minimax_m3_inventory_and_params() -> None:
    inv = inventory(spec(MINIMAX_M3), mtp=False)
    names = {t.name: t for t in inv.tensors}
    assert names["blk.3.indexer.q_proj.weight"].shape == (6144, 4 * 128)
    assert names["blk.3.indexer.k_proj.weight"].stored is GGMLType.F32  # every .indexer. tensor
    assert "blk.2.indexer.q_proj.weight" not in names and "blk.2.ffn_up.weight" in names
    assert names["blk.0.attn_q_norm.weight"].shape == (128,)  # per-head q/k norms
    # 3 head/tail; per layer 4 attention + 2 q/k norms + 2 norms; 3 dense x 3; 57 MoE x (8 + 4 indexer)
    assert len(inv.tensors) == 3 + 60 * 8 + 3 * 3 + 57 * 12 == 1176
    e, v, x, ff = 6144, 200064, 128, 3072
    attn = e * 64 * 128 + 2 * e * 512 + 64 * 128 * e + 2 * 128 + 2 * e
    moe = e * x + x + 3 * e * ff * x + 3 * e * ff + e * 512 + e * 128 + 2 * 128
    expected = 2 * v * e + e + 60 * attn + 3 * 3 * e * 12288 + 57 * moe
    got = total_params(MINIMAX_M3)
    assert got == expected == 426_174_572_928
    assert abs(got / 428e9 - 1) < 0.01  # published 428B total (Megatron-Bridge docs)


def test_minimax_m3_caches() -> None:
    """llama_kv_cache_msa: K/V of 4 heads x 128 on all 60 layers, and an indexer cache of one
    128-wide key head plus one 128-wide value head on the 57 sparse layers, F16."""
    s = spec(MINIMAX_M3)
    ctx = 4096
    lms = layer_memory(s, CacheConfig(n_ctx=ctx))
    assert sum(lm.k_bytes + lm.v_bytes for lm in lms) == 60 * 2 * 4 * 128 * 2 * ctx
    assert sum(lm.index_bytes for lm in lms) == 57 * (128 + 128) * 2 * ctx
    assert sum(lm.index_v_bytes for lm in lms) == 57 * 128 * 2 * ctx


# ---- the materialised models keep llama.cpp's ties -----------------------------------------------


@pytest.mark.parametrize("model", [KIMI_LINEAR, KIMI_K3])
def test_shrunk_kda_heads_follow_the_attention_heads(model: str) -> None:
    small = shrink(spec(model))
    mla = next(la.attn for la in small.layers if la.attn.kind is AttnKind.MLA)
    kda = {(la.attn.n_head, la.attn.linear_k_heads) for la in small.layers if la.attn.kind is AttnKind.LINEAR}
    assert kda == {(mla.n_head, mla.n_head)}


def test_shrunk_short_conv_follows_n_embd() -> None:
    small = shrink(spec(LFM2))
    assert {la.attn.conv_channels for la in small.layers if la.attn.kind is AttnKind.LINEAR} == {small.n_embd}


def test_shrunk_msa_indexer_keeps_one_head_per_kv_head() -> None:
    small = shrink(spec(MINIMAX_M3))
    ties = {(la.attn.indexer_heads, la.attn.indexer_v_dim) for la in small.layers if la.attn.indexer_heads}
    assert ties == {(small.layers[3].attn.n_head_kv, small.layers[3].attn.head_dim_v)}
