"""Qwen2 / Qwen2.5 dense (`Qwen2ForCausalLM`, llama.cpp `qwen2`): a llama-style GQA decoder whose
q/k/v projections carry biases; the small sizes tie the output head to the input embedding.

From the pinned build (11434):
- conversion/qwen.py Qwen2Model: the plain TextModel tensors; transformers' Qwen2Attention always
  builds q/k/v with `bias=True` and o_proj without (the config has no `attention_bias` key), so
  every block gets attn_q/k/v.bias and no attn_output.bias; a tied checkpoint has no lm_head, so
  the GGUF has no output.weight;
- src/models/qwen2.cpp `load_arch_tensors`: attn_q {n_embd, n_embd} and attn_output {n_embd, n_embd}
  (so n_head x head_dim must equal n_embd), the optional q/k/v biases of `create_tensor_qkv`, an
  optional output (else token_embd is reused); `load_arch_hparams` reads no sliding window: every
  layer attends to the whole context (the configs' `use_sliding_window` is false).
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family
from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.spec import Layer, ModelSpec
from moeplan.errors import UnsupportedArchitecture


class Qwen2(Family):
    arch = "qwen2"
    model_types = ("qwen2",)
    query_width_is_embd = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("use_sliding_window"):
            # HF would slide on the layers past max_window_layers; qwen2.cpp has no window
            raise UnsupportedArchitecture(
                "qwen2 with use_sliding_window: llama.cpp's qwen2 attends to the full context on every layer"
            )
        attn = c.gqa(cfg)
        c.check_query_width(cfg, attn)
        n = c.integer(cfg, "num_hidden_layers")
        return c.base(cfg, self.arch, [Layer(attn, c.dense(cfg))] * n, flags=frozenset({"attn_bias"}))

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """The biases are optional in `create_tensor_qkv` (TENSOR_NOT_REQUIRED): a file has them or not."""
        flags = frozenset({"attn_bias"} if hp.has("blk.0.attn_q.bias") else ())
        return dataclasses.replace(generic_spec(hp), flags=flags)
