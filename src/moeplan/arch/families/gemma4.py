"""Gemma 4 (`gemma4`): sliding-window layers (head_dim) and full layers (global_head_dim, their own
KV head count), sandwich norms, q/k norms, a per-layer output scale, and three optional parts:
- `attention_k_eq_v`: full layers project K only and use it as V (no attn_v in the checkpoint);
  llama.cpp still caches V separately (`llama_kv_cache` makes a V tensor for every non-MLA layer);
- `enable_moe_block` (26B-A4B): routed experts beside the dense MLP of every layer, which llama.cpp
  runs as the shared expert (modelled as one shared expert of the dense width);
- per-layer embeddings (E2B/E4B, `hidden_size_per_layer_input`) and KV sharing: the last
  `num_kv_shared_layers` layers read the cache of the last earlier layer of their kind and own none.

Facts from the pinned llama.cpp: conversion/gemma.py `Gemma4Model` (+ `Gemma3Model`, `TextModel`),
gguf-py tensor_mapping.py, src/models/gemma4.cpp `load_arch_hparams` / `load_arch_tensors`.
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, BadGGUF

K_EQ_V = "attention_k_eq_v"  # spec flag: full-attention layers have no V projection
SLIDING, FULL = "sliding_attention", "full_attention"


def sliding_or_full(cfg: Config, n: int, arch: str) -> list[str]:
    """The config's `layer_types` (required: the converter writes the sliding-window pattern from
    it), each sliding or full attention, as Gemma 3n and Gemma 4 have them."""
    c.get(cfg, "layer_types")
    types = c.layer_types(cfg, n, [])
    if set(types) - {SLIDING, FULL}:
        raise BadConfig(f"{arch} layer_types must be {SLIDING} or {FULL}, got {sorted(set(types))}")
    return types


def per_layer_value(values: list[int]) -> GGUFValue:
    """One value where every layer agrees, else the per-layer array (`get_key_or_arr` reads both)."""
    return values[0] if len(set(values)) == 1 else values


def kv_reuse_layers(types: list[str], first_shared: int) -> list[int]:
    """For each layer from `first_shared` on, the last earlier non-shared layer of its kind
    (HF `Gemma4TextAttention.store_full_length_kv`, Gemma 3n's `kv_sharing_roles`; llama.cpp's
    `reuse` callback picks the same layers for the released configs); -1 for layers with their own
    cache. Gemma 3n reuses it."""
    out = []
    for il, t in enumerate(types):
        if il < first_shared:
            out.append(-1)
            continue
        src = [j for j in range(first_shared) if types[j] == t]
        if not src:
            raise BadConfig(f"KV-shared layer {il} ({t}) has no earlier {t} layer to reuse")
        out.append(src[-1])
    return out


def per_layer_inputs(b: Builder, spec: ModelSpec) -> None:
    """The per-layer embedding table {ple·n_layer, vocab}, the projection of the token embedding into
    it and its norm (Gemma 3n and 4 `load_arch_tensors`); nothing without per-layer embeddings."""
    ple = spec.n_embd_per_layer
    if ple:
        b.add("per_layer_token_embd.weight", (ple * spec.n_layer, spec.n_vocab), Role.EMBED)
        b.add("per_layer_model_proj.weight", (spec.n_embd, ple * spec.n_layer), Role.ATTN)
        b.add("per_layer_proj_norm.weight", (ple,), Role.NORM)


def per_layer_gate(b: Builder, spec: ModelSpec, p: str, il: int) -> None:
    """A block's gate into its slice of the per-layer input, the projection back and its norm."""
    ple, e = spec.n_embd_per_layer, spec.n_embd
    if ple:
        b.add(f"{p}.inp_gate.weight", (e, ple), Role.ATTN, il)
        b.add(f"{p}.proj.weight", (ple, e), Role.ATTN, il)
        b.add(f"{p}.post_norm.weight", (e,), Role.NORM, il)


