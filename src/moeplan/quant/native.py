"""Bytes of a model in its native release format (the safetensors that vLLM / SGLang load).

Formats, each as its config.json `quantization_config` describes it:
- bf16: every tensor 2 bytes per parameter.
- fp8 (DeepSeek-V3/R1/V3.1, Kimi-K2): e4m3 weights (1 B) for the linear layers of attention and FFN,
  one F32 `weight_scale_inv` per 128×128 block; embeddings, lm_head, routers, norms stay BF16/F32.
- mxfp4 (gpt-oss): routed experts as 32-value blocks of 4-bit values + one E8M0 scale (17 B per 32);
  attention, router, embeddings in BF16 (`modules_to_not_convert`).
- int4 (Kimi-K2.5, compressed-tensors pack-quantized): routed experts 4-bit, group 32, one BF16 scale
  per group (4.5 bits per weight); everything else BF16 (`quantization_config.ignore`).
No library computes these for a model that is not downloaded, hence this module.
"""

from collections.abc import Iterable
from typing import Literal

from moeplan.arch.inventory import Role, TensorSpec

NativeFormat = Literal["bf16", "fp8", "mxfp4", "int4"]
FP8_BLOCK = 128
MXFP4_BLOCK, MXFP4_BLOCK_BYTES = 32, 17
INT4_GROUP = 32

_FP8_ROLES = frozenset({Role.ATTN, Role.EXPERT, Role.SHARED_EXPERT, Role.DENSE_FFN, Role.MTP})


def _is_matrix(t: TensorSpec) -> bool:
    return len(t.shape) >= 2 and t.name.endswith(".weight") and "_norm" not in t.name


def _fp8(t: TensorSpec) -> int:
    if t.role not in _FP8_ROLES or not _is_matrix(t) or "ffn_gate_inp" in t.name:
        return 2 * t.n_elements
    cols, rows = t.shape[0], t.shape[1]
    mats = t.n_elements // (cols * rows)
    scales = -(-cols // FP8_BLOCK) * -(-rows // FP8_BLOCK)
    return t.n_elements + 4 * scales * mats


def _expert_only(t: TensorSpec, bytes_per_block: float, block: int) -> int:
    if t.role is Role.EXPERT and _is_matrix(t):
        return round(t.n_elements / block * bytes_per_block)
    return 2 * t.n_elements


def tensor_native_bytes(t: TensorSpec, fmt: NativeFormat) -> int:
    if fmt == "fp8":
        return _fp8(t)
    if fmt == "mxfp4":
        return _expert_only(t, MXFP4_BLOCK_BYTES, MXFP4_BLOCK)
    if fmt == "int4":
        return _expert_only(t, INT4_GROUP / 2 + 2, INT4_GROUP)
    return 2 * t.n_elements


def native_bytes(tensors: Iterable[TensorSpec], fmt: NativeFormat) -> int:
    return sum(tensor_native_bytes(t, fmt) for t in tensors)
