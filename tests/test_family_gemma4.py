"""Gemma 4 (llama.cpp `gemma4`): layer kinds from the config, the pinned converter's tensors and
parameter totals against published figures, GGUF keys, and the KV cache per token."""

import gguf
import pytest
from validation.materialize import materialize, shrink

from moeplan.api import predict_size
from moeplan.arch.inventory import Role, inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.errors import BadConfig
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf

F32 = gguf.GGMLQuantizationType.F32

# Parameters of the text model as the pinned converter writes it (inventory(spec, mtp=False)).
# 26B-A4B / 31B: the published 25.2B (3.8B active) / 30.7B; the HF safetensors totals (Llama-macOS
# catalog parameterCount) add the vision tower. E2B / E4B: ggml-org's GGUF totals, to the parameter.
TEXT_PARAMS = {
    "gemma-4-26b-a4b": 25_233_142_046,
    "gemma-4-31b": 30_697_345_596,
    "gemma-4-e2b": 4_647_450_147,  # ggml-org/gemma-4-E2B-it-GGUF gguf.total
    "gemma-4-e4b": 7_518_069_290,  # ggml-org/gemma-4-E4B-it-GGUF gguf.total
    "gemma-4-12b": 11_907_350_576,  # llama-server n_params of the published GGUFs
}
HF_TOTAL = {"gemma-4-26b-a4b": 25_805_936_206, "gemma-4-31b": 31_273_088_876}  # text + vision tower
TENSORS = {
    "gemma-4-26b-a4b": 658,
    "gemma-4-31b": 833,
    "gemma-4-e2b": 601,
    "gemma-4-e4b": 720,
    "gemma-4-12b": 667,
}


def spec(model: str) -> ModelSpec:
    return resolve(model).spec()


def names(model: str) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in inventory(spec(model), mtp=False).tensors}


@pytest.mark.parametrize(
    ("model", "n_swa", "n_full", "ffn", "period"),
    [
        ("gemma-4-26b-a4b", 25, 5, FFNKind.MOE, 6),
        ("gemma-4-31b", 50, 10, FFNKind.DENSE, 6),
        ("gemma-4-e2b", 28, 7, FFNKind.DENSE, 5),
        ("gemma-4-e4b", 35, 7, FFNKind.DENSE, 6),
        ("gemma-4-12b", 40, 8, FFNKind.DENSE, 6),  # the unified (encoder-free) model_type
    ],
)
def test_layer_kinds(model: str, n_swa: int, n_full: int, ffn: FFNKind, period: int) -> None:
    s = spec(model)
    assert s.arch == "gemma4"
    kinds = [la.attn.kind for la in s.layers]
    assert kinds.count(AttnKind.SWA) == n_swa and kinds.count(AttnKind.FULL) == n_full
    assert [i for i, k in enumerate(kinds) if k is AttnKind.FULL] == list(
        range(period - 1, s.n_layer, period)
    )
    assert {la.ffn.kind for la in s.layers} == {ffn}
    swa = next(la.attn for la in s.layers if la.attn.kind is AttnKind.SWA)
    full = next(la.attn for la in s.layers if la.attn.kind is AttnKind.FULL)
    assert (swa.head_dim_k, full.head_dim_k) == (256, 512)
    assert swa.window == (512 if model in ("gemma-4-e2b", "gemma-4-e4b") else 1024)


@pytest.mark.parametrize("model", sorted(TEXT_PARAMS))
def test_parameters_and_tensor_count(model: str) -> None:
    inv = inventory(spec(model), mtp=False)
    assert sum(t.n_elements for t in inv.tensors) == TEXT_PARAMS[model]
    assert len(inv.tensors) == TENSORS[model]


