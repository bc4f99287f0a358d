"""Gemma 3n (`gemma3n`, E2B / E4B): Gemma 4's per-layer embeddings and KV sharing on a Gemma-3-style
block (4 sliding : 1 full layers, q/k norms, sandwich norms, tied embeddings), plus AltUp (four
n_embd-wide residual streams mixed by per-layer predict/correct coefficients) and LAuReL (a rank-64
learned residual beside attention).

llama.cpp fixes in code what the config states (llama_hparams defaults, gemma3n.cpp
`load_arch_hparams`): 4 AltUp streams, the active one 0, LAuReL rank 64, per-layer inputs 256 wide,
and the first KV-sharing layer at 20 (`n_layer_kv_from_start`), reading layer 18's (sliding) or
19's (full) cache. A config that differs is run differently or not at all, so it is refused. The
activation sparsity of the first 10 layers is fixed in the graph too and changes no memory.

Facts from the pinned llama.cpp: conversion/gemma.py `Gemma3NModel` (+ `Gemma3Model`, `TextModel`:
both embedding tables padded to vocab_size, the three AltUp projections stacked into one tensor, the
vision and audio towers dropped), src/models/gemma3n.cpp `load_arch_tensors`, src/llama-arch.cpp
(altup_proj / altup_unembd_proj are output-layer tensors).
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.gemma4 import (
    SLIDING,
    kv_reuse_layers,
    per_layer_gate,
    per_layer_inputs,
    per_layer_value,
    sliding_or_full,
)
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, swa_pattern
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, BadGGUF

N_ALTUP = 4  # llama_hparams::n_altup (the converter asserts altup_num_inputs == 4)
LAUREL_RANK = 64  # llama_hparams::laurel_rank
N_EMBD_ALTUP = 256  # llama_hparams::n_embd_altup: the per-layer input width
FIRST_SHARED = 20  # gemma3n.cpp: hparams.n_layer_kv_from_start = 20
SWA_PERIOD = 5  # gemma3n.cpp: load_swa_pattern(ml, 5) without a pattern array
# config keys llama.cpp does not read but fixes at these values
FIXED = {
    "altup_num_inputs": N_ALTUP,
    "altup_active_idx": 0,
    "laurel_rank": LAUREL_RANK,
    "hidden_size_per_layer_input": N_EMBD_ALTUP,
}


def _llamacpp_reuse(sliding: list[bool]) -> list[int]:
    """llama_model::create_memory's `reuse` callback: from layer 20 on, layer 18 (sliding) or 19."""
    return [-1 if il < FIRST_SHARED else FIRST_SHARED - (2 if s else 1) for il, s in enumerate(sliding)]


def _ffn_widths(cfg: Config, n: int) -> list[int]:
    """`intermediate_size`: one width for every layer or one per layer (Gemma3nTextConfig takes both;
    the converter writes either as feed_forward_length)."""
    v = c.get(cfg, "intermediate_size")
    widths = v if isinstance(v, list) else [c.integer(cfg, "intermediate_size")] * n
    if len(widths) != n or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise BadConfig(f"gemma3n intermediate_size must be one positive integer or {n} of them, got {v!r}")
    return widths


