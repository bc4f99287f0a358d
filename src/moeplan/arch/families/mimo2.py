"""Xiaomi MiMo-V2-Flash: sliding-window attention (window 128) with learnable attention sinks on
five of every six layers and full attention on the rest (`hybrid_layer_pattern`, 1 = sliding), with
more KV heads on the sliding layers, keys of 192 and values of 128 per head, partial rope, one
leading dense layer then 256 routed experts (sigmoid router with selection bias, no shared expert),
and three MTP blocks the converter keeps.

From `conversion/mimo.py` MimoV2Model of the pinned build: the checkpoint's MTP blocks
(`model.mtp.layers.{i}`, a count the config does not give: the converter fixes it at 3) become
`blk.{48+i}`, each a sliding-window layer with the sliding head counts and sinks, a dense FFN of
`intermediate_size`, eh_proj/enorm/hnorm and `final_layernorm` (→ `layer_output_norm`); the
converter writes `head_count_kv` and `sliding_window_pattern` per layer over block_count and
`value_length` = `v_head_dim`. The loader (`src/models/mimo2.cpp`) skips every MTP-block tensor
unless an MTP draft is loaded.
"""

from typing import ClassVar

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig


class MiMo2(Family):
    arch = "mimo2"
    model_types = ("mimo_v2_flash", "mimo_v2")
    mtp_kept = True
    probs_bias = True
    mtp_count: ClassVar[int] = 3  # MimoV2Model._n_nextn
    rope_fraction = 0.334  # partial_rotary_factor (checked): rope.dimension_count = int(192 * 0.334) = 64

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        if c.get(cfg, "partial_rotary_factor") != self.rope_fraction:
            raise BadConfig("mimo_v2 with another partial_rotary_factor is not modelled")
        hd, hd_v = c.integer(cfg, "head_dim"), c.integer(cfg, "v_head_dim")
        n_head = c.integer(cfg, "num_attention_heads")
        # the converter asserts that the sliding layers share the head count and head sizes
        if (
            c.integer(cfg, "swa_num_attention_heads", default=n_head) != n_head
            or c.integer(cfg, "swa_head_dim", default=hd) != hd
            or c.integer(cfg, "swa_v_head_dim", default=hd_v) != hd_v
        ):
            raise BadConfig("mimo_v2 with different sliding-layer head counts or sizes is not modelled")
        full = Attention(AttnKind.FULL, n_head, c.integer(cfg, "num_key_value_heads"), hd, hd_v)
        swa = Attention(
            AttnKind.SWA,
            n_head,
            c.integer(cfg, "swa_num_key_value_heads"),
            hd,
            hd_v,
            window=c.integer(cfg, "sliding_window"),
        )
        pattern = cfg.get("hybrid_layer_pattern")
        freq = cfg.get("moe_layer_freq")
        if not isinstance(pattern, list) or len(pattern) != n:
            raise BadConfig(f"hybrid_layer_pattern must list {n} layers, got {pattern!r}")
        if not isinstance(freq, list) or len(freq) != n:
            raise BadConfig(f"moe_layer_freq must list {n} layers, got {freq!r}")
        dense = c.dense(cfg)
        moe = FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "n_routed_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok"),
            n_ff_exp=c.integer(cfg, "moe_intermediate_size"),
        )
        if cfg.get("n_shared_experts"):
            raise BadConfig("mimo_v2 with shared experts is not modelled (the llama.cpp loader has none)")
        layers = [
            Layer(swa if p == 1 else full, moe if f else dense) for p, f in zip(pattern, freq, strict=True)
        ]
        flags = set()
        if cfg.get("add_swa_attention_sink_bias"):
            flags.add("swa_sinks")
        if cfg.get("add_full_attention_sink_bias"):
            flags.add("full_sinks")
        if cfg.get("attention_bias"):
            raise BadConfig("mimo_v2 with attention biases is not modelled")
        mtp = (Layer(swa, dense),) * self.mtp_count
        return c.base(cfg, self.arch, layers, mtp_layers=mtp, flags=frozenset(flags))

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        """Q/K of head_dim, V of v_head_dim, and `attn_sinks` {n_head} where the layer kind has the
        sink bias (`llama_model_mimo2::load_arch_tensors`)."""
        layout.gqa(b, p, il, a, spec.n_embd, role)
        if spec.has("swa_sinks" if a.kind is AttnKind.SWA else "full_sinks"):
            b.add(f"{p}.attn_sinks.weight", (a.n_head,), role, il)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        """An MTP block ends with `final_layernorm`, written as `layer_output_norm`; it has no
        shared-head norm or head of its own."""
        e = spec.n_embd
        p = f"blk.{il}"
        b.add(f"{p}.attn_norm.weight", (e,), layout.mtp_or(Role.NORM, mtp), il)
        self.attention(b, spec, p, il, layer.attn, layout.mtp_or(Role.ATTN, mtp))
        self.ffn_norms(b, p, il, e, layout.mtp_or(Role.NORM, mtp))
        self.ffn(b, spec, p, il, layer, mtp)
        if mtp:
            b.add(f"{p}.nextn.eh_proj.weight", (2 * e, e), Role.MTP, il)
            b.add(f"{p}.nextn.enorm.weight", (e,), Role.MTP, il)
            b.add(f"{p}.nextn.hnorm.weight", (e,), Role.MTP, il)
            b.add(f"{p}.layer_output_norm.weight", (e,), Role.MTP, il)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """MimoV2Model.set_gguf_parameters: per-layer `head_count_kv` and 0/1 sliding pattern over
        block_count (MTP blocks sliding), `value_length` = v_head_dim."""
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        layers = spec.layers + spec.mtp_layers[: inv.mtp_kept]
        heads = [la.attn.n_head for la in layers]
        kv[".attention.head_count"] = heads[0] if len(set(heads)) == 1 else heads
        kv[".attention.head_count_kv"] = [la.attn.n_head_kv for la in layers]
        kv[".attention.sliding_window_pattern"] = [int(la.attn.kind is AttnKind.SWA) for la in layers]
        kv[".expert_gating_func"] = 2  # scoring_func "sigmoid"
        return kv
