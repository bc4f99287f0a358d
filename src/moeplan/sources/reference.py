"""One resolver for every model reference a face accepts: a catalog id, a local GGUF file, or a
Hub reference (`hf://org/repo` for safetensors, `hf://org/repo:Q4_K_M` for a GGUF file).

A GGUF file (local or on the Hub) carries its real header: its tensors with their types are the
weights and the inventory, and its ModelSpec is rebuilt from its own metadata as llama.cpp's loader
reads it (`sources/gguf_spec.py`); only where that cannot be done does a Hub file fall back to the
repository's config.json, else the base model's (model card `base_model`). A safetensors reference
carries every shard's header and the ModelSpec of its config.json.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from moeplan.arch.registry import spec_from_config
from moeplan.arch.spec import ModelSpec
from moeplan.errors import HubError, MoeplanError
from moeplan.gguf_constants import LlamaFileType
from moeplan.memory.weights import FileInventory, Weights
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import CatalogEntry, resolve, served_as
from moeplan.sources.hub_refs import parse_ref

if TYPE_CHECKING:
    from moeplan.sources.gguf_header import GGUFModel
    from moeplan.sources.hub import HubGGUF, HubSafetensors

# The GGUF reader loads where a reference names a file: a catalog id needs none of it
# (tests/test_cold_start.py).


@dataclass(frozen=True)
class ResolvedModel:
    id: str  # the catalog id, the file path, or the Hub reference as written canonically
    name: str
    spec: ModelSpec | None
    spec_source: str  # "catalog", "GGUF metadata", "config.json of org/repo", or why there is none
    entry: CatalogEntry | None = None
    gguf: "HubGGUF | None" = None
    safetensors: "HubSafetensors | None" = None
    alias_note: str | None = None  # the name typed is a release this catalog entry serves (served_as)
    header: "GGUFModel | None" = None  # a GGUF file's header (local or on the Hub)
    file: FileInventory | None = None  # that file's tensors as the inventory to plan with

    @property
    def gguf_stem(self) -> str:
        """The start of a GGUF file name for this model in a command: the catalog entry's Hub
        repository name, else the name without its organisation."""
        return self.entry.gguf_stem if self.entry is not None else self.name.rsplit("/", 1)[-1]

    def require_spec(self) -> ModelSpec:
        if self.spec is None:
            raise MoeplanError(f"{self.id}: no model description to plan with: {self.spec_source}")
        return self.spec

    @property
    def weights(self) -> Weights | None:
        """The real per-tensor types of a GGUF file (None for predictions)."""
        if self.file is not None:
            return self.file.weights
        if self.header is None:
            return None
        from moeplan.sources.gguf_weights import weights_from_gguf

        return weights_from_gguf(self.header)

    @property
    def file_type(self) -> FileType | None:
        """The llama.cpp file type a GGUF file's header declares (general.file_type)."""
        if self.header is None:
            return None
        ft = self.header.metadata.get("general.file_type")
        if not isinstance(ft, int):
            return None
        try:
            return FileType.parse(LlamaFileType(ft).name.removeprefix("MOSTLY_"))
        except (ValueError, MoeplanError):
            return None


def _gguf_spec(found: "HubGGUF") -> tuple[ModelSpec | None, str]:
    """The file's own metadata; where moeplan cannot read its architecture from it, the
    repository's config.json, else its base model's."""
    from moeplan.sources.gguf_spec import spec_from_gguf
    from moeplan.sources.hub import list_repo, load_json

    try:
        return spec_from_gguf(found.model), "GGUF metadata"
    except MoeplanError as e:
        metadata_error = str(e)
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
            pass  # a gated or missing base model: the metadata's error stands
    return None, f"{metadata_error}; no config.json in {listing.repo} or its base model either"


def _file(header: "GGUFModel", spec: ModelSpec | None) -> FileInventory | None:
    if spec is None:
        return None
    from moeplan.sources.gguf_weights import weights_from_gguf

    w = weights_from_gguf(header)
    n_mtp = len(spec.mtp_layers)
    return FileInventory(spec, tuple(t.spec for t in w.tensors), spec.n_layer + n_mtp, n_mtp, w)


def _local_gguf(path: str) -> ResolvedModel:
    from moeplan.sources.gguf_header import read_local
    from moeplan.sources.gguf_spec import spec_from_gguf

    header = read_local(path)
    try:
        spec, source = spec_from_gguf(header), "GGUF metadata"
    except MoeplanError as e:
        spec, source = None, str(e)
    name = str(header.metadata.get("general.name") or Path(path).name)
    return ResolvedModel(path, name, spec, source, header=header, file=_file(header, spec))


def resolve_model(ref: str) -> ResolvedModel:
    """A catalog id, or a Hub reference read header-only."""
    hub = parse_ref(ref)
    if hub is None and ref.strip().lower().endswith(".gguf"):
        return _local_gguf(ref.strip())
    if hub is None:
        entry = resolve(ref)
        note = served_as(ref, entry)
        return ResolvedModel(entry.id, entry.name, entry.spec(), "catalog", entry=entry, alias_note=note)
    from moeplan.sources.hub import read_gguf, read_safetensors  # the Hub client: Hub references only

    if hub.target:
        found = read_gguf(hub)
        spec, source = _gguf_spec(found)
        name = str(found.model.metadata.get("general.name") or hub.repo)
        file = _file(found.model, spec)
        return ResolvedModel(str(hub), name, spec, source, gguf=found, header=found.model, file=file)
    st = read_safetensors(hub)
    try:
        spec = spec_from_config(st.config, name=hub.repo)
    except MoeplanError as e:
        raise HubError(f"{hub}: {e}") from None
    return ResolvedModel(str(hub), hub.repo, spec, f"config.json of {hub.repo}", safetensors=st)
