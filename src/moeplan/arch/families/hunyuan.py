"""Hunyuan-A13B (`HunYuanMoEV1ForCausalLM`): GQA with per-head query/key layernorms, every layer MoE
(routed experts + one shared MLP of `intermediate_size`), tied embeddings; and the dense Hunyuan
models (`HunYuanDenseV1ForCausalLM`, llama.cpp `hunyuan-dense`): the same attention over a SwiGLU MLP.

Facts from the pinned converter (`conversion/hunyuan.py` HunYuanMoEModel): the per-layer lists
`moe_intermediate_size`, `moe_topk`, `num_shared_expert` must be uniform; the shared MLP's width is
written as `intermediate_size`; a tied `lm_head` is skipped; NTK-alpha ("dynamic") rope is folded
into the base frequency and the context length written as 256K. `llama_model_hunyuan_moe::
load_arch_tensors` sizes the expert stacks by n_ff (feed_forward_length, written from
intermediate_size, which the family therefore requires to be the expert width) and requires q/k norms.
HunYuanModel (dense) folds NTK-alpha rope the same way and skips a tied `lm_head`;
`llama_model_hunyuan_dense` reuses `llama_model_hunyuan_vl::load_arch_tensors`: the llama tensors with
required q/k norms of head_dim and an optional `output`.
"""

import dataclasses
from typing import Any

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family
from moeplan.arch.spec import FFN, FFNKind, Layer, ModelSpec
from moeplan.errors import BadConfig

# convert_hf_to_gguf writes this context length for "dynamic" (NTK-alpha) rope (HunYuanMoEModel).
DYNAMIC_ROPE_CONTEXT = 256 * 1024


def uniform(cfg: Config, key: str, n: int) -> int:
    """A per-layer list (or a single value) the converter requires to be the same on every layer."""
    v: Any = c.get(cfg, key)
    values = v if isinstance(v, list) else [v] * n
    if len(values) != n or len(set(values)) != 1:
        raise BadConfig(f"{key} must be one value for all {n} layers (the converter asserts it), got {v!r}")
    return c.integer({key: values[0]}, key)


def hunyuan_spec(cfg: Config, arch: str, ffn: FFN) -> ModelSpec:
    """The layers both Hunyuan converters write (no cross-layer attention), with the 256K context
    they write for NTK-alpha ("dynamic") rope."""
    if cfg.get("use_cla"):
        raise BadConfig("cross-layer attention (use_cla) is not supported by the pinned llama.cpp")
    n = c.integer(cfg, "num_hidden_layers")
    flags = {"attn_bias"} if cfg.get("attention_bias") else set()
    spec = c.base(cfg, arch, [Layer(c.gqa(cfg), ffn)] * n, flags=frozenset(flags))
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type")) == "dynamic":
        spec = dataclasses.replace(spec, context_length=DYNAMIC_ROPE_CONTEXT)
    return spec


class HunyuanMoe(Family):
    arch = "hunyuan-moe"
    model_types = ("hunyuan_v1_moe",)
    qk_norm = True  # query_layernorm / key_layernorm, required by the loader

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        if cfg.get("use_mixed_mlp_moe") is False:
            raise BadConfig("llama.cpp's hunyuan-moe requires the shared MLP (use_mixed_mlp_moe)")
        n_shared = uniform(cfg, "num_shared_expert", n)
        if n_shared != 1:
            raise BadConfig(f"the converter writes one shared MLP of intermediate_size, got {n_shared}")
        n_ff = c.integer(cfg, "intermediate_size")
        n_ff_exp = uniform(cfg, "moe_intermediate_size", n)
        if n_ff_exp != n_ff:
            raise BadConfig(
                f"llama.cpp sizes hunyuan-moe experts by intermediate_size ({n_ff}), "
                f"the checkpoint's are {n_ff_exp}"
            )
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_experts"),
            n_expert_used=uniform(cfg, "moe_topk", n),
            n_ff_exp=n_ff_exp,
            n_shared=n_shared,
            n_ff_shexp=n_ff,
        )
        return hunyuan_spec(cfg, self.arch, moe)


class HunyuanDense(Family):
    arch = "hunyuan-dense"
    model_types = ("hunyuan_v1_dense",)
    qk_norm = True  # query_layernorm / key_layernorm, required by the loader

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("use_qk_norm") is False:
            raise BadConfig("llama.cpp's hunyuan-dense requires the query/key layernorms (use_qk_norm)")
        if c.integer(cfg, "num_experts", default=0) > 1:
            raise BadConfig("a hunyuan_v1_dense config with experts is not a dense model")
        return hunyuan_spec(cfg, self.arch, c.dense(cfg))
