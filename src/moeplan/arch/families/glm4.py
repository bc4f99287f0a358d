"""GLM-4-0414 (`Glm4ForCausalLM`, llama.cpp `glm4`): a dense GQA decoder with a norm before and after
both the attention and the FFN, q/k/v biases where `attention_bias` (transformers' Glm4Config default:
true), the checkpoint's fused `gate_up_proj`, and rotary embedding on half of each head.

From the pinned build (11434):
- conversion/glm.py Glm4Model: the plain TextModel tensors (gguf-py maps `post_self_attn_layernorm` to
  post_attention_norm, `post_attention_layernorm` to ffn_norm, `post_mlp_layernorm` to post_ffw_norm,
  `mlp.gate_up_proj` to ffn_up); rope.dimension_count = head_dim x partial_rotary_factor (default 0.5,
  read from rope_parameters, which mirror a top-level factor: conversion/base.py);
- src/models/glm4.cpp `load_arch_tensors`: attn_norm, q/k/v with optional biases (create_tensor_qkv),
  attn_output {n_head x head_dim, n_embd}, post_attention_norm, ffn_norm, ffn_up {n_embd, 2·n_ff},
  ffn_down, post_ffw_norm, and an optional output (else token_embd is reused).
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


class Glm4(Family):
    arch = "glm4"
    model_types = ("glm4",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        if "mrope_section" in rope:
            # Glm4Model then permutes q/k for M-RoPE and glm4.cpp runs the multimodal rope
            raise UnsupportedArchitecture("glm4 with M-RoPE sections (GLM-4.1V-style) is not modelled")
        if c.integer(cfg, "num_nextn_predict_layers", default=0):
            raise UnsupportedArchitecture("glm4 with NextN layers (GLM-OCR) is not modelled")
        fraction = c.number(cfg, "partial_rotary_factor", default=rope.get("partial_rotary_factor", 0.5))
        if not 0 < fraction <= 1:
            raise BadConfig(f"glm4: partial_rotary_factor must lie in (0, 1], got {fraction}")
        flags = {"attn_bias"} if cfg.get("attention_bias", True) else set()
        n = c.integer(cfg, "num_hidden_layers")
        layers = [Layer(c.gqa(cfg), c.dense(cfg))] * n
        return c.base(cfg, self.arch, layers, flags=frozenset(flags), rope_fraction=fraction)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """The fused ffn_up holds 2·n_ff rows; biases are there or not; the rotary share is
        rope.dimension_count over the head."""
        if hp.n_nextn:
            raise UnsupportedArchitecture(f"{hp.name}: glm4 with NextN layers (GLM-OCR) is not modelled")
        spec = generic_spec(hp)
        flags = frozenset({"attn_bias"} if hp.has("blk.0.attn_q.bias") else ())
        return dataclasses.replace(
            spec,
            layers=fused_up_layers(spec.layers),
            flags=flags,
            rope_fraction=rope_fraction_of(hp, spec.layers[0].attn.head_dim_k),
        )

    def rope_dims(self, spec: ModelSpec, a: Attention) -> int:
        """rope.dimension_count = int(head_dim x partial_rotary_factor) (Glm4Model.set_gguf_parameters)."""
        return int(a.head_dim_k * spec.rope_fraction)

    def ffn_norms(self, b: Builder, p: str, il: int, e: int, role: Role) -> None:
        """The attention output is normed before its residual add, then the FFN input as usual."""
        b.add(f"{p}.post_attention_norm.weight", (e,), role, il)
        b.add(f"{p}.ffn_norm.weight", (e,), role, il)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        layout.fused_gate_up(b, p, il, spec.n_embd, layer.ffn.n_ff)
        b.add(f"{p}.post_ffw_norm.weight", (spec.n_embd,), Role.NORM, il)
