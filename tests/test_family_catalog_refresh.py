"""Current releases of architectures moeplan already models (Qwen3.6, Qwen3-Coder, GLM-4.7-Flash,
Kimi-K2.6) and the small dense models of those families (Qwen3, Qwen3.5, Gemma 3): layer kinds from
their configs, parameter counts against independently published figures, what the pinned converter
writes (GLM-4.7-Flash keeps its NextN block inside `deepseek2`), and KV/state bytes by llama.cpp's rules."""

import re
from collections import Counter
from pathlib import Path

import pytest

from moeplan.arch.inventory import inventory, mtp_default, mtp_supported
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.sources.catalog import resolve
from tests.catalog_specs import qwen35_vision_params

MiB = 2**20


def n_params(model: str, *, mtp: bool | None = False, checkpoint: bool = False) -> int:
    return sum(t.n_elements for t in inventory(resolve(model).spec(), mtp, checkpoint=checkpoint).tensors)


@pytest.mark.parametrize(
    ("model", "arch", "attn", "ffn", "n_mtp"),
    [
        ("qwen3.6-35b-a3b", "qwen35moe", {AttnKind.LINEAR: 30, AttnKind.FULL: 10}, {FFNKind.MOE: 40}, 1),
        ("qwen3.6-27b", "qwen35", {AttnKind.LINEAR: 48, AttnKind.FULL: 16}, {FFNKind.DENSE: 64}, 1),
        ("qwen3-coder-next", "qwen3next", {AttnKind.LINEAR: 36, AttnKind.FULL: 12}, {FFNKind.MOE: 48}, 1),
        ("qwen3-coder-480b-a35b", "qwen3moe", {AttnKind.FULL: 62}, {FFNKind.MOE: 62}, 0),
        ("glm-4.7-flash", "deepseek2", {AttnKind.MLA: 47}, {FFNKind.DENSE: 1, FFNKind.MOE: 46}, 1),
        ("kimi-k2.6", "deepseek2", {AttnKind.MLA: 61}, {FFNKind.DENSE: 1, FFNKind.MOE: 60}, 0),
        ("qwen3-0.6b", "qwen3", {AttnKind.FULL: 28}, {FFNKind.DENSE: 28}, 0),
        ("qwen3-1.7b", "qwen3", {AttnKind.FULL: 28}, {FFNKind.DENSE: 28}, 0),
        ("qwen3-4b", "qwen3", {AttnKind.FULL: 36}, {FFNKind.DENSE: 36}, 0),
        ("qwen3.5-0.8b", "qwen35", {AttnKind.LINEAR: 18, AttnKind.FULL: 6}, {FFNKind.DENSE: 24}, 1),
        ("qwen3.5-4b", "qwen35", {AttnKind.LINEAR: 24, AttnKind.FULL: 8}, {FFNKind.DENSE: 32}, 1),
        ("gemma-3-1b", "gemma3", {AttnKind.SWA: 22, AttnKind.FULL: 4}, {FFNKind.DENSE: 26}, 0),
        ("gemma-3-4b", "gemma3", {AttnKind.SWA: 29, AttnKind.FULL: 5}, {FFNKind.DENSE: 34}, 0),
        ("gemma-3-12b", "gemma3", {AttnKind.SWA: 40, AttnKind.FULL: 8}, {FFNKind.DENSE: 48}, 0),
        ("glm-4.7", "glm4moe", {AttnKind.FULL: 92}, {FFNKind.DENSE: 3, FFNKind.MOE: 89}, 1),
        ("qwen3.5-2b", "qwen35", {AttnKind.LINEAR: 18, AttnKind.FULL: 6}, {FFNKind.DENSE: 24}, 1),
        ("mimo-v2.5", "mimo2", {AttnKind.SWA: 39, AttnKind.FULL: 9}, {FFNKind.DENSE: 1, FFNKind.MOE: 47}, 3),
        (
            "mimo-v2.5-pro",
            "mimo2",
            {AttnKind.SWA: 60, AttnKind.FULL: 10},
            {FFNKind.DENSE: 1, FFNKind.MOE: 69},
            3,
        ),
        ("kimi-k2-instruct", "deepseek2", {AttnKind.MLA: 61}, {FFNKind.DENSE: 1, FFNKind.MOE: 60}, 0),
        ("qwen3-coder-30b-a3b", "qwen3moe", {AttnKind.FULL: 48}, {FFNKind.MOE: 48}, 0),
        ("glm-4.6v", "glm4moe", {AttnKind.FULL: 46}, {FFNKind.DENSE: 1, FFNKind.MOE: 45}, 0),
        ("glm-4.5", "glm4moe", {AttnKind.FULL: 92}, {FFNKind.DENSE: 3, FFNKind.MOE: 89}, 1),
        ("kimi-k2-thinking", "deepseek2", {AttnKind.MLA: 61}, {FFNKind.DENSE: 1, FFNKind.MOE: 60}, 0),
        ("kimi-k2.7-code", "deepseek2", {AttnKind.MLA: 61}, {FFNKind.DENSE: 1, FFNKind.MOE: 60}, 0),
    ],
)
def test_layer_kinds(
    model: str, arch: str, attn: dict[AttnKind, int], ffn: dict[FFNKind, int], n_mtp: int
) -> None:
    spec = resolve(model).spec()
    assert spec.arch == arch
    assert Counter(la.attn.kind for la in spec.layers) == attn
    assert Counter(la.ffn.kind for la in spec.layers) == ffn
    assert len(spec.mtp_layers) == n_mtp


