"""The built-in catalog: one YAML file per model under `moeplan/data/models/`, each holding the
model's HF config.json values (text model) and the source of every value."""

from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from moeplan.arch.registry import spec_from_config
from moeplan.arch.spec import ModelSpec
from moeplan.errors import BadConfig, ModelNotFound, did_you_mean

# libyaml's parser when PyYAML was built with it (the wheels are): ~10x faster than pure Python.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str
    covers: str


class PublishedParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    total: int
    active: int | None = None


class CatalogEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str
    name: str
    hf_repo: str
    aliases: list[str] = []
    dense_sibling: str | None = None
    release_format: Literal["bf16", "fp8", "mxfp4", "int4"]
    params_published: PublishedParams
    context_length: int
    config: dict[str, Any]
    sources: list[Source]
    notes: str = ""
    _spec: ModelSpec | None = PrivateAttr(default=None)

    def spec(self) -> ModelSpec:
        """Built once per entry: planning caches (inventory, predicted weights) key on its identity."""
        if self._spec is None:
            self._spec = spec_from_config(self.config, name=self.name)
        return self._spec


@cache
def load_catalog() -> dict[str, CatalogEntry]:
    entries: dict[str, CatalogEntry] = {}
    folder = resources.files("moeplan") / "data" / "models"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".yaml"):
            continue
        try:
            entry = CatalogEntry.model_validate(
                yaml.load(item.read_text(encoding="utf-8"), Loader=SafeLoader)
            )
        except (yaml.YAMLError, ValidationError) as e:
            raise BadConfig(f"catalog file {item.name} is invalid: {str(e).splitlines()[0]}") from None
        if entry.id + ".yaml" != item.name:
            raise BadConfig(f"catalog file {item.name} declares id '{entry.id}'")
        entries[entry.id] = entry
    return entries


def _names(entry: CatalogEntry) -> list[str]:
    repo_tail = entry.hf_repo.split("/")[-1]
    return [entry.id, entry.name, entry.hf_repo, repo_tail, *entry.aliases]


def resolve(name: str) -> CatalogEntry:
    """A catalog entry by id, display name, HF repo (`Qwen/Qwen3.5-35B-A3B`) or alias, any case."""
    catalog = load_catalog()
    key = name.strip().lower()
    for entry in catalog.values():
        if key in (n.lower() for n in _names(entry)):
            return entry
    raise ModelNotFound(
        f"unknown model '{name}'{did_you_mean(key, catalog)} (see `moeplan models` for the catalog)"
    )
