"""KV cache, recurrent state and compute buffers of the pinned llama.cpp vs moeplan: a representative
subset (the full sweep is `python -m validation.report`)."""

from pathlib import Path

import pytest
from validation.runtime import GEMMA, MemCase, compute_check, fullsize_subject, memory_check, subject

from moeplan.arch.registry import rules

pytestmark = pytest.mark.llamacpp

# every attention kind: full GQA (qwen3), SWA (gemma3, gpt-oss), chunked (llama4), MLA (deepseek2),
# hybrid recurrent (qwen35moe), SWA with per-layer KV heads and K/V head sizes 192/128 (mimo2),
# KV-sharing layers and per-layer embeddings (gemma4-ple: Gemma 4 E2B), plus the real Gemma file
KEYS = ["qwen3", "gemma3", "gpt-oss", "llama4", "deepseek2", "qwen35moe", "mimo2", "gemma4-ple", GEMMA]
# KDA recurrent state (conv 3*(d_conv-1)*H*hd, state hd^2*H) beside MLA layers; LFM2's short-conv state
# and MiniMax-M3's MSA caches (indexer K + V) with its block-sparse compute
KEYS += ["kimi-linear", "lfm2moe", "minimax-m3"]
# KDA beside gated MLA, the kept MTP block's MLA cached in the trunk context (bailingmoe3)
KEYS += ["bailingmoe3"]
# DSA: the lightning indexer's own K-only cache (full layers only) beside the MLA latent cache
KEYS += ["glm-dsa"]
# Mamba-2 state beside GQA layers: FFN-only blocks in no cache (Nemotron-H), MoE after every mixer (Granite)
KEYS += ["nemotron_h_moe", "granitehybrid"]
CASES = [
    MemCase(5000, 4, False, "q8_0"),  # non-multiple of 256, 4 streams, quantized cache
    MemCase(4096, 4, True, "f16"),  # llama-server, unified KV
    MemCase(512, 1, False, "f16", flash_attn=False),
]


@pytest.mark.parametrize("key", KEYS)
def test_kv_state_and_compute_agree(key: str) -> None:
    s = subject(key, slim=True)
    for case in CASES:
        c = memory_check(s, case)
        assert c["ok_kv"], (c["id"], c["error"], c["measured"], c.get("failure"), c["command"])
        assert c["ok_compute"], (c["id"], c["predicted"]["compute_mib"], c["measured"]["compute_mib"])


@pytest.mark.parametrize("key", ["llama4", "qwen3next", "gemma4-ple", GEMMA])
def test_dry_run_compute_agrees(key: str) -> None:
    for ctx, ub, fa in ((4096, 2048, True), (4096, 2048, False), (32768, 32, False)):
        c = compute_check(subject(key), ctx, ub, fa)
        assert c["ok"], (c["id"], c["predicted"], c["measured"]["compute_mib"], c.get("failure"))


def test_kimi_k3_compute_without_flash_attention() -> None:
    """Kimi-K3's attention-residual stack sits under the KQ scores (`KimiK3.residual_activations`);
    with flash attention the FFN phase stays the peak."""
    s = subject("kimi-k3")
    for ctx, ub, fa in ((4096, 2048, False), (16384, 2048, False), (8192, 1024, False), (4096, 2048, True)):
        c = compute_check(s, ctx, ub, fa)
        assert c["ok"], (c["id"], c["predicted"], c["measured"]["compute_mib"], c.get("failure"))


def test_deepseek4_caches_and_compute_agree() -> None:
    """DeepSeek-V4's `llama_kv_cache_dsv4`: window, CSA/HCA compressed and indexer caches (per
    sequence even with -kvu) and the compressor states, byte for byte; the compute buffer of the
    same runs, its compressed attention replayed through ggml-alloc (`DeepSeek4.attention_graph`)."""
    s = subject("deepseek4", slim=True)
    for case in CASES:
        c = memory_check(s, case)
        assert c["ok_kv"], (c["id"], c["error"], c["measured"], c.get("failure"), c["command"])
        assert c["ok_compute"], (c["id"], c["predicted"]["compute_mib"], c["measured"]["compute_mib"])


def test_deepseek4_dry_run_compute_agrees() -> None:
    """Long contexts (the compressed rows' masks, indexer scores and concatenated K), -ub 2048 without
    flash attention (the F32 scores), several sequences (per-stream rows) and a tiny micro-batch."""
    s = subject("deepseek4")
    for ctx, ub, fa, n_seq in (
        (65536, 512, True, 1),
        (16384, 2048, False, 1),
        (4096, 2048, True, 4),
        (65536, 32, False, 4),
    ):
        c = compute_check(s, ctx, ub, fa, n_seq)
        assert c["ok"], (c["id"], c["predicted"], c["measured"]["compute_mib"], c.get("failure"))


@pytest.mark.parametrize("model", ["deepseek-v4-flash", "deepseek-v4-pro"])
def test_deepseek4_full_size_dry_run_compute_agrees(model: str, tmp_path: Path) -> None:
    """DeepSeek-V4 at its real shapes (a header-only GGUF; the dry run reads no data): within 10%
    (+1 MiB truncation), or 20% where the plan warns (`DeepSeek4.compute_gap`: Pro, several
    sequences): the logits phase at a short context, the F32 scores without flash attention, the
    compressed rows at a long one."""
    s = fullsize_subject(model, tmp_path)
    for ctx, ub, fa, n_seq in ((4096, 512, True, 1), (65536, 2048, False, 1), (262144, 512, True, 4)):
        c = compute_check(s, ctx, ub, fa, n_seq)
        predicted, measured = c["predicted"]["compute_mib"], c["measured"]["compute_mib"]
        rel = 0.20 if rules("deepseek4").compute_gap(s.spec, n_seq) else 0.10
        assert measured is not None, (c["id"], c.get("failure"))
        assert abs(predicted - measured) <= rel * measured + 1, (c["id"], predicted, measured)
