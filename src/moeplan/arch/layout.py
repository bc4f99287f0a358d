"""Tensor layouts that several families share, as the pinned converter writes them.

Names and shapes are ggml order (ne0 = input features first). A family module calls these with its
own options; nothing here tests an architecture name.
"""

import dataclasses
from collections.abc import Set

from moeplan.arch.spec import FFN, Attention, FFNKind
from moeplan.arch.tensors import Builder, Role
from moeplan.quant.ggml import GGMLType


def mtp_or(role: Role, mtp: bool) -> Role:
    """Every tensor of an MTP block counts as MTP, whatever it does."""
    return Role.MTP if mtp else role


def gqa(
    b: Builder,
    p: str,
    il: int,
    a: Attention,
    e: int,
    role: Role,
    *,
    q_gate: bool = False,
    bias: bool = False,
    qk_norm: bool = False,
) -> None:
    """Q/K/V/O projections. `q_gate`: the output gate rides in attn_q (twice the rows)."""
    q_out = a.n_head * a.head_dim_k
    kv_k, kv_v = a.n_head_kv * a.head_dim_k, a.n_head_kv * a.head_dim_v
    b.add(f"{p}.attn_q.weight", (e, 2 * q_out if q_gate else q_out), role, il)
    b.add(f"{p}.attn_k.weight", (e, kv_k), role, il)
    b.add(f"{p}.attn_v.weight", (e, kv_v), role, il)
    b.add(f"{p}.attn_output.weight", (a.n_head * a.head_dim_v, e), role, il)
    if bias:
        b.add(f"{p}.attn_q.bias", (q_out,), role, il)
        b.add(f"{p}.attn_k.bias", (kv_k,), role, il)
        b.add(f"{p}.attn_v.bias", (kv_v,), role, il)
    if qk_norm:
        norm = Role.MTP if role is Role.MTP else Role.NORM
        b.add(f"{p}.attn_q_norm.weight", (a.head_dim_k,), norm, il)
        b.add(f"{p}.attn_k_norm.weight", (a.head_dim_k,), norm, il)


def mla(b: Builder, p: str, il: int, a: Attention, e: int, role: Role) -> None:
    """DeepSeek MLA: `kv_b_proj` split into attn_k_b {nope, kv_lora, n_head} and attn_v_b
    {kv_lora, v_head, n_head}; attn_kv_b is not written."""
    qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
    norm = Role.MTP if role is Role.MTP else Role.NORM
    if a.q_lora_rank:
        b.add(f"{p}.attn_q_a.weight", (e, a.q_lora_rank), role, il)
        b.add(f"{p}.attn_q_a_norm.weight", (a.q_lora_rank,), norm, il)
        b.add(f"{p}.attn_q_b.weight", (a.q_lora_rank, a.n_head * qk_head), role, il)
    else:
        b.add(f"{p}.attn_q.weight", (e, a.n_head * qk_head), role, il)
    b.add(f"{p}.attn_kv_a_mqa.weight", (e, a.kv_lora_rank + a.qk_rope_head_dim), role, il)
    b.add(f"{p}.attn_kv_a_norm.weight", (a.kv_lora_rank,), norm, il)
    b.add(f"{p}.attn_k_b.weight", (a.qk_nope_head_dim, a.kv_lora_rank, a.n_head), role, il)
    b.add(f"{p}.attn_v_b.weight", (a.kv_lora_rank, a.mla_v_head_dim, a.n_head), role, il)
    b.add(f"{p}.attn_output.weight", (a.n_head * a.mla_v_head_dim, e), role, il)


def dsa_indexer(b: Builder, p: str, il: int, a: Attention, e: int, role: Role) -> None:
    """The DSA lightning indexer (`self_attn.indexer.*`): wq_b from the q latent, one key head `wk`
    with a LayerNorm (weight + bias), and `weights_proj`, which the converter forces to F32
    (`ModelBase.prepare_tensors`, INDEXER_PROJ). Nothing when the layer has no indexer."""
    if not a.indexer_heads:
        return
    norm = Role.MTP if role is Role.MTP else Role.NORM
    hd = a.indexer_head_dim
    b.add(f"{p}.indexer.k_norm.weight", (hd,), norm, il)
    b.add(f"{p}.indexer.k_norm.bias", (hd,), norm, il)
    b.add(f"{p}.indexer.proj.weight", (e, a.indexer_heads), role, il, GGMLType.F32)
    b.add(f"{p}.indexer.attn_k.weight", (e, hd), role, il)
    b.add(f"{p}.indexer.attn_q_b.weight", (a.q_lora_rank, a.indexer_heads * hd), role, il)


