"""poolside Laguna (XS.2, XS-2.1, S-2.1, M.1): per-layer query-head counts (more heads on
sliding-window layers), one full-attention layer in four where there is a window (M.1 has none: all
full attention), a softplus output gate on the attention (one value per head or per element), per-head
q/k norms, leading dense layers, then sigmoid-routed experts with a selection bias and one shared
expert.

From the pinned build (11434):
- conversion/laguna.py LagunaModel writes `head_count` as a per-layer array
  (`num_attention_heads_per_layer`), `sliding_window` and the rope dimensions of both layer kinds
  (head_dim x `rope_parameters[layer type].partial_rotary_factor`, default 1.0),
  `leading_dense_block_count` (the leading "dense" entries of `mlp_layer_types`), the shared
  expert's own width, and no sliding-window pattern; the gate type comes from `gating_types`, else
  `gating` ("per-head"/"per-element", or True = per-head);
- src/models/laguna.cpp `load_arch_hparams`: with a window, `load_swa_pattern(ml, 4, dense_first)`
  (full attention where il % 4 == 0) and one shared expert unless `expert_shared_count` says
  otherwise; `load_arch_tensors`: Q/O of each layer's own head count, `attn_gate` {n_embd, n_head}
  per head or {n_embd, n_head·head_dim} per element, and `exp_probs_b` on every MoE layer.
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig

SWA_PERIOD = 4  # load_swa_pattern(ml, 4, /*dense_first=*/true) in src/models/laguna.cpp
# The rotated share of the head on sliding layers (rope.dimension_count_swa = head_dim x its
# partial_rotary_factor, LagunaModel.set_gguf_parameters): 1.0 in every windowed release. The full
# layers' share differs by model (XS/S 0.5, M.1 1.0) and is the spec's rope_fraction.
ROPE_SWA = 1.0


def _gate_types(cfg: Config, n: int) -> list[str]:
    """LagunaModel._attn_gate_types: `gating_types` per layer, else the scalar `gating`."""

    def norm(t: object) -> str:
        value = str(t).replace("-", "_")
        if value not in ("per_head", "per_element"):
            raise BadConfig(f"laguna: unknown attention gate type {t!r} (per-head or per-element)")
        return value

    per_layer, gating = cfg.get("gating_types"), cfg.get("gating")
    if per_layer:
        if not isinstance(per_layer, list) or len(per_layer) != n:
            raise BadConfig(f"laguna: gating_types must list one gate type for each of the {n} layers")
        return [norm(t) for t in per_layer]
    if isinstance(gating, str):
        return [norm(gating)] * n
    if gating is True:
        return ["per_head"] * n
    raise BadConfig(f"laguna: the attention gate type is not given (gating={gating!r})")


def _rope_fraction(cfg: Config, layer_type: str) -> float:
    params = (cfg.get("rope_parameters") or {}).get(layer_type) or {}
    return float(params.get("partial_rotary_factor", 1.0))


class Laguna(Family):
    arch = "laguna"
    model_types = ("laguna",)
    qk_norm = True
    probs_bias = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        heads = cfg.get("num_attention_heads_per_layer") or [c.integer(cfg, "num_attention_heads")] * n
        if not isinstance(heads, list) or len(heads) != n or not all(type(h) is int and h > 0 for h in heads):
            raise BadConfig(f"laguna: num_attention_heads_per_layer must list {n} positive head counts")
        window = c.integer(cfg, "sliding_window", default=0)
        sliding = [bool(window) and il % SWA_PERIOD != 0 for il in range(n)]
        declared = c.layer_types(cfg, n, ["full_attention"] * n)
        if declared != ["sliding_attention" if s else "full_attention" for s in sliding]:
            raise BadConfig(
                "laguna: llama.cpp runs layers 0, 4, 8, ... with full attention; this config differs"
            )
        full_rope, swa_rope = _rope_fraction(cfg, "full_attention"), _rope_fraction(cfg, "sliding_attention")
        if not 0 < full_rope <= 1 or (window and swa_rope != ROPE_SWA):
            raise BadConfig(
                "laguna: the rotary fraction must be in (0, 1] on full layers and 1.0 on sliding ones"
            )
        mlp = cfg.get("mlp_layer_types")
        if not isinstance(mlp, list) or len(mlp) != n:
            raise BadConfig(f"laguna needs mlp_layer_types for its {n} layers")
        k_dense = next((il for il, t in enumerate(mlp) if t != "dense"), n)
        if any(t != "sparse" for t in mlp[k_dense:]):
            raise BadConfig("laguna: llama.cpp runs every layer after the leading dense ones as MoE")
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok"),
            n_ff_exp=c.integer(cfg, "moe_intermediate_size"),
            n_shared=1,  # the loader's default; the converter writes no shared count
            n_ff_shexp=c.integer(cfg, "shared_expert_intermediate_size"),
        )
        hd = c.head_dim(cfg)
        n_kv = c.integer(cfg, "num_key_value_heads")
        layers = [
            Layer(
                Attention(AttnKind.SWA if s else AttnKind.FULL, h, n_kv, hd, hd, window if s else 0),
                c.dense(cfg) if il < k_dense else moe,
            )
            for il, (s, h) in enumerate(zip(sliding, heads, strict=True))
        ]
        gates = set(_gate_types(cfg, n))
        if len(gates) != 1:
            raise BadConfig("laguna with per-head and per-element gates mixed is not modelled")
        scale = c.number(cfg, "moe_routed_scaling_factor")
        return c.base(
            cfg,
            self.arch,
            layers,
            flags=frozenset({f"gate_{gates.pop()}"}),
            gguf_scalars=((".expert_weights_scale", scale),),
            rope_fraction=full_rope,
        )

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """laguna.cpp `load_arch_hparams`: with a window, full attention on every 4th layer from 0;
        the full layers' rotated share is rope.dimension_count over the head."""
        if not hp.integer("attention.sliding_window", 0):
            spec = generic_spec(hp)
        else:
            spec = generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, SWA_PERIOD, dense_first=True))
        head = spec.layers[0].attn.head_dim_k
        return dataclasses.replace(spec, rope_fraction=hp.integer("rope.dimension_count", head) / head)

    def rope_dims(self, spec: ModelSpec, a: Attention) -> int:
        """rope.dimension_count = head_dim x the full layers' partial_rotary_factor."""
        return int(a.head_dim_k * spec.rope_fraction)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        """Q/K/V/O of the layer's own head count, per-head q/k norms and the softplus gate `attn_gate`."""
        layout.gqa(b, p, il, a, spec.n_embd, role, qk_norm=True)
        width = a.n_head if spec.has("gate_per_head") else a.n_head * a.head_dim_v
        b.add(f"{p}.attn_gate.weight", (spec.n_embd, width), role, il)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """LagunaModel.set_gguf_parameters: per-layer head counts, both rope dimensions, the shared
        expert's width (no count), sigmoid routing with sum-normalised weights and their scale."""
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        kv[".attention.head_count"] = [la.attn.n_head for la in spec.layers]
        hd = spec.layers[0].attn.head_dim_k
        if any(la.attn.kind is AttnKind.SWA for la in spec.layers):
            kv[".rope.dimension_count_swa"] = int(hd * ROPE_SWA)
        kv.pop(".expert_shared_count", None)
        kv[".leading_dense_block_count"] = next(
            (il for il, la in enumerate(spec.layers) if la.ffn.kind is FFNKind.MOE), spec.n_layer
        )
        kv[".expert_gating_func"] = 2  # sigmoid
        kv[".expert_weights_norm"] = True
        kv.update(dict(spec.gguf_scalars))
        return kv
