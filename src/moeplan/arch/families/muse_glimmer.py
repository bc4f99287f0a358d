"""Meta Muse Glimmer (MuseGlimmerForConditionalGeneration, text model): llama.cpp `muse-glimmer`.

A dense decoder: gated GQA with per-head q/k norms and sandwich norms as in AFMoE, a SwiGLU FFN on
every layer, an untied output matrix scaled by `output_multiplier` and tanh-softcapped
(src/models/muse-glimmer.cpp). The converter (conversion/muse_glimmer.py `MuseGlimmerModel`) writes
`layer_types` as the `sliding_window_pattern` array and synthesises the q/k norm weights (the
checkpoint's norms are scaleless, `qk_scale_factor` folded into attn_q_norm). The graph rotates
exactly the sliding layers (`use_rope = hparams.is_swa(il)`): full layers are NoPE. The vision tower
goes to the mmproj file (`MuseGlimmerVisionModel`), not here.
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.afmoe import gated_attention, sandwich_norms
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, full_layers_without_rope, generic_spec, swa_pattern
from moeplan.arch.spec import Attention, AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig

SWA_PERIOD = 4  # load_swa_pattern(ml, 4) in src/models/muse-glimmer.cpp, when the file has no array


class MuseGlimmer(Family):
    arch = "muse-glimmer"
    model_types = ("muse_glimmer", "muse_glimmer_text")
    qk_norm = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        types = c.layer_types(cfg, n, [])
        if not types:
            raise BadConfig("a muse_glimmer config needs layer_types (the converter writes its SWA pattern)")
        unknown = sorted(set(types) - {"sliding_attention", "full_attention"})
        if unknown:
            raise BadConfig(f"unknown Muse Glimmer layer types {unknown}")
        thetas = cfg.get("layer_rope_theta")
        nope = [t == "full_attention" for t in types]
        if thetas is not None and [t == 0 for t in thetas] != nope:
            raise BadConfig(
                "muse-glimmer: llama.cpp rotates exactly the sliding layers; layer_rope_theta says otherwise"
            )
        if cfg.get("tie_word_embeddings"):
            raise BadConfig("muse-glimmer: llama.cpp's loader requires an untied output matrix")
        window = c.integer(cfg, "sliding_window")
        layers = [
            Layer(
                c.gqa(cfg, AttnKind.SWA, window) if t == "sliding_attention" else c.gqa(cfg, rope=False),
                c.dense(cfg),
            )
            for t in types
        ]
        # MuseGlimmerModel.set_gguf_parameters writes both; the loader requires logit_scale
        scalars = (
            (".logit_scale", float(c.get(cfg, "output_multiplier"))),
            (".final_logit_softcapping", float(c.get(cfg, "final_logit_softcapping"))),
        )
        return c.base(cfg, self.arch, layers, gguf_scalars=scalars)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """muse-glimmer.cpp `load_arch_hparams`: the pattern array, else 3 sliding : 1 full; the full
        layers run without RoPE."""
        return full_layers_without_rope(generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, SWA_PERIOD)))

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        gated_attention(b, spec, p, il, a, role)

    def ffn_norms(self, b: Builder, p: str, il: int, e: int, role: Role) -> None:
        sandwich_norms(b, p, il, e, role)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        kv[".attention.sliding_window_pattern"] = [la.attn.kind is AttnKind.SWA for la in inv.spec.layers]
        kv.update(dict(inv.spec.gguf_scalars))
        return kv