def test_published_totals_and_active() -> None:
    w = predict(inventory(spec("gemma-4-26b-a4b"), mtp=False), FileType.BF16)
    assert round(w.params_total / 1e8) == 252  # 25.2B
    assert round(w.params_active / 1e8) == 38  # 3.8B active: 8 of 128 experts + everything else
    assert round(TEXT_PARAMS["gemma-4-31b"] / 1e8) == 307  # 30.7B
    # The HF totals minus the text model (less the 256 generated rope_freqs values) are the vision
    # tower plus its projection into n_embd: the two differ by exactly 1152 x (5376 - 2816).
    vision = {m: HF_TOTAL[m] - (TEXT_PARAMS[m] - 256) for m in HF_TOTAL}
    assert vision["gemma-4-31b"] - vision["gemma-4-26b-a4b"] == 1152 * (5376 - 2816)
    # ... and exactly the vision tower of the 26B's vision_config (27 layers of 1152, MLP 4304, head_dim
    # 72; patch projection 3x16x16 -> 1152, position table 2 x 10240, std bias/scale) + 1152 -> 2816
    layer = 4 * 1152 * 1152 + 2 * 72 + 3 * 1152 * 4304 + 4 * 1152
    tower = 27 * layer + 768 * 1152 + 2 * 10240 * 1152 + 2 * 1152
    assert vision["gemma-4-26b-a4b"] == tower + 1152 * 2816


def test_full_layers_share_k_and_v_projection() -> None:
    """attention_k_eq_v: full layers of 26B-A4B/31B have no attn_v, sliding ones do; E2B has it everywhere."""
    n = names("gemma-4-26b-a4b")
    assert n["blk.5.attn_k.weight"] == (2816, 2 * 512)
    assert "blk.5.attn_v.weight" not in n and n["blk.4.attn_v.weight"] == (2816, 8 * 256)
    assert n["blk.5.attn_q.weight"] == (2816, 16 * 512) and n["blk.5.attn_output.weight"] == (16 * 512, 2816)
    assert n["blk.5.attn_k_norm.weight"] == (512,) and n["blk.4.attn_q_norm.weight"] == (256,)
    assert sum(k.endswith("attn_v.weight") for k in n) == 25
    assert sum(k.endswith("attn_v.weight") for k in names("gemma-4-e2b")) == 35
    assert n["rope_freqs.weight"] == (256,)  # proportional rope of the 512-wide full heads


def test_moe_layers_keep_the_dense_mlp_beside_fused_experts() -> None:
    inv = inventory(spec("gemma-4-26b-a4b"), mtp=False)
    by = {t.name: t for t in inv.tensors}
    assert (
        by["blk.0.ffn_up.weight"].shape == (2816, 2112) and by["blk.0.ffn_up.weight"].role is Role.DENSE_FFN
    )
    assert by["blk.0.ffn_gate_up_exps.weight"].shape == (2816, 2 * 704, 128)
    assert by["blk.0.ffn_down_exps.weight"].shape == (704, 2816, 128)
    assert "blk.0.ffn_gate_exps.weight" not in by
    for name, shape in (("ffn_gate_inp.scale", (2816,)), ("ffn_down_exps.scale", (128,))):
        assert by[f"blk.0.{name}"].shape == shape and by[f"blk.0.{name}"].stored is F32
    assert by["blk.0.ffn_gate_inp.weight"].stored is F32
    for norm in ("pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2", "post_ffw_norm"):
        assert f"blk.29.{norm}.weight" in by
    assert by["blk.0.layer_output_scale.weight"].shape == (1,)
    assert "output.weight" not in by  # tied embeddings
    moe = spec("gemma-4-26b-a4b").moe_ffn
    assert moe is not None and (moe.n_expert, moe.n_expert_used, moe.n_ff_exp, moe.n_ff_shexp) == (
        128,
        8,
        704,
        2112,
    )


