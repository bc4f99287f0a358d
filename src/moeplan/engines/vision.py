"""llama-server's vision projector (`--mmproj FILE`): what it adds to each device's memory, and its flags.

From the pinned llama.cpp (build 11434, tools/mtmd/clip.cpp and tools/server/server-context.cpp):
- The projector loads to one device: the main GPU (`mtmd_context_params.use_gpu` =
  `--mmproj-offload`, on by default; `--no-mmproj-offload` keeps it on the CPU), in one weights
  buffer of the file's tensor data (`clip_model_loader::load_tensors`).
- At load it reserves its compute buffer for a warmup image (`warmup` -> `reserve_compute_meta`):
  `warmup_image_size` is set per projector in `load_hparams`. Qwen3-VL (qwen3vl_merger): at most
  46x46 merged tokens (`set_warmup_n_tokens(46*46)`, fewer when `--image-max-tokens` is smaller),
  1472 px for a 16-px patch and 2x2 merge; Gemma 4: 16x16 tokens, 768 px; Gemma 3 and Llama 4: the
  model's image size (896, 336 px).
  A GPU-resident projector also gets a host compute buffer for its graph inputs (the image and the
  M-RoPE position ids), which ggml's scheduler copies up.
- Flash attention follows `-fa` (auto: on where the backend supports it, as CPU and CUDA do).
The compute peaks agree with the pinned CPU build (validation/vision.py) and a real CUDA log
(Qwen3.6-27B mmproj-BF16: 248.10 MiB on CUDA0, 24.93 MiB host; the CPU build reserves the same
248.10 MiB), all with flash attention on:
- qwen3vl_merger: a replay of its graph in ggml-alloc (`engines/clip_graph.py`): the peak is the
  input stage's Conv2D outputs above the freed image, or attention's QKV and roped K above it where
  the tower is no wider than 3·p² (Qwen3.5-0.8B's 768: 161.31 MiB), or the FFN where it is wide;
  a deepstack block's output stays live to the end of the graph, so the three-merger Qwen3-VL
  towers reserve more at full depth (359.68 MiB for Qwen3-VL-30B-A3B's 27 blocks). Host side on a
  GPU: the image and the position ids, 4 x patches x (3·p² + 4).
- gemma3 (SigLIP): the blocks are the peak, see `_gemma3_compute`; host side on a GPU: the image.
- llama4: the inputs and the blocks, see `_llama4_compute`.
- glm4v: the FFN or attention above the inputs, see `_glm4v_compute`; warmup as Qwen3-VL's (46x46
  tokens: 1288 px for a 14-px patch and 2x2 merge).
- gemma4v: the FFN above the inputs' holes, see `_gemma4_compute`; warmup 16x16 merged tokens
  (`set_warmup_n_tokens(256)`), 768 px for a 16-px patch and 3x3 pooling.
"""

import math
import shlex
from dataclasses import dataclass

from moeplan.arch.vision import Projector, VisionTower, mmproj_bytes
from moeplan.engines.clip_graph import qwen3vl_compute_bytes
from moeplan.errors import MoeplanError
from moeplan.quant.ggml import GGMLType

F32 = 4
# clip.cpp load_hparams: set_warmup_n_tokens per projector (merged tokens of the warmup image);
# the others warm up at the model's image size
WARMUP_TOKENS = {Projector.QWEN3VL: 46 * 46, Projector.GEMMA4: 256, Projector.GLM4V: 46 * 46}


def warmup_image_size(tower: VisionTower, image_max_tokens: int = 0) -> int:
    """Side in pixels of clip.cpp's warmup image (`hparams.warmup_image_size`)."""
    tokens = WARMUP_TOKENS.get(tower.projector)
    if tokens is None:  # Gemma 3 and Llama 4: the model's image size
        return tower.image_size
    side = math.isqrt(tokens)
    if 0 < image_max_tokens < tokens:  # set_warmup_n_tokens: never above the max
        side = max(1, math.isqrt(image_max_tokens))
    return side * tower.patch_size * tower.n_merge


