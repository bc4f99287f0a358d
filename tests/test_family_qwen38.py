"""Qwen3.8-27B (dense, qwen35) and Qwen3.8-2.4T-A95B (text-only MoE, qwen35moe): the layer pattern
of their configs, parameter counts against the published checkpoint totals (sources in each YAML),
and KV / recurrent state by llama.cpp's rules (llama_hparams::n_embd_r/n_embd_s, llama_kv_cache)."""

from collections import Counter

import pytest

from moeplan.arch.inventory import inventory
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from tests.catalog_specs import kv_bytes_per_token, qwen35_vision_params, spec, state_bytes_per_sequence

DENSE = "qwen3.8-27b"
MOE = "qwen3.8-2.4t-a95b"


def n_params(model: str, *, mtp: bool) -> int:
    return sum(t.n_elements for t in inventory(spec(model), mtp=mtp).tensors)


@pytest.mark.parametrize(
    ("model", "arch", "n_layer", "ffn"),
    [(DENSE, "qwen35", 64, FFNKind.DENSE), (MOE, "qwen35moe", 92, FFNKind.MOE)],
)
def test_layer_pattern_is_three_deltanet_then_one_full(
    model: str, arch: str, n_layer: int, ffn: FFNKind
) -> None:
    """Linear attention on 48 of 64 / 69 of 92 layers (the recipes' figures): full when (i+1) % 4 == 0."""
    s = spec(model)
    assert (s.arch, s.n_layer) == (arch, n_layer)
    full = [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL]
    assert full == list(range(3, n_layer, 4))
    assert Counter(la.attn.kind for la in s.layers)[AttnKind.LINEAR] == n_layer * 3 // 4
    assert {la.ffn.kind for la in s.layers} == {ffn}
    assert len(s.mtp_layers) == 1 and not s.tied_embeddings


def test_dense_checkpoint_is_text_plus_mtp_plus_the_qwen35_27b_tower() -> None:
    """The official index's total_size 55,562,855,904 BF16 bytes = 27,781,427,952 parameters: our
    inventory with the MTP block plus the 27-block, 1152-wide vision tower (out 5120)."""
    assert n_params(DENSE, mtp=True) + qwen35_vision_params(27, 1152, 4304, 5120) == 55_562_855_904 // 2
    assert n_params(DENSE, mtp=False) == 26_895_998_464  # the Qwen3.5/3.6-27B text trunk
    assert abs(n_params(DENSE, mtp=False) / 27e9 - 1) < 0.005  # published 27B


def test_moe_checkpoint_equals_the_hub_safetensors_total() -> None:
    """HF API safetensors.total 2,446,182,725,504 (text-only: no vision tensors) = inventory with the
    MTP block, which is a full MoE layer of its own 512 experts."""
    assert n_params(MOE, mtp=True) == 2_446_182_725_504
    s = spec(MOE)
    moe = s.moe_ffn
    assert moe is not None
    assert (moe.n_expert, moe.n_expert_used, moe.n_ff_exp, moe.n_ff_shexp) == (512, 10, 2048, 2048)
    assert abs(n_params(MOE, mtp=False) / 2.4e12 - 1) < 0.01  # published 2.4T
    active = predict(inventory(s, mtp=False), FileType.BF16).params_active
    assert abs(active / 95e9 - 1) < 0.005  # published A95B


@pytest.mark.parametrize(
    ("model", "n_full", "n_linear", "v_heads"),
    [(DENSE, 16, 48, 48), (MOE, 23, 69, 128)],
)
def test_kv_and_recurrent_state(model: str, n_full: int, n_linear: int, v_heads: int) -> None:
    """KV: 4 KV heads of 256 on the full layers only. State (F32): conv (kernel 4 - 1) x (q + k + v
    channels) and the v_heads x 128 x 128 DeltaNet matrix on each linear layer."""
    s = spec(model)
    assert kv_bytes_per_token(s) == n_full * 2 * 4 * 256 * 2
    channels = 2 * 16 * 128 + v_heads * 128
    assert state_bytes_per_sequence(s) == n_linear * 4 * (3 * channels + v_heads * 128 * 128)
