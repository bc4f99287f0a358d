"""GQA MoE families (a): ERNIE-4.5 MoE (`ernie4_5-moe`), Hunyuan-A13B (`hunyuan-moe`), dots.llm1
(`dots1`), Phi-3.5-MoE (`phimoe`) and Qwen3-VL MoE's text model (`qwen3vlmoe`): layer kinds from the
configs, the pinned converter's tensors, parameter totals against measured or published figures,
the GGUF keys the loaders need, and the KV cache per token."""

import gguf
import numpy as np
import pytest
from validation.materialize import materialize
from validation.runtime import compute_check, subject

from moeplan.arch.families.qwen3vl import mrope_sections
from moeplan.arch.inventory import Role, inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines.llamacpp import compute_bytes
from moeplan.errors import BadConfig
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf

F32 = gguf.GGMLQuantizationType.F32

MODELS = {
    "ernie-4.5-21b-a3b": "ernie4_5-moe",
    "ernie-4.5-300b-a47b": "ernie4_5-moe",
    "hunyuan-a13b": "hunyuan-moe",
    "dots.llm1.inst": "dots1",
    "phi-3.5-moe": "phimoe",
    "qwen3-vl-30b-a3b": "qwen3vlmoe",
    "qwen3-vl-235b-a22b": "qwen3vlmoe",
}
# Parameters of the text GGUF (inventory(spec, mtp=False)) and its tensor count.
TEXT_PARAMS = {
    # the released checkpoint's tensor listing sums to exactly this (Hchnr/test safe_open output)
    "ernie-4.5-300b-a47b": 299_484_163_264,
    # llama.cpp print_info "model params = 80.393 B" (tied embeddings; untied would be 80.918 B)
    "hunyuan-a13b": 80_393_183_232,
    # the text trunk of Qwen3-30B-A3B, whose llama.cpp count (LlamaBarn parameterCount) is exact
    "qwen3-vl-30b-a3b": 30_532_122_624,
    # the trunk of Qwen3-235B-A22B (llama.cpp measures 235.09 B)
    "qwen3-vl-235b-a22b": 235_093_634_560,
    "ernie-4.5-21b-a3b": 21_825_437_888,
    "dots.llm1.inst": 142_774_381_696,
    "phi-3.5-moe": 41_873_153_472,
}
TENSORS = {
    "ernie-4.5-21b-a3b": 389,  # 1 dense block of 9 + 27 MoE blocks of 14 + 2 (tied)
    "ernie-4.5-300b-a47b": 591,  # 3 x 9 + 51 x 11 + 3
    "hunyuan-a13b": 482,  # 32 x 15 + 2 (tied)
    "dots.llm1.inst": 990,  # 11 + 61 x 16 + 3
    "phi-3.5-moe": 519,  # llama.cpp's loader log of the converted file: 519 tensors, 293 F32
    "qwen3-vl-30b-a3b": 579,
    "qwen3-vl-235b-a22b": 1131,
}
# Published total / active (billions) and how close the inventory must come (billions).
PUBLISHED = {
    "ernie-4.5-21b-a3b": (21, 3, 1.0, 0.4),
    "ernie-4.5-300b-a47b": (300, 47, 0.6, 1.0),
    "hunyuan-a13b": (80, 13, 0.4, 0.3),
    "dots.llm1.inst": (142, 14, 0.8, 0.1),
    "phi-3.5-moe": (42, 6.6, 0.2, 0.05),
    "qwen3-vl-30b-a3b": (30, 3, 0.6, 0.4),
    "qwen3-vl-235b-a22b": (235, 22, 0.1, 0.2),
}


def spec(model: str) -> ModelSpec:
    return resolve(model).spec()


def shapes(model: str) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in inventory(spec(model), mtp=False).tensors}


def test_catalog_holds_the_models() -> None:
    catalog = load_catalog()
    assert {m: catalog[m].spec().arch for m in MODELS} == MODELS


