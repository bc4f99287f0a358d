"""Step-3.5-Flash (`step35`), MiMo-V2-Flash (`mimo2`) and MiniMax-M2.x (`minimax-m2`): layer
kinds from the config, the pinned converter's tensors and keys, and the KV cache llama.cpp
allocates (`llama_kv_cache_iswa`: SWA layers hold PAD256(window + n_ubatch) cells)."""

from collections import Counter

import pytest

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.sources.catalog import load_catalog
from tests.catalog_specs import spec


def n_params(s: ModelSpec, **kw: bool) -> int:
    return sum(t.n_elements for t in inventory(s, **kw).tensors)


def kv_bytes(s: ModelSpec, kind: AttnKind, n_ctx: int, **kw: bool) -> tuple[int, set[int]]:
    lms = [lm for lm in layer_memory(s, CacheConfig(n_ctx=n_ctx, **kw)) if lm.kind is kind]
    return sum(lm.k_bytes + lm.v_bytes for lm in lms), {lm.cells for lm in lms}


# ---- Step-3.5-Flash ----------------------------------------------------------------------------


def test_step35_layers() -> None:
    s = spec("step-3.5-flash")
    kinds = Counter((la.attn.kind, la.attn.n_head, la.attn.n_head_kv) for la in s.layers)
    assert kinds == {(AttnKind.FULL, 64, 8): 12, (AttnKind.SWA, 96, 8): 33}
    assert [il for il, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL] == list(range(0, 45, 4))
    assert {la.attn.window for la in s.layers if la.attn.kind is AttnKind.SWA} == {512}
    assert [la.ffn.kind for la in s.layers[:4]] == [FFNKind.DENSE] * 3 + [FFNKind.MOE]
    moe = s.moe_ffn
    assert moe is not None
    assert (moe.n_expert, moe.n_expert_used, moe.n_ff_exp, moe.n_ff_shexp) == (288, 8, 1280, 1280)
    # the three MTP blocks are sliding-window layers (layer_types 45-47) with a dense FFN
    assert [(la.attn.kind, la.attn.n_head, la.ffn.kind, la.ffn.n_ff) for la in s.mtp_layers] == [
        (AttnKind.SWA, 96, FFNKind.DENSE, 11264)
    ] * 3


def test_step35_tensors() -> None:
    s = spec("step-3.5-flash")
    inv = inventory(s, mtp=False)
    # llama.cpp's tests/test-gguf-model-data.cpp: ggml-org/Step-3.5-Flash-GGUF has 754 tensors
    assert len(inv.tensors) == 754
    names = {t.name: t for t in inv.tensors}
    assert names["rope_freqs.weight"].shape == (64,)
    assert names["blk.0.attn_q.weight"].shape == (4096, 64 * 128)
    assert names["blk.1.attn_q.weight"].shape == (4096, 96 * 128)
    assert names["blk.1.attn_gate.weight"].shape == (4096, 96)  # one gate per head
    assert names["blk.1.attn_q_norm.weight"].shape == (128,)
    assert names["blk.3.exp_probs_b.bias"].shape == (288,)
    assert names["blk.3.ffn_down_shexp.weight"].shape == (1280, 4096)
    assert "blk.2.ffn_gate_inp.weight" not in names
    assert n_params(s, mtp=False) == 196_956_130_432  # published: 196B
    kept = inventory(s)  # the converter keeps the MTP blocks by default
    assert kept.block_count == 48 and kept.mtp_kept == 3 and len(kept.tensors) == 805
    mtp = {t.name: t for t in kept.tensors if t.layer == 45}
    assert mtp["blk.45.nextn.shared_head_head.weight"].shape == (4096, 128896)
    assert "blk.45.nextn.embed_tokens.weight" not in mtp
    # load_block_mtp skips only the tensors created with mtp_flags; llama.cpp loads the rest
    loaded = {n.split(".", 2)[2] for n, t in mtp.items() if t.loaded_without_mtp}
    assert loaded == {
        "attn_q_norm.weight",
        "attn_k_norm.weight",
        "attn_gate.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
        "nextn.shared_head_norm.weight",
        "nextn.shared_head_head.weight",
    }


