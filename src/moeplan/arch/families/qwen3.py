"""Qwen3 dense and Qwen3-MoE (Qwen3-30B-A3B, 235B-A22B, Qwen3-Coder): GQA with per-head q/k norms."""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family
from moeplan.arch.spec import FFN, FFNKind, Layer, ModelSpec


class Qwen3(Family):
    arch = "qwen3"
    model_types = ("qwen3",)
    qk_norm = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        return c.base(cfg, self.arch, [Layer(c.gqa(cfg), c.dense(cfg))] * c.integer(cfg, "num_hidden_layers"))


def qwen_moe_ffn(cfg: Config, shared: bool) -> FFN:
    """Qwen MoE: `num_experts` routed experts, and one shared expert of its own width if `shared`."""
    return FFN(
        FFNKind.MOE,
        n_expert=c.integer(cfg, "num_experts"),
        n_expert_used=c.integer(cfg, "num_experts_per_tok"),
        n_ff_exp=c.integer(cfg, "moe_intermediate_size"),
        n_shared=1 if shared else 0,
        n_ff_shexp=c.integer(cfg, "shared_expert_intermediate_size") if shared else 0,
    )


class Qwen3Moe(Family):
    arch = "qwen3moe"
    model_types = ("qwen3_moe",)
    qk_norm = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        dense_layers = set(cfg.get("mlp_only_layers") or [])
        step = c.integer(cfg, "decoder_sparse_step", default=1)
        layers = [
            Layer(
                c.gqa(cfg),
                c.dense(cfg) if il in dense_layers or (il + 1) % step else qwen_moe_ffn(cfg, False),
            )
            for il in range(n)
        ]
        return c.base(cfg, self.arch, layers)
