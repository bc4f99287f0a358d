"""Granite-4.0-H-Micro and -H-1B: `granitehybrid` without experts (a dense SwiGLU FFN on every
layer), against the official cards' architecture tables and llama.cpp's count of the official
H-1B GGUF; KV only on the four attention layers, Mamba-2 state on the other 36."""

import pytest

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.sources.catalog import load_catalog
from tests.catalog_specs import config, full_kv_per_token, shapes, spec, state_bytes_per_sequence

MICRO, H1B = "granite-4.0-h-micro", "granite-4.0-h-1b"
ATTENTION_AT = [5, 15, 25, 35]

# (model, tensors, parameters of the GGUF, reference count, its tolerance, published total)
PARAMS = [
    # the card's "3B" (the table rounds: 3.19 B)
    (MICRO, 506, 3_191_396_096, 3.0e9, 0.07, 3e9),
    # llama.cpp print_info of the official GGUF: "model params = 1.46 B" (ggml-org/llama.cpp#20795)
    (H1B, 506, 1_461_538_368, 1.46e9, 0.005, 1.5e9),
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
