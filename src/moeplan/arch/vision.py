"""Vision towers (the `--mmproj` file): their facts from a release's `vision_config`, and every
tensor of the mmproj GGUF with the type the pinned converter gives it.

Names and shapes are those the pinned `convert_hf_to_gguf.py` writes (build 11434):
- Qwen3-VL / Qwen3.5 / Qwen3.6 (`Qwen3VLVisionModel`, conversion/qwen3vl.py, projector
  `qwen3vl_merger`): the Conv3D patch embedding split into two Conv2Ds (`v.patch_embd.weight` and
  `.weight.1`) with its bias, a learned position table, fused QKV blocks with biases, LayerNorm
  (weight + bias), the merger (`v.post_ln` on the tower width, `mm.0`/`mm.2` on merge² x width) and
  one deepstack merger per `deepstack_visual_indexes` entry (its norm on merge² x width).
- Gemma 3 (`Gemma3VisionModel`, conversion/gemma.py, projector `gemma3`): SigLIP with separate
  Q/K/V/O (biases), `v.post_ln`, and the projector's `mm.input_projection` (vision width x text
  width, stored as the HF parameter: ne = [text, vision]) and `mm.soft_emb_norm`.
- Llama 4 (`Llama4VisionModel`, conversion/llama4.py, projector `llama4`): see `_llama4`.
- Gemma 4 (`Gemma4VisionAudioModel`, conversion/gemma.py, projector `gemma4v`): see `_gemma4`.
- GLM-4.xV (`Glm4VVisionModel`, conversion/qwen3vl.py, projector `glm4v`): see `_glm4v`.
Names come from gguf-py's TENSOR_NAMES; shapes are ggml's (ne0 first).

Types (`ModelBase.prepare_tensors`, conversion/base.py, and the classes' `tensor_force_quant`):
1-D tensors and `*_norm.weight` are F32; the position table (V_ENC_EMBD_POS) is F32; the
patch embedding is F16 in an F16 file and F32 in any other (`MmprojModel.tensor_force_quant`);
Gemma 3 keeps its embeddings F32 and its input projection F16 in every file type; every other
matrix takes the file type (F16, BF16, Q8_0, F32), and a Q8_0 tensor whose rows do not split into
32-element blocks falls back to F16 (gguf-py `quants.quantize` raises QuantError: the SigLIP /
Qwen3.5 ffn_down, rows of 4304).
"""

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from moeplan.errors import MoeplanError
from moeplan.gguf_constants import MODEL_TENSOR, TENSOR_NAMES
from moeplan.quant.ggml import GGMLType, block_size, tensor_bytes


class Projector(StrEnum):
    """`clip.projector_type` values (gguf-py VisionProjectorType) of the towers moeplan models."""

    QWEN3VL = "qwen3vl_merger"
    GEMMA3 = "gemma3"
    LLAMA4 = "llama4"
    GEMMA4 = "gemma4v"
    GLM4V = "glm4v"


# mmproj file types the converter writes (`--outtype`), by their file-name tag (mmproj-F16.gguf).
MMPROJ_TYPES: dict[str, GGMLType] = {
    "f16": GGMLType.F16,
    "bf16": GGMLType.BF16,
    "q8_0": GGMLType.Q8_0,
    "f32": GGMLType.F32,
}


