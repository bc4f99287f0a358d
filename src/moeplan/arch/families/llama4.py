"""Llama 4: chunked local attention on RoPE layers, NoPE global layers, interleaved MoE with a
shared expert."""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.spec import FFN, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Inventory


class Llama4(Family):
    arch = "llama4"
    model_types = ("llama4", "llama4_text")

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        chunk = c.integer(cfg, "attention_chunk_size", default=8192)
        nope = cfg.get("no_rope_layers")
        # HF's no_rope_layers holds 1 for layers that use RoPE; default: every 4th layer is NoPE.
        uses_rope = [bool(x) for x in nope] if nope else [(il + 1) % 4 != 0 for il in range(n)]
        step = c.integer(cfg, "interleave_moe_layer_step", default=1)
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_local_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok"),
            n_ff_exp=c.integer(cfg, "intermediate_size"),
            n_shared=1,
            n_ff_shexp=c.integer(cfg, "intermediate_size"),
        )
        layers = []
        for il in range(n):
            attn = c.gqa(cfg, AttnKind.CHUNKED, chunk) if uses_rope[il] else c.gqa(cfg, rope=False)
            ffn = moe if (il + 1) % step == 0 else c.dense(cfg, "intermediate_size_mlp")
            layers.append(Layer(attn, ffn))
        return c.base(cfg, self.arch, layers, flags=frozenset(c.rope_freqs_flag(cfg)))

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        kv[".interleave_moe_layer_step"] = first_moe_layer(inv.spec) + 1
        return kv
