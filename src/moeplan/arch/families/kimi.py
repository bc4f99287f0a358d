"""Kimi-Linear and Kimi-K3: Kimi Delta Attention (KDA) linear-attention layers mixed with MLA layers,
a leading dense FFN and DeepSeek-style routed + shared experts (conversion/kimi_linear.py,
src/models/kimi-linear.cpp; K3's additions in `KimiK3`, conversion/kimi_k3.py, src/models/kimi-k3.cpp).

Facts of the pinned llama.cpp (build 11434) that shape everything here:
- `linear_attn_config.full_attn_layers` / `kda_layers` are 1-based (`il + 1 in full_attn_layers`);
  the converter writes `head_count_kv` per layer, 0 on KDA layers (`is_recr` = n_head_kv == 0) and
  1 on MLA layers (MLA served as MQA over the compressed latent).
- KDA runs on the model's attention head count (`hparams.n_head()`), its head size is
  `kda.head_dim`; conv state 3·(d_conv−1)·n_head·head_dim and recurrent state head_dim²·n_head
  (`llama_hparams::n_embd_r/n_embd_s`).
- Rope is off for the whole architecture (`llama_model_rope_type` → NONE; MLA is NoPE), the MTP
  block is never converted.
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.families.deepseek2 import mla_attention, mla_metadata
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.from_gguf import GGUFHParams, attention_of, ffn_of, spec_of_blocks
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig
from moeplan.quant.ggml import GGMLType

# `TextModel.set_gguf_parameters`: the first of these keys present is the context length.
CONTEXT_KEYS = (
    "max_position_embeddings",
    "n_ctx",
    "n_positions",
    "max_length",
    "max_sequence_length",
    "model_max_length",
)


def linear_attn_config(cfg: Config) -> Config:
    la = cfg.get("linear_attn_config")
    if not isinstance(la, dict):
        raise BadConfig(f"config.json of model_type '{cfg.get('model_type')}' lacks linear_attn_config")
    return la


def full_attention_layers(cfg: Config) -> set[int]:
    """0-based indices of the MLA layers (`full_attn_layers` is 1-based, as the converter reads it)."""
    n = c.integer(cfg, "num_hidden_layers")
    ids = linear_attn_config(cfg).get("full_attn_layers")
    if not isinstance(ids, list) or any(not isinstance(i, int) or not 1 <= i <= n for i in ids):
        raise BadConfig(f"linear_attn_config.full_attn_layers must list 1-based layer ids of 1..{n}")
    return {i - 1 for i in ids}


def kda_attention(cfg: Config) -> Attention:
    """A KDA layer: `n_head` is the model's attention head count, which llama.cpp's KDA runs on."""
    la = linear_attn_config(cfg)
    n_head = c.integer(cfg, "num_attention_heads")
    if c.integer(la, "num_heads", default=n_head) != n_head:
        raise BadConfig(
            "llama.cpp's KDA runs on num_attention_heads: linear_attn_config.num_heads must equal it"
        )
    return kda_layer(n_head, c.integer(la, "head_dim"), c.integer(la, "short_conv_kernel_size"))


def kda_layer(n_head: int, head_dim: int, conv_kernel: int) -> Attention:
    """A KDA (Kimi delta attention) layer: q, k and v all on `n_head` heads of `head_dim`, after a
    short convolution of `conv_kernel` taps (`build_kda`'s shapes)."""
    return Attention(
        AttnKind.LINEAR,
        n_head,
        0,
        0,
        0,
        conv_kernel=conv_kernel,
        linear_k_heads=n_head,
        linear_v_heads=n_head,
        linear_k_head_dim=head_dim,
        linear_v_head_dim=head_dim,
    )


def kimi_moe(cfg: Config) -> FFN:
    """`num_experts` routed experts (`num_experts_per_token` per token) plus `num_shared_experts`
    of the routed width (the loader sizes the shared FFN n_ff_exp × n_expert_shared)."""
    used = ("num_experts_per_token", "num_experts_per_tok")
    return c.routed_and_shared_moe(cfg, ("num_experts",), "num_shared_experts", used=used)


def kda(
    b: Builder, p: str, il: int, a: Attention, e: int, role: Role, *, full_rank_gate: bool = False
) -> None:
    """Kimi Delta Attention as the converter writes it: separate q/k/v projections, one causal
    conv per q/k/v as 4-D {d_conv, 1, d_inner, 1} (F32), low-rank decay (f_a/f_b), beta, A
    (−exp(A_log)), dt bias, the gated output norm. Kimi-Linear: low-rank output gate g_a/g_b and A
    4-D {1, n_head, 1, 1}; `full_rank_gate` (Kimi-K3): one `ssm_g` {E, d_inner} and A 1-D {n_head}
    (the converter slices K3's padded A_log to n_head)."""
    h, hd, vd = a.linear_k_heads, a.linear_k_head_dim, a.linear_v_head_dim
    d_k, d_v = h * hd, h * vd
    norm = Role.MTP if role is Role.MTP else Role.NORM
    b.add(f"{p}.attn_q.weight", (e, d_k), role, il)
    b.add(f"{p}.attn_k.weight", (e, d_k), role, il)
    b.add(f"{p}.attn_v.weight", (e, d_v), role, il)
    for x, width in (("q", d_k), ("k", d_k), ("v", d_v)):
        b.add(f"{p}.ssm_conv1d_{x}.weight", (a.conv_kernel, 1, width, 1), role, il)
    b.add(f"{p}.ssm_f_a.weight", (e, hd), role, il)
    b.add(f"{p}.ssm_f_b.weight", (hd, d_k), role, il)
    b.add(f"{p}.ssm_beta.weight", (e, h), role, il)
    b.add(f"{p}.ssm_a", (h,) if full_rank_gate else (1, h, 1, 1), role, il)
    b.add(f"{p}.ssm_dt.bias", (d_k,), role, il)
    if full_rank_gate:
        b.add(f"{p}.ssm_g.weight", (e, d_v), role, il)
    else:
        b.add(f"{p}.ssm_g_a.weight", (e, hd), role, il)
        b.add(f"{p}.ssm_g_b.weight", (hd, d_v), role, il)
    b.add(f"{p}.ssm_norm.weight", (vd,), norm, il)
    b.add(f"{p}.attn_output.weight", (d_v, e), role, il)


def kda_state(a: Attention) -> tuple[int, int]:
    """`llama_hparams::n_embd_r/n_embd_s` for KDA: q, k and v conv caches of (d_conv−1)·n_head·head_dim
    each, and one head_dim × head_dim state per head."""
    d_inner = a.n_head * a.linear_k_head_dim
    return 3 * (a.conv_kernel - 1) * d_inner, a.linear_k_head_dim * a.linear_k_head_dim * a.n_head


def kda_mla_spec_from_gguf(hp: GGUFHParams) -> ModelSpec:
    """`load_arch_hparams` of the KDA + MLA hybrids (kimi-linear, bailingmoe3): a layer with
    head_count_kv 0 is KDA (`is_recr`), on the model's head count with `kda.head_dim` heads and
    `ssm.conv_kernel`; the others are MLA."""
    n = hp.n_layer_all
    n_head = hp.integer("attention.head_count")
    n_head_kv = hp.per_layer("attention.head_count_kv", n, [n_head] * n)
    n_used = hp.per_layer("expert_used_count", n, [0] * n)
    hd, d_conv = hp.integer("kda.head_dim"), hp.integer("ssm.conv_kernel")
    linear = Attention(AttnKind.LINEAR, n_head, 0, 0, 0, conv_kernel=d_conv, linear_k_heads=n_head,
                       linear_v_heads=n_head, linear_k_head_dim=hd, linear_v_head_dim=hd)  # fmt: skip
    layers = [
        Layer(
            linear if not n_head_kv[il] else attention_of(hp, il, n_head, 1, False, 0),
            ffn_of(hp, il, n_used[il]),
        )
        for il in range(n)
    ]
    return spec_of_blocks(hp, layers)


def _is_k3_text(cfg: Config) -> bool:
    """Kimi-K3's `text_config` says model_type kimi_linear too (the converter picks KimiK3Model by the
    outer architectures); its situ activation and attention residuals tell it apart."""
    return cfg.get("hidden_act") == "situ" or cfg.get("attn_res_block_size") is not None


class KimiLinear(Family):
    arch = "kimi-linear"
    model_types = ("kimi_linear",)
    probs_bias = True  # block_sparse_moe.gate.e_score_correction_bias → exp_probs_b

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if type(self) is KimiLinear and _is_k3_text(cfg):
            return KimiK3().spec_from_config(cfg)
        n = c.integer(cfg, "num_hidden_layers")
        full = full_attention_layers(cfg)
        mla, linear = mla_attention(cfg), kda_attention(cfg)
        moe = kimi_moe(cfg)
        k_dense = c.integer(cfg, "first_k_dense_replace", default=0)
        layers = [
            Layer(mla if il in full else linear, c.dense(cfg) if il < k_dense else moe) for il in range(n)
        ]
        spec = c.base(cfg, self.arch, layers)
        return dataclasses.replace(spec, context_length=c.integer(cfg, *CONTEXT_KEYS, default=0))

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        return kda_mla_spec_from_gguf(hp)

    def recurrent(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        kda(b, p, il, a, spec.n_embd, role)

    def recurrent_state(self, a: Attention) -> tuple[int, int]:
        return kda_state(a)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        mla = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.MLA)
        linear = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.LINEAR)
        # value_length: TextModel writes config head_dim, which is n_embd / n_head (72) in the release
        kv[".attention.value_length"] = spec.n_embd // mla.n_head
        kv[".attention.head_count_kv"] = [la.attn.n_head_kv for la in spec.layers]
        mla_metadata(kv, mla, zero_q_lora=False)
        kv[".attention.layer_norm_rms_epsilon"] = 1e-5
        kv[".ssm.conv_kernel"] = linear.conv_kernel
        kv[".kda.head_dim"] = linear.linear_k_head_dim
        if spec.is_moe:
            kv[".leading_dense_block_count"] = first_moe_layer(spec)
            kv[".expert_gating_func"] = 2  # sigmoid (moe_router_activation_func)
            kv[".expert_weights_scale"] = 1.0
            kv.pop(".expert_shared_feed_forward_length", None)  # the loader sizes it n_ff_exp × shared
        return kv


