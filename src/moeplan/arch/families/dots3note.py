"""dots3-note (dots-studio/dots3-note-prev, the text model): DeepSeek-V3-style MLA in two geometries,
DSA (MLA + lightning indexer) on the full-attention layers and a sliding-window MLA of its own head
count, ranks and head sizes on the others, a head-wise sigmoid output gate and a rope-only key norm on
every layer, one leading dense block, then sigmoid-routed experts with a selection bias plus a shared
expert, and one NextN/MTP block.

From the pinned build (11434):
- conversion/dots3.py `Dots3NoteModel` (a DeepseekV2Model): per-layer `head_count` (the sliding
  layers' `swa_num_attention_heads`), the full geometry in the DeepSeek keys and the sliding one in
  `kv_lora_rank_swa` / `key_length{,_mla}_swa` / `value_length{,_mla}_swa`, `sliding_window` =
  `sliding_window_size`, the per-layer pattern and `indexer.types` (the full layers) arrays; the MTP
  block (kept when the checkpoint has `model.mtp.embed_tokens`, whose embedding moves into it) uses
  the sliding geometry; q_lora_rank and the rope width must be shared by both kinds;
- src/models/dots3note.cpp `load_arch_tensors`: per layer the MLA tensors of its kind plus
  `attn_k_norm` {rope} and `attn_gate` {n_embd, n_head}, the indexer on full layers only, the dense
  FFN on leading and MTP blocks, experts + `exp_probs_b.bias` + shared expert elsewhere; the MTP block
  adds eh_proj/enorm/hnorm/embed_tokens/shared_head_norm, every one created with TENSOR_SKIP;
- `llama_model::create_memory`: `llama_kv_cache_dsa_iswa`, the DSA cache (latent + indexer keys) for
  the full layers and a window-sized cache for the sliding ones, so a sliding MLA layer caches
  PAD256(window + ubatch) cells of `kv_lora_rank_swa + rope` values.
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch.config import Config
from moeplan.arch.families.deepseek2 import mla_attention, mla_metadata
from moeplan.arch.families.dsa import DeepSeek32, with_indexer
from moeplan.arch.family import GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.spec import Attention, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, UnsupportedArchitecture

# the config keys of the sliding-window MLA geometry and the DeepSeek keys they stand in for
_SWA_KEYS = {
    "num_attention_heads": "swa_num_attention_heads",
    "q_lora_rank": "swa_q_lora_rank",
    "kv_lora_rank": "swa_kv_lora_rank",
    "qk_nope_head_dim": "swa_qk_nope_head_dim",
    "qk_rope_head_dim": "swa_qk_rope_head_dim",
    "v_head_dim": "swa_v_head_dim",
}


def _swa_attention(cfg: Config) -> Attention:
    """The sliding layers' MLA over `sliding_window_size` tokens (n_swa as the converter writes it)."""
    swa_cfg = {**cfg, **{k: c.get(cfg, v) for k, v in _SWA_KEYS.items()}}
    return dataclasses.replace(mla_attention(swa_cfg), window=c.integer(cfg, "sliding_window_size"))


def _check(cfg: Config) -> None:
    """The configs Dots3NoteModel.__init__ refuses to convert."""
    if cfg.get("use_dsa", True) is not True:
        raise UnsupportedArchitecture("dots3_note without DSA (use_dsa false) is not converted by llama.cpp")
    if cfg.get("k_rope_only_layernorm", True) is not True:
        raise UnsupportedArchitecture(
            "dots3_note needs k_rope_only_layernorm (llama.cpp loads that norm only)"
        )
    if cfg.get("scoring_func", "sigmoid") != "sigmoid" or cfg.get("topk_method", "noaux_tc") != "noaux_tc":
        raise UnsupportedArchitecture("dots3_note converts only noaux_tc / sigmoid expert routing")
    if cfg.get("n_group", 1) != 1 or cfg.get("topk_group", 1) != 1:
        raise UnsupportedArchitecture("dots3_note with grouped expert routing is not converted")
    for key in ("attention_gate_type", "swa_attention_gate_type"):
        if cfg.get(key, "headwise") != "headwise":
            raise UnsupportedArchitecture(
                f"dots3_note converts only head-wise gates ({key}={cfg.get(key)!r})"
            )
    if c.integer(cfg, "swa_qk_rope_head_dim") != c.integer(cfg, "qk_rope_head_dim"):
        raise BadConfig("dots3_note: both layer kinds must rotate the same width (one rope.dimension_count)")
    if c.integer(cfg, "swa_q_lora_rank") != c.integer(cfg, "q_lora_rank"):
        raise BadConfig("dots3_note: both layer kinds must share q_lora_rank (llama.cpp reads one)")


