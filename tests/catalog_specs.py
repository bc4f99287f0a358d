"""Catalog lookups the architecture-family tests share: a model's spec, its config with changes,
and its tensor shapes."""

from typing import Any

from moeplan.arch.inventory import inventory
from moeplan.arch.spec import ModelSpec
from moeplan.sources.catalog import load_catalog


def spec(model_id: str) -> ModelSpec:
    return load_catalog()[model_id].spec()


def config(model_id: str, **changes: Any) -> dict[str, Any]:
    return {**load_catalog()[model_id].config, **changes}


def shapes(s: ModelSpec) -> dict[str, tuple[int, ...]]:
    return {t.name: t.shape for t in inventory(s).tensors}
