"""KV cache and recurrent state, per layer, exactly as llama.cpp allocates them.

Rules from the pinned llama.cpp (build 11434):
- context: `n_ctx` padded up to 256 (`llama_context` ctor); unified KV: one stream of n_ctx cells;
  otherwise one stream per sequence of PAD256(n_ctx / n_seq) cells.
- full-attention layer: K and V of `head_dim × n_head_kv` values per cell (`llama_kv_cache` ctor).
- sliding-window / chunked layer: PAD256(min(n_ctx_seq, window·(unified ? n_seq : 1) + n_ubatch)) cells,
  all cells with `--swa-full` (`llama_kv_cache_iswa`). Llama 4's chunked layers use window 8192.
- MLA (deepseek2): K only, `kv_lora_rank + rope_dim` values per cell; V is a view of K (builds
  before ggml-org/llama.cpp#19067 also cached V, `kv_lora_rank` values: `CacheConfig.mla_v_cache`).
- DSA lightning indexer (deepseek32, glm-dsa): a second K-only cache of the same cells, one key head
  of `indexer_head_dim` values per cell in the -ctk type, on the layers that have an indexer
  (`llama_kv_cache_dsa`: a llama_kv_cache with n_head_kv 1 and head size indexer_head_size).
- Qwen sparse attention (qwen4exp QSA, `llama_memory_hybrid_idx`): the same indexer cache, but each
  cell keeps the raw and the pooled key (2 x indexer_head_dim, `indexer_kpool_row`); the PLE layer's
  recurrent cache holds one more F32 row per sequence, its dilated conv history (`ple_conv_state`).
- MiniMax sparse attention (minimax-m3): `llama_kv_cache_msa` is the same pair, but its indexer cache
  is built from the model's non-MLA hparams, so it also holds V (`indexer_v_dim` = head_dim_v, one
  head, in the -ctv type) on the layers with an indexer (il >= leading dense layers).
- block without a sequence mixer (AttnKind.NONE, Nemotron-H's MoE blocks): no KV, no state
  (the hybrid memory's layer filters skip it, `llama_model::create_memory`).
- linear / recurrent layer: no KV; F32 conv state and recurrent state per sequence, whatever the
  context (`llama_memory_recurrent`), sized by the family (`Family.recurrent_state`; Mamba-style
  (d_conv−1)·(d_inner + 2·n_group·d_state) and d_state·d_inner by default).
- KV-sharing layer (`Attention.kv_reuse`, Gemma 3n/4's last `num_kv_shared_layers` layers): no
  cache of its own (`llama_hparams::has_kv` is false from `n_layer_kv_from_start` on); it attends
  over the cells of the layer it reuses (`llama_kv_cache` ctor, the `reuse` callback).
- kept MTP (NextN) blocks: no cache in the trunk context (its KV filter stops at n_layer), except
  where the architecture's hybrid memory has no filter (bailingmoe3): their attention layers are
  cached beside the decoder's (`mtp_trunk_memory`).
- V transposed (no flash attention) uses the largest V width of any layer for every layer, also
  for a layer with no KV heads (deci's blocks without attention: `llama_kv_cache` ctor, the
  [TAG_V_CACHE_VARIABLE] width `n_embd_v_gqa_max()`; with flash attention their rows are 0 wide).
- DeepSeek-V4 (`Attention.shared_kv`, `llama_kv_cache_dsv4`): every cache is per sequence even with
  -kvu (it passes unified = false: n_seq streams of n_ctx_seq cells); K only (V is the same head).
  Per layer: the window cache (the SWA rule above with the window of one stream); a compressed K
  cache of PAD256(max(1, ceil(n_ctx_seq / ratio))) cells of head_dim on CSA (ratio 4) and HCA (128)
  layers; on CSA layers the lightning-indexer K cache, as many cells of indexer_head_dim; and F32
  compressor state per sequence, whatever the context: a kv and a score plane of state_size x
  n_embd_state each (`llama_dsv4_comp_state`: CSA 2·4 x 2·head_dim, HCA 128 x head_dim, indexer
  2·4 x 2·indexer_head_dim; no rollback snapshots, n_rs_seq = 0 without speculative decoding).
"""

