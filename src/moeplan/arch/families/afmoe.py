"""Arcee Trinity (AFMoE): gated GQA attention with q/k norms, sandwich norms around attention and FFN,
leading dense layers, then sigmoid-routed experts with a selection bias and shared expert(s).

Three sliding-window layers to one full one: `llama_model_afmoe::load_arch_hparams` calls
`load_swa_pattern(ml, 4)` and the converter (conversion/afmoe.py) writes no pattern, so llama.cpp runs
layer i with the window when i % 4 < 3 whatever the config says; a config with another pattern is
refused rather than mis-modelled.
"""

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
from moeplan.arch.spec import FFN, Attention, AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig

SWA_PERIOD = 4  # load_swa_pattern(ml, 4) in src/models/afmoe.cpp


def gated_attention(b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
    """Q/K/V/O, per-head q/k norms, and the sigmoid output gate `attn_gate` {E, n_head·head_dim}
    (afmoe.cpp and muse-glimmer.cpp `load_arch_tensors`)."""
    layout.gqa(b, p, il, a, spec.n_embd, role, qk_norm=True)
    b.add(f"{p}.attn_gate.weight", (spec.n_embd, a.n_head * a.head_dim_v), role, il)


def sandwich_norms(b: Builder, p: str, il: int, e: int, role: Role) -> None:
    """Post-attention, pre-FFN and post-FFN norms (afmoe.cpp and muse-glimmer.cpp `load_arch_tensors`)."""
    b.add(f"{p}.post_attention_norm.weight", (e,), role, il)
    b.add(f"{p}.ffn_norm.weight", (e,), role, il)
    b.add(f"{p}.post_ffw_norm.weight", (e,), role, il)


def afmoe_moe(cfg: Config) -> FFN:
    """Routed experts of `moe_intermediate_size`; `num_shared_experts` shared ones of the same width
    (the loader's n_ff_shexp = n_ff_exp · n_expert_shared)."""
    return c.routed_and_shared_moe(cfg, ("num_experts",), "num_shared_experts")


class Afmoe(Family):
    arch = "afmoe"
    model_types = ("afmoe",)
    ffn_norm = "ffn_norm"
    qk_norm = True
    probs_bias = True

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        window = c.integer(cfg, "sliding_window", default=0)
        llama_cpp = [
            "sliding_attention" if window and il % SWA_PERIOD < SWA_PERIOD - 1 else "full_attention"
            for il in range(n)
        ]
        every = c.integer(cfg, "global_attn_every_n_layers", default=SWA_PERIOD)
        declared = c.layer_types(
            cfg, n, ["full_attention" if (il + 1) % every == 0 else "sliding_attention" for il in range(n)]
        )
        if window and declared != llama_cpp:
            raise BadConfig("afmoe: llama.cpp runs every 4th layer with full attention; this config differs")
        k_dense = c.integer(cfg, "num_dense_layers", default=0)
        moe = afmoe_moe(cfg)
        layers = [
            Layer(
                c.gqa(cfg, AttnKind.SWA, window) if t == "sliding_attention" else c.gqa(cfg),
                c.dense(cfg) if il < k_dense else moe,
            )
            for il, t in enumerate(llama_cpp)
        ]
        return c.base(cfg, self.arch, layers)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """afmoe.cpp `load_arch_hparams`: with a window, `load_swa_pattern(ml, 4)` (3 sliding : 1 full)."""
        if not hp.integer("attention.sliding_window", 0):
            return generic_spec(hp)
        return generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, SWA_PERIOD))

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        gated_attention(b, spec, p, il, a, role)

    def ffn_norms(self, b: Builder, p: str, il: int, e: int, role: Role) -> None:
        sandwich_norms(b, p, il, e, role)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """AfmoeModel.set_gguf_parameters: leading dense count, shared count, route norm and scale;
        the sigmoid gating func comes from `score_func` (TextModel)."""
        kv = super().gguf_metadata(inv)
        moe = inv.spec.moe_ffn
        if moe is not None:
            kv[".leading_dense_block_count"] = first_moe_layer(inv.spec)
            kv[".expert_shared_count"] = moe.n_shared
            kv[".expert_gating_func"] = 2  # sigmoid
            kv[".expert_weights_norm"] = True
        kv.pop(".expert_shared_feed_forward_length", None)  # not written by the converter
        return kv
