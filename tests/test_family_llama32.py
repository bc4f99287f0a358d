"""Llama-3.2-1B and -3B (`llama`): the small Llama 3.2 text models tie the output head to the input
embedding, so the converter writes no `output.weight` (llama.cpp's load_tensors falls back to
token_embd), and their llama3 rope scaling adds the global `rope_freqs` tensor."""

import pytest

from moeplan.arch.inventory import inventory
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.sources.catalog import resolve
from tests.catalog_specs import spec


@pytest.mark.parametrize(
    ("model_id", "n_layer", "n_embd", "n_head", "head_dim", "params", "published"),
    [
        # recipes: 1.23B / 3.21B; llama.cpp's print_info says 1.24 B / 3.21 B for these files
        ("llama-3.2-1b", 16, 2048, 32, 64, 1_235_814_432, 1.23e9),
        ("llama-3.2-3b", 28, 3072, 24, 128, 3_212_749_888, 3.21e9),
    ],
)
def test_llama32_tied_layers_and_params(
    model_id: str, n_layer: int, n_embd: int, n_head: int, head_dim: int, params: int, published: float
) -> None:
    s = spec(model_id)
    assert s.tied_embeddings and s.n_layer == n_layer and s.n_embd == n_embd
    assert all(la.attn.kind is AttnKind.FULL and la.ffn.kind is FFNKind.DENSE for la in s.layers)
    assert {(la.attn.n_head, la.attn.n_head_kv, la.attn.head_dim_k, la.ffn.n_ff) for la in s.layers} == {
        (n_head, 8, head_dim, 8192)
    }
    names = {t.name: t.shape for t in inventory(s).tensors}
    assert "output.weight" not in names and names["token_embd.weight"] == (n_embd, 128256)
    assert names["rope_freqs.weight"] == (head_dim // 2,)
    total = sum(t.n_elements for t in inventory(s).tensors)
    assert total == params and abs(total - published) / published < 0.005


@pytest.mark.parametrize(
    ("model_id", "per_token"), [("llama-3.2-1b", 16 * 2 * 8 * 64 * 2), ("llama-3.2-3b", 28 * 2 * 8 * 128 * 2)]
)
def test_llama32_kv_per_token(model_id: str, per_token: int) -> None:
    """F16 K and V for 8 KV heads on every layer: 32 KiB a token (1B), 112 KiB (3B)."""
    lms = layer_memory(spec(model_id), CacheConfig(n_ctx=8192))
    assert sum(lm.k_bytes + lm.v_bytes for lm in lms) == 8192 * per_token


def test_llama32_instruct_names_resolve_to_the_base_entry() -> None:
    assert resolve("meta-llama/Llama-3.2-1B-Instruct").id == "llama-3.2-1b"
    assert resolve("unsloth/Llama-3.2-3B-Instruct-GGUF").id == "llama-3.2-3b"
    assert resolve("Llama 3.2 3B").id == "llama-3.2-3b"