@dataclass(frozen=True)
class VisionTower:
    """One release's vision encoder as the mmproj file holds it."""

    projector: Projector
    n_layer: int  # depth / num_hidden_layers
    n_embd: int  # hidden_size
    n_ff: int  # intermediate_size
    n_head: int
    patch_size: int
    image_size: int  # Qwen3-VL: sqrt(num_position_embeddings) x patch_size (the converter's rule)
    n_embd_text: int  # the projector's output width: the text model's hidden size
    n_merge: int  # spatial merge per side: spatial_merge_size; Gemma 3's pooling kernel, 4
    deepstack: tuple[int, ...] = ()  # Qwen3-VL deepstack_visual_indexes
    adapter_dim: int = 0  # Llama 4: projector_output_dim, the pixel-shuffle MLP's; GLM-4.xV: the merger FFN's
    pos_table: int = 0  # Gemma 4: position_embedding_size, rows of each axis' position table
    sources: tuple[str, ...] = field(default=(), compare=False)

    @property
    def n_pos(self) -> int:
        """Rows of the learned position table."""
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class MmprojTensor:
    name: str
    shape: tuple[int, ...]  # ggml order, ne0 first
    rule: str  # "f32" (kept F32), "patch" (F16 in an F16 file, else F32), "f16" (always F16), "matrix"

    def type_in(self, ftype: GGMLType) -> GGMLType:
        """The type the converter writes this tensor in, in a file of type `ftype`."""
        if self.rule == "f32":
            return GGMLType.F32
        if self.rule == "patch":
            return GGMLType.F16 if ftype is GGMLType.F16 else GGMLType.F32
        if self.rule == "f16":
            return GGMLType.F16
        if self.shape[0] % block_size(ftype):
            return GGMLType.F16  # QuantError fallback (convert's prepare_tensors)
        # F32 files (--outtype f32) keep every matrix F32 but Gemma 3's input projection (rule f16)
        return ftype

    def nbytes(self, ftype: GGMLType) -> int:
        return tensor_bytes(self.type_in(ftype), self.shape)


def _name(t: MODEL_TENSOR, suffix: str, bid: int | None = None) -> str:
    base = TENSOR_NAMES[t]
    return (base.format(bid=bid) if bid is not None else base) + suffix


def _linear(t: MODEL_TENSOR, n_in: int, n_out: int, bid: int | None = None) -> list[MmprojTensor]:
    return [
        MmprojTensor(_name(t, ".weight", bid), (n_in, n_out), "matrix"),
        MmprojTensor(_name(t, ".bias", bid), (n_out,), "f32"),
    ]


def _layer_norm(t: MODEL_TENSOR, n: int, bid: int | None = None) -> list[MmprojTensor]:
    return [MmprojTensor(_name(t, s, bid), (n,), "f32") for s in (".weight", ".bias")]


def _block(tower: VisionTower, il: int) -> list[MmprojTensor]:
    n, f = tower.n_embd, tower.n_ff
    out = _layer_norm(MODEL_TENSOR.V_ENC_INPUT_NORM, n, il)
    if tower.projector is Projector.QWEN3VL:  # fused QKV; Gemma 3 and Llama 4: separate, with biases
        out += _linear(MODEL_TENSOR.V_ENC_ATTN_QKV, n, 3 * n, il)
    else:
        for t in (MODEL_TENSOR.V_ENC_ATTN_Q, MODEL_TENSOR.V_ENC_ATTN_K, MODEL_TENSOR.V_ENC_ATTN_V):
            out += _linear(t, n, n, il)
    out += _linear(MODEL_TENSOR.V_ENC_ATTN_O, n, n, il)
    out += _layer_norm(MODEL_TENSOR.V_ENC_POST_ATTN_NORM, n, il)
    out += _linear(MODEL_TENSOR.V_ENC_FFN_UP, n, f, il)
    out += _linear(MODEL_TENSOR.V_ENC_FFN_DOWN, f, n, il)
    return out


def mmproj_tensors(tower: VisionTower) -> list[MmprojTensor]:
    """Every tensor of the tower's mmproj GGUF, in the converter's order of kinds."""
    n, p = tower.n_embd, tower.patch_size
    patch = (p, p, 3, n)
    pos = MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_POS, ".weight"), (n, tower.n_pos), "f32")
    out: list[MmprojTensor] = []
    if tower.projector is Projector.LLAMA4:
        return _llama4(tower, pos)
    if tower.projector is Projector.GEMMA4:
        return _gemma4(tower)
    if tower.projector is Projector.GLM4V:
        return _glm4v(tower, pos)
    if tower.projector is Projector.QWEN3VL:
        conv2ds = (".weight", ".weight.1")  # the Conv3D's two temporal slices
        out += [MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_PATCH, s), patch, "patch") for s in conv2ds]
        out += [MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_PATCH, ".bias"), (n,), "f32"), pos]
    else:  # Gemma 3: everything under `.embeddings.` is F32
        out += [MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_PATCH, ".weight"), patch, "f32")]
        out += [MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_PATCH, ".bias"), (n,), "f32"), pos]
    for il in range(tower.n_layer):
        out += _block(tower, il)
    out += _layer_norm(MODEL_TENSOR.V_POST_NORM, n)
    if tower.projector is Projector.QWEN3VL:
        merged = n * tower.n_merge**2
        out += _linear(MODEL_TENSOR.V_MMPROJ, merged, merged, 0)
        out += _linear(MODEL_TENSOR.V_MMPROJ, merged, tower.n_embd_text, 2)
        for k in tower.deepstack:
            out += _layer_norm(MODEL_TENSOR.V_DS_NORM, merged, k)
            out += _linear(MODEL_TENSOR.V_DS_FC1, merged, merged, k)
            out += _linear(MODEL_TENSOR.V_DS_FC2, merged, tower.n_embd_text, k)
    else:
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_MM_INP_PROJ, ".weight"), (tower.n_embd_text, n), "f16"))
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_MM_SOFT_EMB_NORM, ".weight"), (n,), "f32"))
    return out


