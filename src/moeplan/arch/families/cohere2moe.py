"""Cohere2 MoE (CohereLabs North-Mini-Code-1.0): Cohere's parallel block (attention and FFN both read
the one input norm, and their outputs are added to the residual together: no FFN norm), sliding-window
attention on the layers `layer_types` marks, leading dense layers of their own width, then routed
experts with optional shared ones averaged in; tied embeddings by default.

From the pinned build (11434):
- conversion/command_r.py Cohere2MoeModel: the dense width is `prefix_dense_intermediate_size`
  (TextModel reads it before `intermediate_size`), the expert width `intermediate_size`; it writes
  `sliding_window`, the per-layer `sliding_window_pattern` array from `layer_types`,
  `leading_dense_block_count` (the leading "dense" entries of `mlp_layer_types`, else
  `first_k_dense_replace`), `expert_weights_norm` from `norm_topk_prob`, `logit_scale`, and drops the
  (zero) biases; the gating function comes from `expert_selection_fn` (TextModel);
- src/models/cohere2moe.cpp `load_arch_tensors`: attn_norm, Q/K/V/O, the dense or expert FFN, the
  shared expert only when `expert_shared_count` > 0, `output` optional (else token_embd is reused).
MTP blocks (`num_nextn_predict_layers`) are refused: no catalog model has one to check them against.
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.cohere2 import CohereParallel, logit_scale
from moeplan.arch.family import GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
from moeplan.arch.spec import FFN, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Inventory
from moeplan.errors import BadConfig, UnsupportedArchitecture

SWA_PERIOD = 4  # load_swa_pattern(ml, 4, true) in src/models/cohere2moe.cpp, when no array is written
# ExpertGatingFuncType of each `expert_selection_fn` the converter accepts (TextModel)
_GATING = {"softmax": 1, "sigmoid": 2}


class Cohere2Moe(CohereParallel):
    arch = "cohere2moe"
    model_types = ("cohere2_moe",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if c.integer(cfg, "num_nextn_predict_layers", default=0):
            raise UnsupportedArchitecture(
                "cohere2_moe with MTP blocks (num_nextn_predict_layers) is not modelled"
            )
        if cfg.get("use_qk_norm"):
            raise UnsupportedArchitecture("cohere2_moe with q/k norms is not modelled (llama.cpp loads none)")
        n = c.integer(cfg, "num_hidden_layers")
        types = cfg.get("layer_types")
        if not isinstance(types, list) or len(types) != n:
            raise BadConfig(f"cohere2_moe needs layer_types for its {n} layers")
        window = c.integer(cfg, "sliding_window")
        mlp = cfg.get("mlp_layer_types")
        if mlp is None:
            k_dense = c.integer(cfg, "first_k_dense_replace", default=0)
        elif isinstance(mlp, list) and len(mlp) == n:
            k_dense = next((il for il, t in enumerate(mlp) if t != "dense"), n)
            if "dense" in mlp[k_dense:]:
                raise BadConfig("cohere2_moe: llama.cpp runs every layer after the leading dense ones as MoE")
        else:
            raise BadConfig(f"cohere2_moe: mlp_layer_types must list {n} layer types")
        dense = FFN(FFNKind.DENSE, n_ff=c.integer(cfg, "prefix_dense_intermediate_size", "intermediate_size"))
        moe = c.routed_and_shared_moe(cfg, ("num_experts",), "num_shared_experts", "intermediate_size")
        layers = [
            Layer(
                c.gqa(cfg, AttnKind.SWA, window) if t == "sliding_attention" else c.gqa(cfg),
                dense if il < k_dense else moe,
            )
            for il, t in enumerate(types)
        ]
        # Cohere2MoeConfig's default router is softmax
        selection = str(c.get(cfg, "expert_selection_fn", default="softmax"))
        if selection not in _GATING:
            raise BadConfig(f"cohere2_moe: expert_selection_fn {selection!r} is not one llama.cpp converts")
        flags = {f"router_{selection}"} | (
            {"expert_weights_norm"} if cfg.get("norm_topk_prob", True) else set()
        )
        spec = c.base(cfg, self.arch, layers, gguf_scalars=logit_scale(cfg), flags=frozenset(flags))
        # Cohere2MoeConfig defaults to tied embeddings; the converter writes output.weight only for an
        # lm_head the checkpoint has.
        return ModelSpec(**{**spec.__dict__, "tied_embeddings": bool(cfg.get("tie_word_embeddings", True))})

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """cohere2moe.cpp `load_arch_hparams`: the pattern array, else full attention on every 4th layer."""
        return generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, SWA_PERIOD, dense_first=True))

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """Cohere2MoeModel.set_gguf_parameters: the sliding pattern array, leading dense count, the
        expert weights' normalisation and gating (the logit scale: CohereParallel)."""
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        kv[".attention.sliding_window_pattern"] = [la.attn.kind is AttnKind.SWA for la in spec.layers]
        kv[".leading_dense_block_count"] = next(
            (il for il, la in enumerate(spec.layers) if la.ffn.kind is FFNKind.MOE), spec.n_layer
        )
        kv[".expert_weights_norm"] = spec.has("expert_weights_norm")
        # no router flag (a spec read from a GGUF): the loader's own default, sigmoid
        kv[".expert_gating_func"] = next((v for fn, v in _GATING.items() if spec.has(f"router_{fn}")), 2)
        return kv
