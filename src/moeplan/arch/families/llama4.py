"""Llama 4: chunked local attention on RoPE layers, NoPE global layers, interleaved MoE with a
shared expert."""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
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

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """llama4.cpp `load_arch_hparams`: unless the file sets a zero window, three of every four
        layers attend in chunks of 8192 tokens (the NoPE fourth is global)."""
        if hp.value("attention.sliding_window") == 0:
            return generic_spec(hp, swa=lambda h, n: [False] * n)
        spec = generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, 4), window=8192)
        chunked = tuple(
            Layer(dataclasses.replace(la.attn, kind=AttnKind.CHUNKED), la.ffn)
            if la.attn.kind is AttnKind.SWA
            else Layer(dataclasses.replace(la.attn, rope=False), la.ffn)
            for la in spec.layers
        )
        return dataclasses.replace(spec, layers=chunked)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        kv[".interleave_moe_layer_step"] = first_moe_layer(inv.spec) + 1
        return kv
