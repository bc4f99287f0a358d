"""Meta Muse Glimmer (llama.cpp `muse-glimmer`): the layer plan from config.json (3 sliding : 1 full,
NoPE on the full layers), the converter's tensors (gated attention, synthesised q/k norms, sandwich
norms, untied head), the parameter count against published figures, the GGUF keys the loader reads
and the KV cache of 2 KV heads."""

from collections import Counter
from typing import Any

import pytest
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig
from moeplan.memory.kv import CacheConfig, layer_memory, pad
from moeplan.sources.catalog import load_catalog, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf

MODEL = "muse-glimmer-30b"


def config() -> dict[str, Any]:
    return dict(load_catalog()[MODEL].config)


def test_layer_plan_slides_three_of_four_and_rotates_only_those() -> None:
    s = resolve(MODEL).spec()
    assert s.arch == "muse-glimmer" and not s.tied_embeddings
    assert Counter(la.attn.kind for la in s.layers) == {AttnKind.SWA: 39, AttnKind.FULL: 13}
    assert all(la.ffn.kind is FFNKind.DENSE and la.ffn.n_ff == 19968 for la in s.layers)
    for il, la in enumerate(s.layers):
        full = (il + 1) % 4 == 0
        assert (la.attn.kind is AttnKind.FULL) == full and la.attn.rope == (not full)
        assert (la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) == (32, 2, 128)
    assert {la.attn.window for la in s.layers if la.attn.kind is AttnKind.SWA} == {2048}


def test_tensors_are_the_loaders() -> None:
    """muse-glimmer.cpp `load_arch_tensors`: q is 32 x 128 = 4096 wide (not n_embd), the output gate
    is {n_embd, n_head·head_dim}, q/k norms of one head, four norms per block, an untied head."""
    inv = inventory(resolve(MODEL).spec())
    shapes = {t.name: t.shape for t in inv.tensors}
    assert len(inv.tensors) == 3 + 52 * 14
    block = [
        *("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm"),
        *("attn_gate", "post_attention_norm", "ffn_norm", "post_ffw_norm", "ffn_gate", "ffn_up", "ffn_down"),
    ]
    assert {n.split(".", 2)[2] for n in shapes if n.startswith("blk.3.")} == {f"{t}.weight" for t in block}
    assert shapes["blk.0.attn_q.weight"] == (6656, 4096) and shapes["blk.0.attn_k.weight"] == (6656, 256)
    assert shapes["blk.0.attn_gate.weight"] == (6656, 4096)
    assert shapes["blk.0.attn_output.weight"] == (4096, 6656)
    assert shapes["blk.0.attn_q_norm.weight"] == (128,)
    assert shapes["output.weight"] == shapes["token_embd.weight"] == (6656, 202048)


def test_parameters_match_llamacpp_and_the_published_counts() -> None:
    """27,854,794,240: llama.cpp's print_info of the full-size file says 27.85 B, Ollama's tags of
    muse-glimmer:30b 27.9B. The checkpoint lacks the 52 x 256 synthesised q/k norm weights; its
    29,776,626,688 (a fine-tuning catalog's paramCount) adds the vision tower and projector."""
    total = sum(t.n_elements for t in inventory(resolve(MODEL).spec()).tensors)
    assert total == 27_854_794_240
    assert round(total / 1e9, 1) == 27.9
    vision = 29_776_626_688 - (total - 52 * 2 * 128)
    assert 1.9e9 < vision < 1.95e9  # 50 ViT blocks of 1536 (FFN 8960) are ~1.85e9 alone


def test_gguf_keys_the_loader_reads() -> None:
    """MuseGlimmerModel.set_gguf_parameters: the window, the per-layer pattern from layer_types, the
    output multiplier as logit_scale (required by load_arch_hparams) and the softcap."""
    inv = inventory(resolve(MODEL).spec())
    kv = family("muse-glimmer").gguf_metadata(inv)
    assert kv[".attention.sliding_window"] == 2048
    assert kv[".attention.sliding_window_pattern"] == [(il + 1) % 4 != 0 for il in range(52)]
    assert kv[".logit_scale"] == pytest.approx(0.19611613513818404)
    assert kv[".final_logit_softcapping"] == 20.0
    assert (kv[".attention.key_length"], kv[".attention.head_count_kv"]) == (128, 2)


def test_spec_read_back_from_the_gguf_header() -> None:
    m = materialize(resolve(MODEL).spec())
    back = spec_from_gguf(read_local(str(m.path)))
    assert back.layers == m.spec.layers
    assert [la.attn.rope for la in back.layers] == [la.attn.kind is AttnKind.SWA for la in back.layers]


def test_kv_cache_of_two_heads() -> None:
    """F16 K+V of 2 heads x 128 = 1 KiB per token per layer: 13 full layers hold the context, 39
    sliding ones pad(window + ubatch) cells."""
    mem = layer_memory(resolve(MODEL).spec(), CacheConfig(n_ctx=32768))
    kv = sum(m.k_bytes + m.v_bytes for m in mem)
    assert kv == (13 * 32768 + 39 * pad(2048 + 512, 256)) * 1024


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"layer_types": None}, "needs layer_types"),
        ({"layer_types": ["sliding_attention"] * 51 + ["chunked_attention"]}, "unknown Muse Glimmer layer"),
        ({"layer_rope_theta": [500000.0] * 52}, "rotates exactly the sliding layers"),
        ({"tie_word_embeddings": True}, "untied output"),
        ({"output_multiplier": None}, "output_multiplier"),
    ],
)
def test_configs_llamacpp_would_run_differently_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(BadConfig, match=message):
        spec_from_config({**config(), **change})
