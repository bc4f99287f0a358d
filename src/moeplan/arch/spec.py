"""ModelSpec: what a model is, layer by layer, independent of files, quantization and hardware."""

from dataclasses import dataclass, field
from enum import StrEnum


class AttnKind(StrEnum):
    FULL = "full"  # full causal attention (GQA/MQA/MHA)
    SWA = "sliding_window"
    CHUNKED = "chunked"  # Llama 4 local chunked attention
    MLA = "mla"  # DeepSeek multi-head latent attention
    LINEAR = "linear"  # linear / recurrent (Gated DeltaNet, Mamba-2)
    NONE = "none"  # no sequence mixer: an FFN-only block (Nemotron-H's MoE blocks); no KV, no state


class FFNKind(StrEnum):
    DENSE = "dense"
    MOE = "moe"
    NONE = "none"  # no FFN: a mixer-only block (Nemotron-H's Mamba-2 and attention blocks)


@dataclass(frozen=True)
class Attention:
    kind: AttnKind
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    window: int = 0  # sliding window or chunk size (tokens), 0 = unbounded
    rope: bool = True  # False for NoPE layers (Llama 4 global layers)
    # MLA (DeepSeek): low-rank query/key-value compression
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    mla_v_head_dim: int = 0
    # DeepSeek sparse attention (DSA): the lightning indexer's query heads and key width (0 heads: no
    # indexer on this layer) and the top-k cached tokens the layer attends to (0: dense attention);
    # GLM-5.2's "shared" layers have a top-k but no indexer (they reuse the last full layer's picks)
    indexer_heads: int = 0
    indexer_head_dim: int = 0
    indexer_top_k: int = 0
    # MiniMax sparse attention (MSA): the indexer cache also keeps V of this width (llama_kv_cache_msa
    # builds it from the model's non-MLA hparams: one head of head_dim_v); 0 = keys only (DSA)
    indexer_v_dim: int = 0
    # linear attention (Gated DeltaNet)
    conv_kernel: int = 0
    linear_k_heads: int = 0
    linear_v_heads: int = 0
    linear_k_head_dim: int = 0
    linear_v_head_dim: int = 0
    # short convolution (LFM2): the channels it convolves (= n_embd); its only state is the conv cache
    conv_channels: int = 0
    # KV sharing (Gemma 3n/4 `num_kv_shared_layers`): the earlier layer whose KV cache this layer
    # reads; it owns no cache itself. -1: the layer has its own cache.
    kv_reuse: int = -1
    # DeepSeek-V4 (deepseek4): one key head that is also the value (the cache holds K only, as for
    # MLA) over the sliding window, plus a compressed stream of one row per `compress_ratio` tokens
    # (4: CSA, read through the lightning indexer; 128: HCA; 0: the window only); the grouped
    # low-rank output projection (`o_groups` groups of rank `o_lora_rank`)
    shared_kv: bool = False
    compress_ratio: int = 0
    o_groups: int = 0
    o_lora_rank: int = 0
    # Qwen sparse attention (qwen4exp QSA): the indexer scores pools of this many cells and its cache
    # keeps the raw and the pooled key side by side, two rows of indexer_head_dim per cell
    # (`llama_memory_hybrid_idx`, indexer_kpool_row 2); 0 = no pooling
    indexer_kpool: int = 0

    @property
    def sliding(self) -> bool:
        """Whether the layer attends over a bounded window of past tokens and so keeps a window-sized
        cache: sliding-window and chunked layers, and MLA layers with a window (dots3note's SWA-MLA,
        cached in `llama_kv_cache_dsa_iswa`'s SWA half)."""
        return bool(self.window) and self.kind in (AttnKind.SWA, AttnKind.CHUNKED, AttnKind.MLA)


