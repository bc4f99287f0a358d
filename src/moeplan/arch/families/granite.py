"""Granite dense (GraniteForCausalLM, and a GraniteMoeHybrid config whose layers are all attention
and which has no experts, as Granite-4.0-Micro): llama.cpp `granite`, the llama layout with RoPE,
tied embeddings by default and Granite's multipliers in the GGUF keys.

From the pinned build (11434):
- conversion/granite.py GraniteModel (a LlamaModel): drops `head_dim` (head = hidden / heads) and
  writes the multipliers; GraniteHybridModel switches an all-attention config without
  `num_experts_per_tok` to this architecture, its shared MLP becoming ffn_gate/up/down;
- src/models/granite.cpp `load_arch_hparams` requires `logit_scale`; `load_arch_tensors`: the llama
  tensors, optional biases, `output` optional (else token_embd is reused).
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.granitemoe import GraniteScaled, attention, multipliers
from moeplan.arch.spec import Layer, ModelSpec
from moeplan.errors import BadConfig


class Granite(GraniteScaled):
    arch = "granite"
    model_types = ("granite",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if not cfg.get("logits_scaling"):
            raise BadConfig("a Granite config needs logits_scaling: granite.cpp requires the logit scale")
        shared = cfg.get("shared_intermediate_size")
        if shared is not None and shared != cfg.get("intermediate_size"):
            raise BadConfig(
                "granite: llama.cpp sizes the MLP by intermediate_size; shared_intermediate_size differs"
            )
        flags = c.rope_freqs_flag(cfg) | ({"attn_bias"} if cfg.get("attention_bias") else set())
        layers = [Layer(attention(cfg), c.dense(cfg))] * c.integer(cfg, "num_hidden_layers")
        return c.base(cfg, self.arch, layers, flags=frozenset(flags), gguf_scalars=multipliers(cfg))
