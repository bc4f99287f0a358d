"""hy_v3 (Tencent Hy3 / Hy3-preview) and mellum (JetBrains Mellum2-12B-A2.5B): layer plans from config.json,
the tensors the pinned converter writes and its loader creates (and, for Hy3's MTP block, which of them it
loads without an MTP draft), the keys it reads, parameters against the published figures, KV bytes by
llama.cpp's rules, and the configs these families refuse."""

from collections import Counter
from typing import Any

import pytest

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory, pad
from moeplan.sources.catalog import load_catalog, resolve
from tests.catalog_specs import config, full_kv_per_token, shapes, spec

# (model, tensors, GGUF parameters as llama.cpp's print_info counts them, without MTP, published, tolerance)
PARAMS = [
    # print_info: 298.79 B with the kept MTP block; the trunk is the "295B", the block the "3.8B MTP layer"
    ("hy3", 1298, 298_786_155_776, 295_033_543_488, 295e9, 0.0002),
    ("mellum2-12b-a2.5b", 339, 12_149_923_072, 12_149_923_072, 12e9, 0.015),  # print_info: 12.15 B
]


@pytest.mark.parametrize(("model", "n_tensors", "total", "trunk", "published", "tol"), PARAMS)
def test_tensor_count_and_parameters(
    model: str, n_tensors: int, total: int, trunk: int, published: float, tol: float
) -> None:
    s = spec(model)
    inv = inventory(s)
    assert len(inv.tensors) == n_tensors
    assert sum(t.n_elements for t in inv.tensors) == total
    assert sum(t.n_elements for t in inventory(s, mtp=False).tensors) == trunk
    assert abs(trunk - published) / published <= tol
    assert load_catalog()[model].params_published.total == published


def test_hy3_mtp_block_is_the_3_8b_mtp_layer() -> None:
    s = spec("hy3")
    mtp = sum(t.n_elements for t in inventory(s).tensors) - sum(
        t.n_elements for t in inventory(s, mtp=False).tensors
    )
    assert mtp == 3_752_612_288 and round(mtp / 1e9, 1) == 3.8


