"""MiniMax-M3: GQA on every layer with per-head q/k norms and partial rope, DeepSeek-style leading
dense layers then routed + shared experts (sigmoid router with selection bias), and MiniMax sparse
attention (MSA) on the MoE layers (conversion/minimax.py `MiniMaxM3Model`, src/models/minimax-m3.cpp).

Facts of the pinned llama.cpp (build 11434):
- The leading dense layers are the leading zeros of `moe_layer_freq` (the converter writes their
  count as `leading_dense_block_count`); they have no indexer.
- Each MoE layer carries the MSA indexer: `indexer.q_proj` {E, heads·dim}, `indexer.k_proj` {E, dim}
  and their norms, all F32 (`MiniMaxM3Model.tensor_force_quant`). The graph needs one indexer head
  per GQA group (indexer heads = KV heads).
- The cache is `llama_kv_cache_msa`: the main K/V cache on every layer and an indexer cache on the
  MoE layers built from the model's hparams with one head of `indexer.key_length`, so it keeps V
  (head_dim_v, one head) beside the indexer keys (`Attention.indexer_v_dim`).
- No MTP block: gguf-py's MINIMAXM3 tensor table has no NextN tensors (the released weights have none).
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue, first_moe_layer
from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.spec import Attention, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig
from moeplan.quant.ggml import GGMLType

# MSA block selection (`attention.indexer.*` keys) ← sparse_attention_config, carried as spec flags
_MSA_KEYS = {
    "top_k": "sparse_topk_blocks",
    "block_size": "sparse_block_size",
    "local_blocks": "sparse_local_block",
}


def _flag_int(spec: ModelSpec, key: str) -> int:
    return next(int(f.split(":", 1)[1]) for f in spec.flags if f.startswith(key + ":"))


def leading_dense(cfg: Config) -> int:
    """The converter's count: leading zeros of `moe_layer_freq` (a list), else first_k_dense_replace."""
    freq = cfg.get("moe_layer_freq")
    if isinstance(freq, list):
        n = 0
        for v in freq:
            if v != 0:
                break
            n += 1
        return n
    return c.integer(cfg, "first_k_dense_replace", default=0)


def with_msa_indexer(a: Attention, cfg: Config) -> Attention:
    sac = cfg.get("sparse_attention_config")
    if not isinstance(sac, dict) or not sac.get("use_sparse_attention", True):
        raise BadConfig(
            "llama.cpp's minimax-m3 loader needs sparse_attention_config (MSA indexer on MoE layers)"
        )
    heads = c.integer(sac, "sparse_num_index_heads")
    if heads != a.n_head_kv:
        raise BadConfig(
            f"MSA needs one indexer head per KV head: {heads} indexer heads, {a.n_head_kv} KV heads"
        )
    return dataclasses.replace(
        a,
        indexer_heads=heads,
        indexer_head_dim=c.integer(sac, "sparse_index_dim"),
        indexer_v_dim=a.head_dim_v,
    )