@dataclass(frozen=True)
class FFN:
    kind: FFNKind
    n_ff: int = 0  # dense width
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0  # width of one routed expert
    n_shared: int = 0  # shared experts
    n_ff_shexp: int = 0  # total width of the shared expert(s)
    n_latent: int = 0  # LatentMoE: the width routed experts work in (moe_latent_size), 0 = n_embd
    # DeepSeek-V4's first `num_hash_layers`: experts picked by a token-id table (ffn_gate_tid2eid)
    # instead of the router's scores plus selection bias
    hash_routed: bool = False


@dataclass(frozen=True)
class Layer:
    attn: Attention
    ffn: FFN


@dataclass(frozen=True)
class NgramEmbedding:
    """Qwen3.8-Flash-Next's PLE: hashed bigram/trigram rows gathered into one layer's residual.

    The table `per_layer_token_embd` holds `rows` rows of `head_dim` values; each of the
    (ngram_size - 1) x heads_per_ngram heads gathers one row per token, so their concatenation is
    n_embd wide. The layer's dilated short convolution keeps (conv_kernel - 1) x ngram_size steps of
    the hc-wide residual per sequence (`llama_hparams::ple_conv_state`)."""

    layer: int  # zero-based decoder layer (HF `ple_layer_ids` is one-based)
    rows: int  # rows of the table as the checkpoint stores it (padded)
    head_dim: int  # values per row (`embedding_length_per_layer_input`)
    ngram_size: int
    heads_per_ngram: int
    conv_kernel: int
    eos_token_id: int  # the hash restarts its n-grams after it
    image_token_id: int = -1  # stands in for image positions; -1 = none

    @property
    def n_heads(self) -> int:
        return (self.ngram_size - 1) * self.heads_per_ngram


@dataclass(frozen=True)
class ModelSpec:
    """A text model as llama.cpp sees it.

    `arch` is llama.cpp's GGUF architecture name (`general.architecture`). `layers` are the decoder
    blocks that run every token; `mtp_layers` are the multi-token-prediction (NextN) blocks the
    checkpoint also carries, appended after them as `blk.{n_layer + k}` when kept.
    `flags` holds arch-specific switches the tensor inventory reads (biases, q/k norms, gating).
    """

    name: str
    arch: str
    n_embd: int
    n_vocab: int
    tied_embeddings: bool
    layers: tuple[Layer, ...]
    context_length: int
    mtp_layers: tuple[Layer, ...] = ()
    flags: frozenset[str] = field(default_factory=frozenset)
    model_type: str = ""
    # per-layer embeddings (Gemma 3n/4 `hidden_size_per_layer_input`): the width of each layer's
    # slice of the per-layer token embedding; 0 = none
    n_embd_per_layer: int = 0
    # the rotated share of each head where the config sets it per model (Phi-4-mini's
    # partial_rotary_factor 0.75: rope.dimension_count 96 of 128); families whose models share one
    # fixed share keep `Family.rope_fraction` instead
    rope_fraction: float = 1.0
    # scalars that reach only the GGUF metadata (Granite's multipliers), as (`{arch}` key suffix,
    # value) pairs from config.json; no tensor, cache or buffer depends on them
    gguf_scalars: tuple[tuple[str, float], ...] = ()
    # hyper-connections (DeepSeek-V4 mHC `hc_mult`): residual streams the blocks mix; 0 = one plain
    # residual stream
    hc_mult: int = 0
    # low-rank hyper-connection mixers (qwen4exp `hc_lowrank`): their down/up projections' rank;
    # 0 = DeepSeek-V4's full-rank mixers
    hc_low_rank: int = 0
    ngram_embedding: NgramEmbedding | None = None

    @property
    def n_layer(self) -> int:
        return len(self.layers)

    @property
    def is_moe(self) -> bool:
        return any(layer.ffn.kind is FFNKind.MOE for layer in self.layers)

    @property
    def moe_ffn(self) -> FFN | None:
        """The FFN of the first MoE layer (MoE layers of one model share their shape)."""
        return next((la.ffn for la in self.layers if la.ffn.kind is FFNKind.MOE), None)

    def has(self, flag: str) -> bool:
        return flag in self.flags
