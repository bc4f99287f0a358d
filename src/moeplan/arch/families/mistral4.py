"""Mistral Small 4 (`mistral4`): the text model of `Mistral3ForConditionalGeneration` with a
`mistral4` text_config. DeepSeek-V3 style MLA and routed + shared experts, but a plain softmax router
(no selection bias) and experts the checkpoint already stacks: the pinned converter
(`conversion/mistral3.py` Mistral4Model, a DeepseekV2Model with merge_expert = False) writes
`mlp.experts.gate_up_proj` as one fused `ffn_gate_up_exps` {E, 2·n_ff_exp, n_expert} stack and
`down_proj` as `ffn_down_exps`; llama.cpp loads it with the deepseek2 loader
(`llama_model_mistral4 : llama_model_deepseek2`, `create_tensor_gate_up_exps`). No MTP block.
"""

from moeplan.arch import layout
from moeplan.arch.families.deepseek2 import DeepSeek2
from moeplan.arch.family import GGUFValue
from moeplan.arch.spec import FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role


class Mistral4(DeepSeek2):
    arch = "mistral4"
    model_types = ("mistral4",)
    probs_bias = False  # Mistral4TopkRouter holds only `weight`
    mtp_own_head = False

    def keeps_mtp(self, spec: ModelSpec) -> bool:
        return False  # the checkpoint has none (skip_mtp = False is moot)

    def mtp_head_written(self, spec: ModelSpec) -> bool:
        return False

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        f, e = layer.ffn, spec.n_embd
        if f.kind is not FFNKind.MOE:
            super().ffn(b, spec, p, il, layer, mtp)
            return
        layout.router(b, p, il, f, e, layout.mtp_or(Role.ROUTER, mtp))
        role = layout.mtp_or(Role.EXPERT, mtp)
        b.add(f"{p}.ffn_down_exps.weight", (f.n_ff_exp, e, f.n_expert), role, il)
        b.add(f"{p}.ffn_gate_up_exps.weight", (e, 2 * f.n_ff_exp, f.n_expert), role, il)
        if f.n_ff_shexp:
            layout.shared_expert(b, p, il, f, e, layout.mtp_or(Role.SHARED_EXPERT, mtp))

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """DeepSeek2's keys without `expert_gating_func`: the config has no scoring_func, so the
        converter writes none and the deepseek2 loader falls back to softmax."""
        kv = super().gguf_metadata(inv)
        kv.pop(".expert_gating_func", None)
        return kv