def warmup_patches(tower: VisionTower, image_max_tokens: int = 0) -> int:
    return (warmup_image_size(tower, image_max_tokens) // tower.patch_size) ** 2


def _gemma3_compute(tower: VisionTower, patches: int) -> int:
    """SigLIP's peak is in its blocks: the FFN intermediate and three n_embd-wide F32 tensors per
    patch (4 x patches x (n_ff + 3·n_embd), measured the same from 2 to 27 blocks; a 1-block tower
    peaks lower, and no release has one)."""
    return F32 * patches * (tower.n_ff + 3 * tower.n_embd)


def _llama4_compute(tower: VisionTower, patches: int) -> int:
    """Llama 4's graph inputs (the image, and the 2-D RoPE's two position ids per position, CLS
    included) stay live through its blocks, whose peak is the FFN intermediate and two n_embd-wide
    tensors, or five n_embd-wide ones in attention where the FFN is narrower (4 x positions x
    max(n_ff + 2·n_embd, 5·n_embd); measured at 224, 336 and 448 px and with half the FFN)."""
    n_pos = patches + 1
    return host_inputs_bytes(tower) + F32 * n_pos * max(tower.n_ff + 2 * tower.n_embd, 5 * tower.n_embd)


def _gemma4_compute(tower: VisionTower, patches: int) -> int:
    """Gemma 4's peak is in its FFN (gemma4v.cpp via build_vit and build_ffn, traced in ggml-alloc on
    the pinned build): the gate, up and GEGLU outputs (three n_ff-wide F32 tensors: the clamps of
    Gemma4ClippableLinear keep the gate and up inputs apart, so nothing is reused in place) above the
    residual, the normed input and its clamped copy (three n_embd-wide), with the freed image's hole
    (3·p² floats a patch, too small for an n_embd-wide tensor when n_embd > 3·p²) and the two
    position-id inputs below: 4 x patches x (3·p² + 2 + 3·n_embd + 3·n_ff), the same at any depth."""
    p2 = 3 * tower.patch_size**2
    return F32 * patches * (p2 + 2 + 3 * tower.n_embd + 3 * tower.n_ff)


def _glm4v_compute(tower: VisionTower, patches: int) -> int:
    """GLM-4.xV's peak (glm4v.cpp via build_vit, traced in ggml-alloc on the pinned build) sits above
    the inputs (the freed image's hole, 3·p² floats a patch, and the 4 M-RoPE ids) and is either the
    FFN's gate, up and SwiGLU outputs over the residual and the normed input (3·n_ff + 2·n_embd), or
    attention's residual, fused QKV, roped Q and K and K's F16 copy (6.5·n_embd) where the FFN is
    narrow; the merger's FFN, on a quarter of the patches, stays below both (arch.vision checks it)."""
    n = tower.n_embd
    above = max(3 * tower.n_ff + 2 * n, 13 * n // 2)
    return F32 * patches * (3 * tower.patch_size**2 + 4 + above)


def warmup_compute_bytes(tower: VisionTower, image_max_tokens: int = 0) -> int:
    """The projector's compute buffer on the device it runs on (flash attention on)."""
    patches = warmup_patches(tower, image_max_tokens)
    if tower.projector is Projector.GEMMA3:
        return _gemma3_compute(tower, patches)
    if tower.projector is Projector.LLAMA4:
        return _llama4_compute(tower, patches)
    if tower.projector is Projector.GEMMA4:
        return _gemma4_compute(tower, patches)
    if tower.projector is Projector.GLM4V:
        return _glm4v_compute(tower, patches)
    return qwen3vl_compute_bytes(tower, patches)


def host_inputs_bytes(tower: VisionTower, image_max_tokens: int = 0) -> int:
    """The host compute buffer of a GPU-resident projector: its graph inputs (the image; Qwen3-VL's
    and GLM-4.xV's four M-RoPE position ids per patch; Llama 4's two per position, CLS included;
    Gemma 4's x and y ids per patch)."""
    patches = warmup_patches(tower, image_max_tokens)
    image = F32 * patches * 3 * tower.patch_size**2
    if tower.projector in (Projector.QWEN3VL, Projector.GLM4V):
        return image + 4 * 4 * patches
    if tower.projector is Projector.LLAMA4:
        return image + 4 * 2 * (patches + 1)
    if tower.projector is Projector.GEMMA4:
        return image + 4 * 2 * patches
    return image


@dataclass(frozen=True)
class VisionMemory:
    """What `--mmproj` adds: its weights and compute on `device`, and the host's input buffer
    when that device is a GPU."""

    file: str
    ftype: GGMLType
    device: str
    weights_bytes: int
    compute_bytes: int
    host_compute_bytes: int
    warmup_px: int
    offload: bool  # --mmproj-offload (the default); off: --no-mmproj-offload

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.compute_bytes


def plan_vision(
    tower: VisionTower,
    ftype: GGMLType,
    gpus: tuple[str, ...],
    *,
    offload: bool = True,
    file: str = "",
    device: str | None = None,
    image_max_tokens: int = 0,
) -> VisionMemory:
    """The projector's memory where llama-server puts it: `device` (-mmdev), else the main (first)
    GPU, or the CPU without GPUs or with `--no-mmproj-offload`; `image_max_tokens`: --image-max-tokens."""
    on_gpu = offload and bool(gpus)
    return VisionMemory(
        file=file or f"mmproj-{ftype.name}.gguf",
        ftype=ftype,
        device=(device or gpus[0]) if on_gpu else "CPU",
        weights_bytes=mmproj_bytes(tower, ftype),
        compute_bytes=warmup_compute_bytes(tower, image_max_tokens),
        host_compute_bytes=host_inputs_bytes(tower, image_max_tokens) if on_gpu else 0,
        warmup_px=warmup_image_size(tower, image_max_tokens),
        offload=offload,
    )


def vision_flags(v: VisionMemory) -> str:
    """The llama-server flags of this projector."""
    parts = ["--mmproj", shlex.quote(v.file)]
    if not v.offload:
        parts.append("--no-mmproj-offload")
    return " ".join(parts)


VISION_ENGINES = "vision is planned for llama.cpp (--mmproj); vLLM and SGLang are not modelled for it"


def vision_error(model: str, tower: VisionTower | None, engine: str) -> str | None:
    """Why vision cannot be planned, or None."""
    if engine != "llamacpp":
        return VISION_ENGINES
    if tower is None:
        return f"{model} has no vision tower in the catalog (a text-only model, or one outside it)"
    return None


def check_vision(model: str, tower: VisionTower | None, engine: str, flag: str = "--vision") -> VisionTower:
    why = vision_error(model, tower, engine)
    if why is not None or tower is None:
        raise MoeplanError(f"{flag}: {why}")
    return tower
