"""GLM-4.5/4.6/4.7 (and GLM-4.6V's text model): GQA with partial rope, leading dense layers,
DeepSeek-style routed + shared experts, MTP blocks the converter keeps.

The checkpoint's MTP layer carries its own embedding and head copies (`model.layers.N.embed_tokens`,
`shared_head.head`); conversion/glm.py `Glm4MoeModel.filter_tensors` keeps every `model.layers.N.*`
tensor of a kept MTP layer, so the GGUF holds them as `nextn.embed_tokens` / `nextn.shared_head_head`
(optional in llama.cpp's loader). Published files count them: llama-bench prints 110.47 B for a
GLM-4.5-Air GGUF and 358.34 B for bartowski's GLM-4.7 IQ2_XXS (find_string index file ids
36004122646 and 53250428215), the trunk plus MTP block plus 2 x n_vocab x n_embd.
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.deepseek2 import deepseek_moe_metadata
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.spec import Layer, ModelSpec
from moeplan.arch.tensors import Inventory


class Glm4Moe(Family):
    arch = "glm4moe"
    model_types = ("glm4_moe", "glm4v_moe", "glm4v_moe_text")  # GLM-4.5V/4.6V: the text_config
    mtp_kept = True
    mtp_own_head = True
    ffn_norm = "post_attention_norm"
    probs_bias = True
    rope_fraction = 0.5  # partial_rotary_factor 0.5

    def mtp_head_written(self, spec: ModelSpec) -> bool:
        return True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        moe = c.routed_and_shared_moe(cfg)
        k_dense = c.integer(cfg, "first_k_dense_replace", default=0)
        layers = [Layer(c.gqa(cfg), c.dense(cfg) if il < k_dense else moe) for il in range(n)]
        flags = {"attn_bias"} if cfg.get("attention_bias") else set()
        if cfg.get("use_qk_norm"):
            flags.add("qk_norm")
        return c.base(cfg, self.arch, layers, mtp_layers=c.mtp(cfg, layers[-1]), flags=frozenset(flags))

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        if inv.spec.is_moe:
            deepseek_moe_metadata(kv, inv)
        return kv