def _llama4(tower: VisionTower, pos: MmprojTensor) -> list[MmprojTensor]:
    """Llama 4 (`Llama4VisionModel`, conversion/llama4.py): the unfold convolution is one linear
    map of a patch's 3·p² pixels (`v.patch_embd`, the patch rule), a CLS embedding and one more
    position row for it, LayerNorms before and after the blocks, the pixel-shuffle MLP
    (`mm.model.mlp.1` from merge² x width, `mm.model.mlp.2`, no biases) and `mm.model.fc` to the
    text width (multi_modal_projector.linear_1, no bias)."""
    n, p, a = tower.n_embd, tower.patch_size, tower.adapter_dim
    out = [
        MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_PATCH, ".weight"), (3 * p * p, n), "patch"),
        MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_CLS, ""), (n,), "f32"),
        dataclasses.replace(pos, shape=(n, tower.n_pos + 1)),
        *_layer_norm(MODEL_TENSOR.V_PRE_NORM, n),
    ]
    for il in range(tower.n_layer):
        out += _block(tower, il)
    out += _layer_norm(MODEL_TENSOR.V_POST_NORM, n)
    shuffled = n * tower.n_merge**2
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_MMPROJ_MLP, ".weight", 1), (shuffled, a), "matrix"))
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_MMPROJ_MLP, ".weight", 2), (a, a), "matrix"))
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_MMPROJ_FC, ".weight"), (a, tower.n_embd_text), "matrix"))
    return out


def _gemma4(tower: VisionTower) -> list[MmprojTensor]:
    """Gemma 4 (`Gemma4VisionAudioModel`, conversion/gemma.py): the patch input projection reshaped
    to a Conv2D kernel (no bias), one position table per axis (`position_embedding_table`, F32),
    blocks of separate Q/K/V/O without biases, per-head Q/K RMS norms, sandwich norms around
    attention and the gated GELU FFN (`ln1`, `attn_post_norm`, `ln2`, `ffn_post_norm`), then the
    standardisation vectors and `mm.input_projection` (embed_vision.embedding_projection, an
    nn.Linear: ne = [vision, text]) with no post-norm. Names: gguf-py's TensorNameMap."""
    n, p, f = tower.n_embd, tower.patch_size, tower.n_ff
    head = n // tower.n_head
    out = [
        MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_PATCH, ".weight"), (p, p, 3, n), "patch"),
        MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_POS, ".weight"), (n, tower.pos_table, 2), "f32"),
    ]
    for il in range(tower.n_layer):
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_INPUT_NORM, ".weight", il), (n,), "f32"))
        for t in (MODEL_TENSOR.V_ENC_ATTN_Q, MODEL_TENSOR.V_ENC_ATTN_K, MODEL_TENSOR.V_ENC_ATTN_V):
            out.append(MmprojTensor(_name(t, ".weight", il), (n, n), "matrix"))
        for t in (MODEL_TENSOR.V_ENC_ATTN_Q_NORM, MODEL_TENSOR.V_ENC_ATTN_K_NORM):
            out.append(MmprojTensor(_name(t, ".weight", il), (head,), "f32"))
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_ATTN_O, ".weight", il), (n, n), "matrix"))
        for t in (MODEL_TENSOR.V_ENC_ATTN_POST_NORM, MODEL_TENSOR.V_ENC_POST_ATTN_NORM):
            out.append(MmprojTensor(_name(t, ".weight", il), (n,), "f32"))
        for t in (MODEL_TENSOR.V_ENC_FFN_GATE, MODEL_TENSOR.V_ENC_FFN_UP):
            out.append(MmprojTensor(_name(t, ".weight", il), (n, f), "matrix"))
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_FFN_DOWN, ".weight", il), (f, n), "matrix"))
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_FFN_POST_NORM, ".weight", il), (n,), "f32"))
    out += [
        MmprojTensor(_name(t, ""), (n,), "f32") for t in (MODEL_TENSOR.V_STD_BIAS, MODEL_TENSOR.V_STD_SCALE)
    ]
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_MM_INP_PROJ, ".weight"), (n, tower.n_embd_text), "matrix"))
    return out


