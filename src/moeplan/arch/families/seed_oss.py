"""Seed-OSS (ByteDance-Seed/Seed-OSS-36B): a dense GQA decoder with q/k/v biases and no output bias.

The pinned converter writes it as the plain `TextModel` (conversion/olmo.py `SeedOssModel`); the loader
(`src/models/seed-oss.cpp`) takes HF's `post_attention_layernorm` as `post_attention_norm` and loads no
`attn_output.bias`.
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family
from moeplan.arch.spec import Layer, ModelSpec
from moeplan.errors import UnsupportedArchitecture


class SeedOss(Family):
    arch = "seed_oss"
    model_types = ("seed_oss",)
    ffn_norm = "post_attention_norm"

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("attention_out_bias"):
            # the converter would write attn_output.bias, which llama_model_seed_oss never loads
            raise UnsupportedArchitecture("seed_oss with attention_out_bias: llama.cpp loads no o_proj bias")
        n = c.integer(cfg, "num_hidden_layers")
        flags = {"attn_bias"} if cfg.get("attention_bias") else set()
        return c.base(cfg, self.arch, [Layer(c.gqa(cfg), c.dense(cfg))] * n, flags=frozenset(flags))
