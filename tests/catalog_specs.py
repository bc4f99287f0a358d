"""Catalog lookups the architecture-family tests share: a model's spec, its config with changes,
its tensor shapes, and its cache bytes by llama.cpp's rules."""

from typing import Any

from moeplan.arch.inventory import inventory
from moeplan.arch.spec import AttnKind, ModelSpec
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.sources.catalog import load_catalog


def spec(model_id: str) -> ModelSpec:
    return load_catalog()[model_id].spec()


def config(model_id: str, **changes: Any) -> dict[str, Any]:
    return {**load_catalog()[model_id].config, **changes}


def shapes(s: ModelSpec) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in inventory(s).tensors}


def qwen35_vision_params(depth: int, hidden: int, ffn: int, out: int) -> int:
    """Qwen3.5 vision tower (mmproj, not in our inventory): blocks with biased qkv/proj/fc1/fc2 and two
    LayerNorms, a 2x2 patch merger, a 2x16x16 patch embedding and 2304 position embeddings."""
    block = (hidden * 3 * hidden + 3 * hidden) + (hidden * hidden + hidden)
    block += (hidden * ffn + ffn) + (ffn * hidden + hidden) + 4 * hidden
    merged = 4 * hidden
    merger = (merged * merged + merged) + (merged * out + out) + 2 * hidden
    patch = hidden * 3 * 2 * 16 * 16 + hidden
    return depth * block + merger + patch + 2304 * hidden


def kv_bytes_per_token(s: ModelSpec) -> int:
    """F16 K+V bytes of one context cell over all layers (no flash-attention padding of V)."""
    ctx = 4096
    return sum(lm.k_bytes + lm.v_bytes for lm in layer_memory(s, CacheConfig(n_ctx=ctx))) // ctx


def state_bytes_per_sequence(s: ModelSpec) -> int:
    """Recurrent (conv + SSM) state bytes one sequence keeps over all layers."""
    return sum(lm.state_bytes for lm in layer_memory(s, CacheConfig(n_ctx=4096, n_seq=1)))


def full_kv_per_token(s: ModelSpec) -> int:
    """F16 K+V bytes per token of context of the full-attention layers (two contexts, 256 apart)."""

    def full(n_ctx: int) -> int:
        cfg = CacheConfig(n_ctx=n_ctx)
        return sum(lm.k_bytes + lm.v_bytes for lm in layer_memory(s, cfg) if lm.kind is AttnKind.FULL)

    return (full(512) - full(256)) // 256


def assert_tensors_and_parameters(
    model: str, n_tensors: int, total: int, published: float, tol: float
) -> None:
    """The catalog model's tensor count and parameter total (inventory), and that total against the
    entry's published figure within `tol`."""
    inv = inventory(spec(model))
    assert len(inv.tensors) == n_tensors
    assert sum(t.n_elements for t in inv.tensors) == total
    assert abs(total - published) / published <= tol
    assert load_catalog()[model].params_published.total == published