from dataclasses import dataclass, replace

from moeplan.arch.registry import rules
from moeplan.arch.spec import Attention, AttnKind, ModelSpec
from moeplan.errors import MoeplanError
from moeplan.quant.ggml import GGMLType, block_size, type_size

# `-ctk/-ctv` values llama.cpp accepts (common/arg.cpp kv_cache_types).
CACHE_TYPES = {
    "f32": GGMLType.F32,
    "f16": GGMLType.F16,
    "bf16": GGMLType.BF16,
    "q8_0": GGMLType.Q8_0,
    "q4_0": GGMLType.Q4_0,
    "q4_1": GGMLType.Q4_1,
    "iq4_nl": GGMLType.IQ4_NL,
    "q5_0": GGMLType.Q5_0,
    "q5_1": GGMLType.Q5_1,
}
PAD = 256


def pad(n: int, to: int = PAD) -> int:
    return -(-n // to) * to


def cache_type(name: str) -> GGMLType:
    t = CACHE_TYPES.get(name.strip().lower())
    if t is None:
        raise MoeplanError(f"unknown KV cache type '{name}'; llama.cpp accepts {', '.join(CACHE_TYPES)}")
    return t


@dataclass(frozen=True)
class CacheConfig:
    n_ctx: int  # -c (0 = the model's training context)
    n_seq: int = 1  # -np
    unified: bool = False  # -kvu (llama-server: on with its automatic 4 slots)
    n_ubatch: int = 512  # -ub
    n_batch: int = 2048  # -b
    type_k: GGMLType = GGMLType.F16
    type_v: GGMLType = GGMLType.F16
    flash_attn: bool = True  # -fa (auto resolves to on where supported, e.g. CPU)
    swa_full: bool = False
    mla_v_cache: bool = False  # builds before ggml-org/llama.cpp#19067 also cache MLA's V (engines/builds.py)
    kv_pad: int = PAD  # cells the context and caches are padded to (32 without FA before #17046)
    f32_mask: bool = False  # builds before #23764 reserve the KQ mask in F32 and cast it to F16 for FA
    embd_rows: int = 4  # F32 rows of n_embd per token the input-embedding select holds (builds.py)
    galloc_chunks: bool = True  # compute buffers split at the backend's max buffer size (#15815)
    vk_row_batch: bool = True  # Vulkan's offload_op counts a non-matmul op's rows as its batch (builds.py)

    def __post_init__(self) -> None:
        if self.n_ctx < 0 or self.n_seq < 1 or self.n_ubatch < 1 or self.n_batch < 1:
            raise MoeplanError("context, slots (-np), batch (-b) and micro-batch (-ub) must be positive")
        if self.type_v not in (GGMLType.F16, GGMLType.BF16, GGMLType.F32) and not self.flash_attn:
            raise MoeplanError("a quantized V cache requires flash attention: add --fa on or use -ctv f16")


@dataclass(frozen=True)
class Context:
    """What llama.cpp derives from the flags."""

    n_ctx: int
    n_ctx_seq: int
    n_stream: int
    n_batch: int
    n_ubatch: int


def context(spec: ModelSpec, cfg: CacheConfig) -> Context:
    requested = cfg.n_ctx or spec.context_length
    n_ctx = pad(requested, cfg.kv_pad)
    if cfg.unified or cfg.n_seq == 1:
        n_ctx_seq, n_stream = n_ctx, 1
    else:
        n_ctx_seq, n_stream = pad(n_ctx // cfg.n_seq, cfg.kv_pad), cfg.n_seq
        n_ctx = n_ctx_seq * n_stream
    # the batch is capped by the context as given, before the padding (`llama_context` ctor)
    n_batch = min(requested, cfg.n_batch)
    return Context(n_ctx, n_ctx_seq, n_stream, n_batch, min(n_batch, cfg.n_ubatch))


def row_bytes(t: GGMLType, n: int) -> int:
    if n % block_size(t):
        raise MoeplanError(f"a KV row of {n} values does not fit {t.name} blocks of {block_size(t)}: use f16")
    return n // block_size(t) * type_size(t)


@dataclass(frozen=True)
class LayerMemory:
    layer: int
    kind: AttnKind
    cells: int  # per stream; 0 for recurrent layers
    k_bytes: int
    v_bytes: int
    state_bytes: int  # recurrent conv + SSM state
    index_bytes: int = 0  # DSA lightning-indexer keys (their own cache)
    index_v_bytes: int = 0  # of index_bytes, the indexer cache's V (MiniMax MSA; DSA has none)
    comp_bytes: int = 0  # DeepSeek-V4's compressed K cache (CSA / HCA rows)
    comp_cells: int = 0  # its cells per stream (also the indexer cache's, on CSA layers)
    n_stream: int = 1  # the streams its cache holds (DeepSeek-V4: one per sequence even with -kvu)

    @property
    def cache_bytes(self) -> int:
        """Everything that grows with the context: K, V, indexer and compressed caches."""
        return self.k_bytes + self.v_bytes + self.index_bytes + self.comp_bytes

    @property
    def total(self) -> int:
        return self.cache_bytes + self.state_bytes


def kv_widths(a: Attention) -> tuple[int, int]:
    """Values per cell for K and V (`n_embd_k_gqa`, `n_embd_v_gqa`); MLA and DeepSeek-V4's shared
    key/value head cache K only (the graph reads V as a view of K)."""
    if a.kind is AttnKind.MLA:
        return (a.kv_lora_rank + a.qk_rope_head_dim) * a.n_head_kv, 0
    if a.shared_kv:
        return a.head_dim_k * a.n_head_kv, 0
    return a.head_dim_k * a.n_head_kv, a.head_dim_v * a.n_head_kv


def recurrent_state_values(spec: ModelSpec, a: Attention) -> int:
    """F32 values of conv state + recurrent state for one sequence of one recurrent layer, by the
    family's rule (`llama_hparams::n_embd_r + n_embd_s`)."""
    r, s = rules(spec.arch).recurrent_state(a)
    return r + s


def ple_conv_state(spec: ModelSpec, il: int) -> int:
    """F32 values of the PLE short-convolution history one sequence keeps on layer `il`: a row of its
    own beside the layer's recurrent state (`cache_ple_r_l`, `llama_hparams::ple_conv_state`:
    (conv_kernel - 1) x ngram_size dilated steps of the hc x n_embd residual); 0 on other layers."""
    ple = spec.ngram_embedding
    if ple is None or ple.layer != il:
        return 0
    return (ple.conv_kernel - 1) * ple.ngram_size * max(1, spec.hc_mult) * spec.n_embd


_NO_KV = (AttnKind.LINEAR, AttnKind.NONE)


def layer_memory(spec: ModelSpec, cfg: CacheConfig) -> list[LayerMemory]:
    """KV and recurrent state of every decoder layer (MTP layers hold none)."""
    ctx = context(spec, cfg)
    v_max = max((kv_widths(la.attn)[1] for la in spec.layers if la.attn.kind not in _NO_KV), default=0)
    out = []
    for il, layer in enumerate(spec.layers):
        a = layer.attn
        if a.kind is AttnKind.NONE:  # an FFN-only block: neither cache holds it
            out.append(LayerMemory(il, a.kind, 0, 0, 0, 0))
            continue
        if a.kind is AttnKind.LINEAR:
            state = 4 * (recurrent_state_values(spec, a) + ple_conv_state(spec, il)) * max(1, cfg.n_seq)
            out.append(LayerMemory(il, a.kind, 0, 0, 0, state))
            continue
        cells = ctx.n_ctx_seq
        if a.sliding and not cfg.swa_full:
            window_cells = a.window * (cfg.n_seq if cfg.unified else 1) + ctx.n_ubatch
            cells = pad(min(ctx.n_ctx_seq, window_cells), cfg.kv_pad)
        if a.shared_kv:
            out.append(_dsv4_layer(il, a, ctx, cfg))
            continue
        if a.kv_reuse >= 0:  # reads an earlier layer's cache: attends over its cells, owns no K/V
            out.append(LayerMemory(il, a.kind, cells, 0, 0, 0, n_stream=ctx.n_stream))
            continue
        k_w, v_w = kv_widths(a)
        if a.kind is AttnKind.MLA and cfg.mla_v_cache:
            v_w = a.kv_lora_rank * a.n_head_kv  # the V half older builds kept beside the latent K
        if (v_w or not a.n_head_kv) and not cfg.flash_attn:
            v_w = v_max  # a zero-headed layer (deci's) still gets its V slot in the widest width
        k = ctx.n_stream * cells * row_bytes(cfg.type_k, k_w)
        v = ctx.n_stream * cells * row_bytes(cfg.type_v, v_w) if v_w else 0
        idx_w = a.indexer_head_dim * (2 if a.indexer_kpool else 1)  # QSA: raw | pooled key
        idx = ctx.n_stream * cells * row_bytes(cfg.type_k, idx_w) if a.indexer_heads else 0
        idx_v = ctx.n_stream * cells * row_bytes(cfg.type_v, a.indexer_v_dim) if a.indexer_heads else 0
        out.append(LayerMemory(il, a.kind, cells, k, v, 0, idx + idx_v, idx_v, n_stream=ctx.n_stream))
    return out


def mtp_trunk_memory(spec: ModelSpec, n_mtp: int, cfg: CacheConfig) -> list[LayerMemory]:
    """KV of the `n_mtp` kept MTP blocks that the trunk context's cache holds beside its decoder
    layers (`Family.mtp_in_trunk_cache`), numbered after them (blk.{n_layer + k}); none otherwise."""
    if not n_mtp or not rules(spec.arch).mtp_in_trunk_cache:
        return []
    blocks = replace(spec, layers=spec.layers + spec.mtp_layers[:n_mtp], mtp_layers=())
    return layer_memory(blocks, cfg)[spec.n_layer :]


CSA_RATIO = 4  # the compression ratio whose layers also run the lightning indexer


def _dsv4_layer(il: int, a: Attention, ctx: Context, cfg: CacheConfig) -> LayerMemory:
    """One DeepSeek-V4 layer's share of `llama_kv_cache_dsv4` (see the module docstring)."""
    n_stream, size = cfg.n_seq, ctx.n_ctx_seq
    cells = size if cfg.swa_full else pad(min(size, a.window + ctx.n_ubatch))
    k = n_stream * cells * row_bytes(cfg.type_k, a.head_dim_k * a.n_head_kv)
    if not a.compress_ratio:
        return LayerMemory(il, a.kind, cells, k, 0, 0, n_stream=n_stream)
    comp_cells = pad(max(1, -(-size // a.compress_ratio)))
    comp = n_stream * comp_cells * row_bytes(cfg.type_k, a.head_dim_k)
    csa = a.compress_ratio == CSA_RATIO
    # compressor state: kv + score planes of state_size x n_embd_state F32 per sequence
    state_values = 2 * a.compress_ratio * 2 * a.head_dim_k if csa else a.compress_ratio * a.head_dim_k
    idx = 0
    if csa:
        idx = n_stream * comp_cells * row_bytes(cfg.type_k, a.indexer_head_dim)
        state_values += 2 * CSA_RATIO * 2 * a.indexer_head_dim
    state = n_stream * 2 * 4 * state_values
    return LayerMemory(il, a.kind, cells, k, 0, state, idx, 0, comp, comp_cells, n_stream)
