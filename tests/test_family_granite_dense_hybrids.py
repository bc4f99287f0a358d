"""Granite-4.0's dense models: H-Micro and H-1B (`granitehybrid` without experts, a dense SwiGLU FFN
on every layer: KV only on the four attention layers, Mamba-2 state on the other 36) and Micro
(all attention, which the converter turns into llama.cpp `granite`), against the official cards'
architecture tables and llama.cpp's count of the official H-1B GGUF."""

from typing import Any

import pytest
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig
from moeplan.sources.catalog import load_catalog
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, full_kv_per_token, shapes, spec, state_bytes_per_sequence

MICRO, H1B, DENSE = "granite-4.0-h-micro", "granite-4.0-h-1b", "granite-4.0-micro"
ATTENTION_AT = [5, 15, 25, 35]

# (model, tensors, parameters of the GGUF, reference count, its tolerance, published total)
PARAMS = [
    # the card's "3B" (the table rounds: 3.19 B)
    (MICRO, 506, 3_191_396_096, 3.0e9, 0.07, 3e9),
    # llama.cpp print_info of the official GGUF: "model params = 1.46 B" (ggml-org/llama.cpp#20795)
    (H1B, 506, 1_461_538_368, 1.46e9, 0.005, 1.5e9),
    # the card's "3B" (3.40 B: the table rounds down)
    (DENSE, 362, 3_402_836_480, 3.0e9, 0.14, 3e9),
]


@pytest.mark.parametrize(("model", "n_tensors", "total", "reference", "tol", "published"), PARAMS)
def test_tensor_count_and_parameters(
    model: str, n_tensors: int, total: int, reference: float, tol: float, published: float
) -> None:
    inv = inventory(spec(model))
    assert len(inv.tensors) == n_tensors
    assert sum(t.n_elements for t in inv.tensors) == total
    assert abs(total - reference) / reference <= tol
    assert load_catalog()[model].params_published.total == published


@pytest.mark.parametrize(("model", "heads", "n_ff", "mamba_heads"), [
    (MICRO, (32, 8, 64), 8192, 64),
    (H1B, (12, 4, 128), 4096, 48),
])  # fmt: skip
def test_layout(model: str, heads: tuple[int, int, int], n_ff: int, mamba_heads: int) -> None:
    """Card tables: 4 attention / 36 Mamba2 layers, NoPE, the dense MLP on every layer, tied head;
    Mamba-2 of d_inner = 2 x hidden in 64-wide heads, state 128, one group, conv 4."""
    s = spec(model)
    assert s.arch == "granitehybrid" and s.tied_embeddings and not s.is_moe
    assert [il for il, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL] == ATTENTION_AT
    assert {(la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers if la.attn.n_head} == {
        heads
    }
    ssm = {
        (a.linear_v_heads, a.linear_v_head_dim, a.linear_k_head_dim, a.linear_k_heads, a.conv_kernel)
        for a in (la.attn for la in s.layers)
        if a.kind is AttnKind.LINEAR
    }
    assert ssm == {(mamba_heads, 64, 128, 1, 4)} and mamba_heads * 64 == 2 * s.n_embd
    assert {(la.ffn.kind, la.ffn.n_ff) for la in s.layers} == {(FFNKind.DENSE, n_ff)}
    sh = shapes(s)
    assert sh["blk.0.ffn_gate.weight"] == (s.n_embd, n_ff) and "output.weight" not in sh
    assert not any("exps" in n or "shexp" in n or "gate_inp" in n for n in sh)


@pytest.mark.parametrize("model", [MICRO, H1B])
def test_kv_and_state(model: str) -> None:
    """F16 KV on the 4 attention layers only (8 KV heads of 64 / 4 of 128: 8 KiB a token either
    way); F32 state per sequence on the 36 Mamba-2 layers: (d_conv-1)(d_inner + 2 x 128) conv values
    plus 128 x d_inner SSM values."""
    s = spec(model)
    assert full_kv_per_token(s) == 4 * 2 * 8 * 64 * 2 == 4 * 2 * 4 * 128 * 2
    d_inner = 2 * s.n_embd
    assert state_bytes_per_sequence(s) == 36 * 4 * (3 * (d_inner + 2 * 128) + 128 * d_inner)


def test_dense_width_is_the_shared_mlp_else_intermediate_size() -> None:
    """GraniteMoeModel.modify_tensors sizes the shared MLP by shared_intermediate_size, falling back to
    intermediate_size (the H-Micro/H-1B configs leave it out)."""
    assert {la.ffn.n_ff for la in spec_from_config(config(MICRO, shared_intermediate_size=1024)).layers} == {
        1024
    }
    assert {la.ffn.n_ff for la in spec(MICRO).layers} == {8192}


def test_all_attention_granite_4_is_the_granite_architecture() -> None:
    """GraniteHybridModel: no Mamba layer and no experts -> `granite`: RoPE on all 40 layers, heads of
    hidden / heads = 64, the llama tensors, token_embd as the output."""
    s = spec(DENSE)
    assert s.arch == "granite" and s.tied_embeddings and s.n_layer == 40
    assert {
        (la.attn.kind, la.attn.rope, la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers
    } == {(AttnKind.FULL, True, 40, 8, 64)}
    assert {(la.ffn.kind, la.ffn.n_ff) for la in s.layers} == {(FFNKind.DENSE, 8192)}
    sh = shapes(s)
    assert {n.removeprefix("blk.7.") for n in sh if n.startswith("blk.7.")} == {
        "attn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "ffn_norm.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    }
    assert {n for n in sh if not n.startswith("blk.")} == {"token_embd.weight", "output_norm.weight"}
    assert full_kv_per_token(s) == 40 * 2 * 8 * 64 * 2


def test_granite_metadata_has_the_multipliers_and_the_required_logit_scale() -> None:
    kv = family("granite").gguf_metadata(inventory(spec(DENSE)))
    assert (kv[".logit_scale"], kv[".attention.scale"], kv[".embedding_scale"]) == (10.0, 0.015625, 12.0)
    assert ".residual_scale" not in kv  # not in the config: not written


def test_a_granite_for_causal_lm_config_reads_the_same() -> None:
    """GraniteForCausalLM (model_type granite) converts through GraniteModel to the same file."""
    cfg = {k: v for k, v in config(DENSE).items() if k != "layer_types"}
    dense = spec_from_config({**cfg, "model_type": "granite", "architectures": ["GraniteForCausalLM"]})
    assert dense.layers == spec(DENSE).layers and dense.arch == "granite"


@pytest.mark.parametrize("changes", [{"logits_scaling": None}, {"shared_intermediate_size": 4096}])
def test_granite_configs_llama_cpp_would_not_load_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(BadConfig):
        spec_from_config(config(DENSE, **changes))


def test_granite_file_reads_back_as_materialised() -> None:
    m = materialize(spec(DENSE))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.tied_embeddings
    assert shapes(got) == shapes(m.spec)