def test_per_layer_embeddings_and_kv_sharing() -> None:
    s = spec("gemma-4-e2b")
    n = names("gemma-4-e2b")
    assert s.n_embd_per_layer == 256
    assert n["per_layer_token_embd.weight"] == (256 * 35, 262144)
    assert n["per_layer_model_proj.weight"] == (1536, 256 * 35) and n["per_layer_proj_norm.weight"] == (256,)
    assert n["blk.0.inp_gate.weight"] == (1536, 256) and n["blk.0.proj.weight"] == (256, 1536)
    # the last 20 layers read layer 13's (sliding) or 14's (full) cache, yet keep their K/V weights
    reuse = [la.attn.kv_reuse for la in s.layers]
    assert reuse[:15] == [-1] * 15
    assert reuse[15:] == [14 if il % 5 == 4 else 13 for il in range(15, 35)]
    assert "blk.34.attn_k.weight" in n and "blk.34.attn_v.weight" in n
    # use_double_wide_mlp: the KV-shared layers' MLP is twice as wide
    assert [la.ffn.n_ff for la in s.layers] == [6144] * 15 + [12288] * 20
    e4b = spec("gemma-4-e4b")
    assert [la.attn.kv_reuse for la in e4b.layers][24:] == [23 if il % 6 == 5 else 22 for il in range(24, 42)]
    assert {la.ffn.n_ff for la in e4b.layers} == {10240}


def test_gguf_metadata() -> None:
    kv = family("gemma4").gguf_metadata(inventory(spec("gemma-4-26b-a4b")))
    assert kv[".attention.head_count"] == 16
    assert kv[".attention.head_count_kv"] == [2 if (il + 1) % 6 == 0 else 8 for il in range(30)]
    assert (kv[".attention.key_length"], kv[".attention.key_length_swa"]) == (512, 256)
    assert (kv[".rope.dimension_count"], kv[".rope.dimension_count_swa"]) == (512, 256)
    assert kv[".attention.sliding_window_pattern"] == [(il + 1) % 6 != 0 for il in range(30)]
    assert (kv[".feed_forward_length"], kv[".expert_feed_forward_length"]) == (2112, 704)
    assert kv[".embedding_length_per_layer_input"] == 0 and kv[".attention.shared_kv_layers"] == 0
    assert ".expert_shared_count" not in kv
    e2b = family("gemma4").gguf_metadata(inventory(spec("gemma-4-e2b")))
    assert e2b[".attention.head_count_kv"] == 1 and e2b[".attention.shared_kv_layers"] == 20
    assert e2b[".feed_forward_length"] == [6144] * 15 + [12288] * 20
    assert e2b[".embedding_length_per_layer_input"] == 256 and e2b[".attention.sliding_window"] == 512