class Gemma3n(Family):
    arch = "gemma3n"
    model_types = ("gemma3n", "gemma3n_text")
    qk_norm = True

    # ---- config.json ---------------------------------------------------------------------------

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        types = sliding_or_full(cfg, n, self.arch)
        for key, fixed in FIXED.items():
            if c.integer(cfg, key, default=fixed) != fixed:
                raise BadConfig(
                    f"gemma3n: llama.cpp fixes {key} at {fixed} (llama_hparams), got {cfg[key]!r}"
                )
        first_shared = n - c.integer(cfg, "num_kv_shared_layers")
        reuse = _llamacpp_reuse([t == SLIDING for t in types])
        if first_shared != min(n, FIRST_SHARED) or reuse != kv_reuse_layers(types, first_shared):
            raise BadConfig(
                f"gemma3n: llama.cpp shares KV from layer {FIRST_SHARED} on, reading layers 18 (sliding) and "
                f"19 (full); num_kv_shared_layers {n - first_shared} of {n} with these layer_types differs"
            )
        vocab = c.integer(cfg, "vocab_size")
        if c.integer(cfg, "vocab_size_per_layer_input", default=vocab) > vocab:
            raise BadConfig("gemma3n: the converter pads per_layer_token_embd to vocab_size, not beyond it")
        n_head, n_kv, hd = (
            c.integer(cfg, "num_attention_heads"),
            c.integer(cfg, "num_key_value_heads"),
            c.integer(cfg, "head_dim"),
        )
        window = c.integer(cfg, "sliding_window")
        layers = [
            Layer(
                Attention(
                    AttnKind.SWA if t == SLIDING else AttnKind.FULL,
                    n_head,
                    n_kv,
                    hd,
                    hd,
                    window if t == SLIDING else 0,
                    kv_reuse=reuse[il],
                ),
                FFN(FFNKind.DENSE, n_ff=width),
            )
            for il, (t, width) in enumerate(zip(types, _ffn_widths(cfg, n), strict=True))
        ]
        softcap = c.number(cfg, "final_logit_softcapping")
        spec = c.base(
            cfg,
            self.arch,
            layers,
            n_embd_per_layer=N_EMBD_ALTUP,
            gguf_scalars=((".final_logit_softcapping", softcap),),
        )
        # Gemma3nTextConfig ties the head by default; llama.cpp duplicates token_embd for it
        return dataclasses.replace(spec, tied_embeddings=bool(cfg.get("tie_word_embeddings", True)))

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """gemma3n.cpp `load_arch_hparams` on the generic keys: the sliding pattern (array, else 4:1),
        KV shared from layer 20 whatever `shared_kv_layers` says, per-layer inputs 256 wide."""
        base = generic_spec(hp, swa=lambda h, n: swa_pattern(h, n, SWA_PERIOD))
        if hp.shape("per_layer_proj_norm.weight") != (N_EMBD_ALTUP,):
            raise BadGGUF(
                f"{hp.name}: gemma3n needs per_layer_proj_norm of {N_EMBD_ALTUP} (llama.cpp's fixed width)"
            )
        reuse = _llamacpp_reuse([la.attn.kind is AttnKind.SWA for la in base.layers])
        layers = tuple(
            Layer(dataclasses.replace(la.attn, kv_reuse=r), la.ffn)
            for la, r in zip(base.layers, reuse, strict=True)
        )
        return dataclasses.replace(base, layers=layers, n_embd_per_layer=N_EMBD_ALTUP)

    # ---- tensors -------------------------------------------------------------------------------

    def head(self, b: Builder, spec: ModelSpec) -> None:
        """The token embedding, the AltUp projections into and out of the three extra streams
        (the checkpoint's three matrices stacked, {n_embd, n_embd, 3}), the per-layer inputs."""
        e = spec.n_embd
        b.add("token_embd.weight", (e, spec.n_vocab), Role.EMBED)
        b.add("altup_proj.weight", (e, e, N_ALTUP - 1), Role.ATTN)
        b.add("altup_unembd_proj.weight", (e, e, N_ALTUP - 1), Role.ATTN)
        per_layer_inputs(b, spec)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        p, e = f"blk.{il}", spec.n_embd
        b.add(f"{p}.attn_norm.weight", (e,), Role.NORM, il)
        self.attention(b, spec, p, il, layer.attn, Role.ATTN)
        b.add(f"{p}.post_attention_norm.weight", (e,), Role.NORM, il)
        b.add(f"{p}.ffn_norm.weight", (e,), Role.NORM, il)
        self.ffn(b, spec, p, il, layer, mtp)
        b.add(f"{p}.post_ffw_norm.weight", (e,), Role.NORM, il)
        per_layer_gate(b, spec, p, il)
        b.add(f"{p}.altup_correct_coef.weight", (N_ALTUP, N_ALTUP), Role.ATTN, il)
        b.add(f"{p}.altup_correct_scale.weight", (e,), Role.NORM, il)
        b.add(f"{p}.altup_predict_coef.weight", (N_ALTUP, N_ALTUP * N_ALTUP), Role.ATTN, il)
        b.add(f"{p}.altup_router.weight", (e, N_ALTUP), Role.ATTN, il)
        b.add(f"{p}.altup_router_norm.weight", (e,), Role.NORM, il)
        b.add(f"{p}.laurel_l.weight", (e, LAUREL_RANK), Role.ATTN, il)
        b.add(f"{p}.laurel_r.weight", (LAUREL_RANK, e), Role.ATTN, il)
        b.add(f"{p}.laurel_post_norm.weight", (e,), Role.NORM, il)

    # ---- GGUF metadata -------------------------------------------------------------------------

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """`Gemma3NModel.set_gguf_parameters`: the Gemma 3 keys (window, softcap), the per-layer FFN
        widths, the sliding-window pattern from layer_types, shared KV layers and the per-layer input
        width (both written, neither read: llama.cpp fixes them)."""
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        kv[".feed_forward_length"] = per_layer_value([la.ffn.n_ff for la in spec.layers])
        kv[".attention.sliding_window_pattern"] = [la.attn.kind is AttnKind.SWA for la in spec.layers]
        kv[".attention.shared_kv_layers"] = sum(la.attn.kv_reuse >= 0 for la in spec.layers)
        kv[".embedding_length_per_layer_input"] = spec.n_embd_per_layer
        kv.update(dict(spec.gguf_scalars))
        return kv
