"""Mistral 3 (`mistral3`): the dense text model of `Mistral3ForConditionalGeneration` (Mistral Small
3.x, Magistral Small, Devstral Small 2, Ministral 3) and of `Ministral3ForCausalLM` (Devstral 2).

The pinned converter (`conversion/mistral3.py` Mistral3Model) reads the text_config and dispatches on
its model_type: `mistral4` goes to Mistral4Model (families/mistral4.py), anything else (`mistral`,
`ministral3`) to Ministral3Model, a LlamaModel with `model_arch = MISTRAL3`. The GGUF therefore holds
llama's tensors (q/k/v/o, gate/up/down, an `output` unless tied) under the name `mistral3`, which
`llama_model_mistral3::load_arch_tensors` (src/models/mistral3.cpp) loads. For model_type `ministral3`
the converter also writes `rope.scaling.yarn_log_multiplier` (rope_parameters.mscale_all_dim) and
`attention.temperature_scale` (llama_4_scaling_beta); a non-zero scale makes the graph multiply Q by
a per-position factor (one n_tokens input; no tensor, no cache).

model_type `mistral` is also the text-only `MistralForCausalLM` (and the text_config of Pixtral's
`LlavaForConditionalGeneration`), which conversion/llama.py converts as plain `llama`; those configs
get arch `llama` here, so the Llama family lays out their tensors.
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.llama import Llama
from moeplan.arch.family import GGUFValue
from moeplan.arch.spec import ModelSpec
from moeplan.arch.tensors import Inventory
from moeplan.errors import BadConfig

# The HF architectures `conversion/mistral3.py` registers (Mistral3Model).
MISTRAL3_CLASSES = frozenset({"Mistral3ForConditionalGeneration", "Ministral3ForCausalLM"})


class Mistral3(Llama):
    arch = "mistral3"
    model_types = ("mistral", "ministral3")

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        spec = super().spec_from_config(cfg)
        archs = set(cfg.get("architectures") or ())
        # without `architectures` (a bare text_config) only `ministral3` names its converter
        as_mistral3 = bool(archs & MISTRAL3_CLASSES) if archs else cfg.get("model_type") == "ministral3"
        if not as_mistral3:
            return dataclasses.replace(spec, arch=Llama.arch)
        if cfg.get("model_type") != "ministral3":
            return spec
        rope = cfg.get("rope_parameters") or {}
        if rope.get("rope_type") != "yarn":  # Ministral3Model.set_gguf_parameters asserts it
            raise BadConfig(
                f"ministral3 config.json needs yarn rope_parameters (the converter asserts them), "
                f"got rope_type {rope.get('rope_type')!r}"
            )
        scalars = (
            (".rope.scaling.yarn_log_multiplier", c.number(rope, "mscale_all_dim")),
            (".attention.temperature_scale", c.number(rope, "llama_4_scaling_beta")),
        )
        return dataclasses.replace(spec, gguf_scalars=scalars)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        kv.update(dict(inv.spec.gguf_scalars))
        return kv
