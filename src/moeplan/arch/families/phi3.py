"""Phi-3 / Phi-4 (`Phi3ForCausalLM`, llama.cpp `phi3`): a dense GQA decoder whose checkpoint fuses
q/k/v into `qkv_proj` and gate/up into `gate_up_proj`; both stay fused in the GGUF.

From the pinned build (11434):
- conversion/phi.py Phi3MiniModel: no tensor is split (gguf-py maps `self_attn.qkv_proj` to attn_qkv
  and `mlp.gate_up_proj` to ffn_up); rope.dimension_count = int(partial_rotary_factor x n_embd) /
  n_head (Phi-4-mini rotates 96 of 128); the LongRoPE `long_factor` / `short_factor` lists become
  `rope_factors_long/short` {rope_dims/2}; `sliding_window` is written as 0 when the config has none (Phi-4);
- src/models/phi3.cpp `load_arch_tensors`: attn_qkv {n_embd, n_embd + 2·n_embd_gqa} (so n_head x
  head_dim must equal n_embd), attn_output {n_embd, n_embd}, ffn_up {n_embd, 2·n_ff}, ffn_down, an
  optional output (else token_embd is reused); `load_arch_hparams` turns any sliding window off
  ("Phi SWA is currently disabled", PR 13676): every layer attends to the whole context.
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family
from moeplan.arch.from_gguf import GGUFHParams, fused_up_layers, generic_spec, rope_fraction_of
from moeplan.arch.spec import Attention, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Role
from moeplan.errors import BadConfig, UnsupportedArchitecture


class Phi3(Family):
    arch = "phi3"
    model_types = ("phi3",)
    query_width_is_embd = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("attention_bias") or cfg.get("lm_head_bias"):
            # the converter would write attn_qkv / output biases, which llama_model_phi3 never loads
            raise UnsupportedArchitecture("phi3 with attention or lm_head biases: llama.cpp loads none")
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        # Phi3MiniModel reads partial_rotary_factor from the rope parameters, else the top level
        fraction = c.number(cfg, "partial_rotary_factor", default=rope.get("partial_rotary_factor", 1.0))
        if not 0 < fraction <= 1:
            raise BadConfig(f"phi3: partial_rotary_factor must lie in (0, 1], got {fraction}")
        attn = c.gqa(cfg)
        c.check_query_width(cfg, attn)
        rope_dims = int(fraction * attn.head_dim_k)
        for key in ("long_factor", "short_factor"):
            factors = rope.get(key)
            if factors is not None and len(factors) != rope_dims // 2:
                # generate_extra_tensors refuses factor lists of another length
                raise BadConfig(
                    f"phi3: rope {key} has {len(factors)} values, not rope_dims/2 = {rope_dims // 2}"
                )
        flags = {"rope_factors"} if c.longrope(cfg) else set()
        n = c.integer(cfg, "num_hidden_layers")
        layers = [Layer(attn, c.dense(cfg))] * n
        return c.base(cfg, self.arch, layers, flags=frozenset(flags), rope_fraction=fraction)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """phi3.cpp `load_arch_hparams`: a sliding window in the file is ignored (full attention); the
        fused ffn_up holds 2·n_ff rows; the LongRoPE factors are there or not."""
        spec = generic_spec(hp, swa=lambda h, n: [False] * n)
        flags = frozenset({"rope_factors"} if hp.has("rope_factors_long.weight") else ())
        fraction = rope_fraction_of(hp, spec.layers[0].attn.head_dim_k)
        layers = fused_up_layers(spec.layers)
        return dataclasses.replace(spec, layers=layers, flags=flags, rope_fraction=fraction)

    def rope_dims(self, spec: ModelSpec, a: Attention) -> int:
        """rope.dimension_count = int(partial_rotary_factor x n_embd) / n_head (Phi3MiniModel)."""
        return int(a.head_dim_k * spec.rope_fraction)

    def head(self, b: Builder, spec: ModelSpec) -> None:
        if spec.has("rope_factors"):
            layout.rope_factors(b, self.rope_dims(spec, spec.layers[0].attn) // 2)
        b.add("token_embd.weight", (spec.n_embd, spec.n_vocab), Role.EMBED)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        q, kv = a.n_head * a.head_dim_k, a.n_head_kv * a.head_dim_k
        b.add(f"{p}.attn_qkv.weight", (spec.n_embd, q + 2 * kv), role, il)
        b.add(f"{p}.attn_output.weight", (a.n_head * a.head_dim_v, spec.n_embd), role, il)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        layout.fused_gate_up(b, p, il, spec.n_embd, layer.ffn.n_ff)