def _block_size(spec: ModelSpec) -> int:
    """`attn_res_block_size` as carried in the spec's flags (`attn_res:<n>`), 0 when absent."""
    return next((int(f.split(":", 1)[1]) for f in spec.flags if f.startswith("attn_res:")), 0)


class KimiK3(KimiLinear):
    """Kimi-K3's text model (conversion/kimi_k3.py, src/models/kimi-k3.cpp): the Kimi-Linear skeleton
    with MLA q compression and a sigmoid output gate (`attn_gate`, HF `g_proj` on MLA layers), a
    full-rank KDA gate (`ssm_g`, HF `g_proj` on KDA layers), a latent MoE (routed experts run at
    `routed_expert_hidden_size` between `ffn_routed_down`/`ffn_routed_up`, with `ffn_routed_norm`),
    and cross-layer attention residuals whose `*_res_norm × *_res_proj` pairs the converter fuses
    into one F32 vector each (`attn_res_score`, `ffn_res_score`, `output_res_score`). Released with
    compressed-tensors MXFP4 experts, which the converter repacks as ggml MXFP4 whatever `--outtype`."""

    arch = "kimi-k3"
    model_types = ("kimi_k3",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if not linear_attn_config(cfg).get("use_full_rank_gate", True):
            raise BadConfig("llama.cpp's kimi-k3 loader has only the full-rank KDA gate (use_full_rank_gate)")
        base = KimiLinear.spec_from_config(self, cfg)
        latent = c.integer(cfg, "routed_expert_hidden_size", default=0)
        layers = [
            Layer(la.attn, dataclasses.replace(la.ffn, n_latent=latent)) if la.ffn.kind is FFNKind.MOE else la
            for la in base.layers
        ]
        flags = set(base.flags)
        if cfg.get("mla_use_output_gate"):
            flags.add("mla_output_gate")
        if block := c.integer(cfg, "attn_res_block_size", default=0):
            flags.add(f"attn_res:{block}")
        q = cfg.get("quantization_config") or {}
        if q.get("quant_method") == "compressed-tensors" and q.get("format") == "mxfp4-pack-quantized":
            flags.add("mxfp4_experts")
        return dataclasses.replace(base, arch=self.arch, layers=tuple(layers), flags=frozenset(flags))

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """Kimi-Linear's reading plus the latent width (`expert_latent_length`), the output gate
        (an `attn_gate` tensor) and the residual block size (`attn_res.block_size`)."""
        base = KimiLinear.spec_from_gguf(self, hp)
        latent = hp.integer("expert_latent_length", 0)
        layers = tuple(
            Layer(la.attn, dataclasses.replace(la.ffn, n_latent=latent)) if la.ffn.kind is FFNKind.MOE else la
            for la in base.layers
        )
        flags = set()
        if any(name.endswith(".attn_gate.weight") for name in hp.shapes):
            flags.add("mla_output_gate")
        if block := hp.integer("attn_res.block_size", 0):
            flags.add(f"attn_res:{block}")
        return dataclasses.replace(base, layers=layers, flags=frozenset(flags))

    def head(self, b: Builder, spec: ModelSpec) -> None:
        super().head(b, spec)
        if _block_size(spec):
            b.add("output_res_score.weight", (spec.n_embd,), Role.NORM)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        super().block(b, spec, il, layer, mtp, own_head)
        if _block_size(spec):
            b.add(f"blk.{il}.attn_res_score.weight", (spec.n_embd,), Role.NORM, il)
            b.add(f"blk.{il}.ffn_res_score.weight", (spec.n_embd,), Role.NORM, il)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        super().attention(b, spec, p, il, a, role)
        if a.kind is AttnKind.MLA and spec.has("mla_output_gate"):
            b.add(f"{p}.attn_gate.weight", (spec.n_embd, a.n_head * a.mla_v_head_dim), role, il)

    def recurrent(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        kda(b, p, il, a, spec.n_embd, role, full_rank_gate=True)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        """Router + selection bias, the latent projections (every token runs them: dense-FFN role,
        not offloaded with the expert stacks), expert stacks in the latent width, the shared experts
        in the model width."""
        f, e = layer.ffn, spec.n_embd
        if f.kind is not FFNKind.MOE:
            super().ffn(b, spec, p, il, layer, mtp)
            return
        layout.router(b, p, il, f, e, layout.mtp_or(Role.ROUTER, mtp), probs_bias=True)
        latent = f.n_latent or e
        native = GGMLType.MXFP4 if spec.has("mxfp4_experts") else None
        layout.expert_stacks(b, p, il, f, latent, layout.mtp_or(Role.EXPERT, mtp), native)
        if f.n_latent:
            role = layout.mtp_or(Role.DENSE_FFN, mtp)
            b.add(f"{p}.ffn_routed_down.weight", (e, f.n_latent), role, il)
            b.add(f"{p}.ffn_routed_up.weight", (f.n_latent, e), role, il)
            b.add(f"{p}.ffn_routed_norm.weight", (f.n_latent,), layout.mtp_or(Role.NORM, mtp), il)
        layout.shared_expert(b, p, il, f, e, layout.mtp_or(Role.SHARED_EXPERT, mtp))

    def residual_activations(self, spec: ModelSpec, il: int, n_ubatch: int) -> int:
        """The attention-residual stack under an MLA layer's peak (src/models/kimi-k3.cpp):
        `res_push` (l. 289) banks the raw layer input on every layer with il % attn_res_block_size
        == 0 and grows the stack with `ggml_concat(ctx0, resi_stack, ckpt, 1)` (l. 195), a new F32
        {n_embd, n_ckpt, n_tokens} that every later `res_mix` reads (l. 211, 230), so it lives to the
        end of the graph. The concat allocates the n_ckpt-row stack while the (n_ckpt−1)-row one it
        copies is still live (ggml-alloc.c best fit), and the freed old stack leaves a hole below the
        new one that the layer's biggest tensor, the KQ scores without flash attention
        (llama-graph.cpp build_attn_mha l. 2763), cannot use: the peak sits on n_ckpt + n_ckpt − 1
        rows of n_embd F32 per token. The first checkpoint is a reshape of the layer input itself
        (no copy), hence nothing until a second one is banked. Seen in ggml-alloc's debug layout of
        the dry run (c4096 ub2048, layer 87): the 8-row stack right under kq-87, a 16 MiB hole below
        it. With flash attention the attention phase stays under the FFN estimate."""
        block = _block_size(spec)
        n_ckpt = il // block + 1 if block else 0
        if n_ckpt < 2:
            return 0
        return 4 * n_ubatch * spec.n_embd * (2 * n_ckpt - 1)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        mla = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.MLA)
        kv[".attention.value_length"] = mla.kv_lora_rank  # K3's converter writes kv_lora_rank
        kv[".kda.gate_lower_bound"] = -5.0
        moe = spec.moe_ffn
        if moe is not None:
            kv[".expert_weights_norm"] = True
            if moe.n_latent:
                kv[".expert_latent_length"] = moe.n_latent
        kv[".attn_res.block_size"] = _block_size(spec)
        kv[".activation.situ_beta"] = 4.0
        kv[".activation.situ_linear_beta"] = 25.0
        return kv