@pytest.mark.parametrize(
    ("model", "n_layer", "n_dense_lead", "n_expert", "n_used", "n_ff_exp", "n_ff_shexp"),
    [
        ("ernie-4.5-21b-a3b", 28, 1, 64, 6, 1536, 3072),
        ("ernie-4.5-300b-a47b", 54, 3, 64, 8, 3584, 0),
        ("hunyuan-a13b", 32, 0, 64, 8, 3072, 3072),
        ("dots.llm1.inst", 62, 1, 128, 6, 1408, 2816),
        ("phi-3.5-moe", 32, 0, 16, 2, 6400, 0),
        ("qwen3-vl-30b-a3b", 48, 0, 128, 8, 768, 0),
        ("qwen3-vl-235b-a22b", 94, 0, 128, 8, 1536, 0),
    ],
)
def test_layer_kinds(
    model: str, n_layer: int, n_dense_lead: int, n_expert: int, n_used: int, n_ff_exp: int, n_ff_shexp: int
) -> None:
    s = spec(model)
    assert s.n_layer == n_layer and not s.mtp_layers
    assert {la.attn.kind for la in s.layers} == {AttnKind.FULL}
    kinds = [la.ffn.kind for la in s.layers]
    assert kinds == [FFNKind.DENSE] * n_dense_lead + [FFNKind.MOE] * (n_layer - n_dense_lead)
    moe = s.moe_ffn
    assert moe is not None
    assert (moe.n_expert, moe.n_expert_used, moe.n_ff_exp, moe.n_ff_shexp) == (
        n_expert,
        n_used,
        n_ff_exp,
        n_ff_shexp,
    )


@pytest.mark.parametrize("model", sorted(MODELS))
def test_parameters_and_tensor_count(model: str) -> None:
    inv = inventory(spec(model), mtp=False)
    assert sum(t.n_elements for t in inv.tensors) == TEXT_PARAMS[model]
    assert len(inv.tensors) == TENSORS[model]


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_published_totals_and_active(model: str) -> None:
    total, active, tol_total, tol_active = PUBLISHED[model]
    w = predict(inventory(spec(model), mtp=False), FileType.BF16)
    assert abs(w.params_total / 1e9 - total) <= tol_total
    assert abs(w.params_active / 1e9 - active) <= tol_active
    entry = resolve(model)
    assert entry.params_published.total == int(total * 1e9)


def test_ernie_router_bias_shared_experts_and_tied_output() -> None:
    t = shapes("ernie-4.5-21b-a3b")
    assert t["blk.0.ffn_gate.weight"] == (2560, 12288)  # moe_layer_start_index 1: layer 0 dense
    assert "blk.0.ffn_gate_inp.weight" not in t
    # moe_statics.e_score_correction_bias is {1, 64} in the checkpoint and written as is
    assert t["blk.1.exp_probs_b.bias"] == (64, 1)
    assert t["blk.1.ffn_gate_exps.weight"] == (2560, 1536, 64)
    assert t["blk.1.ffn_up_shexp.weight"] == (2560, 3072)  # 2 shared experts as one FFN
    assert t["blk.1.attn_k.weight"] == (2560, 512) and t["blk.1.attn_q.weight"] == (2560, 2560)
    assert "output.weight" not in t  # tied
    big = shapes("ernie-4.5-300b-a47b")
    assert "blk.3.ffn_up_shexp.weight" not in big and big["blk.2.ffn_down.weight"] == (28672, 8192)
    assert big["output.weight"] == (8192, 103424)
    inv = inventory(spec("ernie-4.5-21b-a3b"), mtp=False)
    assert {t.stored for t in inv.tensors if "exp_probs_b" in t.name or "ffn_gate_inp" in t.name} == {F32}


def test_ernie_keys_and_shared_width_guard() -> None:
    kv = family("ernie4_5-moe").gguf_metadata(inventory(spec("ernie-4.5-21b-a3b"), mtp=False))
    assert kv[".leading_dense_block_count"] == 1
    assert kv[".interleave_moe_layer_step"] == 1
    assert kv[".expert_shared_count"] == 2 and kv[".expert_shared_feed_forward_length"] == 3072
    assert kv[".feed_forward_length"] == 12288 and kv[".expert_feed_forward_length"] == 1536
    kv300 = family("ernie4_5-moe").gguf_metadata(inventory(spec("ernie-4.5-300b-a47b"), mtp=False))
    assert kv300[".leading_dense_block_count"] == 3 and ".expert_shared_count" not in kv300
    # the converter writes the shared width as intermediate_size // num_key_value_heads
    cfg = {**resolve("ernie-4.5-21b-a3b").config, "num_key_value_heads": 5, "num_attention_heads": 20}
    with pytest.raises(BadConfig, match="shared-expert width"):
        spec_from_config(cfg)