@pytest.mark.parametrize(
    ("model", "published"),
    [
        # ggml-org/Llama-macOS LlamaBarn catalog parameterCount of the published GGUFs (no MTP block)
        ("qwen3.6-35b-a3b", 34_660_610_688),
        ("qwen3.6-27b", 26_895_998_464),
        ("glm-4.7-flash", 29_943_393_920),
        ("qwen3-4b", 4_022_468_096),  # the -Instruct-2507 files: same tensors
        ("gemma-3-1b", 999_885_952),
        # general.parameter_count of an Ollama qwen3-coder-next GGUF
        ("qwen3-coder-next", 79_674_391_296),
        # keras-hub gemma3 presets: text backbones with the 262144-row embedding
        ("gemma-3-4b", 3_880_099_328),
        ("gemma-3-12b", 11_765_788_416),
    ],
)
def test_parameters_equal_published_counts(model: str, published: int) -> None:
    """Exact: the sum of n_elements over the GGUF inventory without MTP blocks."""
    assert n_params(model) == published


@pytest.mark.parametrize(
    ("model", "hf_total", "vision"),
    [
        ("qwen3.5-0.8b", 873_438_784, (12, 768, 3072, 1024)),  # Qwen3.5-0.8B-Base safetensors total
        ("qwen3.5-4b", 4_659_865_088, (24, 1024, 4096, 2560)),
    ],
)
def test_qwen35_checkpoint_is_text_plus_mtp_plus_vision(
    model: str, hf_total: int, vision: tuple[int, int, int, int]
) -> None:
    """The HF checkpoint = our checkpoint inventory (text + the MTP block, tied: no lm_head) + the
    vision tower; so the tied embedding and the MTP block's shapes are right."""
    assert n_params(model, checkpoint=True) + qwen35_vision_params(*vision) == hf_total
    assert "output.weight" not in {t.name for t in inventory(resolve(model).spec()).tensors}


def test_glm_4_7_flash_keeps_its_nextn_block_with_own_embedding_and_head() -> None:
    """conversion/glm.py Glm4MoeLiteModel (a DeepseekV2Model) keeps model.layers.47.* unless --no-mtp,
    own embed_tokens and shared_head.head included; DeepseekV2Model itself drops MTP (skip_mtp)."""
    spec = resolve("glm-4.7-flash").spec()
    inv = inventory(spec)
    assert (inv.block_count, inv.mtp_kept, len(inv.tensors)) == (48, 1, 868)
    shapes = {t.name: t.shape for t in inv.tensors}
    assert shapes["blk.47.nextn.embed_tokens.weight"] == (2048, 154880)
    assert shapes["blk.47.nextn.shared_head_head.weight"] == (2048, 154880)
    assert shapes["blk.47.nextn.eh_proj.weight"] == (4096, 2048)
    assert shapes["blk.47.attn_k_b.weight"] == (192, 512, 20)  # kv_b_proj split: nope x kv_lora x heads
    assert shapes["blk.0.attn_v_b.weight"] == (512, 256, 20)
    assert shapes["blk.0.ffn_gate.weight"] == (2048, 10240) and shapes["blk.1.ffn_gate_exps.weight"] == (
        2048,
        1536,
        64,
    )
    assert mtp_supported(spec) and mtp_default(spec)
    no_mtp = inventory(spec, mtp=False)
    assert (no_mtp.block_count, len(no_mtp.tensors)) == (47, 844)
    # the NextN block adds one MoE decoder layer plus two 2048 x 154880 copies
    assert n_params("glm-4.7-flash", mtp=True) - n_params("glm-4.7-flash") > 2 * 2048 * 154880
    assert resolve("glm-4.7-flash").published_gguf is not None  # ggml-org's files lack the block
    ds = resolve("deepseek-v3.1").spec()
    assert not mtp_supported(ds) and inventory(ds, mtp=True).mtp_kept == 0