def test_step35_checkpoint_matches_the_megatron_audit() -> None:
    """Megatron-Bridge's audit of stepfun-ai/Step-3.5-Flash: 804 tensors, 398,768,626,944 bytes
    (BF16, the 42 router biases F32); the checkpoint has no rope_freqs tensor."""
    ck = [
        t for t in inventory(spec("step-3.5-flash"), checkpoint=True).tensors if t.name != "rope_freqs.weight"
    ]
    assert len(ck) == 804
    assert sum(t.n_elements * (4 if "exp_probs_b" in t.name else 2) for t in ck) == 398_768_626_944


def test_step35_metadata() -> None:
    s = spec("step-3.5-flash")
    kv = family("step35").gguf_metadata(inventory(s))
    full, swa = 64, 96
    heads = [full if il % 4 == 0 and il < 45 else swa for il in range(48)]
    assert kv[".attention.head_count"] == heads
    assert kv[".attention.head_count_kv"] == [8] * 48
    assert kv[".attention.sliding_window_pattern"] == [h == swa for h in heads]
    assert kv[".attention.sliding_window"] == 512
    assert kv[".block_count"] == 48 and kv[".nextn_predict_layers"] == 3
    assert kv[".leading_dense_block_count"] == 3
    assert kv[".expert_shared_feed_forward_length"] == 1280
    assert ".rope.dimension_count" not in kv and ".expert_shared_count" not in kv
    short = family("step35").gguf_metadata(inventory(s, mtp=False))
    assert len(short[".attention.head_count"]) == 45 and ".nextn_predict_layers" not in short  # type: ignore[arg-type]


def test_step35_kv() -> None:
    s = spec("step-3.5-flash")
    full, cells = kv_bytes(s, AttnKind.FULL, 32768)
    assert full == 12 * 32768 * 2 * 8 * 128 * 2 and cells == {32768}
    swa, cells = kv_bytes(s, AttnKind.SWA, 32768)
    assert cells == {1024}  # PAD256(512 + 512)
    assert swa == 33 * 1024 * 2 * 8 * 128 * 2
    assert len(layer_memory(s, CacheConfig(n_ctx=4096))) == 45  # the MTP blocks hold no cache


def test_step37_is_the_step35_text_model_behind_a_vision_wrapper() -> None:
    """Step-3.7-Flash's checkpoint nests the Step-3.5 decoder as `text_config` (model_type step3p5)
    under a top-level `step3p7` wrapper (aiconfigurator commit 848f5e11 parsing the published file):
    the registry takes the text model's keys, so the wrapped config gives the catalog's layers, and
    its text tensors are Step-3.5-Flash's (754 without MTP; the vision tower is the mmproj's)."""
    entry = load_catalog()["step-3.7-flash"]
    wrapped = {
        "architectures": ["Step3p7ForConditionalGeneration"],
        "model_type": "step3p7",
        "text_config": {**entry.config, "architectures": ["Step3p5ForCausalLM"]},
    }
    s = spec_from_config(wrapped)
    assert s.arch == "step35" and s.layers == entry.spec().layers and s.mtp_layers == entry.spec().mtp_layers
    three, five = inventory(entry.spec(), mtp=False), inventory(spec("step-3.5-flash"), mtp=False)
    assert [(t.name, t.shape) for t in three.tensors] == [(t.name, t.shape) for t in five.tensors]
    assert entry.context_length == 262144 and entry.spec().context_length == 262144


# ---- MiMo-V2-Flash -----------------------------------------------------------------------------


def test_mimo2_layers_and_tensors() -> None:
    s = spec("mimo-v2-flash")
    full = [il for il, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL]
    assert full == [0, 5, 11, 17, 23, 29, 35, 41, 47]
    a_full, a_swa = s.layers[0].attn, s.layers[1].attn
    assert (a_full.n_head, a_full.n_head_kv, a_full.head_dim_k, a_full.head_dim_v) == (64, 4, 192, 128)
    assert (a_swa.n_head, a_swa.n_head_kv, a_swa.window) == (64, 8, 128)
    assert s.layers[0].ffn.kind is FFNKind.DENSE and s.layers[0].ffn.n_ff == 16384
    assert sum(la.ffn.kind is FFNKind.MOE for la in s.layers) == 47
    assert len(s.mtp_layers) == 3 and all(la.attn.kind is AttnKind.SWA for la in s.mtp_layers)
    inv = inventory(s, mtp=False)
    names = {t.name: t for t in inv.tensors}
    assert len(inv.tensors) == 568
    assert names["blk.0.attn_k.weight"].shape == (4096, 4 * 192)
    assert names["blk.0.attn_v.weight"].shape == (4096, 4 * 128)
    assert names["blk.0.attn_output.weight"].shape == (64 * 128, 4096)
    assert "blk.0.attn_sinks.weight" not in names  # add_full_attention_sink_bias false
    assert names["blk.1.attn_sinks.weight"].shape == (64,)
    assert sum(n.endswith("attn_sinks.weight") for n in names) == 39
    assert n_params(s, mtp=False) == 308_778_780_864  # published: 309B
    kept = [t for t in inventory(s).tensors if t.layer is not None and t.layer >= 48]
    mtp = {t.name.split(".", 2)[2] for t in kept if t.layer == 48}
    assert {"layer_output_norm.weight", "attn_sinks.weight", "ffn_down.weight", "nextn.eh_proj.weight"} <= mtp
    assert not {n for n in mtp if "shared_head" in n or "embed_tokens" in n or "_exps" in n}
    assert len(kept) == 3 * 14 and not any(t.loaded_without_mtp for t in kept)


