"""MiniMax-M2.x: full GQA attention on every layer with RMS norms over the whole Q and K
projections (not per head), partial rope (`rotary_dim`), and 256 routed experts with a sigmoid
router and selection bias; no shared expert, no dense layer.

The converter (`conversion/minimax.py` MiniMaxM2Model) writes `feed_forward_length` and
`expert_feed_forward_length` from `intermediate_size` (the expert width) and the rope dimension
from `rotary_dim`; the loader (`src/models/minimax-m2.cpp`) shapes the expert stacks by
`feed_forward_length`. The config's `use_mtp`/`num_mtp_modules` describe training: gguf-py's
MINIMAXM2 tensor table has no NextN tensors and the converter drops none, so the released
checkpoints convert with no MTP block.
"""

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.spec import FFN, Attention, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig


class MiniMaxM2(Family):
    arch = "minimax-m2"
    model_types = ("minimax_m2",)
    probs_bias = True
    rope_fraction = 0.5  # rotary_dim 64 of head_dim 128 (checked against the config)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        attn = c.gqa(cfg)
        c.check_rotary_dim(cfg, attn, self.rope_fraction)
        if c.integer(cfg, "shared_intermediate_size", default=0):
            raise BadConfig("minimax_m2 with a shared expert is not modelled (the llama.cpp loader has none)")
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_local_experts", "num_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok"),
            n_ff_exp=c.integer(cfg, "intermediate_size"),
        )
        return c.base(cfg, self.arch, [Layer(attn, moe) for _ in range(n)])

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        """Q/K/V/O, then `q_norm` {n_head·head_dim} and `k_norm` {n_head_kv·head_dim}
        (`llama_model_minimax_m2::load_arch_tensors`)."""
        layout.gqa(b, p, il, a, spec.n_embd, role)
        b.add(f"{p}.attn_q_norm.weight", (a.n_head * a.head_dim_k,), Role.NORM, il)
        b.add(f"{p}.attn_k_norm.weight", (a.n_head_kv * a.head_dim_k,), Role.NORM, il)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        kv[".expert_gating_func"] = 2  # scoring_func "sigmoid" (TextModel.set_gguf_parameters)
        return kv
