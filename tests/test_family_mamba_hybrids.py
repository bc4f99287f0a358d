"""Mamba-2 hybrids: NVIDIA Nemotron-3 (llama.cpp `nemotron_h_moe`) and IBM Granite-4.0-H (`granitehybrid`).

Facts checked: block kinds from the configs, the converter's tensor layout and counts, parameter
totals against counts measured elsewhere (GGUF catalog, checkpoint audits, llama.cpp print_info),
the per-layer GGUF arrays llama.cpp's loader reads the block kinds from, KV and Mamba-2 state sizes.
"""

from collections import Counter

import pytest
from validation.materialize import shrink

from moeplan.arch.families.nemotron_h import mamba2_activations
from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.memory.weights import quant_model
from moeplan.sources.catalog import load_catalog

NANO, SUPER, ULTRA = "nemotron-3-nano-30b-a3b", "nemotron-3-super-120b-a12b", "nemotron-3-ultra-550b-a55b"
LIGHTNING, TINY, SMALL = "nemotron-3.5-lightning-30b-a3b", "granite-4.0-h-tiny", "granite-4.0-h-small"

# (Mamba-2 blocks, MoE blocks, attention blocks at) from hybrid_override_pattern / layers_block_type
NEMOTRON_BLOCKS = {
    NANO: (23, 23, [5, 12, 19, 26, 33, 42]),
    LIGHTNING: (23, 23, [5, 12, 19, 26, 33, 42]),
    SUPER: (40, 40, [7, 16, 25, 36, 47, 58, 69, 78]),
    ULTRA: (48, 48, [7, 14, 23, 32, 39, 48, 57, 64, 73, 82, 89, 98]),
}
# Tensors the converter writes: without MTP, and with the kept MTP block. Per block: Mamba-2 9
# (norm, in, conv1d w+b, dt bias, A, D, grouped norm, out), attention 5, MoE 7 (+2 latent
# projections on Super/Ultra); the MTP block 4 NextN + 5 attention + post_attention_norm + its MoE.
TENSOR_COUNTS = {
    NANO: (401, 401),
    LIGHTNING: (401, 417),
    SUPER: (763, 781),
    ULTRA: (927, 945),
    TINY: (666, 666),
    SMALL: (666, 666),
}


def spec(model: str) -> ModelSpec:
    return load_catalog()[model].spec()


def params(model: str, *, mtp: bool = False, checkpoint: bool = False) -> int:
    inv = inventory(spec(model), checkpoint=True) if checkpoint else inventory(spec(model), mtp=mtp)
    return sum(t.n_elements for t in inv.tensors)


@pytest.mark.parametrize("model", sorted(NEMOTRON_BLOCKS))
def test_nemotron_blocks_are_exactly_one_kind(model: str) -> None:
    s = spec(model)
    n_ssm, n_moe, attn_at = NEMOTRON_BLOCKS[model]
    kinds = Counter((la.attn.kind, la.ffn.kind) for la in s.layers)
    assert kinds == {
        (AttnKind.LINEAR, FFNKind.NONE): n_ssm,
        (AttnKind.NONE, FFNKind.MOE): n_moe,
        (AttnKind.FULL, FFNKind.NONE): len(attn_at),
    }
    assert [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL] == attn_at
    assert s.arch == "nemotron_h_moe" and s.is_moe


@pytest.mark.parametrize("model", sorted(TENSOR_COUNTS))
def test_tensor_counts(model: str) -> None:
    plain, with_mtp = TENSOR_COUNTS[model]
    assert len(inventory(spec(model), mtp=False).tensors) == plain
    assert len(inventory(spec(model)).tensors) == with_mtp  # the converter's default keeps MTP


def test_parameter_totals_match_measured_counts() -> None:
    # ggml-org's GGUF of Nano (LlamaBarn catalog parameterCount; no MTP head in this model)
    assert params(NANO) == 31_577_940_288
    # Megatron-Bridge export audits of the BF16 HF checkpoints, MTP head included
    assert params(SUPER, checkpoint=True) == 123_611_033_088
    assert params(LIGHTNING, checkpoint=True) == 32_913_266_240
    # Ultra: no measured count seen; the published 550B is a rounded name
    assert abs(params(ULTRA) - 550e9) / 550e9 < 0.005
    # Granite-4.0-H-Tiny: llama.cpp print_info "6.94 B"; BF16 = 2 bytes each, the three shards
    # hold 13,878,142,256 bytes including their safetensors headers
    tiny = params(TINY)
    assert tiny == 6_939_037_248 and round(tiny / 1e9, 2) == 6.94
    assert 0 < 13_878_142_256 - 2 * tiny < 200_000


