"""laguna (Laguna-XS.2, XS-2.1, S-2.1, M.1) and cohere2moe (North-Mini-Code-1.0): layer plans from
config.json, the tensors the pinned converter writes and the keys its loader reads, parameter counts
against published figures, KV bytes by llama.cpp's rules, and the configs these families refuse."""

from collections import Counter
from typing import Any

import pytest
from validation.materialize import shrink

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory, pad
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from tests.catalog_specs import assert_tensors_and_parameters, config, full_kv_per_token, shapes, spec

# (model, tensors, parameters of the GGUF, published total, tolerance of the published figure)
PARAMS = [
    # "33B total" (a Laguna-XS.2 report); a 16-bit load of the checkpoint asks for 62.29 GiB = 33.44B
    ("laguna-xs.2", 678, 33_442_617_088, 33e9, 0.015),
    # ggml-org/Laguna-S-2.1-GGUF holds 117,561,977,600 parameters: this count, exactly ("118B" rounded)
    ("laguna-s-2.1", 814, 117_561_977_600, 118e9, 0.005),
    # XS-2.1: the XS.2 shape (recipe: "33B total"); M.1: the technical report's 225.8B total
    ("laguna-xs-2.1", 678, 33_442_617_088, 33e9, 0.015),
    ("laguna-m.1", 1178, 225_795_725_568, 225.8e9, 0.0001),
    ("north-mini-code-1.0", 442, 30_484_303_872, 30.5e9, 0.001),  # "30.5B" (HF)
]


@pytest.mark.parametrize(("model", "n_tensors", "total", "published", "tol"), PARAMS)
def test_tensor_count_and_parameters(
    model: str, n_tensors: int, total: int, published: float, tol: float
) -> None:
    assert_tensors_and_parameters(model, n_tensors, total, published, tol)


@pytest.mark.parametrize(("model", "swa_heads", "n_ff", "experts"), [
    ("laguna-xs.2", 64, 8192, (256, 8, 512, 1, 512)),
    ("laguna-xs-2.1", 64, 8192, (256, 8, 512, 1, 512)),
    ("laguna-s-2.1", 72, 12288, (256, 10, 1024, 1, 1024)),
])  # fmt: skip
def test_laguna_layers(model: str, swa_heads: int, n_ff: int, experts: tuple[int, ...]) -> None:
    s = spec(model)
    assert s.arch == "laguna" and not s.tied_embeddings and not s.mtp_layers
    assert [la.attn.kind for la in s.layers] == [AttnKind.FULL, AttnKind.SWA, AttnKind.SWA, AttnKind.SWA] * (
        s.n_layer // 4
    )
    assert {
        (la.attn.kind, la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k, la.attn.window)
        for la in s.layers
    } == {
        (AttnKind.FULL, 48, 8, 128, 0),
        (AttnKind.SWA, swa_heads, 8, 128, 512),
    }
    assert s.layers[0].ffn.kind is FFNKind.DENSE and s.layers[0].ffn.n_ff == n_ff
    assert Counter(la.ffn.kind for la in s.layers[1:]) == {FFNKind.MOE: s.n_layer - 1}
    f = s.moe_ffn
    assert f is not None and (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_shared, f.n_ff_shexp) == experts


def test_laguna_tensors() -> None:
    """laguna.cpp `load_arch_tensors`: Q/O of each layer's own head count, the per-head gate
    {n_embd, n_head}, q/k norms per head, the selection bias and shared expert on MoE layers only."""
    sh = shapes(spec("laguna-xs.2"))
    assert sh["blk.0.attn_q.weight"] == (2048, 48 * 128) and sh["blk.1.attn_q.weight"] == (2048, 64 * 128)
    assert sh["blk.1.attn_output.weight"] == (64 * 128, 2048) and sh["blk.1.attn_k.weight"] == (2048, 8 * 128)
    assert sh["blk.0.attn_gate.weight"] == (2048, 48) and sh["blk.1.attn_gate.weight"] == (2048, 64)
    assert sh["blk.39.attn_q_norm.weight"] == (128,) and sh["blk.39.attn_k_norm.weight"] == (128,)
    assert sh["blk.0.ffn_gate.weight"] == (2048, 8192) and "blk.0.exp_probs_b.bias" not in sh
    assert sh["blk.1.exp_probs_b.bias"] == (256,) and sh["blk.1.ffn_gate_exps.weight"] == (2048, 512, 256)
    assert sh["blk.1.ffn_down_shexp.weight"] == (512, 2048)
    assert "blk.0.post_attention_norm.weight" not in sh and "blk.0.ffn_norm.weight" in sh
    assert sh["output.weight"] == (2048, 100352)