class MiniMaxM3(Family):
    arch = "minimax-m3"
    model_types = ("minimax_m3",)
    qk_norm = True  # per-head q/k RMS norms {head_dim}
    probs_bias = True  # e_score_correction_bias → exp_probs_b
    rope_fraction = 0.5  # rotary_dim 64 of head_dim 128 (checked against the config)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        n = c.integer(cfg, "num_hidden_layers")
        attn = c.gqa(cfg)
        c.check_rotary_dim(cfg, attn, self.rope_fraction)
        n_ff_exp = c.integer(cfg, "intermediate_size")  # MiniMaxM2Model: expert_feed_forward_length
        n_shared = c.integer(cfg, "n_shared_experts", default=0)
        if c.integer(cfg, "shared_intermediate_size", default=n_ff_exp * n_shared) != n_ff_exp * n_shared:
            raise BadConfig("llama.cpp sizes minimax-m3's shared expert intermediate_size x n_shared_experts")
        experts = ("num_local_experts", "num_experts")
        moe = c.routed_and_shared_moe(cfg, experts, "n_shared_experts", width="intermediate_size")
        dense = c.dense(cfg, "dense_intermediate_size")
        k_dense = leading_dense(cfg)
        sparse = with_msa_indexer(attn, cfg)
        layers = [Layer(attn, dense) if il < k_dense else Layer(sparse, moe) for il in range(n)]
        scalars = (
            (".expert_weights_scale", float(cfg.get("routed_scaling_factor", 1.0))),
            (".rope.freq_base", float(cfg.get("rope_theta", 10000.0))),
        )
        sac = cfg["sparse_attention_config"]
        msa = {f"{k}:{c.integer(sac, key)}" for k, key in _MSA_KEYS.items()}
        return c.base(cfg, self.arch, layers, gguf_scalars=scalars, flags=frozenset(msa))

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """The generic reading, plus the indexer (and its cache) on the layers past the leading
        dense ones (`load_arch_tensors`, `llama_model::create_memory` filter_idx)."""
        spec = generic_spec(hp)
        msa = frozenset(f"{key}:{hp.integer('attention.indexer.' + key)}" for key in _MSA_KEYS)
        n_dense = hp.integer("leading_dense_block_count", 0)
        heads, dim = hp.integer("attention.indexer.head_count"), hp.integer("attention.indexer.key_length")

        def one(il: int, la: Layer) -> Layer:
            if il < n_dense:
                return la
            a = dataclasses.replace(
                la.attn, indexer_heads=heads, indexer_head_dim=dim, indexer_v_dim=la.attn.head_dim_v
            )
            return dataclasses.replace(la, attn=a)

        layers = tuple(one(il, la) for il, la in enumerate(spec.layers))
        return dataclasses.replace(spec, layers=layers, flags=spec.flags | msa)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        super().attention(b, spec, p, il, a, role)
        if a.indexer_heads:
            e, d = spec.n_embd, a.indexer_head_dim
            f32 = GGMLType.F32  # every `.indexer.` tensor (MiniMaxM3Model.tensor_force_quant)
            b.add(f"{p}.indexer.q_proj.weight", (e, a.indexer_heads * d), role, il, f32)
            b.add(f"{p}.indexer.k_proj.weight", (e, d), role, il, f32)
            b.add(f"{p}.indexer.q_norm.weight", (d,), Role.NORM, il)
            b.add(f"{p}.indexer.k_norm.weight", (d,), Role.NORM, il)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        layout.ffn(b, p, il, layer.ffn, spec.n_embd, mtp, probs_bias=True)

    def attention_activations(
        self,
        a: Attention,
        cells: int,
        n_ubatch: int,
        n_stream: int,
        n_seq: int,
        flash_attn: bool,
        unified: bool,
    ) -> tuple[int, int]:
        """MSA's batch path (`llama_model_minimax_m3::graph`; on with flash attention unless a
        unified cache serves several sequences): the F32 copy of the KQ mask, held for the graph,
        and per stream the block mask expanded to cells for each indexer head, F32, as the gathered
        rows and their transposed copy (n_kv x tokens x heads twice). The position inputs are
        reserved for an empty cache (256 positions, `get_n_pos`)."""
        if not a.indexer_v_dim or not flash_attn or (unified and n_seq > 1):
            return 0, 0
        return 8 * cells * (n_ubatch // n_stream) * a.indexer_heads, 4 * cells * n_ubatch + 4 * 256 * n_ubatch

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        kv.update(dict(spec.gguf_scalars))
        kv.pop(".expert_shared_feed_forward_length", None)  # not written; the loader uses n_ff_exp × shared
        kv[".leading_dense_block_count"] = first_moe_layer(spec)
        kv[".expert_gating_func"] = 2  # scoring_func sigmoid
        kv[".expert_weights_norm"] = True
        sparse = next(la.attn for la in spec.layers if la.attn.indexer_heads)
        kv[".attention.indexer.head_count"] = sparse.indexer_heads
        kv[".attention.indexer.key_length"] = sparse.indexer_head_dim
        for key in _MSA_KEYS:
            kv[f".attention.indexer.{key}"] = _flag_int(spec, key)
        return kv
