"""Ling 2.0 (BailingMoeV2: Ling-mini/flash-2.0): fused QKV with per-head q/k norms and half-rotary
RoPE, leading dense layers, then sigmoid-routed experts with a selection bias plus shared expert(s).

conversion/bailingmoe.py `BailingMoeV2Model` keeps `num_nextn_predict_layers` MTP blocks as extra
decoder blocks; their extra tensors (`llama_model_bailingmoe2::load_arch_tensors` wants a
`layer_output_norm` besides the NextN projections) are not modelled, so a config with MTP blocks is
refused. Ling-1T's config.json says `model_type: bailing_moe` (the Ling 1.0 name) with
`architectures: [BailingMoeV2ForCausalLM]`, which is what the converter dispatches on, so that
model_type is read here too; a Ling 1.0 config (`BailingMoeForCausalLM`, llama.cpp `bailingmoe`) is
refused rather than misread.
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.spec import FFN, Attention, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import UnsupportedArchitecture


def bailing_moe(cfg: Config) -> FFN:
    """`num_experts` routed experts; the shared width is `moe_shared_expert_intermediate_size`, else
    `moe_intermediate_size × num_shared_experts` (BailingMoeV2Model.set_gguf_parameters)."""
    n_ff_exp = c.integer(cfg, "moe_intermediate_size")
    n_shared = c.integer(cfg, "num_shared_experts", default=0)
    return FFN(
        FFNKind.MOE,
        n_expert=c.integer(cfg, "num_experts"),
        n_expert_used=c.integer(cfg, "num_experts_per_tok"),
        n_ff_exp=n_ff_exp,
        n_shared=n_shared,
        n_ff_shexp=c.integer(cfg, "moe_shared_expert_intermediate_size", default=n_ff_exp * n_shared),
    )


class BailingMoe2(Family):
    arch = "bailingmoe2"
    model_types = ("bailing_moe_v2", "bailing_moe")
    mtp_kept = True
    probs_bias = True
    rope_fraction = 0.5  # partial_rotary_factor (the converter's default 0.5)
    query_width_is_embd = True  # attn_qkv {n_embd, n_embd + 2·n_embd_gqa} (src/models/bailingmoe2.cpp)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if "BailingMoeForCausalLM" in (cfg.get("architectures") or []):
            raise UnsupportedArchitecture(
                "BailingMoeForCausalLM (Ling 1.0, llama.cpp 'bailingmoe') is not modelled; Ling 2.0 "
                "checkpoints say BailingMoeV2ForCausalLM"
            )
        if c.integer(cfg, "num_nextn_predict_layers", default=0):
            raise UnsupportedArchitecture("bailingmoe2 MTP blocks are not modelled")
        n = c.integer(cfg, "num_hidden_layers")
        k_dense = c.integer(cfg, "first_k_dense_replace")
        moe = bailing_moe(cfg)
        layers = [Layer(c.gqa(cfg), c.dense(cfg) if il < k_dense else moe) for il in range(n)]
        return c.base(cfg, self.arch, layers)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        """HF's fused `query_key_value` stays fused: attn_qkv {E, E + 2·n_embd_gqa} (the loader's q rows
        are n_embd, so n_head·head_dim must equal it), then attn_output and per-head q/k norms."""
        q, kv = a.n_head * a.head_dim_k, a.n_head_kv * a.head_dim_k
        b.add(f"{p}.attn_qkv.weight", (spec.n_embd, q + 2 * kv), role, il)
        b.add(f"{p}.attn_output.weight", (a.n_head * a.head_dim_v, spec.n_embd), role, il)
        b.add(f"{p}.attn_q_norm.weight", (a.head_dim_k,), Role.NORM, il)
        b.add(f"{p}.attn_k_norm.weight", (a.head_dim_k,), Role.NORM, il)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        moe = inv.spec.moe_ffn
        if moe is not None:
            kv[".leading_dense_block_count"] = first_moe_layer(inv.spec)
            kv[".expert_shared_count"] = moe.n_shared
            kv[".expert_shared_feed_forward_length"] = moe.n_ff_shexp
            kv[".expert_gating_func"] = 2  # sigmoid: required by llama_model_bailingmoe2
            kv[".expert_weights_norm"] = True
        return kv
