"""Gemma 3n (llama.cpp `gemma3n`): layer kinds and KV sharing from the config, the loader's tensors
(gemma3n.cpp `load_arch_tensors`), parameter totals against published figures, GGUF keys, the KV
cache per token, where the AltUp projections live, and the configs llama.cpp would run differently."""

from typing import Any

import pytest
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines.llamacpp import parse_placement, plan_memory
from moeplan.errors import BadConfig
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf

# The inventory's totals; Ollama lists its GGUFs of gemma3n:e2b / :e4b at 4.46B / 6.87B parameters
# (ollama/ollama#11286), the HF collection's 5.98B / 8.39B add the vision and audio towers.
PARAMS = {"gemma-3n-e2b": (4_458_122_848, 4.46), "gemma-3n-e4b": (6_868_990_448, 6.87)}
LAYERS = {"gemma-3n-e2b": (30, 8192), "gemma-3n-e4b": (35, 16384)}
# gemma3n.cpp load_arch_tensors, one block: name -> shape in ggml order (n_embd 2048, 8 x 256 query,
# 2 x 256 KV, 4 AltUp streams, LAuReL rank 64, per-layer inputs 256)
BLOCK = {
    "attn_norm": (2048,),
    "attn_q": (2048, 2048),
    "attn_k": (2048, 512),
    "attn_v": (2048, 512),
    "attn_output": (2048, 2048),
    "attn_q_norm": (256,),
    "attn_k_norm": (256,),
    "post_attention_norm": (2048,),
    "ffn_norm": (2048,),
    "ffn_gate": (2048, "n_ff"),
    "ffn_up": (2048, "n_ff"),
    "ffn_down": ("n_ff", 2048),
    "post_ffw_norm": (2048,),
    "inp_gate": (2048, 256),
    "proj": (256, 2048),
    "post_norm": (2048,),
    "altup_correct_coef": (4, 4),
    "altup_correct_scale": (2048,),
    "altup_predict_coef": (4, 16),
    "altup_router": (2048, 4),
    "altup_router_norm": (2048,),
    "laurel_l": (2048, 64),
    "laurel_r": (64, 2048),
    "laurel_post_norm": (2048,),
}


def spec(model: str) -> ModelSpec:
    return resolve(model).spec()


def config(model: str, **changes: Any) -> dict[str, Any]:
    return {**load_catalog()[model].config, **changes}


@pytest.mark.parametrize("name", ["google/gemma-3n-E2B-it", "gemma-3n-E2B-it", "gemma3n:e2b", "Gemma-3n-E2B"])
def test_names_people_type_resolve(name: str) -> None:
    assert resolve(name).id == "gemma-3n-e2b"
    assert resolve(name.replace("2", "4")).id == "gemma-3n-e4b"


@pytest.mark.parametrize("model", sorted(LAYERS))
def test_layer_kinds_and_kv_sharing(model: str) -> None:
    s, (n, n_ff) = spec(model), LAYERS[model]
    assert s.arch == "gemma3n" and s.tied_embeddings and (s.n_embd, s.n_vocab, s.n_layer) == (2048, 262400, n)
    kinds = [la.attn.kind for la in s.layers]
    assert [il for il, k in enumerate(kinds) if k is AttnKind.FULL] == list(range(4, n, 5))
    assert {la.attn.window for la in s.layers if la.attn.kind is AttnKind.SWA} == {512}
    assert {(la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k) for la in s.layers} == {(8, 2, 256)}
    assert {(la.ffn.kind, la.ffn.n_ff) for la in s.layers} == {(FFNKind.DENSE, n_ff)}
    # layers 0-19 own a cache; from 20 on each reads layer 18 (sliding) or 19 (full)
    reuse = [la.attn.kv_reuse for la in s.layers]
    assert reuse == [-1] * 20 + [19 if k is AttnKind.FULL else 18 for k in kinds[20:]]
    assert s.n_embd_per_layer == 256


@pytest.mark.parametrize("model", sorted(PARAMS))
def test_tensors_are_the_loaders(model: str) -> None:
    s, (n, n_ff) = spec(model), LAYERS[model]
    shapes = {t.name: t.shape for t in inventory(s).tensors}
    globals_ = {k: v for k, v in shapes.items() if not k.startswith("blk.")}
    assert globals_ == {
        "token_embd.weight": (2048, 262400),  # padded to vocab_size, like the per-layer table
        "altup_proj.weight": (2048, 2048, 3),
        "altup_unembd_proj.weight": (2048, 2048, 3),
        "per_layer_token_embd.weight": (256 * n, 262400),
        "per_layer_model_proj.weight": (2048, 256 * n),
        "per_layer_proj_norm.weight": (256,),
        "output_norm.weight": (2048,),  # tied: no output.weight, llama.cpp duplicates token_embd
    }
    want = {k: tuple(n_ff if d == "n_ff" else d for d in v) for k, v in BLOCK.items()}
    for il in (0, 19, 20, n - 1):  # the KV-sharing layers keep their k/v projections
        p = f"blk.{il}."
        assert {k[len(p) :].removesuffix(".weight"): v for k, v in shapes.items() if k.startswith(p)} == want
    assert len(shapes) == 7 + 24 * n  # 727 for the E2B, the count of ggml-org's Q8_0 file


