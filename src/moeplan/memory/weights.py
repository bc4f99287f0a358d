"""Typed weights: every tensor with its ggml type and bytes, and the totals people ask about.

One `Weights` comes either from a prediction (inventory + llama-quantize recipe) or from a real
GGUF header, so `size` and `inspect` print the same report.
"""

from collections import Counter
from dataclasses import FrozenInstanceError, dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from moeplan.arch.inventory import Inventory, Role, TensorSpec
from moeplan.arch.registry import family
from moeplan.arch.spec import FFNKind
from moeplan.errors import MoeplanError
from moeplan.memo import PER_MODEL, by_identity
from moeplan.quant.ggml import GGMLType, TensorType, tensor_bytes, type_label
from moeplan.quant.recipe import FileType, QuantModel, QuantOptions, TypeGroups, grouped_types, tensor_types

_GGML_BY_VALUE = {t.value: t for t in GGMLType}


class TypedTensor(NamedTuple):
    """A tensor with its type and bytes. A named tuple, not a frozen dataclass: a prediction builds
    one per tensor (1,000+ for a large model), and the dataclass constructor was a third of its time."""

    spec: TensorSpec
    type: TensorType
    nbytes: int


@dataclass(frozen=True, eq=False)
class WeightColumns:
    specs: tuple[TensorSpec, ...]
    types: NDArray[np.int64]  # type values (GGMLType, or IKType for ik_llama.cpp files)
    nbytes: NDArray[np.int64]


_Fields = tuple[str, str, str, tuple[TypedTensor, ...], dict[int, float]]


