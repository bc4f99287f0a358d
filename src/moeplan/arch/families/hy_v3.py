"""Tencent Hy3 / Hy3-preview (HYV3ForCausalLM): GQA with per-head q/k RMS norms, leading dense
layers, then sigmoid-routed experts with a selection bias plus one always-on shared expert, and one
appended MTP block the converter keeps.

From the pinned build (11434):
- conversion/hunyuan.py `HYV3Model` (llama.cpp arch `hy_v3`): the routed width from
  `moe_intermediate_size`, the shared width `moe_intermediate_size × num_shared_experts` (default 1),
  `route_norm` and `router_scaling_factor` as the expert-weight norm and scale, a sigmoid gate; the
  `num_nextn_predict_layers` blocks past `num_hidden_layers` are kept (unless `--no-mtp`) with their
  `final_layernorm` renamed `nextn.shared_head_norm`; the checkpoint has no MTP embedding or head;
- src/models/hy-v3.cpp `load_arch_tensors`: per-head q/k norms on every block (required), the
  dense FFN where a block has no router, `exp_probs_b` and the shared expert beside the routed
  stacks; an MTP block is a full decoder block plus eh_proj/enorm/hnorm(/shared_head_norm), of
  which only the attention, its norms, ffn_norm and the NextN projections take `mtp_flags`
  (TENSOR_SKIP without an MTP draft): the FFN, router and shared_head_norm are loaded regardless.
- The selection bias is `blk.N.exp_probs_b` with no `.bias` suffix: the checkpoint's
  `mlp.expert_bias` maps to it whole (gguf-py TensorNameMap; HYV3Model does not append `.bias` as
  the afmoe/bailingmoe converters do), and hy-v3.cpp asks for `tn(LLM_TENSOR_FFN_EXP_PROBS_B, i)`.
"""

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.spec import FFN, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, UnsupportedArchitecture

# hy-v3.cpp `load_block(i, mtp_flags)` + the NextN projections: what an MTP block skips when no MTP
# draft is requested (the names after `blk.N.`)
_MTP_SKIPPABLE = frozenset(
    f"{t}.weight"
    for t in (
        *("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm"),
        *("ffn_norm", "nextn.eh_proj", "nextn.enorm", "nextn.hnorm"),
    )
)


def _moe(cfg: Config) -> FFN:
    """`num_experts` (or `num_local_experts`, HYV3Model.modify_tensors) routed experts of
    `moe_intermediate_size` and `num_shared_experts` shared ones folded into one FFN."""
    n_ff_exp = c.integer(cfg, "moe_intermediate_size")
    n_shared = c.integer(cfg, "num_shared_experts", default=1)
    return FFN(
        FFNKind.MOE,
        n_expert=c.integer(cfg, "num_local_experts", "num_experts"),
        n_expert_used=c.integer(cfg, "num_experts_per_tok"),
        n_ff_exp=n_ff_exp,
        n_shared=n_shared,
        n_ff_shexp=n_ff_exp * n_shared,
    )


def _sparse_layers(cfg: Config, n: int) -> list[bool]:
    """Which blocks are MoE: `mlp_layer_types` ("dense"/"sparse", transformers' HYV3Config), else the
    hub config's `first_k_dense_replace` leading dense blocks (1 in both config classes)."""
    kinds = cfg.get("mlp_layer_types")
    if kinds is None:
        k_dense = c.integer(cfg, "first_k_dense_replace", default=1)
        return [il >= k_dense for il in range(n)]
    if not isinstance(kinds, list) or len(kinds) != n or any(k not in ("dense", "sparse") for k in kinds):
        raise BadConfig(f"hy_v3: mlp_layer_types must list 'dense' or 'sparse' for each of the {n} layers")
    return [k == "sparse" for k in kinds]


class HyV3(Family):
    arch = "hy_v3"
    model_types = ("hy_v3",)
    mtp_kept = True
    qk_norm = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("qk_norm") is False:
            raise UnsupportedArchitecture("hy_v3 without qk_norm: llama.cpp's loader requires the q/k norms")
        if cfg.get("attention_bias") or cfg.get("mlp_bias"):
            raise UnsupportedArchitecture("hy_v3 with attention or MLP biases: llama.cpp loads none")
        if cfg.get("moe_router_use_sigmoid") is False:
            raise UnsupportedArchitecture("hy_v3 with a softmax router: the converter always writes sigmoid")
        n = c.integer(cfg, "num_hidden_layers")
        moe, dense = _moe(cfg), c.dense(cfg)
        layers = [Layer(c.gqa(cfg), moe if sparse else dense) for sparse in _sparse_layers(cfg, n)]
        scale = c.number(cfg, "router_scaling_factor", default=1.0)
        return c.base(
            cfg,
            self.arch,
            layers,
            mtp_layers=c.mtp(cfg, layers[-1]),
            flags=frozenset(
                flag
                for flag, key in (
                    ("route_norm", "route_norm"),
                    ("expert_bias", "moe_router_enable_expert_bias"),
                )
                if cfg.get(key, True)
            ),
            gguf_scalars=((".expert_weights_scale", scale),),
        )

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        start = len(b.out)
        super().block(b, spec, il, layer, mtp, own_head)
        if mtp:
            layout.keep_loaded_without_mtp(b, start, _MTP_SKIPPABLE)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        f, e = layer.ffn, spec.n_embd
        if f.kind is FFNKind.DENSE:
            layout.dense_ffn(b, p, il, f, e, layout.mtp_or(Role.DENSE_FFN, mtp))
            return
        router = layout.mtp_or(Role.ROUTER, mtp)
        layout.router(b, p, il, f, e, router)
        if spec.has("expert_bias"):  # `mlp.expert_bias`, present with moe_router_enable_expert_bias
            b.add(f"{p}.exp_probs_b", (f.n_expert,), router, il)
        layout.expert_stacks(b, p, il, f, e, layout.mtp_or(Role.EXPERT, mtp))
        if f.n_ff_shexp:
            layout.shared_expert(b, p, il, f, e, layout.mtp_or(Role.SHARED_EXPERT, mtp))

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """HYV3Model.set_gguf_parameters: the expert and shared widths (the base class writes both),
        the weight norm and scale and the sigmoid gate; no leading-dense count (the loader tells dense
        blocks by their missing router)."""
        kv = super().gguf_metadata(inv)
        if inv.spec.is_moe:
            kv.pop(".expert_shared_count", None)  # not written by HYV3Model
            kv[".expert_weights_norm"] = inv.spec.has("route_norm")
            kv[".expert_gating_func"] = 2  # sigmoid
            kv.update(dict(inv.spec.gguf_scalars))
        return kv
