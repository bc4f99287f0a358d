"""One resolver for every model reference a face accepts: a catalog id, or a Hub reference
(`hf://org/repo` for safetensors, `hf://org/repo:Q4_K_M` for a GGUF file).

A GGUF reference carries the real header (its tensor types); its ModelSpec comes from the
repository's config.json, else the base model's (model card `base_model`), else the GGUF metadata
itself for the architectures whose hparams map one to one. A safetensors reference carries every
shard's header and the ModelSpec of its config.json.
"""

from dataclasses import dataclass
from typing import Any

from gguf import LlamaFileType

from moeplan.arch.registry import spec_from_config
from moeplan.arch.spec import ModelSpec
from moeplan.errors import HubError, MoeplanError
from moeplan.memory.weights import Weights
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import CatalogEntry, resolve
from moeplan.sources.gguf_header import GGUFModel, Value
from moeplan.sources.gguf_weights import arch_of, weights_from_gguf
from moeplan.sources.hub import (
    HubGGUF,
    HubSafetensors,
    list_repo,
    load_json,
    parse_ref,
    read_gguf,
    read_safetensors,
)


@dataclass(frozen=True)
class ResolvedModel:
    id: str  # the catalog id, or the Hub reference as written canonically
    name: str
    spec: ModelSpec | None
    spec_source: str  # "catalog", "config.json of org/repo", "GGUF metadata", or why there is none
    entry: CatalogEntry | None = None
    gguf: HubGGUF | None = None
    safetensors: HubSafetensors | None = None

    def require_spec(self) -> ModelSpec:
        if self.spec is None:
            raise MoeplanError(f"{self.id}: no model description to plan with: {self.spec_source}")
        return self.spec

    @property
    def weights(self) -> Weights | None:
        """The real per-tensor types of a GGUF reference (None for predictions)."""
        return weights_from_gguf(self.gguf.model) if self.gguf else None

    @property
    def file_type(self) -> FileType | None:
        """The llama.cpp file type a GGUF reference's header declares (general.file_type)."""
        if self.gguf is None:
            return None
        ft = self.gguf.model.metadata.get("general.file_type")
        if not isinstance(ft, int):
            return None
        try:
            return FileType.parse(LlamaFileType(ft).name.removeprefix("MOSTLY_"))
        except (ValueError, MoeplanError):
            return None


def _int(meta: dict[str, Value], key: str) -> int | None:
    v = meta.get(key)
    if isinstance(v, list):
        v = max((x for x in v if isinstance(x, int)), default=None)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


# GGUF architecture → HF model_type, for the families whose adapter reads only these hparams.
_GGUF_MODEL_TYPES = {"llama": "llama", "qwen3": "qwen3", "qwen3moe": "qwen3_moe"}


def config_from_gguf(model: GGUFModel) -> dict[str, Any] | None:
    """An HF-style config.json rebuilt from GGUF metadata (llama, qwen3, qwen3moe), else None."""
    meta, arch = model.metadata, arch_of(model)
    if arch not in _GGUF_MODEL_TYPES:
        return None
    vocab = model.shards[0].skipped_arrays.get("tokenizer.ggml.tokens") or _int(meta, f"{arch}.vocab_size")
    names = {t.name for t in model.tensors}
    n_expert = _int(meta, f"{arch}.expert_count") or 0
    cfg: dict[str, Any] = {
        "model_type": "mixtral" if arch == "llama" and n_expert else _GGUF_MODEL_TYPES[arch],
        "hidden_size": _int(meta, f"{arch}.embedding_length"),
        "num_hidden_layers": _int(meta, f"{arch}.block_count"),
        "num_attention_heads": _int(meta, f"{arch}.attention.head_count"),
        "num_key_value_heads": _int(meta, f"{arch}.attention.head_count_kv"),
        "head_dim": _int(meta, f"{arch}.attention.key_length"),
        "intermediate_size": _int(meta, f"{arch}.feed_forward_length"),
        "vocab_size": vocab,
        "max_position_embeddings": _int(meta, f"{arch}.context_length"),
        "tie_word_embeddings": "output.weight" not in names,
    }
    if n_expert:
        used = _int(meta, f"{arch}.expert_used_count")
        if arch == "llama":
            cfg.update(num_local_experts=n_expert, num_experts_per_tok=used)
        else:
            ff_exp = _int(meta, f"{arch}.expert_feed_forward_length")
            cfg.update(num_experts=n_expert, num_experts_per_tok=used, moe_intermediate_size=ff_exp)
            cfg["intermediate_size"] = cfg["intermediate_size"] or ff_exp
    return {k: v for k, v in cfg.items() if v is not None}


def _gguf_spec(found: HubGGUF) -> tuple[ModelSpec | None, str]:
    name = str(found.model.metadata.get("general.name") or found.listing.repo)
    listing = found.listing
    folder = found.group.name.rpartition("/")[0]
    for path in (f"{folder}/config.json", "config.json") if folder else ("config.json",):
        if listing.file(path):
            return spec_from_config(load_json(listing, path), name=name), f"{path} of {listing.repo}"
    for base in listing.base_models[:1]:
        try:
            base_listing = list_repo(base)
            if base_listing.file("config.json"):
                cfg = load_json(base_listing, "config.json")
                return spec_from_config(cfg, name=name), f"config.json of the base model {base}"
        except MoeplanError:
            pass  # a gated or missing base model: fall back to the GGUF metadata
    cfg_gguf = config_from_gguf(found.model)
    if cfg_gguf is not None:
        return spec_from_config(cfg_gguf, name=name), "GGUF metadata"
    return None, (
        f"architecture '{arch_of(found.model)}' needs a config.json "
        f"(none in {listing.repo} or its base model)"
    )


def resolve_model(ref: str) -> ResolvedModel:
    """A catalog id, or a Hub reference read header-only."""
    hub = parse_ref(ref)
    if hub is None:
        entry = resolve(ref)
        return ResolvedModel(entry.id, entry.name, entry.spec(), "catalog", entry=entry)
    if hub.target:
        found = read_gguf(hub)
        spec, source = _gguf_spec(found)
        name = str(found.model.metadata.get("general.name") or hub.repo)
        return ResolvedModel(str(hub), name, spec, source, gguf=found)
    st = read_safetensors(hub)
    try:
        spec = spec_from_config(st.config, name=hub.repo)
    except MoeplanError as e:
        raise HubError(f"{hub}: {e}") from None
    return ResolvedModel(str(hub), hub.repo, spec, f"config.json of {hub.repo}", safetensors=st)
