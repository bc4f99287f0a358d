"""bailingmoe3 (Ling-3.0-flash): the layer plan `BailingMoeV3Model.is_full_attention` gives, the
tensors `llama_model_bailingmoe3::load_arch_tensors` loads (src/models/bailingmoe3.cpp), the keys its
`load_arch_hparams` reads, parameter counts against an independent count from config.json and the
published figures, KV and KDA state by llama.cpp's rules, and the configs the converter refuses."""

from typing import Any

import pytest
from validation.materialize import materialize
from validation.runtime import predicted_caches

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory, mtp_trunk_memory
from moeplan.memory.prompt_cache import token_bound_bytes
from moeplan.memory.weights import predict
from moeplan.quant.ggml import GGMLType
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, shapes, spec

LING3 = "ling-3.0-flash"


def expected_params(cfg: dict[str, Any], *, mtp: bool) -> int:
    """Parameters counted from config.json alone, as the loader sizes the tensors: KDA with full-rank
    q/k/v/f/g of n_head x head_dim, gated MLA without q compression, dense then routed + shared FFNs,
    and (with `mtp`) one MLA + MoE NextN block with eh_proj and three norms."""
    e, n, v = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    h, hd, k = cfg["num_attention_heads"], cfg["head_dim"], cfg["short_conv_kernel_size"]
    d = h * hd
    kda = 5 * e * d + 3 * k * d + e * h + h + d + hd + d * e
    kv_lora, rope, nope, vd = (
        cfg[x] for x in ("kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
    )
    mla = e * h * (nope + rope) + e * (kv_lora + rope) + kv_lora + nope * kv_lora * h + kv_lora * vd * h
    mla += e * h + h * vd * e  # head-wise gate, output
    x, ff, sh = cfg["num_experts"], cfg["moe_intermediate_size"], cfg["moe_shared_expert_intermediate_size"]
    moe = e * x + x + 3 * e * ff * x + 3 * e * sh
    n_mla = n // cfg["layer_group_size"]
    k_dense = cfg["first_k_dense_replace"]
    total = 2 * v * e + e + (n - n_mla) * kda + n_mla * mla + 2 * e * n
    total += k_dense * 3 * e * cfg["intermediate_size"] + (n - k_dense) * moe
    return total + (mla + moe + 2 * e + 2 * e * e + 3 * e if mtp else 0)


def test_layer_plan() -> None:
    s = spec(LING3)
    assert s.arch == "bailingmoe3" and s.n_layer == 42 and s.context_length == 262144
    assert [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.MLA] == [5, 11, 17, 23, 29, 35, 41]
    assert sum(la.attn.kind is AttnKind.LINEAR for la in s.layers) == 35
    assert [la.ffn.kind for la in s.layers[:3]] == [FFNKind.DENSE, FFNKind.DENSE, FFNKind.MOE]
    kda, mla = s.layers[0].attn, s.layers[5].attn
    assert (kda.n_head, kda.n_head_kv, kda.linear_k_head_dim, kda.conv_kernel) == (32, 0, 128, 4)
    assert (mla.n_head_kv, mla.kv_lora_rank, mla.qk_rope_head_dim, mla.q_lora_rank) == (1, 512, 64, 0)
    f = s.moe_ffn
    assert f is not None
    assert (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_shared, f.n_ff_shexp) == (512, 8, 768, 1, 768)
    assert len(s.mtp_layers) == 1 and s.mtp_layers[0].attn.kind is AttnKind.MLA
    assert not s.tied_embeddings


def test_trailing_partial_group_is_full_attention() -> None:
    """`is_full_attention`: a layer past the last whole group is MLA too (45 layers, groups of 6)."""
    s = spec_from_config(config(LING3, num_hidden_layers=45))
    assert [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.MLA] == [
        5,
        11,
        17,
        23,
        29,
        35,
        41,
        42,
        43,
        44,
    ]


def test_tensors_follow_load_arch_tensors() -> None:
    sh = shapes(spec(LING3))
    # KDA: full-rank decay and output gate, A as {1, n_head}, one head's output norm
    assert sh["blk.0.attn_q.weight"] == sh["blk.0.attn_v.weight"] == (2560, 4096)
    assert sh["blk.0.ssm_conv1d_k.weight"] == (4, 1, 4096, 1)
    assert sh["blk.0.ssm_f_a.weight"] == sh["blk.0.ssm_g_a.weight"] == (2560, 4096)
    assert sh["blk.0.ssm_beta.weight"] == (2560, 32) and sh["blk.0.ssm_a"] == (1, 32)
    assert sh["blk.0.ssm_dt.bias"] == (4096,) and sh["blk.0.ssm_norm.weight"] == (128,)
    assert sh["blk.0.attn_output.weight"] == (4096, 2560) and "blk.0.ssm_f_b.weight" not in sh
    # MLA: plain q (q_lora_rank null), latent + rope, split kv_b, head-wise gate
    assert sh["blk.5.attn_q.weight"] == (2560, 32 * 192) and "blk.5.attn_q_a.weight" not in sh
    assert sh["blk.5.attn_kv_a_mqa.weight"] == (2560, 576) and sh["blk.5.attn_kv_a_norm.weight"] == (512,)
    assert sh["blk.5.attn_k_b.weight"] == (128, 512, 32) and sh["blk.5.attn_v_b.weight"] == (512, 128, 32)
    assert sh["blk.5.attn_gate.weight"] == (2560, 32) and sh["blk.5.attn_output.weight"] == (4096, 2560)
    assert "blk.5.attn_q_norm.weight" not in sh and "blk.5.ssm_a" not in sh
    # FFNs: layers 0-1 dense, then router + selection bias, experts, shared expert
    assert sh["blk.1.ffn_gate.weight"] == (2560, 6144) and "blk.2.ffn_gate.weight" not in sh
    assert sh["blk.2.exp_probs_b.bias"] == (512,) and sh["blk.2.ffn_down_exps.weight"] == (768, 2560, 512)
    assert sh["blk.2.ffn_up_shexp.weight"] == (2560, 768)
    # the MTP block: MLA + MoE, NextN projections, its head norm as layer_output_norm
    assert sh["blk.42.attn_gate.weight"] == (2560, 32)
    assert sh["blk.42.ffn_gate_exps.weight"] == (2560, 768, 512)
    assert sh["blk.42.nextn.eh_proj.weight"] == (5120, 2560)
    assert sh["blk.42.layer_output_norm.weight"] == (2560,)
    assert "blk.42.nextn.shared_head_norm.weight" not in sh


def test_tensor_types_and_roles() -> None:
    by_name = {t.name: t for t in inventory(spec(LING3)).tensors}
    assert by_name["blk.0.ssm_conv1d_q.weight"].stored is GGMLType.F32  # converter forces KDA convs F32
    assert by_name["blk.0.ssm_a"].stored is GGMLType.F32 and by_name["blk.0.ssm_f_a.weight"].stored is None
    assert {t.role.value for t in by_name.values() if t.layer == 42} == {"mtp"}


def test_parameters_vs_published_and_llamacpp() -> None:
    cfg = config(LING3)
    trunk = inventory(spec(LING3), mtp=False)
    full = inventory(spec(LING3))
    # 3 head/tail + 35 KDA x 13 + 7 MLA x 7 + 42 x 2 norms + 2 dense x 3 + 40 MoE x 8; MTP block 21
    assert len(trunk.tensors) == 917 and len(full.tensors) == 938 and full.mtp_kept == 1
    assert sum(t.n_elements for t in trunk.tensors) == expected_params(cfg, mtp=False) == 124_414_211_552
    assert sum(t.n_elements for t in full.tensors) == expected_params(cfg, mtp=True) == 127_486_405_600
    # recipes guide: 124.4B base, 3.1B MTP layer, 127.5B in the checkpoint; llama.cpp's print_info of
    # the full-size file (validation.fullsize) says 127.49 B
    published = load_catalog()[LING3].params_published
    assert abs(124_414_211_552 / published.total - 1) < 0.0002
    assert round(127_486_405_600 / 1e9, 1) == 127.5
    active = predict(trunk, FileType.BF16).params_active
    assert active == 5_505_693_152 and published.active is not None
    assert abs(active / published.active - 1) < 0.002  # "5.5B active"


def test_metadata_the_loader_reads() -> None:
    """BailingMoeV3Model.set_gguf_parameters: head_count_kv per block (1 on MLA and the MTP block),
    the latent key length, the KDA keys and the sigmoid router's scale from config.json."""
    kv = family("bailingmoe3").gguf_metadata(inventory(spec(LING3)))
    heads_kv = kv[".attention.head_count_kv"]
    assert isinstance(heads_kv, list) and len(heads_kv) == 43
    assert [i for i, n in enumerate(heads_kv) if n] == [5, 11, 17, 23, 29, 35, 41, 42]
    assert kv[".attention.key_length"] == 576  # kv_lora_rank + qk_rope_head_dim
    assert (kv[".attention.key_length_mla"], kv[".attention.value_length_mla"]) == (192, 128)
    assert ".attention.q_lora_rank" not in kv and kv[".attention.kv_lora_rank"] == 512
    assert (kv[".kda.head_dim"], kv[".ssm.conv_kernel"], kv[".kda.gate_lower_bound"]) == (128, 4, -5.0)
    assert (kv[".leading_dense_block_count"], kv[".expert_shared_count"]) == (2, 1)
    assert kv[".expert_weights_scale"] == 2.5
    assert kv[".nextn_predict_layers"] == 1 and kv[".rope.dimension_count"] == 64


def test_kv_and_state() -> None:
    """7 MLA layers cache the latent (512 + 64, K only); the kept MTP block's MLA is cached too
    (the hybrid memory has no layer filter). KDA: conv 3 x 3 x 32 x 128 + state 128 x 128 x 32 F32."""
    s = spec(LING3)
    cfg = CacheConfig(n_ctx=4096, n_seq=1)
    lms = layer_memory(s, cfg)
    assert sum(lm.k_bytes + lm.v_bytes for lm in lms) == 7 * 4096 * 576 * 2
    assert sum(lm.state_bytes for lm in lms) == 35 * 4 * (3 * 3 * 4096 + 128 * 128 * 32)
    mtp = mtp_trunk_memory(s, 1, cfg)
    assert [lm.layer for lm in mtp] == [42] and mtp[0].k_bytes == 4096 * 576 * 2 and mtp[0].v_bytes == 0
    assert mtp_trunk_memory(s, 0, cfg) == []  # a file converted with --no-mtp
    assert predicted_caches(s, cfg, 1)["full"]["layers"] == 8
    assert mtp_trunk_memory(spec("glm-4.5-air"), 1, cfg) == []  # its KV filter stops at n_layer


def test_file_reads_back_as_the_same_model() -> None:
    """`spec_from_gguf` inverts `gguf_metadata`: KDA where head_count_kv is 0, every layer and the
    MTP block equal, and the config scalars the metadata carries."""
    m = materialize(spec(LING3))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.mtp_layers == m.spec.mtp_layers
    assert dict(got.gguf_scalars) == {".expert_weights_scale": 2.5, ".kda.gate_lower_bound": -5.0}


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"architectures": ["BailingMoeV2_5ForCausalLM"]}, UnsupportedArchitecture),  # Ling 2.6
        ({"no_kda_lora": False}, BadConfig),
        ({"kda_safe_gate": False}, BadConfig),
        ({"gated_attention_proj_granularity_type": "element_wise"}, BadConfig),
        ({"layer_group_size": 0}, BadConfig),
    ],
)
def test_configs_the_converter_refuses(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        spec_from_config(config(LING3, **changes))


def test_names_resolve() -> None:
    for name in ("ling-3.0-flash", "inclusionAI/Ling-3.0-flash", "Ling-3.0-flash"):
        assert resolve(name).id == LING3


def test_prompt_cache_bound_saves_the_mtp_cells_too() -> None:
    """`--cache-ram -1`: a sequence's saved state holds every layer of the trunk's KV cache, the MTP
    block's MLA included (llama_kv_cache::state_write over its layers)."""
    s, cfg = spec(LING3), CacheConfig(n_ctx=4096)
    without, with_mtp = token_bound_bytes(s, cfg), token_bound_bytes(s, cfg, 1)
    assert with_mtp - without == 4096 * 576 * 2


def test_mxfp4_moe_quantizes_the_experts_not_the_3d_mla_projections() -> None:
    """llama-quantize's MXFP4_MOE takes 3-D tensors to MXFP4 except on bailingmoe3, whose per-head MLA
    projections (attn_k_b / attn_v_b, 3-D) are not experts and stay Q8_0 (`llama_tensor_get_type_impl`,
    is_bailingmoe3_expert): 16 tensors of Ling-3.0-flash that `make validate` found typed MXFP4."""
    w = predict(inventory(spec(LING3), mtp=True), FileType.MXFP4_MOE)
    types = {t.spec.name: t.type.name for t in w.tensors}
    mla = [n for n in types if n.endswith(("attn_k_b.weight", "attn_v_b.weight"))]
    experts = [n for n in types if "_exps." in n]
    assert mla and all(types[n] == "Q8_0" for n in mla)
    assert experts and all(types[n] == "MXFP4" for n in experts)