def test_glm_4_7_flash_gguf_metadata_is_deepseek2() -> None:
    from moeplan.arch.registry import family

    inv = inventory(resolve("glm-4.7-flash").spec())
    kv = family("deepseek2").gguf_metadata(inv)
    assert kv[".block_count"] == 48 and kv[".nextn_predict_layers"] == 1
    assert (kv[".attention.key_length"], kv[".attention.value_length"]) == (576, 512)
    assert (kv[".attention.key_length_mla"], kv[".attention.value_length_mla"]) == (256, 256)
    assert (kv[".attention.head_count_kv"], kv[".leading_dense_block_count"]) == (1, 1)
    assert (kv[".rope.dimension_count"], kv[".expert_count"], kv[".expert_used_count"]) == (64, 64, 4)


def test_qwen3_small_heads_follow_the_checkpoints() -> None:
    """Qwen3-0.6B/1.7B checkpoints store lm_head.weight despite tie_word_embeddings (llama.cpp's own
    qwen3-0.6b snapshot lists output.weight); Qwen3-4B's does not."""
    for model, n_embd in (("qwen3-0.6b", 1024), ("qwen3-1.7b", 2048)):
        shapes = {t.name: t.shape for t in inventory(resolve(model).spec()).tensors}
        assert shapes["output.weight"] == (n_embd, 151936) == shapes["token_embd.weight"]
    assert "output.weight" not in {t.name for t in inventory(resolve("qwen3-4b").spec()).tensors}
    assert n_params("qwen3-0.6b") == 751_632_384  # 596,049,920 tied + the 155,582,464 head


def test_gemma3_embeddings_hold_the_tokenizer_rows() -> None:
    """conversion/gemma.py cuts token_embd to the 262144 tokenizer entries (config: 262208)."""
    for model, n_embd in (("gemma-3-1b", 1152), ("gemma-3-4b", 2560), ("gemma-3-12b", 3840)):
        inv = inventory(resolve(model).spec())
        shapes = {t.name: t.shape for t in inv.tensors}
        assert shapes["token_embd.weight"] == (n_embd, 262144) and "output.weight" not in shapes
        assert {t.name.split(".", 2)[-1] for t in inv.tensors if t.name.startswith("blk.0.")} >= {
            "post_attention_norm.weight",
            "post_ffw_norm.weight",
            "attn_q_norm.weight",
            "attn_k_norm.weight",
        }


def test_kimi_k26_text_model_is_kimi_k25s() -> None:
    a = inventory(resolve("kimi-k2.6").spec()).tensors
    b = inventory(resolve("kimi-k2.5").spec()).tensors
    assert [(t.name, t.shape) for t in a] == [(t.name, t.shape) for t in b]
    assert abs(n_params("kimi-k2.6") - 1.0264e12) < 1e8  # "1T" class; HF metadata says 1.1T with vision


def test_qwen3_coder_480b_matches_its_name() -> None:
    spec = resolve("qwen3-coder-480b-a35b").spec()
    moe = spec.moe_ffn
    assert moe is not None and (moe.n_expert, moe.n_expert_used, moe.n_ff_exp, moe.n_shared) == (
        160,
        8,
        2560,
        0,
    )
    assert abs(n_params("qwen3-coder-480b-a35b") / 480e9 - 1) < 0.001


def header(llamacpp_src: Path, snapshot: str) -> dict[str, int]:
    text = (llamacpp_src / "tests" / "snapshots" / f"{snapshot}.schema").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("# n_embd="))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


@pytest.mark.parametrize(
    ("snapshot", "model"),
    [
        ("qwen3.6-27b", "qwen3.6-27b"),
        ("qwen3-coder-next", "qwen3-coder-next"),
        ("qwen3-0.6b", "qwen3-0.6b"),
        ("gemma-3-4b-it", "gemma-3-4b"),
        ("glm-4.6v", "glm-4.6v"),
    ],
)
def test_dims_match_llamacpp_snapshot_headers(llamacpp_src: Path, snapshot: str, model: str) -> None:
    """The header of llama.cpp's quant-type snapshot prints the published GGUF's hparams."""
    h = header(llamacpp_src, snapshot)
    spec = resolve(model).spec()
    full = next(la for la in spec.layers if la.attn.kind is not AttnKind.LINEAR)
    moe = spec.moe_ffn
    n_ff = next((la.ffn.n_ff for la in spec.layers if la.ffn.kind is FFNKind.DENSE), None)
    got = {
        "n_embd": spec.n_embd,
        "n_vocab": spec.n_vocab,
        "n_layer": spec.n_layer,
        "n_head": full.attn.n_head,
        "n_head_kv": full.attn.n_head_kv,
    }
    assert {k: h[k] for k in got} == got
    if moe is not None:
        assert h["n_expert"] == moe.n_expert
    if n_ff is not None:
        assert h["n_ff"] == n_ff


