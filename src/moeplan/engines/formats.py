"""Weight formats vLLM and SGLang load, their bytes per tensor, and where each runs natively.

Bytes reuse `quant.native` for the four release formats (bf16, fp8 block-128, mxfp4, int4 group-32
compressed-tensors); two more formats people deploy are added here:
- nvfp4 (ModelOpt): 4-bit E2M1 values, one FP8 E4M3 scale per 16 values (+ one F32 global scale per
  tensor, negligible) on every linear layer of attention and FFN; embeddings, lm_head, routers BF16.
  (NVIDIA ModelOpt NVFP4 format; vLLM `ModelOptNvFp4Config`.)
- awq / gptq: 4-bit, group 128, one FP16 scale + one 4-bit zero point per group on every linear layer
  except lm_head and embeddings (AutoAWQ / GPTQ defaults: `group_size: 128`).

Where each runs (the engines' kernel selection):
- bf16: every CUDA GPU.
- fp8 block-scaled: W8A8 on compute capability >= 8.9 (Ada, Hopper, Blackwell); on Ampere vLLM falls
  back to FP8 Marlin, weight-only W8A16 (vLLM docs, "FP8 W8A8": "for Ampere GPUs ... weight-only FP8
  via Marlin kernels"); SGLang's block-FP8 path needs sm89+ (not confirmed against SGLang docs).
- mxfp4 (gpt-oss): native on Blackwell; Hopper runs it through triton_kernels / Marlin MXFP4 (vLLM
  gpt-oss recipe: "H100/H200 ... triton kernels"); Ampere via Marlin weight-only in vLLM.
- nvfp4: Blackwell only for W4A4; vLLM emulates it on older GPUs with FP4 Marlin (weight-only).
- int4 (AWQ / GPTQ / compressed-tensors W4A16, Kimi-K2.5): Marlin / Machete kernels, sm80+.
"""

from dataclasses import dataclass
from typing import Literal

from moeplan.arch.inventory import Role, TensorSpec
from moeplan.errors import MoeplanError, UnknownQuant
from moeplan.hardware.spec import GPU
from moeplan.quant.native import tensor_native_bytes
from moeplan.quant.recipe import FileType

WeightFormat = Literal["bf16", "fp8", "mxfp4", "nvfp4", "int4", "awq"]
FORMATS: tuple[WeightFormat, ...] = ("bf16", "fp8", "mxfp4", "nvfp4", "int4", "awq")
# The names people give each format (`--quant`, `--format`), lower case: the engines' own
# `--quantization` values among them (modelopt_fp4, awq_marlin, compressed-tensors).
_NAMES: dict[str, WeightFormat] = {
    **{f: f for f in FORMATS},
    "bfloat16": "bf16",
    "fp8_e4m3": "fp8",
    "fp4": "nvfp4",
    "modelopt_fp4": "nvfp4",
    "w4a16": "int4",
    "compressed-tensors": "int4",
    "gptq": "awq",
    "gptq-int4": "awq",
    "awq_marlin": "awq",
}
FORMAT_NAMES = tuple(_NAMES)  # every spelling parse_weight_format takes (the API's enum)

NVFP4_GROUP, NVFP4_GROUP_BYTES = 16, 9  # 16 × 4 bit + one FP8 scale
AWQ_GROUP = 128
AWQ_GROUP_BYTES = AWQ_GROUP / 2 + 2 + 0.5  # 4-bit values, FP16 scale, 4-bit zero point

# Quantization block / group along the reduction dimension that a TP shard must keep whole: the
# per-rank intermediate size must be a multiple of it (vLLM `Fp8MoEMethod.create_weights`: "The output_size
# of gate's and up's weight = N is not divisible by weight quantization block_n = 128").
SHARD_MULTIPLE: dict[str, int] = {"fp8": 128, "int4": 32, "awq": AWQ_GROUP, "nvfp4": NVFP4_GROUP}

_LINEAR_ROLES = frozenset({Role.ATTN, Role.EXPERT, Role.SHARED_EXPERT, Role.DENSE_FFN, Role.SSM, Role.MTP})


