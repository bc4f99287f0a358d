"""Phi-3.5-MoE (`PhiMoEForCausalLM`): GQA with q/k/v/o biases, LayerNorms with bias (every block norm
and the final norm), 16 routed experts top-2 without shared experts, an lm_head with bias, and
LongRoPE factor tensors.

Facts from the pinned converter (`conversion/phi.py` PhiMoeModel on Phi3MiniModel): LongRoPE's
`long_factor` / `short_factor` are written once as `rope_factors_long` / `rope_factors_short`
{rope_dims/2} (generate_extra_tensors); experts are stacked from `block_sparse_moe.experts.*.w1/w2/w3`;
no expert_feed_forward_length key is written (the loader sizes the experts by feed_forward_length).
`llama_model_phimoe::load_arch_tensors` requires the norm, attn_output and output biases and reads
no sliding window (the converter's `attention.sliding_window` key is ignored: full attention).
"""

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.spec import FFN, Attention, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role


class PhiMoe(Family):
    arch = "phimoe"
    model_types = ("phimoe",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_local_experts", "num_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok"),
            n_ff_exp=c.integer(cfg, "intermediate_size"),
        )
        flags = set()
        if cfg.get("attention_bias"):
            flags.add("attn_bias")
        if cfg.get("lm_head_bias"):
            flags.add("output_bias")
        if c.longrope(cfg):
            flags.add("rope_factors")
        return c.base(cfg, self.arch, [Layer(c.gqa(cfg), moe)] * n, flags=frozenset(flags))

    def head(self, b: Builder, spec: ModelSpec) -> None:
        if spec.has("rope_factors"):
            layout.rope_factors(b, spec.layers[0].attn.head_dim_k // 2)
        b.add("token_embd.weight", (spec.n_embd, spec.n_vocab), Role.EMBED)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        p, e = f"blk.{il}", spec.n_embd
        b.add(f"{p}.attn_norm.weight", (e,), Role.NORM, il)
        b.add(f"{p}.attn_norm.bias", (e,), Role.NORM, il)
        self.attention(b, spec, p, il, layer.attn, Role.ATTN)
        b.add(f"{p}.ffn_norm.weight", (e,), Role.NORM, il)
        b.add(f"{p}.ffn_norm.bias", (e,), Role.NORM, il)
        self.ffn(b, spec, p, il, layer, mtp)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        bias = spec.has("attn_bias")
        layout.gqa(b, p, il, a, spec.n_embd, role, bias=bias)
        if bias:
            b.add(f"{p}.attn_output.bias", (spec.n_embd,), role, il)

    def tail(self, b: Builder, spec: ModelSpec) -> None:
        b.add("output_norm.weight", (spec.n_embd,), Role.NORM)
        b.add("output_norm.bias", (spec.n_embd,), Role.NORM)
        b.add("output.weight", (spec.n_embd, spec.n_vocab), Role.OUTPUT)
        if spec.has("output_bias"):
            b.add("output.bias", (spec.n_vocab,), Role.OUTPUT)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        kv.pop(".expert_feed_forward_length", None)
        return kv
