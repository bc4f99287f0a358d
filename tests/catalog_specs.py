"""Catalog lookups the architecture-family tests share: a model's spec, its config with changes,
and its tensor shapes."""

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


def full_kv_per_token(s: ModelSpec) -> int:
    """F16 K+V bytes per token of context of the full-attention layers (two contexts, 256 apart)."""

    def full(n_ctx: int) -> int:
        cfg = CacheConfig(n_ctx=n_ctx)
        return sum(lm.k_bytes + lm.v_bytes for lm in layer_memory(s, cfg) if lm.kind is AttnKind.FULL)

    return (full(512) - full(256)) // 256