def parse_weight_format(name: str, engine: str) -> WeightFormat:
    """The weight format `name` asks `engine` (vllm, sglang) for; a llama.cpp GGUF type is refused
    with the reason (these engines serve safetensors checkpoints, not GGUF files)."""
    found = _NAMES.get(name.strip().lower())
    if found is not None:
        return found
    choices = "bf16, fp8, mxfp4, nvfp4, int4 or awq (gptq)"
    try:
        gguf = FileType.parse(name)
    except UnknownQuant:
        raise MoeplanError(f"unknown weight format '{name}' for {engine}: use {choices}") from None
    if gguf in (FileType.F32, FileType.F16):
        raise MoeplanError(f"{engine} plans 16-bit weights as bf16: use --quant bf16, not {gguf.name}")
    raise MoeplanError(
        f"{gguf.name} is a llama.cpp GGUF type: {engine} serves {choices} checkpoints "
        "(plan GGUF files with --engine llamacpp)"
    )


def _is_linear(t: TensorSpec) -> bool:
    return (
        t.role in _LINEAR_ROLES
        and len(t.shape) >= 2
        and t.name.endswith(".weight")
        and "_norm" not in t.name
        and "ffn_gate_inp" not in t.name
        and "ssm_conv1d" not in t.name
    )


def tensor_bytes(t: TensorSpec, fmt: WeightFormat) -> int:
    """Bytes of one tensor as the engine holds it in GPU memory."""
    if fmt in ("bf16", "fp8", "mxfp4", "int4"):
        return tensor_native_bytes(t, fmt)
    if not _is_linear(t):
        return 2 * t.n_elements
    if fmt == "nvfp4":
        return round(t.n_elements / NVFP4_GROUP * NVFP4_GROUP_BYTES)
    return round(t.n_elements / AWQ_GROUP * AWQ_GROUP_BYTES)


@dataclass(frozen=True)
class Support:
    native: bool  # runs on the format's own tensor-core path
    runs: bool  # the engine loads and runs it at all
    how: str  # one line: the kernel path


def support(fmt: WeightFormat, gpu: GPU, engine: str) -> Support:
    arch = gpu.architecture
    blackwell = gpu.mxfp4
    ampere_or_newer = gpu.fp8 or arch == "Ampere" or blackwell
    if fmt == "bf16":
        return Support(True, True, "BF16 tensor cores")
    if fmt == "fp8":
        if gpu.fp8:
            return Support(True, True, "FP8 W8A8 block-scaled GEMMs (sm89+)")
        if engine == "vllm" and ampere_or_newer:
            return Support(
                False, True, f"weight-only FP8 via Marlin on {arch or gpu.name} (no FP8 tensor cores)"
            )
        return Support(False, False, f"{engine} has no FP8 block-scaled kernel for {arch or gpu.name}")
    if fmt == "mxfp4":
        if blackwell:
            return Support(True, True, "native MXFP4 tensor cores (Blackwell)")
        if gpu.fp8:
            return Support(
                False, True, f"MXFP4 through triton_kernels / Marlin on {arch} (weights stay 4-bit)"
            )
        if engine == "vllm" and ampere_or_newer:
            return Support(False, True, f"MXFP4 weight-only Marlin on {arch}")
        return Support(False, False, f"{engine} has no MXFP4 kernel for {arch or gpu.name}")
    if fmt == "nvfp4":
        if blackwell:
            return Support(True, True, "native NVFP4 W4A4 (Blackwell)")
        if engine == "vllm" and ampere_or_newer:
            return Support(False, True, f"NVFP4 emulated as weight-only FP4 Marlin on {arch}")
        return Support(False, False, f"{engine} runs NVFP4 only on Blackwell")
    # int4 / awq: W4A16 Marlin-family kernels
    if ampere_or_newer:
        return Support(True, True, "W4A16 Marlin kernels")
    return Support(False, False, f"no INT4 Marlin kernel before Ampere ({gpu.name})")
