"""cohere2 (C4AI Command R7B, Command A): the fixed 3:1 sliding pattern with NoPE full layers, the
tensors src/models/cohere2.cpp loads (parallel block: no FFN norm; token_embd as the output), the
keys its loader requires, parameter counts against published figures, KV bytes by llama.cpp's
rules, the configs this family refuses, and a materialised file read back."""

from typing import Any

import pytest
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory, pad
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import assert_tensors_and_parameters, config, full_kv_per_token, shapes, spec

R7B, COMMAND_A = "c4ai-command-r7b-12-2024", "c4ai-command-a-03-2025"

# (model, tensors, parameters of the GGUF, published total, tolerance of the published figure)
PARAMS = [
    # llama.cpp's log of the converted Q8_0 prints "model params = 8.03 B" (ggml-org/llama.cpp#10816)
    (R7B, 258, 8_028_033_024, 8.03e9, 0.001),
    # the card's "111 billion"; the checkpoint's own count, 111.058 B, to the digit shown
    (COMMAND_A, 514, 111_057_580_032, 111e9, 0.001),
]


@pytest.mark.parametrize(("model", "n_tensors", "total", "published", "tol"), PARAMS)
def test_tensor_count_and_parameters(
    model: str, n_tensors: int, total: int, published: float, tol: float
) -> None:
    assert_tensors_and_parameters(model, n_tensors, total, published, tol)


@pytest.mark.parametrize(("model", "n_layer", "heads", "n_ff"), [
    (R7B, 32, (32, 8, 128), 14336),
    (COMMAND_A, 64, (96, 8, 128), 36864),
])  # fmt: skip
def test_layers(model: str, n_layer: int, heads: tuple[int, int, int], n_ff: int) -> None:
    """Three sliding layers of 4096 with RoPE, then one full layer without positions (cohere2.cpp
    ropes only `is_swa` layers; set_swa_pattern(4): the last of each four is full)."""
    s = spec(model)
    assert s.arch == "cohere2" and s.n_layer == n_layer and s.tied_embeddings
    assert [il for il, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL] == list(
        range(3, n_layer, 4)
    )
    assert {(la.attn.kind, la.attn.window, la.attn.rope) for la in s.layers} == {
        (AttnKind.SWA, 4096, True),
        (AttnKind.FULL, 0, False),
    }
    assert {(la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers} == {heads}
    assert {(la.ffn.kind, la.ffn.n_ff) for la in s.layers} == {(FFNKind.DENSE, n_ff)}


def test_tensors_of_the_parallel_block() -> None:
    """cohere2.cpp `load_arch_tensors`: one attn_norm per block and no ffn_norm, Q and O of
    {n_embd, n_embd}, no biases, output_norm, and no output.weight (token_embd is reused)."""
    sh = shapes(spec(R7B))
    block = {n.removeprefix("blk.5.") for n in sh if n.startswith("blk.5.")}
    assert block == {
        "attn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    }
    assert sh["blk.5.attn_q.weight"] == (4096, 4096) and sh["blk.5.attn_k.weight"] == (4096, 1024)
    assert sh["blk.5.ffn_down.weight"] == (14336, 4096)
    assert {n for n in sh if not n.startswith("blk.")} == {"token_embd.weight", "output_norm.weight"}


def test_metadata() -> None:
    """Cohere2Model.set_gguf_parameters: logit scale and window, the LayerNorm epsilon cohere2.cpp
    requires (no RMS one), the whole head rotated, and no sliding pattern key."""
    kv = family("cohere2").gguf_metadata(inventory(spec(R7B)))
    assert (kv[".logit_scale"], kv[".attention.sliding_window"], kv[".rope.dimension_count"]) == (
        0.25,
        4096,
        128,
    )
    assert ".attention.layer_norm_epsilon" in kv and ".attention.layer_norm_rms_epsilon" not in kv
    assert ".attention.sliding_window_pattern" not in kv
    assert kv[".context_length"] == 8192  # config.json's max_position_embeddings, as the file says


def test_kv() -> None:
    """F16: full layers grow with the context (8 KV heads of 128); sliding layers hold
    PAD256(4096 + ubatch) cells."""
    s = spec(R7B)
    assert full_kv_per_token(s) == 8 * 2 * 8 * 128 * 2
    assert full_kv_per_token(spec(COMMAND_A)) == 16 * 2 * 8 * 128 * 2
    swa = [lm for lm in layer_memory(s, CacheConfig(n_ctx=32768)) if lm.kind is AttnKind.SWA]
    assert len(swa) == 24 and {lm.cells for lm in swa} == {pad(4096 + 512)}


def test_a_config_of_layer_types_with_the_fixed_pattern_reads_the_same() -> None:
    """Newer config.json files list layer_types instead of sliding_window_pattern."""
    types = ["sliding_attention"] * 3 + ["full_attention"]
    cfg = {k: v for k, v in config(R7B, layer_types=types * 8).items() if k != "sliding_window_pattern"}
    assert spec_from_config(cfg).layers == spec(R7B).layers


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            {"layer_types": ["full_attention"] + ["sliding_attention"] * 3 + ["sliding_attention"] * 28},
            BadConfig,
        ),
        ({"sliding_window_pattern": 6}, BadConfig),
        ({"sliding_window": None}, BadConfig),
        ({"tie_word_embeddings": False}, UnsupportedArchitecture),
        ({"rotary_pct": 0.5}, UnsupportedArchitecture),
        ({"head_dim": 96}, UnsupportedArchitecture),
    ],
)
def test_configs_llama_cpp_would_run_otherwise_are_refused(
    changes: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        spec_from_config(config(R7B, **changes))


def test_file_reads_back_as_materialised() -> None:
    """A cohere2 file without a pattern key gives back the fixed pattern, the tied head and the shapes."""
    m = materialize(spec(R7B))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.tied_embeddings
    assert shapes(got) == shapes(m.spec)
