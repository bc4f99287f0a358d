"""OLMoE (allenai/OLMoE-1B-7B): every layer MoE (no shared expert, softmax router) and q/k RMS norms
over the whole projection width rather than per head."""

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.spec import FFN, Attention, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role


class Olmoe(Family):
    arch = "olmoe"
    model_types = ("olmoe",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok"),
            n_ff_exp=c.integer(cfg, "intermediate_size"),
        )
        return c.base(cfg, self.arch, [Layer(c.gqa(cfg), moe)] * c.integer(cfg, "num_hidden_layers"))

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        """HF's q_norm / k_norm span n_head·head_dim and n_head_kv·head_dim (`llama_model_olmoe`
        loads both as {n_embd}: the released model is MHA)."""
        layout.gqa(b, p, il, a, spec.n_embd, role)
        layout.projection_qk_norms(b, p, il, a)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        kv[".attention.layer_norm_rms_epsilon"] = 1e-5  # OlmoeModel.set_gguf_parameters hard-codes it
        return kv
