"""Ling 3.0 (BailingMoeV3: Ling-3.0-flash): Kimi Delta Attention (KDA) linear-attention layers with
one gated MLA layer closing each group of `layer_group_size`, leading dense layers, then
sigmoid-routed experts with a selection bias plus a shared expert, and one MLA + MoE MTP block
(conversion/bailingmoe3.py `BailingMoeV3Model`, src/models/bailingmoe3.cpp of build 11434).

Facts of the pinned llama.cpp that shape everything here:
- `is_full_attention(bid)`: MLA when (bid + 1) % layer_group_size == 0, on a trailing partial group
  and on every MTP block; the converter writes `head_count_kv` per block, 1 on MLA (served as MQA
  over the compressed latent) and 0 on KDA (`is_recr` = n_head_kv == 0).
- The converter refuses what the loader has no tensors for: KDA LoRA projections (`no_kda_lora`
  must be true: f_proj and g_proj are full rank, `ssm_f_a`/`ssm_g_a` {n_embd, n_head·head_dim}),
  non-safe KDA gates, and MLA gates other than head-wise (`attn_gate` {n_embd, n_head}).
- KDA runs on the model's attention heads with `head_dim` each (`kda.head_dim`); its conv and
  recurrent state are Kimi's (`llama_hparams::n_embd_r/n_embd_s`).
- `supports_mtp_export`: the NextN blocks are kept unless `--no-mtp`; the loader creates them
  TENSOR_SKIP unless MTP is loaded, and reads the MTP head norm as `layer_output_norm`. Its
  hybrid memory has no layer filter, so the trunk's KV cache also holds the MTP block's MLA
  (`Family.mtp_in_trunk_cache`; seen in the dry run: 8 cached layers of a file with 7 + 1).
Ling 2.6 (BailingMoeV2_5ForCausalLM, Lightning attention + MLA) has no converter or loader in the
pinned build and is refused by its architecture name.
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.families.bailingmoe2 import bailing_moe
from moeplan.arch.families.deepseek2 import mla_attention, mla_metadata
from moeplan.arch.families.kimi import kda_layer, kda_mla_spec_from_gguf, kda_state
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.from_gguf import GGUFHParams
from moeplan.arch.spec import Attention, AttnKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, UnsupportedArchitecture

ARCHITECTURES = ("BailingMoeV3ForCausalLM", "BailingMoeV3VLForConditionalGeneration")

# the `{arch}` keys that come from config.json values and reach only the GGUF metadata
SCALAR_KEYS = {".expert_weights_scale": "routed_scaling_factor", ".kda.gate_lower_bound": "kda_lower_bound"}


def is_full_attention(il: int, n_layer: int, group: int) -> bool:
    """`BailingMoeV3Model.is_full_attention`: the last layer of each group, every layer of a trailing
    partial group, and every block past the decoder (MTP)."""
    return il >= n_layer or (il + 1) % group == 0 or il >= n_layer // group * group


def kda_attention(cfg: Config) -> Attention:
    """A KDA layer on the model's `num_attention_heads` heads of `head_dim` (the converter writes
    `kda.head_dim` = head_dim; the loader sizes q/k/v n_head × head_dim)."""
    return kda_layer(
        c.integer(cfg, "num_attention_heads"),
        c.integer(cfg, "head_dim"),
        c.integer(cfg, "short_conv_kernel_size"),
    )


def check_convertible(cfg: Config) -> None:
    """Refuse what `BailingMoeV3Model.set_gguf_parameters` refuses (and Ling 2.6's architecture)."""
    arches = cfg.get("architectures") or list(ARCHITECTURES[:1])
    if not any(a in ARCHITECTURES for a in arches):
        raise UnsupportedArchitecture(
            f"{arches[0]} is not convertible by the pinned llama.cpp (bailingmoe3 reads "
            "BailingMoeV3ForCausalLM; Ling 2.6's BailingMoeV2_5 Lightning attention has no llama.cpp loader)"
        )
    if cfg.get("no_kda_lora") is not True:
        raise BadConfig(
            "llama.cpp's bailingmoe3 has no KDA LoRA projections: config.json needs no_kda_lora true"
        )
    if cfg.get("kda_safe_gate") is not True:
        raise BadConfig(
            "llama.cpp's bailingmoe3 supports only safe KDA gates: config.json needs kda_safe_gate true"
        )
    if cfg.get("gated_attention_proj_granularity_type") != "head_wise":
        raise BadConfig(
            "llama.cpp's bailingmoe3 needs head-wise MLA gates: config.json needs "
            "gated_attention_proj_granularity_type head_wise"
        )


def kda_full_rank(b: Builder, p: str, il: int, a: Attention, e: int, role: Role) -> None:
    """bailingmoe3's KDA as `load_arch_tensors` sizes it: separate q/k/v, one causal conv per q/k/v
    as 4-D {d_conv, 1, d_inner, 1} (F32), full-rank decay `ssm_f_a` and output gate `ssm_g_a`
    {n_embd, d_inner}, beta, A as {1, n_head} (SSM_A_NOSCAN: the converter writes exp(A_log) as a
    column), dt bias, the gated output norm of one head."""
    h, hd = a.linear_k_heads, a.linear_k_head_dim
    d = h * hd
    b.add(f"{p}.attn_q.weight", (e, d), role, il)
    b.add(f"{p}.attn_k.weight", (e, d), role, il)
    b.add(f"{p}.attn_v.weight", (e, d), role, il)
    for x in ("q", "k", "v"):
        b.add(f"{p}.ssm_conv1d_{x}.weight", (a.conv_kernel, 1, d, 1), role, il)
    b.add(f"{p}.ssm_f_a.weight", (e, d), role, il)
    b.add(f"{p}.ssm_beta.weight", (e, h), role, il)
    b.add(f"{p}.ssm_a", (1, h), role, il)
    b.add(f"{p}.ssm_dt.bias", (d,), role, il)
    b.add(f"{p}.ssm_g_a.weight", (e, d), role, il)
    b.add(f"{p}.ssm_norm.weight", (hd,), Role.MTP if role is Role.MTP else Role.NORM, il)
    b.add(f"{p}.attn_output.weight", (d, e), role, il)


class BailingMoe3(Family):
    arch = "bailingmoe3"
    model_types = ("bailing_hybrid",)
    mtp_kept = True
    mtp_in_trunk_cache = True  # its llama_memory_hybrid gets no filter_attn (create_memory)
    probs_bias = True  # mlp.gate.expert_bias → exp_probs_b

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        check_convertible(cfg)
        n = c.integer(cfg, "num_hidden_layers")
        group = c.integer(cfg, "layer_group_size")
        if group == 0:
            raise BadConfig("config.json field 'layer_group_size' must be a positive integer, got 0")
        mla, linear = mla_attention(cfg), kda_attention(cfg)
        moe = bailing_moe(cfg)
        k_dense = c.integer(cfg, "first_k_dense_replace")
        layers = [
            Layer(mla if is_full_attention(il, n, group) else linear, c.dense(cfg) if il < k_dense else moe)
            for il in range(n)
        ]
        scalars = tuple((key, c.number(cfg, field)) for key, field in SCALAR_KEYS.items())
        return c.base(cfg, self.arch, layers, mtp_layers=c.mtp(cfg, Layer(mla, moe)), gguf_scalars=scalars)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        spec = kda_mla_spec_from_gguf(hp)
        scalars = tuple(
            (key, float(v)) for key in SCALAR_KEYS if isinstance(v := hp.value(key[1:]), int | float)
        )
        return dataclasses.replace(spec, gguf_scalars=scalars)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        """A decoder block; an MTP block adds the NextN projections and its head norm, which the
        loader reads as `layer_output_norm` (not nextn.shared_head_norm)."""
        if not mtp:
            super().block(b, spec, il, layer, mtp, own_head)
            return
        p, e = f"blk.{il}", spec.n_embd
        b.add(f"{p}.attn_norm.weight", (e,), Role.MTP, il)
        self.attention(b, spec, p, il, layer.attn, Role.MTP)
        self.ffn_norms(b, p, il, e, Role.MTP)
        self.ffn(b, spec, p, il, layer, mtp)
        b.add(f"{p}.nextn.eh_proj.weight", (2 * e, e), Role.MTP, il)
        b.add(f"{p}.nextn.enorm.weight", (e,), Role.MTP, il)
        b.add(f"{p}.nextn.hnorm.weight", (e,), Role.MTP, il)
        b.add(f"{p}.layer_output_norm.weight", (e,), Role.MTP, il)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        """MLA (no q/k norms) plus its head-wise sigmoid gate `attn_gate` {n_embd, n_head}; KDA."""
        if a.kind is AttnKind.LINEAR:
            kda_full_rank(b, p, il, a, spec.n_embd, Role.MTP if role is Role.MTP else Role.SSM)
            return
        layout.mla(b, p, il, a, spec.n_embd, role)
        b.add(f"{p}.attn_gate.weight", (spec.n_embd, a.n_head), role, il)

    def recurrent_state(self, a: Attention) -> tuple[int, int]:
        return kda_state(a)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        mla = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.MLA)
        kda = next(la.attn for la in spec.layers if la.attn.kind is AttnKind.LINEAR)
        blocks = spec.layers + spec.mtp_layers[: inv.mtp_kept]
        kv[".attention.head_count_kv"] = [la.attn.n_head_kv for la in blocks]
        kv[".attention.value_length"] = kda.linear_k_head_dim  # TextModel writes config head_dim
        mla_metadata(kv, mla, zero_q_lora=False)
        kv[".ssm.conv_kernel"] = kda.conv_kernel
        kv[".kda.head_dim"] = kda.linear_k_head_dim
        kv[".kda.safe_gate"] = True
        moe = spec.moe_ffn
        if moe is not None:
            kv[".leading_dense_block_count"] = first_moe_layer(spec)
            kv[".expert_shared_count"] = moe.n_shared
            kv[".expert_gating_func"] = 2  # sigmoid (score_function)
            kv[".expert_weights_norm"] = True
        kv.update(dict(spec.gguf_scalars))
        return kv
