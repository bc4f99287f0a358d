"""SmolLM3 (`SmolLM3ForCausalLM`, llama.cpp `smollm3`): Llama's tensors (conversion/llama.py
SmolLM3Model is LlamaModel with another architecture name), with no rotary embedding on every fourth
layer (NoPE). The tensors are the same on both kinds of layer.

From the pinned build (11434), src/models/smollm3.cpp: `load_arch_tensors` creates llama's block
(attn_norm, q/k/v with optional biases, attn_output, ffn_norm, ffn_gate/up/down) and an optional output
(else token_embd is reused); `load_arch_hparams` fixes `n_no_rope_layer_step = 4`, and the graph ropes
layer il only when (il + 1) % 4 != 0, whatever the config's `no_rope_layers` says.
"""

import dataclasses
from typing import ClassVar

from moeplan.arch.config import Config
from moeplan.arch.families.llama import Llama
from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.spec import Layer, ModelSpec
from moeplan.errors import UnsupportedArchitecture

NO_ROPE_STEP = 4  # hparams.n_no_rope_layer_step in smollm3.cpp


def with_nope(layers: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Every fourth layer (il + 1 a multiple of 4) without RoPE, as smollm3.cpp's graph runs it."""
    return tuple(
        Layer(dataclasses.replace(la.attn, rope=(il + 1) % NO_ROPE_STEP != 0), la.ffn)
        for il, la in enumerate(layers)
    )


class SmolLM3(Llama):
    arch = "smollm3"
    model_types: ClassVar[tuple[str, ...]] = ("smollm3",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("num_local_experts"):
            raise UnsupportedArchitecture("smollm3 with experts: smollm3.cpp loads a dense FFN only")
        if cfg.get("use_sliding_window") and cfg.get("sliding_window"):
            raise UnsupportedArchitecture(
                "smollm3 with sliding-window attention: smollm3.cpp attends to all of it"
            )
        spec = super().spec_from_config(cfg)
        layers = with_nope(spec.layers)
        rope = cfg.get("no_rope_layers")  # 1 = rotate, 0 = NoPE (SmolLM3Config)
        if rope is not None and [bool(r) for r in rope] != [la.attn.rope for la in layers]:
            raise UnsupportedArchitecture(
                f"smollm3: no_rope_layers other than NoPE on every {NO_ROPE_STEP}th layer "
                "(llama.cpp's fixed step) is not modelled"
            )
        return dataclasses.replace(spec, layers=layers)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        spec = generic_spec(hp)
        flags = {
            f
            for f, t in (("rope_freqs", "rope_freqs.weight"), ("attn_bias", "blk.0.attn_q.bias"))
            if hp.has(t)
        }
        return dataclasses.replace(spec, layers=with_nope(spec.layers), flags=frozenset(flags))
