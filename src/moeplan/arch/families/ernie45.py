"""ERNIE-4.5 MoE (ERNIE-4.5-21B-A3B, 300B-A47B): GQA, leading dense layers, routed experts with a
softmax router and an expert-selection bias, shared experts, tied embeddings on the 21B.

The pinned converter (`conversion/ernie.py` Ernie4_5MoeModel) splits the checkpoint's fused
`qkv_proj` / `up_gate_proj`, stacks the experts, maps `moe_statics.e_score_correction_bias`
({1, n_expert} in the checkpoint, written as is: ggml {n_expert, 1}) to `exp_probs_b` and drops the
MTP block (`mtp_block.*`, `mtp_emb_norm`, `mtp_hidden_norm`, `mtp_linear_proj`).
`llama_model_ernie4_5::load_arch_tensors` puts the MoE tensors on layers >= n_layer_dense_lead.
"""

import itertools

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.spec import FFN, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig


def ernie_moe_ffn(cfg: Config) -> FFN:
    """`moe_num_experts` routed experts of `moe_intermediate_size`, top `moe_k`, and
    `moe_num_shared_experts` shared experts run as one FFN of n_shared x the expert width (HF
    Ernie4_5_MoeSparseMoeBlock). The converter writes that width as intermediate_size //
    num_key_value_heads (Ernie4_5MoeModel.set_gguf_parameters), so llama.cpp can only load the
    checkpoint when both agree."""
    n_ff_exp = c.integer(cfg, "moe_intermediate_size")
    n_shared = c.integer(cfg, "moe_num_shared_experts", default=0)
    if n_shared:
        written = c.integer(cfg, "intermediate_size") // c.integer(cfg, "num_key_value_heads")
        if written != n_shared * n_ff_exp:
            raise BadConfig(
                f"the converter writes a shared-expert width of {written}, the checkpoint has "
                f"{n_shared} x {n_ff_exp}: llama.cpp could not load it"
            )
    return FFN(
        FFNKind.MOE,
        n_expert=c.integer(cfg, "moe_num_experts"),
        n_expert_used=c.integer(cfg, "moe_k"),
        n_ff_exp=n_ff_exp,
        n_shared=n_shared,
        n_ff_shexp=n_shared * n_ff_exp,
    )


class Ernie45Moe(Family):
    arch = "ernie4_5-moe"
    model_types = ("ernie4_5_moe",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        start = c.integer(cfg, "moe_layer_start_index", default=0)
        # HF's Ernie4_5_MoeConfig writes -1 for "up to the last layer"
        end_raw = c.get(cfg, "moe_layer_end_index", default=-1)
        end = n - 1 if end_raw == -1 else c.integer({"moe_layer_end_index": end_raw}, "moe_layer_end_index")
        step = c.integer(cfg, "moe_layer_interval", default=1)
        if step == 0:
            raise BadConfig("moe_layer_interval must be positive (llama.cpp asserts n_moe_layer_step > 0)")
        moe = ernie_moe_ffn(cfg)
        layers = [
            Layer(c.gqa(cfg), moe if start <= il <= end and (il + 1) % step == 0 else c.dense(cfg))
            for il in range(n)
        ]
        flags = {"attn_bias"} if cfg.get("use_bias") else set()
        return c.base(cfg, self.arch, layers, flags=frozenset(flags))

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        f, e = layer.ffn, spec.n_embd
        if f.kind is FFNKind.DENSE:
            layout.dense_ffn(b, p, il, f, e, Role.DENSE_FFN)
            return
        layout.router(b, p, il, f, e, Role.ROUTER)
        b.add(f"{p}.exp_probs_b.bias", (f.n_expert, 1), Role.ROUTER, il)  # {1, n_expert} in the checkpoint
        layout.expert_stacks(b, p, il, f, e, Role.EXPERT)
        if f.n_ff_shexp:
            layout.shared_expert(b, p, il, f, e, Role.SHARED_EXPERT)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        kv[".leading_dense_block_count"] = first_moe_layer(spec)
        moe_layers = [i for i, la in enumerate(spec.layers) if la.ffn.kind is FFNKind.MOE]
        steps = {b - a for a, b in itertools.pairwise(moe_layers)}
        kv[".interleave_moe_layer_step"] = steps.pop() if len(steps) == 1 else 1
        return kv