def test_hunyuan_norms_shared_mlp_and_context() -> None:
    s = spec("hunyuan-a13b")
    assert s.context_length == 262144  # "dynamic" NTK-alpha rope: the converter writes 256K
    assert s.tied_embeddings
    t = shapes("hunyuan-a13b")
    assert t["blk.0.attn_q_norm.weight"] == (128,) and t["blk.0.attn_k_norm.weight"] == (128,)
    assert t["blk.0.ffn_gate_shexp.weight"] == (4096, 3072)
    assert t["blk.0.ffn_down_exps.weight"] == (3072, 4096, 64)
    assert "output.weight" not in t and not any("exp_probs_b" in n for n in t)
    kv = family("hunyuan-moe").gguf_metadata(inventory(s, mtp=False))
    assert kv[".feed_forward_length"] == 3072 and kv[".expert_shared_feed_forward_length"] == 3072
    assert kv[".expert_shared_count"] == 1


def test_hunyuan_guards() -> None:
    cfg = dict(resolve("hunyuan-a13b").config)
    with pytest.raises(BadConfig, match="use_cla"):
        spec_from_config({**cfg, "use_cla": True})
    with pytest.raises(BadConfig, match="moe_topk"):
        spec_from_config({**cfg, "moe_topk": [8] * 31 + [4]})


def test_dots1_mha_router_bias_and_keys() -> None:
    s = spec("dots.llm1.inst")
    a = s.layers[0].attn
    assert (a.n_head, a.n_head_kv, a.head_dim_k) == (32, 32, 128)  # no GQA
    t = shapes("dots.llm1.inst")
    assert t["blk.0.ffn_up.weight"] == (4096, 10944)
    assert t["blk.1.exp_probs_b.bias"] == (128,)
    assert t["blk.1.ffn_gate_shexp.weight"] == (4096, 2816)
    assert t["blk.61.attn_q_norm.weight"] == (128,) and t["output.weight"] == (4096, 152064)
    kv = family("dots1").gguf_metadata(inventory(s, mtp=False))
    assert kv[".leading_dense_block_count"] == 1 and kv[".expert_shared_count"] == 2
    assert kv[".expert_gating_func"] == 2 and kv[".expert_weights_scale"] == 2.5
    assert ".expert_shared_feed_forward_length" not in kv  # the loader derives it


def test_phimoe_biases_layernorms_and_rope_factors() -> None:
    inv = inventory(spec("phi-3.5-moe"), mtp=False)
    t = {x.name: x for x in inv.tensors}
    for name in ("attn_norm.bias", "ffn_norm.bias", "attn_q.bias", "attn_v.bias", "attn_output.bias"):
        assert f"blk.31.{name}" in t
    assert t["rope_factors_long.weight"].shape == (64,) and t["rope_factors_short.weight"].shape == (64,)
    assert t["output.bias"].shape == (32064,) and t["output.bias"].role is Role.OUTPUT
    assert t["output_norm.bias"].shape == (4096,)
    assert not any("shexp" in n for n in t)
    assert sum(x.stored == F32 for x in inv.tensors) == 293  # as llama.cpp's loader log counts them
    kv = family("phimoe").gguf_metadata(inv)
    assert kv[".feed_forward_length"] == 6400 and ".expert_feed_forward_length" not in kv


def test_qwen3vl_is_the_qwen3moe_trunk_with_mrope_and_deepstack() -> None:
    vl, base = spec("qwen3-vl-30b-a3b"), spec("qwen3-30b-a3b")
    assert shapes("qwen3-vl-30b-a3b") == shapes("qwen3-30b-a3b")  # vision tower: mmproj
    assert vl.context_length == 262144 and base.context_length == 40960
    kv = family("qwen3vlmoe").gguf_metadata(inventory(vl, mtp=False))
    assert kv[".rope.dimension_sections"] == [24, 20, 20, 0]
    assert kv[".n_deepstack_layers"] == 3
    assert mrope_sections(vl, 32) == [12, 10, 10, 0]  # a 64-wide head of a materialised file
    cfg = {k: v for k, v in resolve("qwen3-vl-30b-a3b").config.items() if k != "rope_scaling"}
    with pytest.raises(BadConfig, match="mrope_section"):
        spec_from_config(cfg)