def per_token(model: str, **kw: bool) -> dict[AttnKind, set[int]]:
    """K+V bytes per cell of each layer kind (f16), layers owning a cache only."""
    s = spec(model)
    out: dict[AttnKind, set[int]] = {}
    for lm in layer_memory(s, CacheConfig(n_ctx=8192, **kw)):
        if s.layers[lm.layer].attn.kv_reuse < 0:
            out.setdefault(lm.kind, set()).add((lm.k_bytes + lm.v_bytes) // lm.cells)
    return out


def test_kv_bytes_per_token() -> None:
    # sliding: 8 KV heads x 256 x (K + V) x 2 bytes; full: 2 x 512, V cached although it is K
    assert per_token("gemma-4-26b-a4b") == {AttnKind.SWA: {8192}, AttnKind.FULL: {4096}}
    # without flash attention V is transposed and padded to the widest V row (2048 values)
    assert per_token("gemma-4-26b-a4b", flash_attn=False) == {AttnKind.SWA: {8192}, AttnKind.FULL: {6144}}
    assert per_token("gemma-4-31b") == {AttnKind.SWA: {16384}, AttnKind.FULL: {8192}}
    assert per_token("gemma-4-e2b") == {AttnKind.SWA: {1024}, AttnKind.FULL: {2048}}
    assert per_token("gemma-4-e4b") == {AttnKind.SWA: {2048}, AttnKind.FULL: {4096}}
    assert per_token("gemma-4-12b") == {AttnKind.SWA: {8192}, AttnKind.FULL: {2048}}  # 1 KV head of 512


def test_kv_sharing_layers_own_no_cache() -> None:
    lms = layer_memory(spec("gemma-4-e2b"), CacheConfig(n_ctx=32768))
    assert all(lm.k_bytes == lm.v_bytes == 0 for lm in lms[15:])
    assert [lm.cells for lm in lms[15:20]] == [1024, 1024, 1024, 1024, 32768]  # they attend over their source
    # 12 sliding layers of PAD256(512 + 512) cells, 3 full layers of 32768 cells
    assert sum(lm.k_bytes + lm.v_bytes for lm in lms[:15]) == 12 * 1024 * 1024 + 3 * 32768 * 2048


def test_config_errors() -> None:
    cfg = dict(load_catalog()["gemma-4-e2b"].config)
    with pytest.raises(BadConfig, match="layer_types"):
        spec_from_config({k: v for k, v in cfg.items() if k != "layer_types"})
    # every layer shared: no earlier layer owns a cache to reuse
    with pytest.raises(BadConfig, match="no earlier"):
        spec_from_config({**cfg, "num_kv_shared_layers": 35})
    with pytest.raises(BadConfig, match="full_attention"):
        spec_from_config({**cfg, "layer_types": ["sliding_attention"] * 35})


def test_shrunk_spec_keeps_sharing_and_ple() -> None:
    """The materialised file keeps the KV-sharing pattern and the per-layer embedding width."""
    s = spec("gemma-4-e2b")
    small = shrink(s)
    assert [la.attn.kv_reuse for la in small.layers] == [la.attn.kv_reuse for la in s.layers]
    assert small.n_embd_per_layer == 256
    assert small.flags == s.flags and small.n_layer == s.n_layer


# ggml-org's GGUF uploads as listed in Llama-macOS's LlamaBarn catalog (Catalog+Gemma4.swift, the version
# with bf16 mmproj links), made with the stock llama-quantize recipe. moeplan's prediction from the config
# falls short of every one by the same ~5.47 MB: the files' tokenizer metadata (262144 tokens, scores,
# types and merges), which moeplan does not count; the tensor data agree.
PUBLISHED_FILES = {
    ("gemma-4-26b-a4b", "Q8_0"): 26_859_858_464,
    ("gemma-4-26b-a4b", "Q4_K_M"): 16_796_015_136,
    ("gemma-4-31b", "Q8_0"): 32_635_674_400,
    ("gemma-4-31b", "Q4_K_M"): 18_687_061_792,
    ("gemma-4-e4b", "Q8_0"): 8_031_240_160,
    ("gemma-4-e4b", "Q4_K_M"): 5_335_289_824,
    ("gemma-4-e2b", "Q8_0"): 4_967_494_592,
}


@pytest.mark.parametrize(("model", "quant"), sorted(PUBLISHED_FILES))
def test_published_file_sizes(model: str, quant: str) -> None:
    got, want = predict_size(model, quant).file_bytes, PUBLISHED_FILES[(model, quant)]
    assert 5_400_000 < want - got < 5_500_000, f"{got:,} vs published {want:,}"


@pytest.mark.parametrize("model", sorted(TEXT_PARAMS))
def test_file_reads_back_as_the_same_model(model: str) -> None:
    """`spec_from_gguf` (llama.cpp's reading of the keys) inverts `gguf_metadata`: every layer equal,
    KV-sharing targets (from `shared_kv_layers`), K=V (no attn_v on full layers) and the PLE width."""
    m = materialize(load_catalog()[model].spec())
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers
    assert (got.flags, got.n_embd_per_layer, got.tied_embeddings) == (
        m.spec.flags,
        m.spec.n_embd_per_layer,
        True,
    )
