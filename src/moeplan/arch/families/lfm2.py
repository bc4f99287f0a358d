"""LFM2 / LFM2.5: gated short-convolution blocks mixed with GQA blocks that have per-head q/k norms.
The dense models (LFM2.5-1.2B, -350M, -230M: `lfm2`, conversion/lfm2.py `LFM2Model`,
src/models/lfm2.cpp) run a SwiGLU FFN on every layer; the MoE ones (LFM2-8B-A1B, LFM2.5-8B-A1B:
`lfm2moe`, `LFM2MoeModel`, src/models/lfm2moe.cpp) two leading dense FFNs, then routed experts with a
sigmoid router and selection bias.

Facts of the pinned llama.cpp (build 11434):
- `layer_types` says "conv" or "full_attention"; the converter writes `head_count_kv` per layer, 0 on
  the convolution layers (`is_recr` = n_head_kv == 0).
- A short-conv block is `shortconv.in_proj` {E, 3E}, the depthwise `shortconv.conv` {L_cache, E} (F32)
  and `shortconv.out_proj` {E, E}, without biases; its only state is the conv cache of
  n_embd·(L_cache−1) values (`llama_hparams::n_embd_r`; n_embd_s is 0).
- The output norm is written as `token_embd_norm`. gguf-py's LFM2MOE tensor list has no `output`: the
  MoE head is always the token embedding; LFM2's has one, written only when the checkpoint carries an
  untied lm_head (every released LFM2.5 dense model is tied).
- The dense FFN width is `LFM2Model._add_feed_forward_length`'s: with `block_auto_adjust_ff_dim`,
  int(2·ff/3), times `block_ffn_dim_multiplier`, rounded up to `block_multiple_of` (12288 -> 8192 on
  the 1.2B, 6656 -> 4608 on the 350M).
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.from_gguf import GGUFHParams, attention_of, ffn_of
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig


def short_conv(cfg: Config) -> Attention:
    """A gated short-convolution block over all hidden channels, kernel `conv_L_cache`."""
    if cfg.get("conv_bias"):
        raise BadConfig("llama.cpp's LFM2 short convolution has no biases (conv_bias must be false)")
    return Attention(
        AttnKind.LINEAR,
        0,
        0,
        0,
        0,
        conv_kernel=c.integer(cfg, "conv_L_cache"),
        conv_channels=c.integer(cfg, "hidden_size"),
    )


def lfm2_layer_types(cfg: Config) -> list[str]:
    n = c.integer(cfg, "num_hidden_layers")
    types = c.layer_types(cfg, n, [])
    unknown = set(types) - {"conv", "full_attention"}
    if not types or unknown:
        raise BadConfig(
            f"LFM2 layer_types must list 'conv' / 'full_attention' per layer, got {sorted(unknown)}"
        )
    return types


def dense_ff_width(cfg: Config) -> int:
    """`LFM2Model._add_feed_forward_length`: the FFN width the converter writes for a dense LFM2."""
    ff = c.integer(cfg, "block_ff_dim", default=0) or c.integer(cfg, "intermediate_size")
    if not cfg.get("block_auto_adjust_ff_dim"):
        return ff
    ff = int(2 * ff / 3)
    multiplier = cfg.get("block_ffn_dim_multiplier")
    if multiplier is not None:
        ff = int(c.number(cfg, "block_ffn_dim_multiplier") * ff)
    multiple = c.integer(cfg, "block_multiple_of")
    return multiple * ((ff + multiple - 1) // multiple)


class _Lfm2Hybrid(Family):
    """What the dense and MoE LFM2 share: layer kinds, the short-conv block and its state, the
    `token_embd_norm` output norm and the per-layer `head_count_kv` the converters write."""

    qk_norm = True  # q_layernorm / k_layernorm on every attention block

    def ffn_for(self, cfg: Config, il: int) -> FFN:
        """Layer il's FFN: each subclass's own rule."""
        raise NotImplementedError

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        attn, conv = c.gqa(cfg), short_conv(cfg)
        layers = [
            Layer(attn if t == "full_attention" else conv, self.ffn_for(cfg, il))
            for il, t in enumerate(lfm2_layer_types(cfg))
        ]
        return c.base(cfg, self.arch, layers)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """`load_arch_hparams`: a layer with head_count_kv 0 is a short convolution (`is_recr`) of
        kernel `shortconv.l_cache` over n_embd channels; the head is the token embedding."""
        n = hp.n_layer_all
        e = hp.integer("embedding_length")
        n_head = hp.integer("attention.head_count")
        n_head_kv = hp.per_layer("attention.head_count_kv", n, [n_head] * n)
        n_used = hp.per_layer("expert_used_count", n, [0] * n)
        conv = Attention(
            AttnKind.LINEAR, 0, 0, 0, 0, conv_kernel=hp.integer("shortconv.l_cache"), conv_channels=e
        )
        layers = [
            Layer(
                attention_of(hp, il, n_head, n_head_kv[il], False, 0) if n_head_kv[il] else conv,
                ffn_of(hp, il, n_used[il]),
            )
            for il in range(n)
        ]
        embd = hp.shape("token_embd.weight") or (e, 0)
        return ModelSpec(
            name=hp.name,
            arch=hp.arch,
            n_embd=e,
            n_vocab=embd[1],
            tied_embeddings=not hp.has("output.weight"),
            layers=tuple(layers),
            context_length=hp.integer("context_length", 0),
        )

    def recurrent(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        e = a.conv_channels
        b.add(f"{p}.shortconv.conv.weight", (a.conv_kernel, e), role, il)
        b.add(f"{p}.shortconv.in_proj.weight", (spec.n_embd, 3 * e), role, il)
        b.add(f"{p}.shortconv.out_proj.weight", (e, spec.n_embd), role, il)

    def recurrent_state(self, a: Attention) -> tuple[int, int]:
        """`llama_hparams::n_embd_r` for LFM2: n_embd·(L_cache−1); no recurrent state (n_embd_s 0)."""
        return a.conv_channels * (a.conv_kernel - 1), 0

    def tail(self, b: Builder, spec: ModelSpec) -> None:
        b.add("token_embd_norm.weight", (spec.n_embd,), Role.NORM)  # LLM_TENSOR_OUTPUT_NORM_LFM2
        if not spec.tied_embeddings:
            b.add("output.weight", (spec.n_embd, spec.n_vocab), Role.OUTPUT)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        conv = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.LINEAR)
        kv[".attention.head_count_kv"] = [la.attn.n_head_kv for la in spec.layers]
        kv[".attention.layer_norm_rms_epsilon"] = 1e-5
        kv[".shortconv.l_cache"] = conv.conv_kernel
        del kv[".rope.dimension_count"]  # not written: llama.cpp rotates the whole head
        if spec.is_moe:
            kv[".leading_dense_block_count"] = first_moe_layer(spec)
            kv[".expert_gating_func"] = 2  # sigmoid
        return kv


class Lfm2(_Lfm2Hybrid):
    """Dense LFM2 / LFM2.5 (src/models/lfm2.cpp): a SwiGLU FFN of `dense_ff_width` on every layer."""

    arch = "lfm2"
    model_types = ("lfm2",)

    def ffn_for(self, cfg: Config, il: int) -> FFN:
        return FFN(FFNKind.DENSE, n_ff=dense_ff_width(cfg))


class Lfm2Moe(_Lfm2Hybrid):
    """LFM2-MoE: `num_dense_layers` leading dense FFNs, then sigmoid-routed experts with a selection
    bias; the converter writes no `output` tensor for this arch, so the head is the token embedding."""

    arch = "lfm2moe"
    model_types = ("lfm2_moe",)
    probs_bias = True  # feed_forward.expert_bias → exp_probs_b

    def ffn_for(self, cfg: Config, il: int) -> FFN:
        if il < c.integer(cfg, "num_dense_layers", default=0):
            return c.dense(cfg)
        return FFN(
            FFNKind.MOE,
            n_expert=c.integer(cfg, "num_experts"),
            n_expert_used=c.integer(cfg, "num_experts_per_tok"),
            n_ff_exp=c.integer(cfg, "moe_intermediate_size"),
        )

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        spec = super().spec_from_config(cfg)
        return dataclasses.replace(spec, tied_embeddings=True)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        return dataclasses.replace(super().spec_from_gguf(hp), tied_embeddings=True)