@pytest.mark.parametrize("model", sorted(PARAMS))
def test_parameters_match_the_published_counts(model: str) -> None:
    total = sum(t.n_elements for t in inventory(spec(model)).tensors)
    exact, published = PARAMS[model]
    assert total == exact and round(total / 1e9, 2) == published


def test_kv_cache_of_the_twenty_owning_layers() -> None:
    """2 KV heads x 256 x (K + V) x 2 bytes = 2 KiB per token per owning layer: 4 full layers hold the
    whole context, 16 sliding ones PAD256(512 + 512) cells; layers 20-29 hold nothing."""
    lms = layer_memory(spec("gemma-3n-e2b"), CacheConfig(n_ctx=32768))
    assert all(lm.k_bytes == lm.v_bytes == 0 for lm in lms[20:])
    assert sum(lm.k_bytes + lm.v_bytes for lm in lms) == (4 * 32768 + 16 * 1024) * 2048
    assert [lm.cells for lm in lms[20:25]] == [1024, 1024, 1024, 1024, 32768]  # they attend over their source


def test_gguf_metadata() -> None:
    kv = family("gemma3n").gguf_metadata(inventory(spec("gemma-3n-e4b")))
    assert kv[".feed_forward_length"] == 16384 and kv[".block_count"] == 35
    assert kv[".attention.sliding_window_pattern"] == [(il + 1) % 5 != 0 for il in range(35)]
    assert (kv[".attention.sliding_window"], kv[".attention.shared_kv_layers"]) == (512, 15)
    assert (kv[".attention.key_length"], kv[".attention.head_count_kv"]) == (256, 2)
    assert (kv[".embedding_length_per_layer_input"], kv[".final_logit_softcapping"]) == (256, 30.0)
    assert kv[".context_length"] == 32768


@pytest.mark.parametrize("model", sorted(PARAMS))
def test_file_reads_back_as_the_same_model(model: str) -> None:
    """`spec_from_gguf` (KV sharing fixed from layer 20, the pattern array, PLE width) inverts the keys."""
    m = materialize(spec(model))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers
    assert (got.n_embd_per_layer, got.tied_embeddings, got.n_vocab) == (256, True, m.spec.n_vocab)


def test_per_layer_ffn_widths_read_like_one() -> None:
    """Gemma3nTextConfig takes intermediate_size per layer too (the converter writes it as an array)."""
    listed = spec_from_config(config("gemma-3n-e2b", intermediate_size=[8192] * 30))
    assert listed.layers == spec("gemma-3n-e2b").layers


def test_altup_projections_live_with_the_output_layer() -> None:
    """llama-arch.cpp files altup_proj / altup_unembd_proj under LLM_TENSOR_LAYER_OUTPUT: with -ngl 1
    (the output layer only) they go to the GPU with output_norm; per_layer_model_proj stays with layer 0."""
    inv = inventory(spec("gemma-3n-e2b"))
    mem = plan_memory(
        inv, predict(inv, FileType.Q8_0), CacheConfig(n_ctx=4096), parse_placement("-ngl 1"), ("CUDA0",)
    )
    on_gpu = set(mem.tensors_on("CUDA0"))
    assert {"altup_proj.weight", "altup_unembd_proj.weight", "output_norm.weight"} <= on_gpu
    assert "per_layer_model_proj.weight" not in on_gpu and not any(t.startswith("blk.") for t in on_gpu)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"altup_num_inputs": 2}, "fixes altup_num_inputs at 4"),
        ({"laurel_rank": 32}, "fixes laurel_rank at 64"),
        ({"hidden_size_per_layer_input": 128}, "fixes hidden_size_per_layer_input at 256"),
        ({"altup_active_idx": 1}, "fixes altup_active_idx at 0"),
        ({"num_kv_shared_layers": 5}, "shares KV from layer 20"),
        ({"layer_types": None}, "layer_types"),
        ({"layer_types": ["sliding_attention"] * 30}, "shares KV from layer 20"),
        ({"vocab_size_per_layer_input": 300000}, "pads per_layer_token_embd"),
        ({"intermediate_size": [8192] * 29}, "intermediate_size"),
    ],
)
def test_configs_llamacpp_would_run_differently_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BadConfig, match=message):
        spec_from_config(config("gemma-3n-e2b", **changes))