class Weights:
    """Typed tensors of one GGUF (predicted or read). Immutable. A prediction keeps its types and
    bytes as columns (what the planner reads, through `memory.table`) and builds the `TypedTensor`
    tuple only when something asks for `tensors`: the checker predicts hundreds of (model, quant)
    pairs and never reads one tensor of them."""

    __slots__ = ("_columns", "_tensors", "active_expert_fraction", "arch", "model", "quant")
    model: str
    arch: str
    quant: str
    # routed-expert fraction used per token, by layer (k / E), for "active" accounting
    active_expert_fraction: dict[int, float]
    _tensors: tuple[TypedTensor, ...] | None
    _columns: WeightColumns | None

    def __init__(
        self,
        model: str,
        arch: str,
        quant: str,
        tensors: tuple[TypedTensor, ...],
        active_expert_fraction: dict[int, float],
    ) -> None:
        for k, v in (("model", model), ("arch", arch), ("quant", quant), ("_tensors", tensors)):
            object.__setattr__(self, k, v)
        object.__setattr__(self, "active_expert_fraction", active_expert_fraction)
        object.__setattr__(self, "_columns", None)

    @classmethod
    def from_columns(
        cls,
        model: str,
        arch: str,
        quant: str,
        columns: WeightColumns,
        active_expert_fraction: dict[int, float],
    ) -> "Weights":
        """Weights whose tensors are `columns` (every type a mainline GGMLType)."""
        w = cls.__new__(cls)
        for k, v in (("model", model), ("arch", arch), ("quant", quant), ("_tensors", None)):
            object.__setattr__(w, k, v)
        object.__setattr__(w, "active_expert_fraction", active_expert_fraction)
        object.__setattr__(w, "_columns", columns)
        return w

    @property
    def tensors(self) -> tuple[TypedTensor, ...]:
        typed = self._tensors
        if typed is None:
            c = self._columns
            assert c is not None
            by_value = _GGML_BY_VALUE
            types = [by_value[v] for v in c.types.tolist()]
            typed = tuple(map(TypedTensor, c.specs, types, c.nbytes.tolist()))
            object.__setattr__(self, "_tensors", typed)
        return typed

    def columns(self) -> WeightColumns:
        """The tensors as columns: specs, type values and bytes (int64)."""
        c = self._columns
        if c is None:
            typed = self.tensors
            c = WeightColumns(
                tuple(t.spec for t in typed),
                np.fromiter((t.type for t in typed), dtype=np.int64, count=len(typed)),
                np.fromiter((t.nbytes for t in typed), dtype=np.int64, count=len(typed)),
            )
            object.__setattr__(self, "_columns", c)
        return c

    def _fields(self) -> _Fields:
        return (self.model, self.arch, self.quant, self.tensors, self.active_expert_fraction)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Weights):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type["Weights"], _Fields]:
        return (Weights, self._fields())  # pickle and copy: frozen, so not through __setattr__

    def __repr__(self) -> str:
        return (
            f"Weights(model={self.model!r}, arch={self.arch!r}, quant={self.quant!r}, "
            f"tensors={self.tensors!r}, active_expert_fraction={self.active_expert_fraction!r})"
        )

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def params_total(self) -> int:
        """The model's parameters: every tensor but the MTP (NextN) layers', which only draft tokens
        and which one file holds and another lacks, so a model has one count whichever file is asked
        for: the count llama.cpp prints (llama_model::print_info, "model params") for a GGUF without
        them, e.g. Qwen3.5-35B-A3B 34.66 B as the published files hold it (35.51 B with its MTP layer)."""
        return sum(t.spec.n_elements for t in self.tensors if t.spec.role is not Role.MTP)

    @property
    def params_mtp(self) -> int:
        """Parameters of the MTP layers this file holds (0 where it has none)."""
        return sum(t.spec.n_elements for t in self.tensors if t.spec.role is Role.MTP)

    def _active(self, t: TypedTensor, value: int) -> float:
        if t.spec.role is Role.MTP:
            return 0.0
        if t.spec.role is Role.EXPERT and t.spec.layer is not None:
            return value * self.active_expert_fraction.get(t.spec.layer, 1.0)
        return float(value)

    @property
    def params_active(self) -> int:
        """Parameters one token touches: everything but the unused routed experts and MTP layers
        (embeddings counted, as model cards do)."""
        return round(sum(self._active(t, t.spec.n_elements) for t in self.tensors))

    @property
    def active_bytes(self) -> int:
        """Bytes that would be resident if only the active parameters had to be."""
        return round(sum(self._active(t, t.nbytes) for t in self.tensors))

    def bytes_by_role(self) -> dict[str, int]:
        out: dict[str, int] = {r.value: 0 for r in Role}
        for t in self.tensors:
            out[t.spec.role.value] += t.nbytes
        return {k: v for k, v in out.items() if v}

    def type_histogram(self) -> dict[str, int]:
        return dict(sorted(Counter(type_label(t.type) for t in self.tensors).items()))

    @property
    def bits_per_weight(self) -> float:
        elements = self.params_total + self.params_mtp  # every tensor in the file
        return 8 * self.tensor_bytes / elements if elements else 0.0


def active_fractions(inv: Inventory) -> dict[int, float]:
    return {
        il: layer.ffn.n_expert_used / layer.ffn.n_expert
        for il, layer in enumerate(inv.spec.layers)
        if layer.ffn.kind is FFNKind.MOE and layer.ffn.n_expert
    }


@dataclass(frozen=True)
class FileInventory(Inventory):
    """A real GGUF file's tensors with their real types: planning uses these weights, whatever
    quantization is asked (the file is what will be loaded)."""

    weights: Weights


@by_identity(maxsize=PER_MODEL)  # asked once per (model, quant); the family's GGUF keys are not free
def quant_model(inv: Inventory) -> QuantModel:
    """The hparams llama-quantize reads from the GGUF (head counts of the first attention layer as
    written in `head_count`/`head_count_kv`). Where the family writes `head_count_kv` per layer
    (hybrids: 0 for recurrent blocks), llama-quantize's `n_gqa()` reads layer 0's entry."""
    spec = inv.spec
    attn = next((la.attn for la in spec.layers if la.attn.n_head), spec.layers[0].attn)
    moe = spec.moe_ffn
    n_head_kv = attn.n_head_kv
    per_layer = family(spec.arch).gguf_metadata(inv).get(".attention.head_count_kv")
    if isinstance(per_layer, list):
        n_head_kv = int(per_layer[0])
    return QuantModel(spec.arch, inv.block_count, attn.n_head, n_head_kv, moe.n_expert if moe else 0)


