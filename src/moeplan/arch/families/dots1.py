"""dots.llm1 (`Dots1ForCausalLM`): MHA with per-head q/k norms, leading dense layers, DeepSeek-style
routed + shared experts with a sigmoid router and selection bias.

The pinned converter (`conversion/dots1.py` Dots1Model on Qwen2MoeModel) writes
`leading_dense_block_count` = first_k_dense_replace, `expert_shared_count`, `expert_weights_scale`
(routed_scaling_factor) and `expert_weights_norm`; the sigmoid gating key comes from `scoring_func`
(TextModel). `mlp.gate.e_score_correction_bias` becomes `exp_probs_b` (gguf-py tensor_mapping:
"deepseek-v3 dots1"). `llama_model_dots1::load_arch_tensors` sizes the shared experts as
n_ff_exp x n_expert_shared and requires an untied output.
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.spec import Layer, ModelSpec
from moeplan.arch.tensors import Inventory


class Dots1(Family):
    arch = "dots1"
    model_types = ("dots1",)
    qk_norm = True
    probs_bias = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        moe = c.routed_and_shared_moe(cfg)
        k_dense = c.integer(cfg, "first_k_dense_replace", default=0)
        layers = [Layer(c.gqa(cfg), c.dense(cfg) if il < k_dense else moe) for il in range(n)]
        return c.base(cfg, self.arch, layers)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """The router keys as dots.llm1's config makes the converter write them (scoring_func
        sigmoid, norm_topk_prob true, routed_scaling_factor 2.5); no shared-expert width key (the
        config has no shared_expert_intermediate_size, the loader derives it)."""
        kv = super().gguf_metadata(inv)
        kv[".leading_dense_block_count"] = first_moe_layer(inv.spec)
        kv[".expert_gating_func"] = 2  # LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID
        kv[".expert_weights_norm"] = True
        kv[".expert_weights_scale"] = 2.5
        kv.pop(".expert_shared_feed_forward_length", None)
        return kv
