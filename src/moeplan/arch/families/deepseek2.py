"""DeepSeek-V2/V3/R1, Kimi-K2.x, GLM-4.7-Flash and Mistral Large 3: MLA attention, leading dense
layers, routed + shared experts. The router is sigmoid with a selection bias (`exp_probs_b`, the
checkpoint's e_score_correction_bias) unless the config says `scoring_func: softmax`: DeepSeek-V2's
and Mistral Large 3's softmax routers hold only a weight, and the converter writes the gating
function from scoring_func (`TextModel.set_gguf_parameters`); the deepseek2 loader creates
`exp_probs_b` TENSOR_NOT_REQUIRED (src/models/deepseek2.cpp). Mistral Large 3 ships a Mistral-format
params.json, which `convert_hf_to_gguf.py --mistral-format` hands to `MistralMoeModel`
(conversion/mistral.py), a DeepseekV2Model that remaps the keys to DeepSeek's and sets scoring_func
softmax, so its GGUF says arch deepseek2. The converter drops the MTP block, except for
GLM-4.7-Flash (glm4_moe_lite), whose converter class keeps it."""

from typing import ClassVar

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.spec import Attention, AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory

SOFTMAX_ROUTER = "router_softmax"  # spec flag: softmax gating, no selection bias
GATING_SOFTMAX = 1  # LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX


def mla_attention(cfg: Config) -> Attention:
    """llama.cpp caches the compressed latent: key_length = kv_lora_rank + rope dims, value = kv_lora_rank."""
    kv_lora = c.integer(cfg, "kv_lora_rank")
    rope_dim = c.integer(cfg, "qk_rope_head_dim")
    return Attention(
        AttnKind.MLA,
        c.integer(cfg, "num_attention_heads"),
        1,
        kv_lora + rope_dim,
        kv_lora,
        q_lora_rank=c.integer(cfg, "q_lora_rank", default=0),
        kv_lora_rank=kv_lora,
        qk_nope_head_dim=c.integer(cfg, "qk_nope_head_dim"),
        qk_rope_head_dim=rope_dim,
        mla_v_head_dim=c.integer(cfg, "v_head_dim"),
    )


def mla_metadata(kv: dict[str, GGUFValue], a: Attention, *, zero_q_lora: bool) -> None:
    """The MLA keys the converters write: the low ranks and the per-head K/V widths of the
    decompressed heads. `zero_q_lora`: write q_lora_rank 0 for a model without a query LoRA
    (DeepseekV2Model does; the Kimi and Bailing converters leave the key out)."""
    if a.q_lora_rank or zero_q_lora:
        kv[".attention.q_lora_rank"] = a.q_lora_rank
    kv[".attention.kv_lora_rank"] = a.kv_lora_rank
    kv[".attention.key_length_mla"] = a.qk_nope_head_dim + a.qk_rope_head_dim
    kv[".attention.value_length_mla"] = a.mla_v_head_dim


def deepseek_moe_metadata(kv: dict[str, GGUFValue], inv: Inventory) -> None:
    """Leading dense blocks and the sigmoid router's keys (`deepseek2`/`glm4moe` loaders)."""
    kv[".leading_dense_block_count"] = first_moe_layer(inv.spec)
    kv[".expert_gating_func"] = 2  # sigmoid
    kv[".expert_weights_norm"] = True
    kv[".expert_weights_scale"] = 1.0


class DeepSeek2(Family):
    arch = "deepseek2"
    model_types: ClassVar[tuple[str, ...]] = (
        "deepseek_v3",
        "deepseek_v2",
        "kimi_k2",
        "kimi_k25",
        "glm4_moe_lite",
    )
    probs_bias = True
    mtp_own_head = True
    # GLM-4.7-Flash (`Glm4MoeLiteForCausalLM`, conversion/glm.py `Glm4MoeLiteModel`) is written as
    # deepseek2 too, but unlike `DeepseekV2Model` (skip_mtp = True) its converter keeps the NextN block,
    # all of `model.layers.{n_layer}.*` including its own embed_tokens and shared_head.head.
    mtp_keeping_model_types: ClassVar[tuple[str, ...]] = ("glm4_moe_lite",)

    def keeps_mtp(self, spec: ModelSpec) -> bool:
        return spec.model_type in self.mtp_keeping_model_types

    def mtp_head_written(self, spec: ModelSpec) -> bool:
        return spec.model_type in self.mtp_keeping_model_types

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        attn = mla_attention(cfg)
        moe = c.routed_and_shared_moe(cfg)
        k_dense = c.integer(cfg, "first_k_dense_replace", default=0)
        freq = c.integer(cfg, "moe_layer_freq", default=1)
        layers = [Layer(attn, c.dense(cfg) if il < k_dense or il % freq else moe) for il in range(n)]
        flags = frozenset({SOFTMAX_ROUTER} if cfg.get("scoring_func") == "softmax" else ())
        return c.base(cfg, self.arch, layers, mtp_layers=c.mtp(cfg, layers[-1]), flags=flags)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        probs_bias = self.probs_bias and not spec.has(SOFTMAX_ROUTER)
        layout.ffn(b, p, il, layer.ffn, spec.n_embd, mtp, probs_bias=probs_bias)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        mla_metadata(kv, inv.spec.layers[0].attn, zero_q_lora=True)
        if inv.spec.is_moe:
            deepseek_moe_metadata(kv, inv)
            if inv.spec.has(SOFTMAX_ROUTER):
                kv[".expert_gating_func"] = GATING_SOFTMAX
        return kv
