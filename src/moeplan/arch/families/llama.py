"""Llama 2/3.x (dense) and Mixtral (the llama architecture with experts)."""

from typing import ClassVar

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family
from moeplan.arch.spec import FFN, FFNKind, Layer, ModelSpec


class Llama(Family):
    arch = "llama"
    model_types: ClassVar[tuple[str, ...]] = ("llama", "mixtral")

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        n_exp = c.integer(cfg, "num_local_experts", default=0)
        if n_exp:
            ffn = FFN(
                FFNKind.MOE,
                n_expert=n_exp,
                n_expert_used=c.integer(cfg, "num_experts_per_tok"),
                n_ff_exp=c.integer(cfg, "intermediate_size"),
            )
        else:
            ffn = c.dense(cfg)
        flags = c.rope_freqs_flag(cfg)
        if cfg.get("attention_bias"):
            flags.add("attn_bias")
        return c.base(cfg, self.arch, [Layer(c.gqa(cfg), ffn)] * n, flags=frozenset(flags))
