"""What an inventory is made of: tensor roles, tensor specs, and the builder family layouts fill.

The converter's dtype rule lives here because every family shares it: `ModelBase.prepare_tensors`
in the pinned `convert_hf_to_gguf.py` forces F32 on 1-D tensors, `*_norm.weight`, routers
(`ffn_gate_inp`, `ffn_gate_inp_shexp`), `ssm_conv1d` (and Kimi's q/k/v variants, LFM2's
`shortconv.conv`) and every name not ending in `.weight`.
"""

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from moeplan.arch.spec import ModelSpec
from moeplan.quant.ggml import GGMLType, TensorType


class Role(StrEnum):
    EMBED = "embed"
    OUTPUT = "output"
    ATTN = "attn"
    NORM = "norm"
    ROUTER = "router"
    EXPERT = "expert"
    SHARED_EXPERT = "shared_expert"
    DENSE_FFN = "dense_ffn"
    SSM = "ssm"
    MTP = "mtp"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # ggml order
    role: Role
    layer: int | None
    stored: TensorType | None  # type the converter forces (F32, native MXFP4), or a file's; None = --outtype
    # A tensor of an MTP block that llama.cpp's loader reads even without MTP drafting (created
    # TENSOR_NOT_REQUIRED but not TENSOR_SKIP, as some of step35's): it takes memory like a trunk tensor.
    loaded_without_mtp: bool = False

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Inventory:
    spec: ModelSpec
    tensors: tuple[TensorSpec, ...]
    block_count: int  # n_layer_all: decoder blocks + kept MTP blocks
    mtp_kept: int  # MTP blocks in the file


_F32_SUBSTRINGS = (
    "ffn_gate_inp.",
    "ffn_gate_inp_shexp.",
    "ssm_conv1d.",
    # Kimi KDA's q/k/v convolutions (SSM_CONV1D_Q/K/V) and LFM2's short convolution (SHORTCONV_CONV)
    "ssm_conv1d_q.",
    "ssm_conv1d_k.",
    "ssm_conv1d_v.",
    "shortconv.conv.",
)


def converter_type(name: str, n_dims: int) -> GGMLType | None:
    """`ModelBase.prepare_tensors`: F32 for 1-D tensors, norms, routers, conv1d and non-weights."""
    if n_dims <= 1 or _f32_by_name(name):
        return GGMLType.F32
    return None


@cache  # names repeat in every layer and across models; an inventory asks for each tensor
def _f32_by_name(name: str) -> bool:
    if name.endswith("_norm.weight") or not name.endswith(".weight"):
        return True
    return any(s in name for s in _F32_SUBSTRINGS)


class Builder:
    """Collects a model's tensors in the converter's order."""

    def __init__(self) -> None:
        self.out: list[TensorSpec] = []

    def add(
        self,
        name: str,
        shape: tuple[int, ...],
        role: Role,
        layer: int | None = None,
        stored: GGMLType | None = None,
    ) -> None:
        self.out.append(
            TensorSpec(
                name, shape, role, layer, stored if stored is not None else converter_type(name, len(shape))
            )
        )