@by_identity(maxsize=PER_MODEL)
def _sources(inv: Inventory, source_type: GGMLType) -> tuple[tuple[str, tuple[int, ...], GGMLType], ...]:
    """The converter's output as the quantizer reads it: one tuple per inventory and source type, so
    the recipe's preparation (visiting order, categories) is shared by every file type asked for."""
    return tuple((t.name, t.shape, _source(t, source_type)) for t in inv.tensors)


def _source(t: TensorSpec, source_type: GGMLType) -> GGMLType:
    if t.stored is None:
        return source_type
    if not isinstance(t.stored, GGMLType):
        raise MoeplanError(f"{t.name} is {t.stored.name}: llama-quantize cannot read ik_llama.cpp types")
    return t.stored


@dataclass(frozen=True, eq=False)
class _Slots:
    """Where each tensor's type and bytes come from for one model's `TypeGroups`: its group's
    decision (slots 0..G-1), or its own source type (slot G + j for the j-th tensor no rule touches)."""

    slot: NDArray[np.intp]
    fixed_types: list[int]
    fixed_nbytes: list[int]


@by_identity(maxsize=PER_MODEL)
def _slots(sources: tuple[tuple[str, tuple[int, ...], GGMLType], ...], groups: TypeGroups) -> _Slots:
    slot = np.full(len(sources), -1, dtype=np.intp)
    for k, members in enumerate(groups.members):
        slot[list(members)] = k
    fixed = np.flatnonzero(slot < 0)
    slot[fixed] = len(groups.members) + np.arange(len(fixed))
    kept = [sources[i] for i in fixed.tolist()]
    return _Slots(slot, [int(t) for _, _, t in kept], [tensor_bytes(t, shape) for _, shape, t in kept])


def _columns(
    specs: tuple[TensorSpec, ...],
    sources: tuple[tuple[str, tuple[int, ...], GGMLType], ...],
    groups: TypeGroups,
    types: list[GGMLType],
) -> WeightColumns:
    s = _slots(sources, groups)
    type_of = np.array([*map(int, types), *s.fixed_types], dtype=np.int64)
    bytes_of = np.array([*map(tensor_bytes, types, groups.shapes), *s.fixed_nbytes], dtype=np.int64)
    return WeightColumns(specs, type_of[s.slot], bytes_of[s.slot])


def llama_quantize(
    inv: Inventory, ft: FileType, opts: QuantOptions | None = None, source_type: GGMLType = GGMLType.BF16
) -> Weights:
    """Weights of the GGUF that `llama-quantize --<ft>` makes from the converter's output
    (converted with `--outtype` = `source_type`): the recipe llama.cpp's own dry run checks."""
    specs = inv.tensors
    sources = _sources(inv, source_type)
    model = quant_model(inv)
    grouped = grouped_types(model, ft, sources, opts)
    if grouped is not None:
        try:
            columns = _columns(specs, sources, *grouped)
        except ValueError:  # a row size no type divides: raised below, from the tensor llama.cpp stops at
            pass
        else:
            return Weights.from_columns(inv.spec.name, inv.spec.arch, ft.name, columns, active_fractions(inv))
    types = tensor_types(model, ft, sources, opts)
    sizes = map(tensor_bytes, types, (s.shape for s in specs))
    typed = tuple(map(TypedTensor, specs, types, sizes))
    return Weights(inv.spec.name, inv.spec.arch, ft.name, typed, active_fractions(inv))


# File types `convert_hf_to_gguf.py --outtype` writes itself (ModelBase.prepare_tensors); people
# download these as the converter made them, not through llama-quantize.
CONVERTER_OUTTYPES = frozenset({FileType.F32, FileType.F16, FileType.BF16, FileType.Q8_0})
_FLOAT_TYPES = frozenset({GGMLType.F32, GGMLType.F16, GGMLType.BF16})