class Dots3Note(DeepSeek32):
    arch = "dots3note"
    model_types = ("dots3_note",)
    mtp_own_head = False  # the checkpoint's MTP embedding is in every inventory (block below), no head
    mtp_head_in_gguf = False

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        _check(cfg)
        n = c.integer(cfg, "num_hidden_layers")
        types = c.layer_types(cfg, n, [])
        # Dots3NoteConfig renames the DSA layers "deepseek_sparse_attention"; the converter tells the two
        # kinds apart by "sliding_attention" alone
        if set(types) - {"full_attention", "deepseek_sparse_attention", "sliding_attention"}:
            raise BadConfig(f"dots3_note: unknown layer types {sorted(set(types))}")
        full, swa = with_indexer(mla_attention(cfg), cfg), _swa_attention(cfg)
        moe = c.routed_and_shared_moe(cfg)
        k_dense = c.integer(cfg, "first_k_dense_replace", default=0)
        dense = c.dense(cfg)
        layers = [
            Layer(swa if t == "sliding_attention" else full, dense if il < k_dense else moe)
            for il, t in enumerate(types)
        ]
        # the NextN block: the sliding geometry (no indexer) and the dense FFN (dots3note.cpp)
        mtp = c.mtp(cfg, Layer(swa, dense))
        return c.base(
            cfg,
            self.arch,
            layers,
            mtp_layers=mtp,
            gguf_scalars=(
                (".rope.freq_base_swa", c.number(cfg, "swa_rope_theta")),
                (".expert_weights_scale", c.number(cfg, "routed_scaling_factor", default=1.0)),
            ),
        )

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """The full geometry from the DeepSeek keys (generic reader), then the sliding layers (the
        pattern array, and the MTP block) from the `_swa` keys and the indexer where `indexer.types`
        says so, as `load_arch_hparams` / `load_arch_tensors` read them."""
        spec = generic_spec(hp, swa=lambda h, n: [False] * n)
        n = spec.n_layer
        pattern = hp.flags("attention.sliding_window_pattern", n)
        lid = hp.flags("attention.indexer.types", n)
        if pattern is None or lid is None:
            raise BadConfig(f"{hp.name}: dots3note needs the sliding-window pattern and indexer types arrays")
        rope = hp.integer("rope.dimension_count")
        kv_lora = hp.integer("attention.kv_lora_rank_swa")
        heads = hp.integer("attention.indexer.head_count")
        head_dim, top_k = hp.integer("attention.indexer.key_length"), hp.integer("attention.indexer.top_k")

        def one(il: int, la: Layer) -> Layer:
            a = la.attn
            if il >= n or pattern[il]:
                a = dataclasses.replace(
                    a,
                    head_dim_k=kv_lora + rope,
                    head_dim_v=kv_lora,
                    kv_lora_rank=kv_lora,
                    qk_nope_head_dim=hp.integer("attention.key_length_mla_swa") - rope,
                    mla_v_head_dim=hp.integer("attention.value_length_mla_swa"),
                    window=hp.integer("attention.sliding_window"),
                )
            elif lid[il]:
                a = dataclasses.replace(
                    a, indexer_heads=heads, indexer_head_dim=head_dim, indexer_top_k=top_k
                )
            return dataclasses.replace(la, attn=a)

        layers = tuple(one(il, la) for il, la in enumerate(spec.layers))
        mtp = tuple(one(n + k, la) for k, la in enumerate(spec.mtp_layers))
        return dataclasses.replace(spec, layers=layers, mtp_layers=mtp)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        """The MTP block carries the checkpoint's own embedding (`model.mtp.embed_tokens`) but no head."""
        super().block(b, spec, il, layer, mtp, own_head=False)
        if mtp:
            b.add(f"blk.{il}.nextn.embed_tokens.weight", (spec.n_embd, spec.n_vocab), Role.MTP, il)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        """The layer's MLA (and indexer), the rope-only key norm and the head-wise output gate."""
        super().attention(b, spec, p, il, a, role)
        b.add(
            f"{p}.attn_k_norm.weight", (a.qk_rope_head_dim,), Role.MTP if role is Role.MTP else Role.NORM, il
        )
        b.add(f"{p}.attn_gate.weight", (spec.n_embd, a.n_head), role, il)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """Dots3NoteModel.set_gguf_parameters: per-layer head counts over all blocks, the sliding
        geometry's keys, window, pattern and indexer-type arrays, and the sliding rope base."""
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        blocks = spec.layers + spec.mtp_layers[: inv.mtp_kept]
        kv[".attention.head_count"] = [la.attn.n_head for la in blocks]
        full = next(la.attn for la in spec.layers if not la.attn.window)
        kv[".attention.key_length"], kv[".attention.value_length"] = full.head_dim_k, full.head_dim_v
        mla_metadata(kv, full, zero_q_lora=True)
        swa = next(la.attn for la in blocks if la.attn.window)
        kv[".attention.sliding_window"] = swa.window
        kv[".attention.sliding_window_pattern"] = [bool(la.attn.window) for la in spec.layers]
        kv[".attention.kv_lora_rank_swa"] = swa.kv_lora_rank
        kv[".attention.key_length_swa"] = swa.head_dim_k
        kv[".attention.value_length_swa"] = swa.head_dim_v
        kv[".attention.key_length_mla_swa"] = swa.qk_nope_head_dim + swa.qk_rope_head_dim
        kv[".attention.value_length_mla_swa"] = swa.mla_v_head_dim
        kv[".attention.indexer.types"] = [bool(la.attn.indexer_heads) for la in spec.layers]
        kv.update(dict(spec.gguf_scalars))
        return kv