def _glm4v(tower: VisionTower, pos: MmprojTensor) -> list[MmprojTensor]:
    """GLM-4.xV (`Glm4VVisionModel` on Qwen3VLVisionModel's tensor rules): the Conv3D split into two
    Conv2Ds with its bias, `v.norm_embd` (post_conv_layernorm) and the learned positions; blocks of
    fused QKV and output without biases, RMS norms (weight only) and a gated SiLU FFN as wide as the
    text model (out_hidden_size); `v.post_ln`; then the merger: the 2x2 downsample Conv2D
    (`mm.patch_merger`, the patch rule, with bias), `mm.model.fc`, its LayerNorm `mm.post_norm` and a
    gated FFN of intermediate_size (`mm.gate`, `mm.up`, `mm.down`), none with biases."""
    n, p, f, t, m = tower.n_embd, tower.patch_size, tower.n_ff, tower.n_embd_text, tower.n_merge
    patch = (p, p, 3, n)
    out = [
        MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_PATCH, s), patch, "patch")
        for s in (".weight", ".weight.1")
    ]
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_PATCH, ".bias"), (n,), "f32"))
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_EMBD_NORM, ".weight"), (n,), "f32"))
    out.append(pos)
    for il in range(tower.n_layer):
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_INPUT_NORM, ".weight", il), (n,), "f32"))
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_ATTN_QKV, ".weight", il), (n, 3 * n), "matrix"))
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_ATTN_O, ".weight", il), (n, n), "matrix"))
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_POST_ATTN_NORM, ".weight", il), (n,), "f32"))
        for k in (MODEL_TENSOR.V_ENC_FFN_GATE, MODEL_TENSOR.V_ENC_FFN_UP):
            out.append(MmprojTensor(_name(k, ".weight", il), (n, f), "matrix"))
        out.append(MmprojTensor(_name(MODEL_TENSOR.V_ENC_FFN_DOWN, ".weight", il), (f, n), "matrix"))
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_POST_NORM, ".weight"), (n,), "f32"))
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_MM_PATCH_MERGER, ".weight"), (m, m, n, t), "patch"))
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_MM_PATCH_MERGER, ".bias"), (t,), "f32"))
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_MMPROJ_FC, ".weight"), (t, t), "matrix"))
    out += _layer_norm(MODEL_TENSOR.V_MM_POST_NORM, t)
    for k in (MODEL_TENSOR.V_MM_GATE, MODEL_TENSOR.V_MM_UP):
        out.append(MmprojTensor(_name(k, ".weight"), (t, tower.adapter_dim), "matrix"))
    out.append(MmprojTensor(_name(MODEL_TENSOR.V_MM_DOWN, ".weight"), (tower.adapter_dim, t), "matrix"))
    return out


def mmproj_bytes(tower: VisionTower, ftype: GGMLType) -> int:
    """The tensor data of the mmproj file (clip.cpp's "model size": the sum of ggml_nbytes)."""
    return sum(t.nbytes(ftype) for t in mmproj_tensors(tower))


def mmproj_type(name: str) -> GGMLType:
    """An mmproj file type by its tag (f16, bf16, q8_0, f32)."""
    key = name.lower()
    if key not in MMPROJ_TYPES:
        raise MoeplanError(f"--vision {name}: the converter writes mmproj files as {', '.join(MMPROJ_TYPES)}")
    return MMPROJ_TYPES[key]


_FILE_TAG = re.compile(r"(?<![a-z0-9])(bf16|f16|q8_0|f32)(?![a-z0-9])", re.IGNORECASE)