def test_granite_small_dims_where_the_sources_pin_them() -> None:
    """Granite-4.0-H-Small: 32,207,337,984 parameters, llama.cpp's print_info of the full-size file
    says 32.21 B; 2 bytes each is 59.991 GiB against the 59.99 GiB its BF16 safetensors list (with
    2 Mamba groups it would be 60.06, with 64 heads 59.97); KV of 4 attention layers x 8 kv x 128
    (16 KiB per F16 token) and the Mamba-2 state of 36 layers of d_inner 8192."""
    small = params(SMALL)
    assert small == 32_207_337_984 and round(small / 1e9, 2) == 32.21
    assert round(2 * small / 2**30, 2) == 59.99
    s = spec(SMALL)
    assert [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL] == [5, 15, 25, 35]
    assert all(
        la.ffn.kind is FFNKind.MOE and (la.ffn.n_expert, la.ffn.n_expert_used) == (72, 10) for la in s.layers
    )
    t = {x.name: x.shape for x in inventory(s).tensors}
    assert t["blk.0.ssm_in.weight"] == (4096, 2 * 8192 + 2 * 128 + 128)  # z, x, B, C, dt
    assert t["blk.0.ffn_up_shexp.weight"] == (4096, 1536) and "output.weight" not in t
    mem = layer_memory(s, CacheConfig(n_ctx=8192))
    assert sum(m.k_bytes + m.v_bytes for m in mem) == 8192 * 4 * 8 * 128 * 2 * 2
    assert sum(m.state_bytes for m in mem) == 36 * 4 * (3 * (8192 + 256) + 128 * 8192)


def test_nemotron_layout_mamba2_and_relu2_latent_moe() -> None:
    nano = {t.name: t for t in inventory(spec(NANO)).tensors}
    # d_inner 64 x 64 = 4096, 8 groups x d_state 128: in_proj 2*4096 + 2*8*128 + 64 heads
    assert nano["blk.0.ssm_in.weight"].shape == (2688, 10304)
    assert nano["blk.0.ssm_conv1d.weight"].shape == (4, 6144)
    assert nano["blk.0.ssm_conv1d.bias"].shape == (6144,)
    assert nano["blk.0.ssm_a"].shape == nano["blk.0.ssm_d"].shape == (1, 64)
    assert nano["blk.0.ssm_norm.weight"].shape == (512, 8)
    assert nano["blk.0.ssm_out.weight"].shape == (4096, 2688)
    assert "blk.0.ffn_norm.weight" not in nano and "blk.1.attn_q.weight" not in nano
    assert nano["blk.1.exp_probs_b.bias"].shape == (128,)
    assert not any("gate_exps" in n or "gate_shexp" in n or "latent" in n for n in nano)  # relu², no gates
    sup = {t.name: t for t in inventory(spec(SUPER)).tensors}
    assert sup["blk.1.ffn_latent_down.weight"].shape == (4096, 1024)
    assert sup["blk.1.ffn_latent_up.weight"].shape == (1024, 4096)
    assert sup["blk.1.ffn_up_exps.weight"].shape == (1024, 2688, 512)
    assert sup["blk.1.ffn_down_exps.weight"].shape == (2688, 1024, 512)
    assert sup["blk.1.ffn_up_shexp.weight"].shape == (4096, 5376)  # the shared expert is not latent
    mtp = sorted(n.split(".", 2)[2] for n in sup if n.startswith("blk.88."))
    assert "post_attention_norm.weight" in mtp and "nextn.eh_proj.weight" in mtp and "attn_q.weight" in mtp
    assert "nextn.embed_tokens.weight" not in mtp and len(mtp) == 18


@pytest.mark.parametrize("model", [NANO, SUPER])
def test_gguf_arrays_give_llamacpp_the_block_kinds(model: str) -> None:
    """nemotron-h.cpp load_arch_hparams: recurrent iff head_count_kv[il] and n_ff[il] are both 0;
    create_memory: attention KV where only n_ff is 0, so the MTP block (n_ff set) holds none."""
    s = spec(model)
    inv = inventory(s)
    kv = family(s.arch).gguf_metadata(inv)
    hkv, ff = kv[".attention.head_count_kv"], kv[".feed_forward_length"]
    assert isinstance(hkv, list) and isinstance(ff, list)
    assert len(hkv) == len(ff) == inv.block_count == s.n_layer + len(s.mtp_layers)
    recurrent = [i for i in range(s.n_layer) if hkv[i] == 0 and ff[i] == 0]
    attention = [i for i in range(inv.block_count) if hkv[i] and ff[i] == 0]
    assert recurrent == [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.LINEAR]
    assert attention == NEMOTRON_BLOCKS[model][2]
    assert kv[".context_length"] == 2**20  # GraniteHybridModel: no RoPE
    assert quant_model(inv).n_gqa == 0  # llama-quantize reads layer 0, a Mamba-2 block