def test_laguna_per_element_gate_spans_the_heads() -> None:
    """Laguna-M.1-style gates: one value per element, {n_embd, n_head x head_dim}."""
    cfg = config("laguna-s-2.1", gating="per-element", gating_types=None)
    sh = shapes(spec_from_config(cfg))
    assert sh["blk.0.attn_gate.weight"] == (3072, 48 * 128) and sh["blk.1.attn_gate.weight"] == (
        3072,
        72 * 128,
    )


def test_laguna_without_a_window_is_all_full_attention() -> None:
    """laguna.cpp: no sliding window, no pattern: every layer full (the M.1 layout)."""
    n = 40
    cfg = config("laguna-xs.2", sliding_window=None, layer_types=["full_attention"] * n)
    s = spec_from_config(cfg)
    assert {la.attn.kind for la in s.layers} == {AttnKind.FULL}
    kv = family("laguna").gguf_metadata(inventory(s))
    assert ".attention.sliding_window" not in kv and ".rope.dimension_count_swa" not in kv


def test_laguna_m1_is_all_full_attention_with_per_element_gates() -> None:
    """Laguna-M.1 (recipe, model card): 70 layers of global attention with 64 Q / 8 KV heads of 128,
    the whole head rotated, a per-element gate; 3 dense layers, then 256 experts top-16 + 1 shared."""
    s = spec("laguna-m.1")
    heads = {(la.attn.kind, la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers}
    assert s.n_layer == 70 and heads == {(AttnKind.FULL, 64, 8, 128)}
    assert [la.ffn.kind for la in s.layers[:4]] == [FFNKind.DENSE] * 3 + [FFNKind.MOE]
    assert s.layers[0].ffn.n_ff == 16384
    f = s.moe_ffn
    assert f is not None
    assert (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_shared, f.n_ff_shexp) == (256, 16, 1024, 1, 1024)
    sh = shapes(s)
    assert sh["blk.0.attn_gate.weight"] == (4096, 64 * 128)
    assert sh["blk.3.ffn_gate_exps.weight"] == (4096, 1024, 256)
    kv = family("laguna").gguf_metadata(inventory(s))
    assert (kv[".rope.dimension_count"], kv[".leading_dense_block_count"]) == (128, 3)
    assert ".attention.sliding_window" not in kv and ".rope.dimension_count_swa" not in kv
    assert full_kv_per_token(s) == 70 * 2 * 8 * 128 * 2
    active = predict(inventory(s), FileType.BF16).params_active
    assert abs(active / 23.4e9 - 1) < 0.005  # the technical report's 23.4B activated


def test_laguna_rotated_share_comes_from_the_config() -> None:
    """rope.dimension_count = head_dim x the full layers' partial_rotary_factor (0.5 on XS/S)."""
    for model, dims in (("laguna-xs.2", 64), ("laguna-xs-2.1", 64), ("laguna-m.1", 128)):
        assert family("laguna").gguf_metadata(inventory(spec(model)))[".rope.dimension_count"] == dims


def test_laguna_metadata() -> None:
    """LagunaModel.set_gguf_parameters: per-layer head counts, half the head rotated on full layers and
    all of it on sliding ones, the shared width but no shared count, and no sliding pattern."""
    kv = family("laguna").gguf_metadata(inventory(spec("laguna-xs.2")))
    assert kv[".attention.head_count"] == [48, 64, 64, 64] * 10 and kv[".attention.head_count_kv"] == 8
    assert (kv[".rope.dimension_count"], kv[".rope.dimension_count_swa"]) == (64, 128)
    assert (
        kv[".attention.sliding_window"],
        kv[".leading_dense_block_count"],
        kv[".feed_forward_length"],
    ) == (
        512,
        1,
        8192,
    )
    assert (kv[".expert_feed_forward_length"], kv[".expert_shared_feed_forward_length"]) == (512, 512)
    assert (kv[".expert_gating_func"], kv[".expert_weights_norm"], kv[".expert_weights_scale"]) == (
        2,
        True,
        2.5,
    )
    assert ".expert_shared_count" not in kv and ".attention.sliding_window_pattern" not in kv


def test_laguna_kv() -> None:
    """10 full layers grow with the context (8 KV heads of 128, F16); 30 SWA layers hold
    PAD256(512 + ubatch) cells."""
    s = spec("laguna-xs.2")
    assert full_kv_per_token(s) == 10 * 2 * 8 * 128 * 2
    swa = [lm for lm in layer_memory(s, CacheConfig(n_ctx=32768)) if lm.kind is AttnKind.SWA]
    assert len(swa) == 30 and {lm.cells for lm in swa} == {pad(512 + 512)}
    assert full_kv_per_token(spec("laguna-s-2.1")) == 12 * 2 * 8 * 128 * 2


@pytest.mark.parametrize(
    "changes",
    [
        {
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"]
            * 10
        },
        {"mlp_layer_types": ["dense", "sparse", "dense"] + ["sparse"] * 37},
        {"mlp_layer_types": None},
        {"num_attention_heads_per_layer": [48] * 39},
        {"num_attention_heads_per_layer": ["48"] * 40},
        {"moe_routed_scaling_factor": "2.5"},
        {"gating": "per-channel"},
        {"gating": None},
        {"rope_parameters": {"full_attention": {"partial_rotary_factor": 0.0}}},
        {"rope_parameters": {"sliding_attention": {"partial_rotary_factor": 0.5}}},
    ],
)
def test_laguna_configs_llama_cpp_would_run_otherwise_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(BadConfig):
        spec_from_config(config("laguna-xs.2", **changes))


def test_shrunk_laguna_keeps_one_head_size() -> None:
    """llama.cpp reads one key_length for all layers: the materialised file's full layers (6 heads)
    and sliding layers (8 heads) keep one head size although each alone would shrink differently."""
    small = shrink(spec("laguna-xs.2"))
    assert {(la.attn.n_head, la.attn.head_dim_k) for la in small.layers} == {(6, 128), (8, 128)}


def test_north_layers() -> None:
    s = spec("north-mini-code-1.0")
    assert s.arch == "cohere2moe" and s.tied_embeddings and not s.mtp_layers
    assert [il for il, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL] == list(range(0, 49, 4))
    assert Counter(la.attn.kind for la in s.layers) == {AttnKind.FULL: 13, AttnKind.SWA: 36}
    assert {(la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers} == {(32, 4, 128)}
    assert {la.attn.window for la in s.layers if la.attn.kind is AttnKind.SWA} == {4096}
    assert s.layers[0].ffn.kind is FFNKind.DENSE and s.layers[0].ffn.n_ff == 3072
    f = s.moe_ffn
    assert f is not None and (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_shared, f.n_ff_shexp) == (
        128,
        8,
        768,
        0,
        0,
    )


def test_north_tensors() -> None:
    """cohere2moe.cpp `load_arch_tensors`: one input norm per block (parallel block: no FFN norm), no
    q/k norms or biases, no shared expert or selection bias, and no output matrix (tied)."""
    sh = shapes(spec("north-mini-code-1.0"))
    assert sh["blk.0.attn_norm.weight"] == (2048,) and sh["blk.0.attn_q.weight"] == (2048, 4096)
    assert sh["blk.0.attn_k.weight"] == (2048, 512) and sh["blk.0.attn_output.weight"] == (4096, 2048)
    assert sh["blk.0.ffn_up.weight"] == (2048, 3072) and sh["blk.1.ffn_up_exps.weight"] == (2048, 768, 128)
    assert sh["blk.1.ffn_gate_inp.weight"] == (2048, 128)
    blk1 = {n.split(".", 2)[2] for n in sh if n.startswith("blk.1.")}
    assert blk1 == {
        "attn_norm.weight",
        *(f"attn_{p}.weight" for p in ("q", "k", "v", "output")),
        "ffn_gate_inp.weight",
        *(f"ffn_{p}_exps.weight" for p in ("gate", "up", "down")),
    }
    assert "output.weight" not in sh and sh["token_embd.weight"] == (2048, 262144)


def test_north_metadata() -> None:
    """Cohere2MoeModel.set_gguf_parameters: the sliding pattern as a per-layer array, one leading dense
    layer, un-normalised sigmoid routing, the full head rotated."""
    kv = family("cohere2moe").gguf_metadata(inventory(spec("north-mini-code-1.0")))
    assert kv[".attention.sliding_window_pattern"] == [il % 4 != 0 for il in range(49)]
    assert (
        kv[".attention.sliding_window"],
        kv[".leading_dense_block_count"],
        kv[".feed_forward_length"],
    ) == (
        4096,
        1,
        3072,
    )
    assert (kv[".expert_feed_forward_length"], kv[".expert_gating_func"], kv[".expert_weights_norm"]) == (
        768,
        2,
        False,
    )
    assert kv[".rope.dimension_count"] == 128 and kv[".vocab_size"] == 262144
    assert ".expert_shared_count" not in kv


def test_north_kv() -> None:
    """13 full layers grow with the context (4 KV heads of 128, F16); 36 SWA layers hold
    PAD256(4096 + ubatch) cells."""
    s = spec("north-mini-code-1.0")
    assert full_kv_per_token(s) == 13 * 2 * 4 * 128 * 2
    swa = [lm for lm in layer_memory(s, CacheConfig(n_ctx=32768)) if lm.kind is AttnKind.SWA]
    assert len(swa) == 36 and {lm.cells for lm in swa} == {pad(4096 + 512)}


def test_cohere2moe_shared_experts_are_averaged_in() -> None:
    """num_shared_experts > 0: one shared FFN of n_shared x the expert width, and its count written."""
    s = spec_from_config(config("north-mini-code-1.0", num_shared_experts=2))
    assert shapes(s)["blk.1.ffn_up_shexp.weight"] == (2048, 2 * 768)
    kv = family("cohere2moe").gguf_metadata(inventory(s))
    assert (kv[".expert_shared_count"], kv[".expert_shared_feed_forward_length"]) == (2, 1536)


def test_cohere2moe_router_defaults_to_softmax() -> None:
    """Without `expert_selection_fn` the converter sees Cohere2MoeConfig's softmax default."""
    cfg = {k: v for k, v in config("north-mini-code-1.0").items() if k != "expert_selection_fn"}
    kv = family("cohere2moe").gguf_metadata(inventory(spec_from_config(cfg)))
    assert kv[".expert_gating_func"] == 1 and kv[".logit_scale"] == 1.0
    kv = family("cohere2moe").gguf_metadata(inventory(spec_from_config({**cfg, "logit_scale": 0.25})))
    assert kv[".logit_scale"] == 0.25


def test_cohere2moe_untied_config_writes_the_output_matrix() -> None:
    s = spec_from_config(config("north-mini-code-1.0", tie_word_embeddings=False))
    assert shapes(s)["output.weight"] == (2048, 262144)


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"num_nextn_predict_layers": 1}, UnsupportedArchitecture),
        ({"use_qk_norm": True}, UnsupportedArchitecture),
        ({"expert_selection_fn": "sparsemax"}, BadConfig),
        ({"layer_types": None}, BadConfig),
        ({"sliding_window": None}, BadConfig),
        ({"mlp_layer_types": ["dense", "sparse", "dense"] + ["sparse"] * 46}, BadConfig),
        ({"mlp_layer_types": "dense"}, BadConfig),
        ({"logit_scale": "1"}, BadConfig),
    ],
)
def test_cohere2moe_configs_not_modelled_are_refused(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        spec_from_config(config("north-mini-code-1.0", **changes))
