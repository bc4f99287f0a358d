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


def multipliers(cfg: Config) -> tuple[tuple[str, float], ...]:
    """The multipliers GraniteModel.set_gguf_parameters writes: a multiplier of 0 or absent is not
    written (the converter tests truthiness)."""
    return tuple((key, float(cfg[name])) for name, key in MULTIPLIERS if cfg.get(name))


def attention(cfg: Config) -> Attention:
    """GQA with the head size hidden / heads: GraniteModel drops config.json's head_dim."""
    n_head = c.integer(cfg, "num_attention_heads")
    hd = c.integer(cfg, "hidden_size") // n_head
    return Attention(AttnKind.FULL, n_head, c.integer(cfg, "num_key_value_heads", default=n_head), hd, hd)


class GraniteScaled(Family):
    """Granite's GGUF keys beside the llama ones: the multipliers the spec keeps as GGUF scalars."""

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        kv.update(dict(inv.spec.gguf_scalars))
        return kv


class GraniteMoe(GraniteScaled):
    arch = "granitemoe"
    model_types = ("granitemoe",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("shared_intermediate_size"):
            raise UnsupportedArchitecture(
                "granitemoe with a shared expert (granitemoeshared) is not modelled"
            )
        attn = attention(cfg)
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_local_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok"),
            n_ff_exp=c.integer(cfg, "intermediate_size"),
        )
        flags = {"attn_bias"} if cfg.get("attention_bias") else set()
        return c.base(
            cfg,
            self.arch,
            [Layer(attn, moe)] * c.integer(cfg, "num_hidden_layers"),
            flags=frozenset(flags),
            gguf_scalars=multipliers(cfg),
        )