def mmproj_type_of_file(path: str) -> GGMLType | None:
    """The type an mmproj file name says (mmproj-F16.gguf, mmproj-model-bf16.gguf), or None."""
    m = _FILE_TAG.search(path.rsplit("/", 1)[-1])
    return MMPROJ_TYPES[m.group(1).lower()] if m else None


# `vision_config` keys per projector: the converter's `find_vparam` lists and class renames.
_KEYS: dict[Projector, dict[str, str]] = {
    Projector.QWEN3VL: {"n_layer": "depth", "n_head": "num_heads"},
    Projector.GEMMA3: {"n_layer": "num_hidden_layers", "n_head": "num_attention_heads"},
    Projector.LLAMA4: {"n_layer": "num_hidden_layers", "n_head": "num_attention_heads"},
    Projector.GEMMA4: {"n_layer": "num_hidden_layers", "n_head": "num_attention_heads"},
    Projector.GLM4V: {"n_layer": "depth", "n_head": "num_heads"},
}


def tower_from_config(projector: str, vision_config: Mapping[str, Any], n_embd_text: int) -> VisionTower:
    """A tower from a release's `vision_config` (the model YAML's `vision.config`)."""
    try:
        proj = Projector(projector)
    except ValueError:
        known = ", ".join(p.value for p in Projector)
        raise MoeplanError(f"vision projector '{projector}': moeplan models {known}") from None
    keys = _KEYS[proj]
    c = vision_config
    patch = int(c["patch_size"])
    if proj is Projector.QWEN3VL:
        # image_size from num_position_embeddings (Qwen3VLVisionModel.__init__, default 2304)
        image_size = int(int(c.get("num_position_embeddings", 2304)) ** 0.5 * patch)
        merge = int(c.get("spatial_merge_size", 2))
    elif proj is Projector.LLAMA4:
        image_size = int(c["image_size"])
        merge = round(1 / float(c["pixel_shuffle_ratio"]))  # the converter's projector scale factor
    elif proj is Projector.GEMMA4:
        image_size = 224  # Gemma4VisionAudioModel: "unused, but set to avoid error"
        merge = int(c["pooling_kernel_size"])  # clip.cpp's n_merge, 3
        if int(c["hidden_size"]) <= 3 * patch**2:  # engines/vision.py _gemma4_compute's premise
            raise MoeplanError(
                f"gemma4v tower {c['hidden_size']} wide: moeplan models Gemma 4 towers wider than 3·p² "
                f"({3 * patch**2}), as in the 26B-A4B and 31B"
            )
    elif proj is Projector.GLM4V:
        image_size = int(c["image_size"])  # the learned position table's side x patch_size
        merge = int(c.get("spatial_merge_size", 2))
        # engines/vision.py _glm4v_compute's premises: no block tensor fits the image's hole, and
        # the merger's FFN (a quarter of the patches) stays below the blocks'
        if int(c["hidden_size"]) <= 3 * patch**2 or int(c["intermediate_size"]) >= 4 * int(
            c["out_hidden_size"]
        ):
            raise MoeplanError(
                f"glm4v tower {c['hidden_size']} wide, merger FFN {c['intermediate_size']}: moeplan models "
                "towers wider than 3·p² whose merger FFN is under 4 x out_hidden_size, as GLM-4.6V's"
            )
    else:
        image_size = int(c["image_size"])
        merge = 4  # clip.cpp load_hparams, PROJECTOR_TYPE_GEMMA3: n_merge = 4 for every size
    glm = proj is Projector.GLM4V  # its blocks' FFN is out_hidden_size wide, intermediate_size the merger's
    return VisionTower(
        projector=proj,
        n_layer=int(c[keys["n_layer"]]),
        n_embd=int(c["hidden_size"]),
        n_ff=int(c["out_hidden_size"] if glm else c["intermediate_size"]),
        n_head=int(c[keys["n_head"]]),
        patch_size=patch,
        image_size=image_size,
        n_embd_text=int(c.get("out_hidden_size", n_embd_text)),
        n_merge=merge,
        deepstack=tuple(int(i) for i in c.get("deepstack_visual_indexes", ())),
        adapter_dim=int(c["intermediate_size"] if glm else c.get("projector_output_dim", 0)),
        pos_table=int(c.get("position_embedding_size", 0)),
    )
