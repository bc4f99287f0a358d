"""gpt-oss: alternating sliding-window (128) and full attention with biases and sinks; experts
shipped as MXFP4, which the converter repacks without dequantizing whatever `--outtype` is."""

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Role
from moeplan.quant.ggml import GGMLType


class GptOss(Family):
    arch = "gpt-oss"
    model_types = ("gpt_oss",)
    ffn_norm = "post_attention_norm"

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        window = c.integer(cfg, "sliding_window", default=128)
        default = ["sliding_attention" if il % 2 == 0 else "full_attention" for il in range(n)]
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_local_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok", "experts_per_token"),
            n_ff_exp=c.integer(cfg, "intermediate_size"),
        )
        layers = [
            Layer(c.gqa(cfg, AttnKind.SWA, window) if t == "sliding_attention" else c.gqa(cfg), moe)
            for t in c.layer_types(cfg, n, default)
        ]
        return c.base(cfg, self.arch, layers)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """openai-moe.cpp `load_arch_hparams`: sliding and full layers alternate (pattern 2)."""
        return generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, 2))

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        layout.gqa(b, p, il, a, spec.n_embd, role, bias=True)
        b.add(f"{p}.attn_output.bias", (spec.n_embd,), role, il)
        b.add(f"{p}.attn_sinks.weight", (a.n_head,), role, il)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        f, e = layer.ffn, spec.n_embd
        x = f.n_expert
        layout.router(b, p, il, f, e, Role.ROUTER)
        b.add(f"{p}.ffn_gate_inp.bias", (x,), Role.ROUTER, il)
        layout.expert_stacks(b, p, il, f, e, Role.EXPERT, native=GGMLType.MXFP4)
        b.add(f"{p}.ffn_gate_exps.bias", (f.n_ff_exp, x), Role.EXPERT, il)
        b.add(f"{p}.ffn_up_exps.bias", (f.n_ff_exp, x), Role.EXPERT, il)
        b.add(f"{p}.ffn_down_exps.bias", (e, x), Role.EXPERT, il)
