"""Qwen3-Next and Qwen3.5/3.6 (dense and MoE): Gated DeltaNet linear attention with a gated
full-attention layer every `full_attention_interval` layers, and MTP blocks the converter keeps
(conversion/qwen.py `_QwenMtpMixin`)."""

from typing import ClassVar

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.families.qwen3 import qwen_moe_ffn
from moeplan.arch.family import AttentionGraph, Family, GGUFValue, GraphNode, input_rows, mamba_metadata
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, recurrent_by_interval
from moeplan.arch.spec import FFN, Attention, AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role


def hybrid_layers(cfg: Config, ffn: FFN) -> list[Layer]:
    n = c.integer(cfg, "num_hidden_layers")
    interval = c.integer(cfg, "full_attention_interval", default=4)
    default = ["full_attention" if (il + 1) % interval == 0 else "linear_attention" for il in range(n)]
    linear = Attention(
        AttnKind.LINEAR,
        0,
        0,
        0,
        0,
        conv_kernel=c.integer(cfg, "linear_conv_kernel_dim"),
        linear_k_heads=c.integer(cfg, "linear_num_key_heads"),
        linear_v_heads=c.integer(cfg, "linear_num_value_heads"),
        linear_k_head_dim=c.integer(cfg, "linear_key_head_dim"),
        linear_v_head_dim=c.integer(cfg, "linear_value_head_dim"),
    )
    full = c.gqa(cfg)
    return [Layer(full if t == "full_attention" else linear, ffn) for t in c.layer_types(cfg, n, default)]