def test_hy3_layers() -> None:
    s = spec("hy3")
    assert s.arch == "hy_v3" and not s.tied_embeddings and s.context_length == 262144
    assert {(la.attn.kind, la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers} == {
        (AttnKind.FULL, 64, 8, 128)
    }
    assert s.layers[0].ffn.kind is FFNKind.DENSE and s.layers[0].ffn.n_ff == 13312
    assert Counter(la.ffn.kind for la in s.layers[1:]) == {FFNKind.MOE: 79}
    f = s.moe_ffn
    assert f is not None and (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_shared, f.n_ff_shexp) == (
        192,
        8,
        1536,
        1,
        1536,
    )
    assert s.mtp_layers == (s.layers[-1],)


def test_hy3_tensors() -> None:
    """hy-v3.cpp `load_arch_tensors`: per-head q/k norms, the selection bias as `exp_probs_b` with no
    suffix (what `mlp.expert_bias` maps to), the shared expert of one expert's width, an untied output."""
    sh = shapes(spec("hy3"))
    assert sh["blk.0.attn_q.weight"] == (4096, 8192) and sh["blk.0.attn_k.weight"] == (4096, 1024)
    assert sh["blk.0.attn_output.weight"] == (8192, 4096) and sh["blk.0.attn_q_norm.weight"] == (128,)
    assert sh["blk.0.ffn_gate.weight"] == (4096, 13312) and "blk.0.ffn_gate_inp.weight" not in sh
    assert sh["blk.1.exp_probs_b"] == (192,) and "blk.1.exp_probs_b.bias" not in sh
    assert sh["blk.1.ffn_gate_exps.weight"] == (4096, 1536, 192) and sh["blk.1.ffn_gate_inp.weight"] == (
        4096,
        192,
    )
    assert sh["blk.1.ffn_down_shexp.weight"] == (1536, 4096) and "blk.1.ffn_gate_inp_shexp.weight" not in sh
    assert sh["output.weight"] == (4096, 120832) and sh["token_embd.weight"] == (4096, 120832)


def test_hy3_mtp_block_and_what_llama_cpp_loads_without_a_draft() -> None:
    """The MTP block (blk.80): a full MoE block plus eh_proj/enorm/hnorm and `shared_head_norm` (its
    final_layernorm), no embedding or head copy. `load_block(i, mtp_flags)` skips the attention, its
    norms, ffn_norm and the NextN projections without a draft; the FFN, router and head norm it loads."""
    kept = [t for t in inventory(spec("hy3")).tensors if t.layer == 80]
    names = {t.name.split(".", 2)[2] for t in kept}
    assert {"nextn.eh_proj.weight", "nextn.enorm.weight", "nextn.hnorm.weight"} <= names
    assert "nextn.shared_head_norm.weight" in names
    assert not {n for n in names if "embed_tokens" in n or "shared_head_head" in n}
    loaded = {t.name.split(".", 2)[2] for t in kept if t.loaded_without_mtp}
    assert loaded == {
        "ffn_gate_inp.weight",
        "exp_probs_b",
        *(f"ffn_{p}_exps.weight" for p in ("gate", "up", "down")),
        *(f"ffn_{p}_shexp.weight" for p in ("gate", "up", "down")),
        "nextn.shared_head_norm.weight",
    }


def test_hy3_metadata() -> None:
    """HYV3Model.set_gguf_parameters: expert and shared widths, route_norm and the router scaling factor,
    the sigmoid gate, one NextN layer; no shared count and no leading-dense count."""
    kv = family("hy_v3").gguf_metadata(inventory(spec("hy3")))
    assert (kv[".block_count"], kv[".nextn_predict_layers"], kv[".feed_forward_length"]) == (81, 1, 13312)
    assert (kv[".expert_feed_forward_length"], kv[".expert_shared_feed_forward_length"]) == (1536, 1536)
    assert (kv[".expert_gating_func"], kv[".expert_weights_norm"], kv[".expert_weights_scale"]) == (
        2,
        True,
        2.826,
    )
    assert ".expert_shared_count" not in kv and ".leading_dense_block_count" not in kv
    no_norm = family("hy_v3").gguf_metadata(inventory(spec_from_config(config("hy3", route_norm=False))))
    assert no_norm[".expert_weights_norm"] is False


def test_hy3_without_the_expert_bias_has_no_selection_bias() -> None:
    sh = shapes(spec_from_config(config("hy3", moe_router_enable_expert_bias=False)))
    assert "blk.1.exp_probs_b" not in sh and "blk.1.ffn_gate_inp.weight" in sh


def test_hy3_kv() -> None:
    """80 full-attention layers of 8 KV heads x 128, F16: 320 KiB per token."""
    assert full_kv_per_token(spec("hy3")) == 80 * 2 * 8 * 128 * 2


def test_hy3_mlp_layer_types_mark_the_dense_blocks() -> None:
    """transformers' HYV3Config spells the dense/MoE plan as `mlp_layer_types`."""
    s = spec_from_config(config("hy3", mlp_layer_types=["dense", "dense"] + ["sparse"] * 78))
    assert [la.ffn.kind for la in s.layers[:3]] == [FFNKind.DENSE, FFNKind.DENSE, FFNKind.MOE]


def test_hy3_preview_is_the_same_model() -> None:
    for name in ("tencent/Hy3-preview", "Hy3-preview", "hy3 preview", "tencent/Hy3"):
        assert resolve(name).id == "hy3"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"qk_norm": False}, UnsupportedArchitecture),
        ({"attention_bias": True}, UnsupportedArchitecture),
        ({"moe_router_use_sigmoid": False}, UnsupportedArchitecture),
        ({"mlp_layer_types": ["dense"] + ["sparse"] * 78}, BadConfig),
        ({"mlp_layer_types": ["dense"] + ["moe"] * 79}, BadConfig),
        ({"router_scaling_factor": "2.826"}, BadConfig),
        ({"moe_intermediate_size": None}, BadConfig),
    ],
)
def test_hy3_configs_llama_cpp_would_run_otherwise_are_refused(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        spec_from_config(config("hy3", **changes))


def test_mellum_layers() -> None:
    s = spec("mellum2-12b-a2.5b")
    assert s.arch == "mellum" and not s.tied_embeddings and not s.mtp_layers and s.context_length == 131072
    assert [il for il, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL] == list(range(3, 28, 4))
    assert {(la.attn.kind, la.attn.window) for la in s.layers} == {(AttnKind.FULL, 0), (AttnKind.SWA, 1024)}
    assert {(la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers} == {(32, 4, 128)}
    assert {la.ffn.kind for la in s.layers} == {FFNKind.MOE}
    f = s.moe_ffn
    assert f is not None and (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_shared) == (64, 8, 896, 0)


def test_mellum_tensors() -> None:
    """mellum.cpp `load_arch_tensors`: Q/K/V/O, per-head q/k norms, router and expert stacks on every
    block (no dense FFN, no shared expert, no selection bias), and an output matrix."""
    sh = shapes(spec("mellum2-12b-a2.5b"))
    blk = {n.split(".", 2)[2] for n in sh if n.startswith("blk.3.")}
    assert blk == {
        "attn_norm.weight",
        *(f"attn_{p}.weight" for p in ("q", "k", "v", "output", "q_norm", "k_norm")),
        "ffn_norm.weight",
        "ffn_gate_inp.weight",
        *(f"ffn_{p}_exps.weight" for p in ("gate", "up", "down")),
    }
    assert sh["blk.0.attn_q.weight"] == (2304, 4096) and sh["blk.0.attn_k.weight"] == (2304, 512)
    assert sh["blk.0.ffn_down_exps.weight"] == (896, 2304, 64) and sh["output.weight"] == (2304, 98304)


def test_mellum_metadata() -> None:
    """MellumModel.set_gguf_parameters: the window and the per-layer pattern array from layer_types."""
    kv = family("mellum").gguf_metadata(inventory(spec("mellum2-12b-a2.5b")))
    assert kv[".attention.sliding_window"] == 1024 and kv[".expert_feed_forward_length"] == 896
    assert kv[".attention.sliding_window_pattern"] == [il % 4 != 3 for il in range(28)]


def test_mellum_kv() -> None:
    """7 full layers grow with the context (4 KV heads of 128, F16); 21 SWA layers hold
    PAD256(1024 + ubatch) cells."""
    s = spec("mellum2-12b-a2.5b")
    assert full_kv_per_token(s) == 7 * 2 * 4 * 128 * 2
    swa = [lm for lm in layer_memory(s, CacheConfig(n_ctx=32768)) if lm.kind is AttnKind.SWA]
    assert len(swa) == 21 and {lm.cells for lm in swa} == {pad(1024 + 512)}


def test_mellum_without_the_window_is_all_full_attention() -> None:
    """use_sliding_window false: the converter writes no window and no pattern; every layer is full."""
    s = spec_from_config(config("mellum2-12b-a2.5b", use_sliding_window=False))
    assert {la.attn.kind for la in s.layers} == {AttnKind.FULL}
    kv = family("mellum").gguf_metadata(inventory(s))
    assert ".attention.sliding_window" not in kv and ".attention.sliding_window_pattern" not in kv


def test_mellum_variants_are_one_entry() -> None:
    for name in ("JetBrains/Mellum2-12B-A2.5B-Thinking", "Mellum2-12B-A2.5B-Instruct", "mellum2"):
        assert resolve(name).id == "mellum2-12b-a2.5b"


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"mlp_layer_types": ["dense"] + ["sparse"] * 27}, UnsupportedArchitecture),
        ({"tie_word_embeddings": True}, UnsupportedArchitecture),
        ({"attention_bias": True}, UnsupportedArchitecture),
        ({"layer_types": ["sliding_attention"] * 27}, BadConfig),
        ({"layer_types": ["chunked_attention"] * 28}, BadConfig),
        ({"sliding_window": -1}, BadConfig),
    ],
)
def test_mellum_configs_llama_cpp_would_run_otherwise_are_refused(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        spec_from_config(config("mellum2-12b-a2.5b", **changes))