def test_mimo2_metadata() -> None:
    kv = family("mimo2").gguf_metadata(inventory(spec("mimo-v2-flash")))
    assert kv[".attention.head_count"] == 64
    pattern = kv[".attention.sliding_window_pattern"]
    assert isinstance(pattern, list) and len(pattern) == 51 and pattern[48:] == [1, 1, 1]
    assert kv[".attention.head_count_kv"] == [4 if p == 0 else 8 for p in pattern]
    assert (kv[".attention.key_length"], kv[".attention.value_length"]) == (192, 128)
    assert kv[".rope.dimension_count"] == 64  # int(192 * 0.334)
    assert kv[".nextn_predict_layers"] == 3 and kv[".expert_feed_forward_length"] == 2048


def test_mimo2_kv() -> None:
    s = spec("mimo-v2-flash")
    full, cells = kv_bytes(s, AttnKind.FULL, 32768)
    assert full == 9 * 32768 * (4 * 192 + 4 * 128) * 2 and cells == {32768}
    swa, cells = kv_bytes(s, AttnKind.SWA, 32768)
    assert cells == {768} and swa == 39 * 768 * (8 * 192 + 8 * 128) * 2  # PAD256(128 + 512)
    # without flash attention the transposed V cache is padded to the widest V (the SWA layers')
    padded, _ = kv_bytes(s, AttnKind.FULL, 32768, flash_attn=False)
    assert padded == 9 * 32768 * (4 * 192 + 8 * 128) * 2


# ---- MiniMax-M2.x ------------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["minimax-m2", "minimax-m2.1", "minimax-m2.5", "minimax-m2.7"])
def test_minimax_m2(model_id: str) -> None:
    s = spec(model_id)
    assert s.n_layer == 62 and all(la.attn.kind is AttnKind.FULL for la in s.layers)
    assert all(la.ffn.kind is FFNKind.MOE and la.ffn.n_ff_shexp == 0 for la in s.layers)
    inv = inventory(s, mtp=True)  # nothing to keep: the converter has no NextN tensors here
    assert inv.mtp_kept == 0 and len(inv.tensors) == 3 + 62 * 13
    names = {t.name: t for t in inv.tensors}
    assert names["blk.0.attn_q_norm.weight"].shape == (48 * 128,)  # over the whole projection
    assert names["blk.0.attn_k_norm.weight"].shape == (8 * 128,)
    assert names["blk.0.exp_probs_b.bias"].shape == (256,)
    assert names["blk.0.ffn_up_exps.weight"].shape == (3072, 1536, 256)
    # 228.7B in the HF safetensors count; published 229B (M2.5, the hub's M2.1) / 230B (M2, M2.1, M2.7)
    assert n_params(s) == 228_689_764_864
    kv = family("minimax-m2").gguf_metadata(inv)
    assert kv[".rope.dimension_count"] == 64 and kv[".feed_forward_length"] == 1536
    assert kv[".expert_feed_forward_length"] == 1536 and ".expert_shared_count" not in kv
    full, cells = kv_bytes(s, AttnKind.FULL, 8192)
    assert full == 62 * 8192 * 2 * 8 * 128 * 2 and cells == {8192}


def test_minimax_contexts_differ() -> None:
    assert (spec("minimax-m2.5").context_length, spec("minimax-m2.7").context_length) == (196608, 204800)
