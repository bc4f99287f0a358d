"""Mistral Large 3 (`deepseek2` via conversion/mistral.py MistralMoeModel): DeepSeek-V3's MLA and
expert layout with a softmax router that holds no selection bias, so the GGUF has no `exp_probs_b`
and says gating softmax; a sigmoid DeepSeek config keeps both."""

from collections import Counter

from moeplan.arch.families.deepseek2 import GATING_SOFTMAX
from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import resolve
from tests.catalog_specs import config, spec

LARGE3 = "mistral-large-3-675b-2512"


def test_large3_layers() -> None:
    s = spec(LARGE3)
    assert s.arch == "deepseek2" and s.n_layer == 61 and not s.tied_embeddings and not s.mtp_layers
    assert {la.attn.kind for la in s.layers} == {AttnKind.MLA}
    a = s.layers[0].attn
    assert (
        a.n_head,
        a.q_lora_rank,
        a.kv_lora_rank,
        a.qk_nope_head_dim,
        a.qk_rope_head_dim,
        a.mla_v_head_dim,
    ) == (
        128,
        1536,
        512,
        128,
        64,
        128,
    )
    assert Counter(la.ffn.kind for la in s.layers) == {FFNKind.DENSE: 3, FFNKind.MOE: 58}
    assert all(la.ffn.n_ff == 16384 for la in s.layers[:3])
    moe = s.moe_ffn
    assert moe is not None
    assert (moe.n_expert, moe.n_expert_used, moe.n_ff_exp, moe.n_ff_shexp) == (128, 4, 4096, 4096)


def test_large3_tensors_and_params() -> None:
    inv = inventory(spec(LARGE3))
    names = {t.name: t.shape for t in inv.tensors}
    assert not any("exp_probs_b" in n for n in names)  # the router holds only `gate.weight`
    assert names["blk.3.ffn_gate_inp.weight"] == (7168, 128)
    assert names["blk.3.ffn_gate_exps.weight"] == (7168, 4096, 128)  # merged per-expert w1 stacks
    assert names["blk.3.ffn_down_shexp.weight"] == (4096, 7168)
    assert names["blk.0.ffn_gate.weight"] == (7168, 16384)
    assert names["output.weight"] == (7168, 131072)
    # llama.cpp prints 673.42 B; the published 675B adds the vision tower and projector (mmproj)
    total = sum(t.n_elements for t in inv.tensors)
    assert total == 673_421_089_792 and abs(total - 675e9) / 675e9 < 0.005
    # the model card's 41B active: 4 of 128 experts + the shared one per MoE layer
    assert abs(predict(inv, FileType.Q8_0).params_active - 41e9) / 41e9 < 0.03


def test_large3_gguf_keys() -> None:
    kv = family("deepseek2").gguf_metadata(inventory(spec(LARGE3)))
    assert kv[".expert_gating_func"] == GATING_SOFTMAX
    assert kv[".leading_dense_block_count"] == 3 and kv[".expert_shared_count"] == 1
    assert (kv[".attention.key_length"], kv[".attention.value_length"]) == (576, 512)


def test_large3_kv_is_the_mla_latent() -> None:
    """K only: the 512 + 64 latent of each of the 61 layers, F16."""
    lms = layer_memory(spec(LARGE3), CacheConfig(n_ctx=8192))
    assert sum(lm.total for lm in lms) == 61 * 576 * 2 * 8192


def test_sigmoid_deepseek_keeps_its_selection_bias() -> None:
    v3 = inventory(spec("deepseek-v3"))
    assert any(t.name == "blk.3.exp_probs_b.bias" for t in v3.tensors)
    assert family("deepseek2").gguf_metadata(v3)[".expert_gating_func"] == 2
    softmax = spec_from_config(config("deepseek-v3", scoring_func="softmax", topk_method="greedy"))
    assert not any("exp_probs_b" in t.name for t in inventory(softmax).tensors)


def test_large3_names_resolve() -> None:
    assert resolve("mistralai/Mistral-Large-3-675B-Instruct-2512").id == LARGE3
    assert resolve("unsloth/Mistral-Large-3-675B-Instruct-2512-GGUF").id == LARGE3
    assert resolve("mistral large 3").id == LARGE3
    assert resolve("mistralai/Mistral-Large-3-675B-Instruct-2512-NVFP4").id == LARGE3
