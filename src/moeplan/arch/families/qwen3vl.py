"""Qwen3-VL's text models: the Qwen3-MoE trunk (Qwen3-VL-30B-A3B, 235B-A22B; `qwen3vlmoe`) or the
dense Qwen3 trunk (Qwen3-VL-8B, 32B; `qwen3vl`), with interleaved M-RoPE and DeepStack (visual
features added to the first layers' outputs).

The pinned converter (`conversion/qwen3vl.py` Qwen3VLMoeTextModel on Qwen3MoeModel, Qwen3VLTextModel on
Qwen3Model) writes the text
model only (the vision tower goes to the mmproj file), `rope.dimension_sections` from
`mrope_section` and `n_deepstack_layers` = len(vision_config.deepstack_visual_indexes).
`llama_model_qwen3vlmoe::load_arch_hparams` requires the sections; the deepstack count widens the
input embedding to n_embd x (1 + n_deepstack_layers) (`llama_hparams::n_embd_inp`).
"""

from typing import ClassVar

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.qwen3 import Qwen3, Qwen3Moe
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.spec import ModelSpec
from moeplan.arch.tensors import Inventory
from moeplan.errors import BadConfig

DEEPSTACK = "deepstack_layers="
MROPE = "mrope_section="


def _flag_value(spec: ModelSpec, prefix: str) -> str | None:
    return next((f.removeprefix(prefix) for f in spec.flags if f.startswith(prefix)), None)


def deepstack_layers(spec: ModelSpec) -> int:
    """How many leading layers add a DeepStack visual feature slice (0 when not set)."""
    v = _flag_value(spec, DEEPSTACK)
    return int(v) if v else 0


def mrope_sections(spec: ModelSpec, rope_pairs: int) -> list[int]:
    """The config's M-RoPE sections (t, h, w, 0), rescaled to `rope_pairs` rotary pairs when the head
    differs from the checkpoint's (a materialised file); the first section takes the remainder."""
    v = _flag_value(spec, MROPE)
    sections = [int(s) for s in v.split(",")] if v else [rope_pairs]
    total = sum(sections)
    if total != rope_pairs:
        scaled = [s * rope_pairs // total for s in sections]
        scaled[0] += rope_pairs - sum(scaled)
        sections = scaled
    return [*sections, 0, 0, 0, 0][:4]


class Qwen3VLMoe(Family):
    arch = "qwen3vlmoe"
    model_types = ("qwen3_vl_moe_text", "qwen3_vl_moe")
    qk_norm = True
    trunk: ClassVar[Family] = Qwen3Moe()  # the layers M-RoPE and DeepStack are added to

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        spec = self.trunk.spec_from_config(cfg)
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        sections = rope.get("mrope_section")
        if not isinstance(sections, list) or not sections:
            raise BadConfig("Qwen3-VL's text config lacks rope mrope_section (llama.cpp requires it)")
        vision = cfg.get("vision_config") or {}
        n_deepstack = len(vision.get("deepstack_visual_indexes") or [])
        flags = set(spec.flags) | {MROPE + ",".join(str(c.integer({"s": s}, "s")) for s in sections)}
        if n_deepstack:
            flags.add(f"{DEEPSTACK}{n_deepstack}")
        return ModelSpec(**{**spec.__dict__, "arch": self.arch, "flags": frozenset(flags)})

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """The generic reading plus the two keys `load_arch_hparams` adds: `n_deepstack_layers`
        (which widens the input embedding) and `rope.dimension_sections`."""
        spec = generic_spec(hp)
        flags = set(spec.flags)
        sections = hp.value("rope.dimension_sections")
        if isinstance(sections, list) and any(sections):
            flags.add(MROPE + ",".join(str(int(x)) for x in sections if int(x)))
        n_deepstack = hp.integer("n_deepstack_layers", 0)
        if n_deepstack:
            flags.add(f"{DEEPSTACK}{n_deepstack}")
        return ModelSpec(**{**spec.__dict__, "flags": frozenset(flags)})

    def embedding_activations(self, spec: ModelSpec, il: int, n_ubatch: int) -> int:
        """DeepStack widens the input embedding to n_embd_inp = n_embd x (1 + n_deepstack) and the
        first n_deepstack layers read slices of it (qwen3vlmoe.cpp), so `build_inp_embd`'s
        n_embd_inp-wide rows stay live through them: five such rows per token in place of four
        n_embd rows (fitted on the pinned build's CPU compute buffers: exact with flash attention
        for 1 and 3 DeepStack layers at widths 256 and 512, at most 8 MiB over without)."""
        n_deepstack = deepstack_layers(spec)
        if il >= n_deepstack:
            return 0
        n_embd_inp = spec.n_embd * (1 + n_deepstack)
        return 4 * n_ubatch * (5 * n_embd_inp - 4 * spec.n_embd)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        kv[".rope.dimension_sections"] = mrope_sections(spec, self.rope_dims(spec, spec.layers[0].attn) // 2)
        kv[".n_deepstack_layers"] = deepstack_layers(spec)
        return kv


class Qwen3VL(Qwen3VLMoe):
    """The dense Qwen3-VL text models: `llama_model_qwen3vl` reads the same two keys and builds the
    same DeepStack graph as the MoE one (src/models/qwen3vl.cpp) on Qwen3's dense layers."""

    arch = "qwen3vl"
    model_types = ("qwen3_vl_text", "qwen3_vl")
    trunk = Qwen3()
