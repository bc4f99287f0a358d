"""GGML tensor types and their sizes, taken from the `gguf` package (llama.cpp's own gguf-py)."""

from functools import cache

from moeplan.errors import UnknownQuant, did_you_mean
from moeplan.gguf_constants import GGML_QUANT_SIZES, GGMLQuantizationType
from moeplan.quant.ik_types import IKType, row_bytes

GGMLType = GGMLQuantizationType
# A type a GGUF file may hold: mainline llama.cpp's, or one only ik_llama.cpp reads (`inspect`).
TensorType = GGMLType | IKType

# Types a K- or I-quant recipe treats as "not quantized" (ggml_is_quantized() is false for them).
UNQUANTIZED = frozenset(
    {
        GGMLType.F32,
        GGMLType.F16,
        GGMLType.BF16,
        GGMLType.F64,
        GGMLType.I8,
        GGMLType.I16,
        GGMLType.I32,
        GGMLType.I64,
    }
)


def block_size(t: GGMLType) -> int:
    return int(GGML_QUANT_SIZES[t][0])


def type_size(t: GGMLType) -> int:
    """Bytes of one block of `t`."""
    return int(GGML_QUANT_SIZES[t][1])


@cache  # shapes repeat in every layer; the planner sizes thousands of tensors
def tensor_bytes(t: TensorType, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of type `t` with ggml shape `shape` (ne0 first): ggml_nbytes for a
    contiguous tensor = rows × (ne0 / block) × block bytes (ik_llama.cpp types: rows × row bytes)."""
    ne0 = shape[0]
    if isinstance(t, IKType):
        rows = 1
        for n in shape[1:]:
            rows *= n
        return rows * row_bytes(t, ne0)
    blk = block_size(t)
    if ne0 % blk:
        raise ValueError(f"row of {ne0} elements is not a multiple of the {t.name} block ({blk})")
    rows = 1
    for n in shape[1:]:
        rows *= n
    return rows * (ne0 // blk) * type_size(t)


def parse_type(name: str) -> GGMLType:
    """'q4_K', 'Q4_K', 'f16' → the GGML type."""
    by_name = {t.name.upper(): t for t in GGMLType}
    t = by_name.get(name.strip().upper())
    if t is None:
        raise UnknownQuant(f"unknown GGML type '{name}'{did_you_mean(name, by_name)}")
    return t


def type_label(t: TensorType) -> str:
    """llama.cpp's spelling (ggml_type_name): lower case except the K suffix, e.g. 'q4_K', 'iq2_xxs';
    ik_llama.cpp's types all in lower case, as it names them ('iq4_k', 'iq2_kt')."""
    s = t.name.lower()
    if isinstance(t, IKType):
        return s
    return s[:-2] + "_K" if s.endswith("_k") else s