def test_glm_4_6v_text_model_is_glm_4_5_airs_trunk() -> None:
    """GLM-4.6V's text config (num_nextn_predict_layers 0) converts to GLM-4.5-Air's tensors without
    its MTP block: 106,852,251,264 parameters, the published 106B."""
    v = inventory(resolve("glm-4.6v").spec())
    air = inventory(resolve("glm-4.5-air").spec(), mtp=False)
    assert [(t.name, t.shape) for t in v.tensors] == [(t.name, t.shape) for t in air.tensors]
    assert (v.block_count, v.mtp_kept) == (46, 0) and n_params("glm-4.6v") == 106_852_251_264


@pytest.mark.parametrize(
    ("model", "trunk", "context"),
    [
        ("glm-4.5", "glm-4.7", (131072, 202752)),  # the 355B-A32B trunk's first release
        ("kimi-k2-thinking", "kimi-k2-instruct", (262144, 131072)),
        ("kimi-k2.7-code", "kimi-k2.6", (262144, 262144)),  # "built on Kimi-K2.6"
    ],
)
def test_later_releases_keep_their_trunks_tensors(model: str, trunk: str, context: tuple[int, int]) -> None:
    """Same tensors (names and shapes, MTP as the converter keeps it) as the release they build on;
    only the context may differ."""
    a, b = inventory(resolve(model).spec()), inventory(resolve(trunk).spec())
    assert [(t.name, t.shape) for t in a.tensors] == [(t.name, t.shape) for t in b.tensors]
    assert (resolve(model).spec().context_length, resolve(trunk).spec().context_length) == context


def kv_and_state(model: str, n_ctx: int) -> tuple[int, int]:
    mem = layer_memory(resolve(model).spec(), CacheConfig(n_ctx=n_ctx))
    return sum(m.k_bytes + m.v_bytes for m in mem), sum(m.state_bytes for m in mem)


def test_glm_4_7_flash_latent_cache() -> None:
    """MLA caches the 512 + 64 latent per token per trunk layer, K only (the NextN layer gets none
    in the main context): 211.5 MiB at 4096 tokens, F16."""
    kv, state = kv_and_state("glm-4.7-flash", 4096)
    assert kv == 47 * 576 * 2 * 4096 == int(211.5 * MiB) and state == 0


@pytest.mark.parametrize(
    ("model", "kv_per_token", "state"),
    [
        # full layers x kv heads x head_dim x (K+V) x f16; Gated DeltaNet layers: f32 conv state
        # (kernel-1) x (v_dim + 2 x k_dim) plus the 128 x v_dim recurrent state
        ("qwen3.6-35b-a3b", 10 * 2 * 256 * 2 * 2, 30 * 4 * (3 * (4096 + 2 * 2048) + 128 * 4096)),
        ("qwen3.6-27b", 16 * 4 * 256 * 2 * 2, 48 * 4 * (3 * (6144 + 2 * 2048) + 128 * 6144)),
        ("qwen3-coder-next", 12 * 2 * 256 * 2 * 2, 36 * 4 * (3 * (4096 + 2 * 2048) + 128 * 4096)),
        ("qwen3.5-0.8b", 6 * 2 * 256 * 2 * 2, 18 * 4 * (3 * (2048 + 2 * 2048) + 128 * 2048)),
    ],
)
def test_hybrid_kv_and_recurrent_state(model: str, kv_per_token: int, state: int) -> None:
    kv, got_state = kv_and_state(model, 8192)
    assert kv == kv_per_token * 8192 and got_state == state


def test_gemma3_1b_sliding_window_cache() -> None:
    """4 global layers hold the whole context; 22 sliding ones pad(512 window + 512 ubatch) cells."""
    kv, _ = kv_and_state("gemma-3-1b", 32768)
    per_cell = 1 * 256 * 2 * 2  # one kv head of 256, K+V, f16
    assert kv == (4 * 32768 + 22 * 1024) * per_cell