def gated_deltanet(b: Builder, p: str, il: int, a: Attention, e: int, role: Role, *, fused_ba: bool) -> None:
    """Qwen3-Next / Qwen3.5 linear attention (`in_proj_qkvz` split into attn_qkv + attn_gate).
    `fused_ba`: beta and alpha in one `ssm_ba` projection (Qwen3-Next) instead of two."""
    key_dim = a.linear_k_heads * a.linear_k_head_dim
    value_dim = a.linear_v_heads * a.linear_v_head_dim
    conv_dim = 2 * key_dim + value_dim
    b.add(f"{p}.attn_qkv.weight", (e, conv_dim), role, il)
    b.add(f"{p}.attn_gate.weight", (e, value_dim), role, il)
    b.add(f"{p}.ssm_conv1d.weight", (a.conv_kernel, conv_dim), role, il)
    b.add(f"{p}.ssm_dt.bias", (a.linear_v_heads,), role, il)
    b.add(f"{p}.ssm_a", (a.linear_v_heads,), role, il)
    if fused_ba:
        b.add(f"{p}.ssm_ba.weight", (e, 2 * a.linear_v_heads), role, il)
    else:
        b.add(f"{p}.ssm_beta.weight", (e, a.linear_v_heads), role, il)
        b.add(f"{p}.ssm_alpha.weight", (e, a.linear_v_heads), role, il)
    b.add(f"{p}.ssm_norm.weight", (a.linear_v_head_dim,), Role.MTP if role is Role.MTP else Role.NORM, il)
    b.add(f"{p}.ssm_out.weight", (value_dim, e), role, il)


def projection_qk_norms(b: Builder, p: str, il: int, a: Attention) -> None:
    """q/k RMS norms over the whole projection (n_head·head_dim and n_head_kv·head_dim) instead of
    one head (OLMoE, OLMo 2/3: HF's q_norm / k_norm)."""
    b.add(f"{p}.attn_q_norm.weight", (a.n_head * a.head_dim_k,), Role.NORM, il)
    b.add(f"{p}.attn_k_norm.weight", (a.n_head_kv * a.head_dim_k,), Role.NORM, il)


def rope_factors(b: Builder, half: int) -> None:
    """LongRoPE's `long_factor` / `short_factor`, written once as F32 {rope_dims/2} tensors
    (conversion/phi.py Phi3MiniModel.generate_extra_tensors); every layer's loader reuses them."""
    b.add("rope_factors_long.weight", (half,), Role.ATTN)
    b.add("rope_factors_short.weight", (half,), Role.ATTN)


def dense_ffn(b: Builder, p: str, il: int, f: FFN, e: int, role: Role, *, gated: bool = True) -> None:
    if gated:
        b.add(f"{p}.ffn_gate.weight", (e, f.n_ff), role, il)
    b.add(f"{p}.ffn_up.weight", (e, f.n_ff), role, il)
    b.add(f"{p}.ffn_down.weight", (f.n_ff, e), role, il)


def fused_gate_up(b: Builder, p: str, il: int, e: int, n_ff: int) -> None:
    """A dense FFN whose checkpoint fuses gate and up (`gate_up_proj`): it stays one ffn_up
    {n_embd, 2·n_ff} that the graph splits (LLM_FFN_SWIGLU without a gate tensor)."""
    b.add(f"{p}.ffn_up.weight", (e, 2 * n_ff), Role.DENSE_FFN, il)
    b.add(f"{p}.ffn_down.weight", (n_ff, e), Role.DENSE_FFN, il)