def predict(inv: Inventory, ft: FileType, opts: QuantOptions | None = None) -> Weights:
    """Weights of the `ft` GGUF people get: for the converter's own file types its output, in which
    tensors the checkpoint ships quantized keep their encoding (gpt-oss MXFP4 experts, written raw by
    conversion/gpt_oss.py `repack_mxfp4` whatever `--outtype` is); otherwise llama-quantize's.
    A `FileInventory` is a real file: its own weights."""
    if isinstance(inv, FileInventory):
        return inv.weights
    w = llama_quantize(inv, ft, opts)
    if ft not in CONVERTER_OUTTYPES or not any(
        t.stored is not None and t.stored not in _FLOAT_TYPES for t in inv.tensors
    ):
        return w
    typed = tuple(
        TypedTensor(t.spec, t.spec.stored, tensor_bytes(t.spec.stored, t.spec.shape))
        if t.spec.stored is not None and t.spec.stored not in _FLOAT_TYPES
        else t
        for t in w.tensors
    )
    return Weights(w.model, w.arch, w.quant, typed, w.active_expert_fraction)


def nominal_file_type(w: Weights) -> FileType:
    """The llama.cpp file type whose main tensor type holds most of a file's bytes (a label for
    files whose header declares none llama.cpp names, e.g. ik_llama.cpp mixes)."""
    by_type: Counter[TensorType] = Counter()
    for t in w.tensors:
        by_type[t.type] += t.nbytes
    main = by_type.most_common(1)[0][0] if by_type else GGMLType.Q4_K
    return next((ft for ft in FileType if ft.default_type is main), FileType.Q4_K_M)


@by_identity(maxsize=PER_MODEL)  # the planner asks once per plan; the answer walks every tensor
def released_quantized(inv: Inventory) -> bool:
    """Whether the checkpoint ships tensors the converter keeps quantized (gpt-oss MXFP4 experts)."""
    return any(t.stored is GGMLType.MXFP4 for t in inv.tensors)


def default_file_type(inv: Inventory) -> FileType:
    """The file people download first: the native MXFP4 file of a model released with MXFP4
    experts (ggml-org's `*-mxfp4.gguf` is MXFP4_MOE), else Q4_K_M."""
    return FileType.MXFP4_MOE if released_quantized(inv) else FileType.Q4_K_M


# GGUF metadata is dominated by the tokenizer arrays. Bytes per vocabulary entry, measured on real
# headers: SentencePiece (tokens + scores + token types) 24.9 B in gemma-3-270m-q4_k_m.gguf;
# GPT-2 style BPE (tokens + token types + merges) 39.3 B in Qwen3-30B-A3B GGUFs.
_TOKENIZER_BYTES_PER_TOKEN = {"spm": 24.9, "bpe": 39.3}
_OTHER_METADATA_BYTES = 8 * 1024  # architecture keys, chat template, general.* strings
GGUF_ALIGNMENT = 32


def tokenizer_kind(arch: str, n_vocab: int) -> str:
    """Gemma and the 32k-vocab Llama/Mistral family ship SentencePiece vocabularies; the rest BPE."""
    return "spm" if arch == "gemma3" or (arch == "llama" and n_vocab <= 32768) else "bpe"


def file_bytes(w: Weights, n_vocab: int) -> int:
    """Predicted size of the whole GGUF file: header (24 B), metadata (estimated from the
    tokenizer), tensor-info table (exact: name, dims, type, offset per tensor), then the tensor
    data, each tensor aligned to 32 bytes (exact)."""
    infos = sum(8 + len(t.spec.name) + 4 + 8 * len(t.spec.shape) + 4 + 8 for t in w.tensors)
    metadata = _TOKENIZER_BYTES_PER_TOKEN[tokenizer_kind(w.arch, n_vocab)] * n_vocab + _OTHER_METADATA_BYTES
    header = 24 + round(metadata) + infos
    data = sum(-(-t.nbytes // GGUF_ALIGNMENT) * GGUF_ALIGNMENT for t in w.tensors)
    return -(-header // GGUF_ALIGNMENT) * GGUF_ALIGNMENT + data