def test_qwen3vl_deepstack_widens_the_compute_buffer() -> None:
    """The 4 x n_embd-wide input rows of the first three layers (n_embd_inp = 4 x 2048) add
    4 B x ub x (5 x 8192 - 4 x 2048) to the peak of a device without the output layer."""
    vl, base = spec("qwen3-vl-30b-a3b"), spec("qwen3-30b-a3b")
    fam = family("qwen3vlmoe")
    assert fam.embedding_activations(vl, 2, 512) == 4 * 512 * (5 * 8192 - 4 * 2048)
    assert fam.embedding_activations(vl, 3, 512) == 0
    assert family("qwen3moe").embedding_activations(base, 0, 512) == 0
    cfg = CacheConfig(n_ctx=4096, n_ubatch=512)
    every = np.ones(48, dtype=np.bool_)
    grown = compute_bytes(vl, cfg, 1, False, every, every) - compute_bytes(base, cfg, 1, False, every, every)
    assert grown == 4 * 512 * (5 * 8192 - 4 * 2048)
    # with the logits on the device they are the peak, and the same for both
    with_logits = [compute_bytes(s, cfg, 512, True, every, every) for s in (vl, base)]
    assert with_logits[0] == with_logits[1]


def test_qwen3vl_file_reads_back_with_its_deepstack() -> None:
    """A Qwen3-VL GGUF's own header gives back the DeepStack count and M-RoPE sections, so planning
    from the file alone keeps the wider compute buffer."""
    m = materialize(spec("qwen3-vl-30b-a3b"))
    got = spec_from_gguf(read_local(m.path))
    fam = family("qwen3vlmoe")
    assert fam.embedding_activations(got, 0, 512) == fam.embedding_activations(m.spec, 0, 512) > 0
    assert mrope_sections(got, 32) == mrope_sections(m.spec, 32)


@pytest.mark.llamacpp
@pytest.mark.parametrize(("ctx", "ub", "fa"), [(4096, 2048, True), (4096, 2048, False), (32768, 512, True)])
def test_qwen3vl_dry_run_compute_agrees(ctx: int, ub: int, fa: bool) -> None:
    """The pinned llama-fit-params' Host compute buffer of the materialised Qwen3-VL (the DeepStack
    rows are 32 MiB of it at ub 2048) against moeplan's (5% or 16 MiB)."""
    c = compute_check(subject("qwen3vlmoe"), ctx, ub, fa)
    assert c["ok"], (c["id"], c["predicted"], c["measured"]["compute_mib"], c.get("failure"))


@pytest.mark.parametrize(
    ("model", "per_token"),
    [
        ("ernie-4.5-21b-a3b", 28 * 2 * 4 * 128 * 2),
        ("ernie-4.5-300b-a47b", 54 * 2 * 8 * 128 * 2),
        ("hunyuan-a13b", 32 * 2 * 8 * 128 * 2),
        ("dots.llm1.inst", 62 * 2 * 32 * 128 * 2),  # MHA: ~1 MiB per token
        ("phi-3.5-moe", 32 * 2 * 8 * 128 * 2),
        ("qwen3-vl-30b-a3b", 48 * 2 * 4 * 128 * 2),
        ("qwen3-vl-235b-a22b", 94 * 2 * 4 * 128 * 2),
    ],
)
def test_kv_bytes_per_token(model: str, per_token: int) -> None:
    """Every layer caches K and V of n_head_kv x head_dim (F16), no window, no recurrent state."""
    layers = layer_memory(spec(model), CacheConfig(n_ctx=4096))
    assert {lm.cells for lm in layers} == {4096}
    assert sum(lm.state_bytes for lm in layers) == 0
    assert sum(lm.k_bytes + lm.v_bytes for lm in layers) == 4096 * per_token