def router(b: Builder, p: str, il: int, f: FFN, e: int, role: Role, *, probs_bias: bool = False) -> None:
    """The expert router; `probs_bias`: DeepSeek-style selection bias `exp_probs_b` (F32)."""
    b.add(f"{p}.ffn_gate_inp.weight", (e, f.n_expert), role, il)
    if probs_bias:
        b.add(f"{p}.exp_probs_b.bias", (f.n_expert,), role, il)


def expert_stacks(
    b: Builder, p: str, il: int, f: FFN, e: int, role: Role, native: GGMLType | None = None
) -> None:
    """Routed experts as separate gate/up/down stacks (the converter fuses them only on request)."""
    x = f.n_expert
    b.add(f"{p}.ffn_gate_exps.weight", (e, f.n_ff_exp, x), role, il, native)
    b.add(f"{p}.ffn_up_exps.weight", (e, f.n_ff_exp, x), role, il, native)
    b.add(f"{p}.ffn_down_exps.weight", (f.n_ff_exp, e, x), role, il, native)


def shared_expert(b: Builder, p: str, il: int, f: FFN, e: int, role: Role, *, gate_inp: bool = False) -> None:
    """The shared expert(s) as one FFN of width n_ff_shexp; `gate_inp`: its sigmoid gate {E, 1}."""
    if gate_inp:
        b.add(f"{p}.ffn_gate_inp_shexp.weight", (e, 1), role, il)  # written 2-D {E, 1}
    b.add(f"{p}.ffn_gate_shexp.weight", (e, f.n_ff_shexp), role, il)
    b.add(f"{p}.ffn_up_shexp.weight", (e, f.n_ff_shexp), role, il)
    b.add(f"{p}.ffn_down_shexp.weight", (f.n_ff_shexp, e), role, il)


def moe_ffn(
    b: Builder,
    p: str,
    il: int,
    f: FFN,
    e: int,
    mtp: bool,
    *,
    probs_bias: bool = False,
    shexp_gate: bool = False,
) -> None:
    """Router, routed expert stacks and (if any) the shared expert: the common MoE FFN."""
    router(b, p, il, f, e, mtp_or(Role.ROUTER, mtp), probs_bias=probs_bias)
    expert_stacks(b, p, il, f, e, mtp_or(Role.EXPERT, mtp))
    if f.n_ff_shexp:
        shared_expert(b, p, il, f, e, mtp_or(Role.SHARED_EXPERT, mtp), gate_inp=shexp_gate)


def ffn(b: Builder, p: str, il: int, f: FFN, e: int, mtp: bool, **moe_options: bool) -> None:
    """Dense or MoE FFN by the layer's kind."""
    if f.kind is FFNKind.DENSE:
        dense_ffn(b, p, il, f, e, mtp_or(Role.DENSE_FFN, mtp))
    else:
        moe_ffn(b, p, il, f, e, mtp, **moe_options)


def nextn(b: Builder, p: str, il: int, e: int, n_vocab: int, *, own_head: bool = False) -> None:
    """What an MTP (NextN) block adds to a decoder block; `own_head`: DeepSeek's checkpoint gives its
    MTP module its own embedding and head copies (the GGUF converter drops them)."""
    b.add(f"{p}.nextn.eh_proj.weight", (2 * e, e), Role.MTP, il)
    b.add(f"{p}.nextn.enorm.weight", (e,), Role.MTP, il)
    b.add(f"{p}.nextn.hnorm.weight", (e,), Role.MTP, il)
    b.add(f"{p}.nextn.shared_head_norm.weight", (e,), Role.MTP, il)
    if own_head:
        b.add(f"{p}.nextn.embed_tokens.weight", (e, n_vocab), Role.MTP, il)
        b.add(f"{p}.nextn.shared_head_head.weight", (e, n_vocab), Role.MTP, il)


def keep_loaded_without_mtp(b: Builder, start: int, skippable: Set[str]) -> None:
    """Mark the MTP-block tensors added since `start` that the loader creates without TENSOR_SKIP
    (only TENSOR_NOT_REQUIRED): llama.cpp loads them even when no MTP draft runs. `skippable`: the
    names after `blk.N.` it creates with the skipping flags."""
    for i in range(start, len(b.out)):
        if b.out[i].name.split(".", 2)[2] not in skippable:
            b.out[i] = dataclasses.replace(b.out[i], loaded_without_mtp=True)