def test_kv_and_mamba2_state_bytes() -> None:
    cfg = CacheConfig(n_ctx=4096, n_seq=2)
    lm = layer_memory(spec(NANO), cfg)
    # 6 attention layers x (K + V) of 2 kv heads x 128, F16; two streams of 2048 cells
    assert sum(m.k_bytes + m.v_bytes for m in lm) == 4096 * 6 * 2 * 2 * 128 * 2
    assert {m.layer for m in lm if m.k_bytes} == set(NEMOTRON_BLOCKS[NANO][2])
    # per Mamba-2 layer and sequence: conv 3 x (4096 + 2*8*128) + state 128 x 4096, F32
    assert sum(m.state_bytes for m in lm) == 23 * 2 * 4 * (3 * 6144 + 128 * 4096)
    assert all(m.total == 0 for m in lm if m.kind is AttnKind.NONE)
    tiny = layer_memory(spec(TINY), CacheConfig(n_ctx=1024))
    assert sum(m.k_bytes + m.v_bytes for m in tiny) == 1024 * 4 * 2 * 4 * 128 * 2
    assert sum(m.state_bytes for m in tiny) == 36 * 4 * (3 * (3072 + 256) + 128 * 3072)
    # Super's MTP block (attention + MoE) keeps no KV in the main context
    assert len([m for m in layer_memory(spec(SUPER), cfg) if m.k_bytes]) == 8


def test_granite_layout_every_layer_has_the_moe_ffn() -> None:
    s = spec(TINY)
    assert s.arch == "granitehybrid" and s.tied_embeddings
    assert Counter(la.attn.kind for la in s.layers) == {AttnKind.LINEAR: 36, AttnKind.FULL: 4}
    assert all(la.ffn.kind is FFNKind.MOE and la.ffn.n_expert == 64 for la in s.layers)
    t = {x.name: x for x in inventory(s).tensors}
    assert "output.weight" not in t
    # the GGUF dump of a converted file: in_proj 1536 x 6448, conv 4 x 3328, gated experts
    assert t["blk.0.ssm_in.weight"].shape == (1536, 6448)
    assert t["blk.0.ssm_conv1d.weight"].shape == (4, 3328)
    assert t["blk.0.ffn_gate_exps.weight"].shape == (1536, 512, 64)
    assert t["blk.0.ffn_down_shexp.weight"].shape == (1024, 1536)
    assert t["blk.5.attn_k.weight"].shape == (1536, 512) and "blk.5.ssm_in.weight" not in t
    kv = family(s.arch).gguf_metadata(inventory(s))
    hkv = kv[".attention.head_count_kv"]
    assert isinstance(hkv, list) and hkv[:6] == [0, 0, 0, 0, 0, 4]
    assert (
        kv[".ssm.inner_size"] == 3072
        and kv[".ssm.time_step_rank"] == 48
        and kv[".feed_forward_length"] == 512
    )
    assert ".attention.key_length" not in kv  # n_embd / n_head already is the head size


def test_materialised_granite_keeps_d_inner_twice_n_embd() -> None:
    """granite-hybrid.cpp asserts 2·n_embd == d_inner; the shrunk test model must keep it."""
    small = shrink(spec(TINY))
    for la in small.layers:
        if la.attn.kind is AttnKind.LINEAR:
            assert la.attn.linear_v_heads * la.attn.linear_v_head_dim == 2 * small.n_embd
    kv = family(small.arch).gguf_metadata(inventory(small))
    assert kv[".attention.key_length"] == small.layers[5].attn.head_dim_k  # not n_embd / n_head here


def test_mamba2_compute_peak_counts_the_scan_states() -> None:
    a = spec(NANO).layers[0].attn
    one, four = (mamba2_activations(a, 512, 2688, n) for n in (1, 4))
    assert four - one == 3 * 4 * 128 * 4096  # one F32 state of d_state x d_inner per extra sequence
    per_token = (2 * 4096 + 2048 + 64) + (4096 + 2048) + 2 * 4096 + 2688
    assert one == 4 * (512 * per_token + 128 * 4096)


def test_configs_the_families_refuse() -> None:
    nano = dict(load_catalog()[NANO].config)
    dense = {k: v for k, v in nano.items() if k != "num_experts_per_tok"}
    with pytest.raises(BadConfig):
        spec_from_config(dense)  # without the MoE fields its E blocks mean nothing (nemotron_h marks '-')
    with pytest.raises(BadConfig):
        spec_from_config({**nano, "hybrid_override_pattern": "M-M*" + "E" * 48})
    with pytest.raises(BadConfig):
        spec_from_config({**nano, "num_hidden_layers": 51})
    tiny = dict(load_catalog()[TINY].config)
    with pytest.raises(UnsupportedArchitecture):
        spec_from_config({**tiny, "layer_types": ["attention"] * 40})  # converts to granitemoe
    with pytest.raises(BadConfig):
        spec_from_config({**tiny, "mamba_n_heads": 64})  # llama.cpp needs d_inner = 2 x hidden


def test_materialised_nemotron_keeps_block_kinds_and_latent() -> None:
    small = shrink(spec(SUPER))
    assert [(la.attn.kind, la.ffn.kind) for la in small.layers] == [
        (la.attn.kind, la.ffn.kind) for la in spec(SUPER).layers
    ]
    t = {x.name: x.shape for x in inventory(small).tensors}
    assert t["blk.1.ffn_latent_down.weight"] == (small.n_embd, 256)  # latent 1024 shrinks like a width
    assert t["blk.1.ffn_up_exps.weight"][0] == 256
