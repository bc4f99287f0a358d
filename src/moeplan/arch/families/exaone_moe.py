"""K-EXAONE (ExaoneMoE): three sliding-window layers to one full one, per-head q/k norms, leading
dense layers, sigmoid-routed experts with a selection bias plus a shared expert, and MTP blocks the
converter keeps (conversion/exaone.py `ExaoneMoEModel`: `mtp.layers.k` becomes
`blk.{n_layer + k}`, `mtp.fc` / `pre_fc_norm_*` / `mtp.norm` its NextN tensors).

`llama_model_exaone_moe::load_arch_tensors` gives an MTP block a dense FFN of `intermediate_size`, not
experts, and reads the sliding-window layers from the `sliding_window_pattern` array the converter
writes from `layer_types` (or the "LLLG" string).
"""

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.spec import AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Inventory


def exaone_layer_types(cfg: Config, n: int) -> list[str]:
    """`layer_types`, else the `sliding_window_pattern` string ("LLLG": L = sliding) or period."""
    pattern = cfg.get("sliding_window_pattern") or "LLLG"
    if isinstance(pattern, str):
        marks = [pattern[il % len(pattern)] for il in range(n)]
        default = ["sliding_attention" if m == "L" else "full_attention" for m in marks]
    else:
        period = int(pattern)
        default = ["sliding_attention" if (il + 1) % period else "full_attention" for il in range(n)]
    return c.layer_types(cfg, n, default)


class ExaoneMoe(Family):
    arch = "exaone-moe"
    model_types = ("exaone_moe",)
    mtp_kept = True
    qk_norm = True
    probs_bias = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        window = c.integer(cfg, "sliding_window")
        k_dense = c.integer(cfg, "first_k_dense_replace", "first_last_k_dense_replace", default=0)
        c.integer(cfg, "num_shared_experts")  # required by the converter
        moe = c.routed_and_shared_moe(cfg, ("num_experts",), "num_shared_experts")
        layers = [
            Layer(
                c.gqa(cfg, AttnKind.SWA, window) if t == "sliding_attention" else c.gqa(cfg),
                c.dense(cfg) if il < k_dense else moe,
            )
            for il, t in enumerate(exaone_layer_types(cfg, n))
        ]
        mtp = c.mtp(cfg, Layer(c.gqa(cfg), c.dense(cfg)))  # full attention, dense FFN
        return c.base(cfg, self.arch, layers, mtp_layers=mtp)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """ExaoneMoEModel / Exaone4Model.set_gguf_parameters."""
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        kv[".attention.sliding_window_pattern"] = [la.attn.kind is AttnKind.SWA for la in spec.layers]
        kv[".nextn_predict_layers"] = inv.mtp_kept
        moe = spec.moe_ffn
        if moe is not None:
            kv[".leading_dense_block_count"] = first_moe_layer(spec)
            kv[".expert_shared_count"] = moe.n_shared
            kv[".expert_gating_func"] = 2  # sigmoid (scoring_func); required by the loader
            kv[".expert_weights_norm"] = True
        return kv
