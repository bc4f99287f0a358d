"""Granite 3.x MoE (GraniteMoeForCausalLM): every layer MoE (no shared expert), tied embeddings, and
four multipliers that reach only the GGUF metadata.

conversion/granite.py `GraniteModel` drops config.json's `head_dim` (head size = hidden / heads), writes
`attention_multiplier`, `embedding_multiplier`, `residual_multiplier`, `logits_scaling` as
`attention.scale`, `embedding_scale`, `residual_scale`, `logit_scale` (`llama_model_granite_moe` requires
the last), and `GraniteMoeModel.modify_tensors` splits the fused `input_linear` experts into gate and up
stacks.
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Inventory
from moeplan.errors import UnsupportedArchitecture

# config.json multiplier -> GGUF key (GraniteModel.set_gguf_parameters)
MULTIPLIERS = (
    ("attention_multiplier", ".attention.scale"),
    ("embedding_multiplier", ".embedding_scale"),
    ("residual_multiplier", ".residual_scale"),
    ("logits_scaling", ".logit_scale"),
)


class GraniteMoe(Family):
    arch = "granitemoe"
    model_types = ("granitemoe",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("shared_intermediate_size"):
            raise UnsupportedArchitecture(
                "granitemoe with a shared expert (granitemoeshared) is not modelled"
            )
        n_head = c.integer(cfg, "num_attention_heads")
        hd = c.integer(cfg, "hidden_size") // n_head  # the converter ignores head_dim
        attn = Attention(AttnKind.FULL, n_head, c.integer(cfg, "num_key_value_heads", default=n_head), hd, hd)
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_local_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok"),
            n_ff_exp=c.integer(cfg, "intermediate_size"),
        )
        # a multiplier of 0 or absent is not written (the converter tests truthiness)
        scalars = tuple((key, float(cfg[name])) for name, key in MULTIPLIERS if cfg.get(name))
        flags = {"attn_bias"} if cfg.get("attention_bias") else set()
        return c.base(
            cfg,
            self.arch,
            [Layer(attn, moe)] * c.integer(cfg, "num_hidden_layers"),
            flags=frozenset(flags),
            gguf_scalars=scalars,
        )

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        kv.update(dict(inv.spec.gguf_scalars))
        return kv
