"""The built-in catalog: one YAML file per model under `moeplan/data/models/`, each holding the
model's HF config.json values (text model) and the source of every value."""

import dataclasses
import re
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from moeplan.arch.registry import spec_from_config
from moeplan.arch.spec import ModelSpec
from moeplan.arch.vision import VisionTower, tower_from_config
from moeplan.data_files import InvalidYAML, load_yaml
from moeplan.errors import BadConfig, ModelNotFound, did_you_mean, same_model_line
from moeplan.sources.file_names import read_file_name


class Source(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    url: str
    covers: str


class PublishedParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    total: int
    active: int | None = None


class PublishedGGUF(BaseModel):
    """What the widely used GGUF uploads of a model hold where the pinned converter would write
    something else today (e.g. files made before it kept MTP layers), with the evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    mtp: bool
    source: str


class Checkpoint(BaseModel):
    """A pre-quantized release of the model that vLLM and SGLang load as published (they read its
    quantization from its config.json), with where it is documented."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format: Literal["bf16", "fp8", "mxfp4", "nvfp4", "int4", "awq"]  # awq: AWQ or GPTQ, 4-bit group 128
    repo: str
    source: str
    block_scaled: bool = True  # FP8: 128x128 block scales (False: per channel / tensor); checked for TP


class RopeExtension(BaseModel):
    """A context beyond the trained one that the model's card documents, with the rope scaling that
    reaches it (llama.cpp: --rope-scaling, --rope-scale, --yarn-orig-ctx; common/arg.cpp)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    method: Literal["yarn"]
    factor: float  # the largest documented: context = factor x original_context
    original_context: int
    source: str


class Vision(BaseModel):
    """The release's vision tower (its mmproj file): the `vision_config` values the pinned converter
    reads, the projector it writes, and the source of every value."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    projector: str  # clip.projector_type: qwen3vl_merger, gemma3
    config: dict[str, Any]
    sources: list[Source]


# A repository name's trailing release precision, which GGUF file names drop.
_RELEASE_PRECISION = re.compile(r"-(?:BF16|FP16|FP8|FP32)$", re.IGNORECASE)


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
    published_gguf: PublishedGGUF | None = None
    checkpoints: list[Checkpoint] = []
    rope_extension: RopeExtension | None = None
    vision: Vision | None = None
    _spec: ModelSpec | None = PrivateAttr(default=None)

    @property
    def gguf_stem(self) -> str:
        """How GGUF uploads of this model begin their file names: the Hub repository's name
        (gemma-3-12b-it-Q4_K_M.gguf), not the display name, which may hold spaces, and without the
        release's precision suffix (NVIDIA-Nemotron-3-Nano-30B-A3B-BF16 is uploaded as
        NVIDIA-Nemotron-3-Nano-30B-A3B-Q4_K_M.gguf)."""
        return _RELEASE_PRECISION.sub("", self.hf_repo.rsplit("/", 1)[-1])

    def spec(self) -> ModelSpec:
        """Built once per entry: planning caches (inventory, predicted weights) key on its identity.
        Its context is the entry's `context_length`, the window the card documents, where that is
        shorter than the config's positions (Mistral-Nemo: trained on 128k, config and GGUF 1,024,000):
        moeplan plans up to what the model was trained for, not what the file allows."""
        if self._spec is None:
            spec = spec_from_config(self.config, name=self.name)
            if self.context_length < spec.context_length:
                spec = dataclasses.replace(spec, context_length=self.context_length)
            self._spec = spec
        return self._spec

    def vision_tower(self) -> VisionTower | None:
        """The mmproj's tower, None for a text-only model."""
        if self.vision is None:
            return None
        sources = tuple(s.url for s in self.vision.sources)
        t = tower_from_config(self.vision.projector, self.vision.config, self.spec().n_embd)
        return dataclasses.replace(t, sources=sources)


_FOLDER = resources.files("moeplan") / "data" / "models"
# What a catalog id looks like (and so a file name under data/models/): no path separators.
_ID = re.compile(r"[a-z0-9][a-z0-9._-]*", re.ASCII)


@cache
def _load_entry(file_name: str) -> CatalogEntry:
    """One catalog file, parsed once per process whether reached by its id or by `load_catalog`
    (planning caches key on the entry's identity)."""
    item = _FOLDER / file_name
    try:
        entry = CatalogEntry.model_validate(load_yaml(item))
    except (InvalidYAML, ValidationError) as e:
        raise BadConfig(f"catalog file {file_name} is invalid: {str(e).splitlines()[0]}") from None
    if entry.id + ".yaml" != file_name:
        raise BadConfig(f"catalog file {file_name} declares id '{entry.id}'")
    return entry


def catalog_ids() -> list[str]:
    """Every catalog id, in the catalog's order, from the file names alone: a lookup that needs a
    few entries (the draft models of a family) reads those files, not all of them."""
    names = sorted(p.name for p in _FOLDER.iterdir() if p.name.endswith(".yaml"))
    return [n.removesuffix(".yaml") for n in names]


def load_entry(model_id: str) -> CatalogEntry:
    """The entry of a catalog id (one of `catalog_ids()`)."""
    return _load_entry(f"{model_id}.yaml")


@cache
def load_catalog() -> dict[str, CatalogEntry]:
    entries = (load_entry(i) for i in catalog_ids())
    return {e.id: e for e in entries}


def _names(entry: CatalogEntry) -> list[str]:
    """Every name of the entry, its pre-quantized releases' repositories included (the FP8 repo is what
    a vLLM user copies: `poolside/Laguna-XS.2-FP8`)."""
    repos = [entry.hf_repo, *(c.repo for c in entry.checkpoints)]
    return [entry.id, entry.name, *repos, *(r.split("/")[-1] for r in repos), *entry.aliases]


# Repackaging marks of GGUF and quantized uploads (`unsloth/Qwen3.6-35B-A3B-GGUF`,
# `bartowski/Qwen_Qwen3-8B-GGUF`, `lmstudio-community/…-GGUF`): the file format, not the model.
_PACKAGING_SUFFIXES = ("-gguf", "_gguf", ".gguf")


def normalise(name: str) -> str:
    """The model a typed name means, in lower case: without the uploader (`org/`), a `-GGUF`
    suffix, or bartowski's `Org_` prefix, which repeat the original repository's organisation."""
    key = name.strip().lower()
    _, _, key = key.rpartition("/")
    for suffix in _PACKAGING_SUFFIXES:
        key = key.removesuffix(suffix)
    return key


_SEPARATORS = re.compile(r"[\s._-]+")


def _loose(key: str) -> str:
    """A normalised name without separators, for names typed the way people say them: `granite 4.0 h
    small`, `laguna-xs2`, `Trinity Large`."""
    return _SEPARATORS.sub("", key)


@cache
def _loose_index() -> dict[str, CatalogEntry]:
    """Every name of every entry, without separators (two entries claiming one is an error)."""
    index: dict[str, CatalogEntry] = {}
    for key, entry in _index().items():
        other = index.setdefault(_loose(key), entry)
        if other.id != entry.id:
            raise BadConfig(f"catalog entries {other.id} and {entry.id} both claim the name '{key}'")
    return index


@cache
def _index() -> dict[str, CatalogEntry]:
    """Every name of every entry, normalised, to the entry (two entries claiming one name is an error)."""
    index: dict[str, CatalogEntry] = {}
    for entry in load_catalog().values():
        org = entry.hf_repo.split("/")[0].lower()
        for n in _names(entry):
            for key in {n.lower(), normalise(n), f"{org}_{normalise(n)}"}:
                other = index.setdefault(key, entry)
                if other.id != entry.id:
                    raise BadConfig(f"catalog entries {other.id} and {entry.id} both claim the name '{n}'")
    return index


def resolve(name: str) -> CatalogEntry:
    """A catalog entry by id, display name, HF repo (`Qwen/Qwen3.5-35B-A3B`), alias, or the usual
    GGUF repositories of it (`unsloth/…-GGUF`, `ggml-org/…-GGUF`, `bartowski/Org_…-GGUF`), any case,
    with spaces, dots or dashes dropped or swapped (`_loose`)."""
    key = name.strip().lower()
    if _ID.fullmatch(key) and (_FOLDER / f"{key}.yaml").is_file():
        # A catalog id: its own file, not all 75 (a third of `moeplan plan`'s start-up).
        return _load_entry(f"{key}.yaml")
    key = normalise(name)
    entry = _lookup(name)
    if entry is not None:
        return entry
    raise ModelNotFound(
        _named_file_hint(name) or _unknown(name, did_you_mean(key, load_catalog(), same_model_line))
    )


def _unknown(name: str, suggestion: str) -> str:
    """An unknown name said plainly: a suggestion only from the same model line and size, and how a
    model outside the catalog is planned instead."""
    files = "hf://ORG/REPO or FILE.gguf"
    if suggestion:
        return f"unknown model '{name}'{suggestion} (`moeplan models` lists the catalog; others: {files})"
    return f"unknown model '{name}': not in moeplan's catalog (`moeplan models` lists it); give {files}"


def _lookup(name: str) -> CatalogEntry | None:
    key = normalise(name)
    return _index().get(name.strip().lower()) or _index().get(key) or _loose_index().get(_loose(key))


def _named_file_hint(name: str) -> str | None:
    """The refusal of a model name that carries a GGUF file's quantization label (`gpt-oss-120b-mxfp4`,
    `Qwen3-8B-Q4_K_M`): the words before the label name a catalog model, but the label is a second
    choice a model name must not make silently (it would be dropped, or fight an explicit quant)."""
    named = read_file_name(name)
    if named is None or named.file_type is None or not named.model:
        return None
    entry = _lookup(named.model)
    if entry is None:
        return None
    return (
        f"unknown model '{name}': that is a file name ({entry.name} at {named.label}, "
        f"llama.cpp {named.file_type.name}); name the model '{entry.id}' and give the quantization "
        f"on its own (--quant {named.file_type.name})"
    )


def served_as(name: str, entry: CatalogEntry) -> str | None:
    """A note when `name` is a release the entry serves by sharing its config (an alias), not its own."""
    own = {normalise(n) for n in (entry.id, entry.name, entry.hf_repo)}
    if normalise(name) in own or name.strip().lower() in own:
        return None
    alias = next((a for a in entry.aliases if normalise(a) == normalise(name)), None)
    if alias is None:
        return None
    return f"{alias} is planned as {entry.name} ({entry.id}): the same config.json"