class _GatedDeltaNetHybrid(Family):
    mtp_kept = True
    ffn_norm = "post_attention_norm"
    qk_norm = True
    rope_fraction = 0.25  # partial_rotary_factor of every released model
    fused_ba: ClassVar[bool] = False
    shexp_gate: ClassVar[bool] = True
    mtp_default_count: ClassVar[int] = 0
    # The graph repeats Q and K to the value heads even for the fused kernel (qwen3next.cpp); qwen35
    # skips it when `ggml_gated_delta_net` runs fused (`cparams.fused_gdn_ch`).
    repeats_qk: ClassVar[bool] = False

    def ffn_for(self, cfg: Config) -> FFN:
        return qwen_moe_ffn(cfg, shared=True)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        layers = hybrid_layers(cfg, self.ffn_for(cfg))
        mtp = c.mtp(cfg, layers[-1], default=self.mtp_default_count)
        return c.base(cfg, self.arch, layers, mtp_layers=mtp)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        return generic_spec(hp, recurrent=recurrent_by_interval)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        if a.kind is AttnKind.LINEAR:
            ssm_role = Role.MTP if role is Role.MTP else Role.SSM
            layout.gated_deltanet(b, p, il, a, spec.n_embd, ssm_role, fused_ba=self.fused_ba)
        else:  # the full-attention layers carry their output gate inside attn_q
            layout.gqa(b, p, il, a, spec.n_embd, role, q_gate=True, qk_norm=True)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        layout.ffn(b, p, il, layer.ffn, spec.n_embd, mtp, shexp_gate=self.shexp_gate)

    def recurrent_graph(
        self, spec: ModelSpec, a: Attention, n_ubatch: int, n_seq: int, embeds: bool
    ) -> AttentionGraph:
        """A Gated DeltaNet layer (`build_layer_attn_linear`, src/models/qwen35.cpp, qwen35moe.cpp,
        qwen3next.cpp; `llm_build_delta_net_base`) as ggml-alloc sees it, checked tensor by tensor
        against the pinned build's allocator log (tests/data/gdn-compute.json). The graph is reserved
        for n_seqs = -np sequences (-kvu too: `llama_context::sched_reserve`) of T / n_seqs tokens
        each, T the micro-batch rounded up to a multiple of n_seqs (`graph_reserve`), with the
        recurrent cache full: `build_rs` gathers all of its -np states, conv and recurrent.
        Nodes: the conv states {n_embd_r, n_seqs} and the QKV projection die into the concat
        {T/n_seqs + d_conv - 1, channels, n_seqs}; the recurrent states {n_embd_s, n_seqs}; the causal
        conv {channels, T}; the L2-normed Q and K (qwen3next repeats them to the value heads when the
        head counts differ); the decay gate and beta {n_v_heads, T}; the fused `ggml_gated_delta_net`
        result, the output {d_inner, T} followed by the new states {n_embd_s, n_seqs}; then the gated
        norm, the z projection and its SiLU {d_inner, T} and the output projection {n_embd, T}."""
        e, kd, vh = spec.n_embd, a.linear_k_head_dim, a.linear_v_heads
        n_seqs = max(n_seq, 1)
        t = -(-n_ubatch // n_seqs) * n_seqs
        d_inner = vh * a.linear_v_head_dim
        qk = a.linear_k_heads * kd
        channels = 2 * qk + d_inner
        conv_rows, state = self.recurrent_state(a)
        row = 4 * e * t
        repeat = self.repeats_qk and a.linear_k_heads != vh
        qk_nodes = (
            [
                GraphNode("q_l2", 4 * qk * t),
                GraphNode("q", 4 * vh * kd * t, ("q_l2",)),
                GraphNode("k_l2", 4 * qk * t),
                GraphNode("k", 4 * vh * kd * t, ("k_l2",)),
            ]
            if repeat
            else [GraphNode("q", 4 * qk * t), GraphNode("k", 4 * qk * t)]
        )
        nodes = [
            *(input_rows(row) if embeds else [GraphNode("input_embed", row)]),
            GraphNode("attn_norm", row),
            GraphNode("conv_states", 4 * conv_rows * n_seqs),
            GraphNode("qkv", 4 * channels * t),
            GraphNode(
                "conv_input", 4 * channels * (t + n_seqs * (a.conv_kernel - 1)), ("conv_states", "qkv")
            ),
            GraphNode("states", 4 * state * n_seqs),
            GraphNode("conv_out", 4 * channels * t, ("conv_input",)),
            *qk_nodes,
            GraphNode("alpha", 4 * vh * t),
            GraphNode("gate", 4 * vh * t, ("alpha",)),
            GraphNode("beta_proj", 4 * vh * t),
            GraphNode("beta", 4 * vh * t, ("beta_proj",)),
            GraphNode(
                "gdn", 4 * (d_inner * t + state * n_seqs), ("q", "k", "conv_out", "gate", "beta", "states")
            ),
            GraphNode("out_norm", 4 * d_inner * t, ("gdn",)),
            GraphNode("z", 4 * d_inner * t, ("attn_norm",)),
            GraphNode("z_silu", 4 * d_inner * t, ("z",)),
            GraphNode("gated", 0, ("z_silu",)),
            GraphNode("linear_attn_out", row, ("out_norm",)),
        ]
        return AttentionGraph(tuple(nodes))

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        linear = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.LINEAR)
        kv.update(mamba_metadata(linear))
        full = [i for i, la in enumerate(spec.layers) if la.attn.kind is not AttnKind.LINEAR]
        kv[".full_attention_interval"] = full[0] + 1
        s = self.rope_dims(spec, spec.layers[full[0]].attn) // 2
        kv[".rope.dimension_sections"] = [s - 2 * (s // 3), s // 3, s // 3, 0]
        return kv


class Qwen3Next(_GatedDeltaNetHybrid):
    arch = "qwen3next"
    model_types = ("qwen3_next",)
    fused_ba = True
    repeats_qk = True
    # config.json has no MTP count; the checkpoint carries one `mtp.layers.0` block, which the
    # converter counts (conversion/qwen.py _QwenMtpMixin).
    mtp_default_count = 1


class Qwen35(_GatedDeltaNetHybrid):
    arch = "qwen35"
    model_types = ("qwen3_5", "qwen3_5_text")
    shexp_gate = False

    def ffn_for(self, cfg: Config) -> FFN:
        return c.dense(cfg)


class Qwen35Moe(_GatedDeltaNetHybrid):
    arch = "qwen35moe"
    model_types = ("qwen3_5_moe", "qwen3_5_moe_text")