class Gemma4(Family):
    arch = "gemma4"
    # gemma4_unified: the encoder-free 12B (Gemma4UnifiedModel, a Gemma4Model for its text part)
    model_types = ("gemma4", "gemma4_text", "gemma4_unified", "gemma4_unified_text")
    qk_norm = True

    # ---- config.json ---------------------------------------------------------------------------

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        types = sliding_or_full(cfg, n, self.arch)
        if FULL not in types:
            raise BadConfig("gemma4 needs a full_attention layer: rope_freqs is sized by global_head_dim")
        n_head = c.integer(cfg, "num_attention_heads")
        kv_swa = c.integer(cfg, "num_key_value_heads")
        # the converter writes num_global_key_value_heads for full layers whenever it is set
        kv_full = c.integer(cfg, "num_global_key_value_heads", default=kv_swa)
        hd_swa, hd_full = c.integer(cfg, "head_dim"), c.integer(cfg, "global_head_dim")
        window = c.integer(cfg, "sliding_window")
        n_shared_kv = c.integer(cfg, "num_kv_shared_layers")
        first_shared = n - n_shared_kv
        reuse = kv_reuse_layers(types, first_shared)
        n_ff = c.integer(cfg, "intermediate_size")
        double = bool(cfg.get("use_double_wide_mlp"))
        layers = []
        for il, t in enumerate(types):
            if t == SLIDING:
                attn = Attention(AttnKind.SWA, n_head, kv_swa, hd_swa, hd_swa, window, kv_reuse=reuse[il])
            else:
                attn = Attention(AttnKind.FULL, n_head, kv_full, hd_full, hd_full, kv_reuse=reuse[il])
            # use_double_wide_mlp: the KV-shared layers' MLP is twice as wide (converter n_ff array)
            width = 2 * n_ff if double and il >= first_shared else n_ff
            if cfg.get("enable_moe_block"):
                ffn = FFN(
                    FFNKind.MOE,
                    n_expert=c.integer(cfg, "num_experts"),
                    n_expert_used=c.integer(cfg, "top_k_experts"),
                    n_ff_exp=c.integer(cfg, "expert_intermediate_size", "moe_intermediate_size"),
                    n_shared=1,
                    n_ff_shexp=width,
                )
            else:
                ffn = FFN(FFNKind.DENSE, n_ff=width)
            layers.append(Layer(attn, ffn))
        ple = c.integer(cfg, "hidden_size_per_layer_input", default=0)
        vocab = c.integer(cfg, "vocab_size")
        if ple and c.integer(cfg, "vocab_size_per_layer_input", default=vocab) != vocab:
            raise BadConfig("gemma4: llama.cpp reads per_layer_token_embd with vocab_size rows")
        flags = frozenset({K_EQ_V} if cfg.get("attention_k_eq_v") else set())
        return c.base(cfg, self.arch, layers, flags=flags, n_embd_per_layer=ple)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """gemma4.cpp `load_arch_hparams` on top of the generic keys (the sliding pattern array, the
        `_swa` head sizes, per-layer KV heads): `shared_kv_layers` sets `n_layer_kv_from_start`, and a
        layer from there on reuses layer n_layer_kv_from_start − 2 (sliding) or − 1 (full), as the
        `reuse` callback of `llama_model::create_memory`; `embedding_length_per_layer_input` is read
        unconditionally; the dense MLP of an expert layer is its shared expert."""
        base = generic_spec(hp)
        first = hp.n_layer_all - hp.integer("attention.shared_kv_layers", 0)
        if first < base.n_layer and first < 2:
            raise BadGGUF(
                f"{hp.name}: KV sharing needs two layers with their own cache (llama.cpp asserts it)"
            )
        layers = []
        for il, la in enumerate(base.layers):
            attn, ffn = la.attn, la.ffn
            if il >= first:
                attn = dataclasses.replace(attn, kv_reuse=first - (2 if attn.kind is AttnKind.SWA else 1))
            if ffn.kind is FFNKind.MOE:
                up = hp.shape(f"blk.{il}.ffn_up.weight")
                if up is None:
                    raise BadGGUF(
                        f"{hp.name}: blk.{il} has experts but no ffn_up (the dense MLP beside them)"
                    )
                ffn = dataclasses.replace(ffn, n_shared=1, n_ff_shexp=up[1])
            layers.append(Layer(attn, ffn))
        full_without_v = any(
            la.attn.kind is AttnKind.FULL and not hp.has(f"blk.{il}.attn_v.weight")
            for il, la in enumerate(layers)
        )
        return dataclasses.replace(
            base,
            layers=tuple(layers),
            flags=frozenset({K_EQ_V} if full_without_v else set()),
            n_embd_per_layer=hp.integer("embedding_length_per_layer_input"),
        )

    # ---- tensors -------------------------------------------------------------------------------

    def head(self, b: Builder, spec: ModelSpec) -> None:
        """`generate_extra_tensors`: the full layers' proportional-rope frequency factors, then the
        embeddings; with per-layer embeddings their table {ple·n_layer, vocab}, the projection of the
        token embedding into it and its norm."""
        full = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.FULL)
        b.add("rope_freqs.weight", (full.head_dim_k // 2,), Role.ATTN)
        b.add("token_embd.weight", (spec.n_embd, spec.n_vocab), Role.EMBED)
        per_layer_inputs(b, spec)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        p, e, f = f"blk.{il}", spec.n_embd, layer.ffn
        b.add(f"{p}.attn_norm.weight", (e,), Role.NORM, il)
        self.attention(b, spec, p, il, layer.attn, Role.ATTN)
        b.add(f"{p}.post_attention_norm.weight", (e,), Role.NORM, il)
        # the dense MLP, in MoE layers beside the experts (llama.cpp's shared expert)
        width = f.n_ff if f.kind is FFNKind.DENSE else f.n_ff_shexp
        b.add(f"{p}.ffn_norm.weight", (e,), Role.NORM, il)
        b.add(f"{p}.ffn_gate.weight", (e, width), Role.DENSE_FFN, il)
        b.add(f"{p}.ffn_up.weight", (e, width), Role.DENSE_FFN, il)
        b.add(f"{p}.ffn_down.weight", (width, e), Role.DENSE_FFN, il)
        b.add(f"{p}.post_ffw_norm.weight", (e,), Role.NORM, il)
        if f.kind is FFNKind.MOE:
            x = f.n_expert
            b.add(f"{p}.ffn_gate_inp.weight", (e, x), Role.ROUTER, il)  # router.proj
            b.add(f"{p}.ffn_gate_inp.scale", (e,), Role.ROUTER, il)  # router.scale
            b.add(f"{p}.pre_ffw_norm_2.weight", (e,), Role.NORM, il)
            b.add(f"{p}.post_ffw_norm_1.weight", (e,), Role.NORM, il)
            b.add(f"{p}.post_ffw_norm_2.weight", (e,), Role.NORM, il)
            # experts.gate_up_proj maps straight to the fused stack (tensor_mapping FFN_GATE_UP_EXP)
            b.add(f"{p}.ffn_gate_up_exps.weight", (e, 2 * f.n_ff_exp, x), Role.EXPERT, il)
            b.add(f"{p}.ffn_down_exps.weight", (f.n_ff_exp, e, x), Role.EXPERT, il)
            b.add(f"{p}.ffn_down_exps.scale", (x,), Role.EXPERT, il)  # router.per_expert_scale
        per_layer_gate(b, spec, p, il)
        b.add(f"{p}.layer_output_scale.weight", (1,), Role.ATTN, il)  # the layer_scalar buffer

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        """Q/K/V/O with q/k norms (v_norm has no weight). KV-sharing layers keep their k_proj/k_norm
        (and v_proj): the checkpoint carries them and the converter writes them."""
        e = spec.n_embd
        b.add(f"{p}.attn_q.weight", (e, a.n_head * a.head_dim_k), role, il)
        b.add(f"{p}.attn_k.weight", (e, a.n_head_kv * a.head_dim_k), role, il)
        if not (spec.has(K_EQ_V) and a.kind is AttnKind.FULL):
            b.add(f"{p}.attn_v.weight", (e, a.n_head_kv * a.head_dim_v), role, il)
        b.add(f"{p}.attn_output.weight", (a.n_head * a.head_dim_v, e), role, il)
        b.add(f"{p}.attn_q_norm.weight", (a.head_dim_k,), Role.NORM, il)
        b.add(f"{p}.attn_k_norm.weight", (a.head_dim_k,), Role.NORM, il)

    # ---- GGUF metadata -------------------------------------------------------------------------

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """`Gemma4Model.set_gguf_parameters`: key/value lengths of the full layers plus `_swa` ones,
        per-layer KV head counts, the sliding-window pattern, shared KV layers, the per-layer input
        width (read unconditionally), and the dense MLP width as `feed_forward_length`."""
        kv = super().gguf_metadata(inv)
        kv.pop(".expert_shared_count", None)  # the parallel MLP is no declared shared expert
        kv.pop(".expert_shared_feed_forward_length", None)
        spec = inv.spec
        full = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.FULL)
        swa = next((la.attn for la in spec.layers if la.attn.kind is AttnKind.SWA), full)
        widths = [la.ffn.n_ff if la.ffn.kind is FFNKind.DENSE else la.ffn.n_ff_shexp for la in spec.layers]
        kv[".feed_forward_length"] = per_layer_value(widths)
        kv[".attention.head_count"] = per_layer_value([la.attn.n_head for la in spec.layers])
        kv[".attention.head_count_kv"] = per_layer_value([la.attn.n_head_kv for la in spec.layers])
        kv[".attention.key_length"] = full.head_dim_k
        kv[".attention.value_length"] = full.head_dim_v
        kv[".attention.key_length_swa"] = swa.head_dim_k
        kv[".attention.value_length_swa"] = swa.head_dim_v
        kv[".rope.dimension_count"] = self.rope_dims(spec, full)
        kv[".rope.dimension_count_swa"] = self.rope_dims(spec, swa)
        kv[".attention.sliding_window"] = swa.window
        kv[".attention.sliding_window_pattern"] = [la.attn.kind is AttnKind.SWA for la in spec.layers]
        kv[".attention.shared_kv_layers"] = sum(la.attn.kv_reuse >= 0 for la in spec.layers)
        kv[".embedding_length_per_layer_input"] = spec.n_embd_per_layer
        return kv
