"""Qwen3.8-Flash-Next (`qwen4exp`): the Qwen3.5 Gated DeltaNet hybrid with hyper-connections, Qwen
sparse attention (QSA) and a hashed n-gram per-layer embedding (PLE).

Pinned llama.cpp: `conversion/qwen4exp.py` Qwen4ExpTextModel (on top of Qwen3-Next's converter),
`src/models/qwen4exp.cpp` (`load_arch_hparams`, `load_arch_tensors`), `llama_memory_hybrid_idx`.
- Every layer norm is replaced by a low-rank hyper-connection mixer over `hc_count` residual streams
  (`hc_{attn,ffn}_{norm,down,up,inject}`); the head collapses the streams (`output_hc_*`), there is
  no output_norm.
- Full-attention layers (and the MTP block) are gated GQA plus a QSA indexer: `index_qk_proj` split
  into `indexer.q_proj` / `indexer.k_proj` with their norms; its keys are pooled in blocks of
  `indexer_compress_ratio` cells (`attention.compress_ratios`), `indexer_budget` tokens attended.
- One linear layer (`ple_layer_ids`, one-based) adds the PLE block and reads `per_layer_token_embd`,
  the concatenated n-gram table (`_place_ple_shard`): (ngram_size - 1) x heads_per_ngram heads of
  `ple_embed_dim / heads` values, so the gather is n_embd wide (`ple_value` {n_embd, n_embd}).
- The MTP block is one more QSA layer with its own stream mixer (`nextn.hc_head_*`); the converter
  keeps it unless `--no-mtp` (`supports_mtp_export`, `_QwenMtpMixin`).
Checkpoint tensor shapes (1-D mixer and PLE norms of hc x n_embd, `block_inject_weight` {hc, hc x
n_embd}, `conv1d` {hc x n_embd, 1, 4}) are those a port read from the release's safetensors headers
(a Tenstorrent tt-metal autoport test, `models.autoports.qwen_qwen3_8_flash_next`; catalog sources).

The PLE hash constants (`layer_multipliers`, `ngram_heads_offsets`, `ngram_heads_vocab_sizes`) are
checkpoint buffers, not config values: no tensor, cache or buffer size depends on them, so the GGUF
keys written here split the table evenly among the heads as stand-ins that satisfy the loader's
range checks (`load_arch_hparams`).
"""

import dataclasses
from typing import ClassVar

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.families.qwen3 import qwen_moe_ffn
from moeplan.arch.families.qwen35 import _GatedDeltaNetHybrid, hybrid_layers
from moeplan.arch.family import AttentionCase, AttentionGraph, GGUFValue, GraphNode, input_rows
from moeplan.arch.from_gguf import GGUFHParams, generic_spec, recurrent_by_interval
from moeplan.arch.spec import Attention, AttnKind, Layer, ModelSpec, NgramEmbedding
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, BadGGUF

# the checkpoint's n-gram table as its safetensors headers give it: `split_ngram_parts` shards of
# 2,500,012 rows (the tt-metal autoport's host_weight_cache test: PLE_PADDED_ROWS 320,001,536 =
# 128 x 2,500,012; the heads' vocabularies sum to 320,001,446 logical rows)
ROWS_PER_SHARD = 2_500_012


def _ngram_embedding(cfg: Config, n_embd: int, types: list[str]) -> NgramEmbedding | None:
    """The PLE group of `set_gguf_parameters`; an empty `ple_layer_ids` means no n-gram table."""
    ids = cfg.get("ple_layer_ids")
    if ids == []:
        return None
    if not isinstance(ids, list) or len(ids) != 1 or not isinstance(ids[0], int):
        raise BadConfig(
            "qwen4exp: ple_layer_ids must name exactly one layer (llama.cpp supports one PLE layer)"
        )
    layer = ids[0] - 1  # one-based in the HF config
    if not 0 <= layer < len(types) or types[layer] != "linear_attention":
        raise BadConfig(f"qwen4exp: ple_layer_ids {ids} must be a linear_attention layer (1-based)")
    ngram, per = c.integer(cfg, "ngram_size"), c.integer(cfg, "heads_per_ngram")
    heads = (ngram - 1) * per
    dim = c.integer(cfg, "ple_embed_dim")
    if heads == 0 or dim != n_embd or dim % heads:
        raise BadConfig(
            f"qwen4exp: ple_embed_dim {dim} must equal hidden_size {n_embd} and split among the "
            f"{heads} n-gram heads (the loader sizes ple_value n_embd x n_embd)"
        )
    eos = cfg.get("eos_token_id")
    eos = eos[-1] if isinstance(eos, list) and eos else eos  # `_eos_token_id`: the primary EOS
    if not isinstance(eos, int):
        raise BadConfig("qwen4exp: eos_token_id is required (the PLE hash restarts its n-grams on it)")
    return NgramEmbedding(
        layer=layer,
        rows=ROWS_PER_SHARD * c.integer(cfg, "split_ngram_parts"),
        head_dim=dim // heads,
        ngram_size=ngram,
        heads_per_ngram=per,
        conv_kernel=c.integer(cfg, "ple_conv_kernel_size"),
        eos_token_id=eos,
        image_token_id=c.integer(cfg, "image_token_id") if cfg.get("image_token_id") is not None else -1,
    )


def _pools(a: Attention, cells: int, n_seq: int) -> tuple[int, int]:
    """(n_new, n_pool) of a reserved graph: the cache full, every pool re-pooled. n_pool_real is
    cells / kpool per sequence slot (`llama_memory_hybrid_idx_context`'s reserve constructor: idx
    size / kpool x n_seq_max, whether or not the cache is unified), n_pool its `kpool_pad`: one more,
    rounded up to 64, at least 64 (src/llama-memory-hybrid-idx.cpp)."""
    n_real = cells // a.indexer_kpool * max(1, n_seq)
    return n_real, max(64, -(-(n_real + 1) // 64) * 64)


class Qwen4Exp(_GatedDeltaNetHybrid):
    arch = "qwen4exp"
    model_types = ("qwen4_exp", "qwen4_exp_text")
    u64_keys: ClassVar[frozenset[str]] = frozenset(
        {".ple.layer_multipliers", ".ple.head_offsets", ".ple.head_vocab_sizes"}
    )

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if c.integer(cfg, "hc_count") <= 1:
            raise BadConfig("qwen4exp: hc_count must be greater than one (llama.cpp refuses a single stream)")
        ratio, budget = c.integer(cfg, "indexer_compress_ratio"), c.integer(cfg, "indexer_budget")
        if ratio <= 1 or budget % ratio:
            raise BadConfig(
                f"qwen4exp: indexer_compress_ratio {ratio} must be above 1 and divide indexer_budget {budget}"
            )
        if c.integer(cfg, "indexer_kv_heads", default=1) != 1:
            raise BadConfig("qwen4exp: llama.cpp's QSA indexer has one key head (indexer_kv_heads 1)")
        ffn = qwen_moe_ffn(cfg, shared=True)
        qsa = dataclasses.replace(
            c.gqa(cfg),
            indexer_heads=c.integer(cfg, "indexer_n_heads"),
            indexer_head_dim=c.integer(cfg, "indexer_head_dim"),
            indexer_top_k=budget,
            indexer_kpool=ratio,
        )
        layers = [
            Layer(qsa, la.ffn) if la.attn.kind is not AttnKind.LINEAR else la
            for la in hybrid_layers(cfg, ffn)
        ]
        types = ["linear_attention" if la.attn.kind is AttnKind.LINEAR else "full_attention" for la in layers]
        n_embd = c.integer(cfg, "hidden_size")
        spec = c.base(cfg, self.arch, layers, mtp_layers=c.mtp(cfg, Layer(qsa, ffn)))
        return dataclasses.replace(
            spec,
            hc_mult=c.integer(cfg, "hc_count"),
            hc_low_rank=c.integer(cfg, "hc_lowrank"),
            ngram_embedding=_ngram_embedding(cfg, n_embd, types),
        )

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """Qwen3.5's layer plan plus the keys `load_arch_hparams` adds: the hyper-connection count and
        rank, each QSA layer's indexer and pool size (`attention.compress_ratios`), and the PLE group;
        the table's rows are the tensor's (the converter pads it past the head ranges)."""
        spec = generic_spec(hp, recurrent=recurrent_by_interval)
        ratios = hp.value("attention.compress_ratios")
        if not isinstance(ratios, list) or len(ratios) < hp.n_layer_all:
            raise BadGGUF(f"{hp.name}: qwen4exp.attention.compress_ratios must give one ratio per block")

        def qsa(il: int, la: Layer) -> Layer:
            if la.attn.kind is AttnKind.LINEAR:
                return la
            attn = dataclasses.replace(
                la.attn,
                indexer_heads=hp.integer("attention.indexer.head_count"),
                indexer_head_dim=hp.integer("attention.indexer.key_length"),
                indexer_top_k=hp.integer("attention.indexer.top_k"),
                indexer_kpool=int(ratios[il]),
            )
            return Layer(attn, la.ffn)

        blocks = [qsa(il, la) for il, la in enumerate((*spec.layers, *spec.mtp_layers))]
        return dataclasses.replace(
            spec,
            layers=tuple(blocks[: spec.n_layer]),
            mtp_layers=tuple(blocks[spec.n_layer :]),
            hc_mult=hp.integer("hyper_connection.count"),
            hc_low_rank=hp.integer("hyper_connection.low_rank"),
            ngram_embedding=self._ngram_from_gguf(hp),
        )

    @staticmethod
    def _ngram_from_gguf(hp: GGUFHParams) -> NgramEmbedding | None:
        layers = hp.value("ple.layers")
        if layers is None:
            return None
        table = hp.shape("per_layer_token_embd.weight")
        if not isinstance(layers, list) or len(layers) != 1 or table is None or len(table) != 2:
            raise BadGGUF(
                f"{hp.name}: qwen4exp PLE needs one ple.layers entry and a 2-D per_layer_token_embd"
            )
        image = hp.value("ple.image_token_id")
        return NgramEmbedding(
            layer=int(layers[0]),
            rows=table[1],
            head_dim=table[0],
            ngram_size=hp.integer("ple.ngram_size"),
            heads_per_ngram=hp.integer("ple.heads_per_ngram"),
            conv_kernel=hp.integer("ple.conv_kernel"),
            eos_token_id=hp.integer("ple.eos_token_id"),
            image_token_id=image if isinstance(image, int) else -1,
        )

    # ---- tensors -------------------------------------------------------------------------------

    def head(self, b: Builder, spec: ModelSpec) -> None:
        b.add("token_embd.weight", (spec.n_embd, spec.n_vocab), Role.EMBED)
        if (ple := spec.ngram_embedding) is not None:
            b.add("per_layer_token_embd.weight", (ple.head_dim, ple.rows), Role.EMBED)

    @staticmethod
    def _mixer(b: Builder, spec: ModelSpec, p: str, il: int | None, role: Role, inject: bool) -> None:
        """A low-rank stream mixer: its norm gammas (1-D hc x n_embd), down/up projections and, inside a
        block, the inject weights {hc x n_embd, hc}."""
        hc_dim, lr = spec.hc_mult * spec.n_embd, spec.hc_low_rank
        norm = Role.MTP if role is Role.MTP else Role.NORM
        b.add(f"{p}_norm.weight", (hc_dim,), norm, il)
        b.add(f"{p}_down.weight", (hc_dim, lr), role, il)
        b.add(f"{p}_up.weight", (lr, hc_dim), role, il)
        if inject:
            b.add(f"{p}_inject.weight", (hc_dim, spec.hc_mult), role, il)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        p, e = f"blk.{il}", spec.n_embd
        attn = layout.mtp_or(Role.ATTN, mtp)
        for part in ("attn", "ffn"):
            self._mixer(b, spec, f"{p}.hc_{part}", il, attn, inject=True)
        a = layer.attn
        if a.kind is AttnKind.LINEAR:
            layout.gated_deltanet(b, p, il, a, e, layout.mtp_or(Role.SSM, mtp), fused_ba=False)
        else:
            layout.gqa(b, p, il, a, e, attn, q_gate=True, qk_norm=True)
            norm = layout.mtp_or(Role.NORM, mtp)
            hd = a.indexer_head_dim
            b.add(f"{p}.indexer.q_proj.weight", (e, a.indexer_heads * hd), attn, il)
            b.add(f"{p}.indexer.k_proj.weight", (e, hd), attn, il)
            b.add(f"{p}.indexer.q_norm.weight", (hd,), norm, il)
            b.add(f"{p}.indexer.k_norm.weight", (hd,), norm, il)
        ple = spec.ngram_embedding
        if ple is not None and ple.layer == il:
            hc_dim = spec.hc_mult * e
            b.add(f"{p}.ple_key.weight", (e, hc_dim), Role.ATTN, il)
            b.add(f"{p}.ple_value.weight", (e, e), Role.ATTN, il)
            for n in ("key", "query", "conv"):
                b.add(f"{p}.ple_norm_{n}.weight", (hc_dim,), Role.NORM, il)
            b.add(f"{p}.ple_conv1d.weight", (ple.conv_kernel, hc_dim), Role.ATTN, il)
        self.ffn(b, spec, p, il, layer, mtp)
        if mtp:
            b.add(f"{p}.nextn.eh_proj.weight", (2 * e, e), Role.MTP, il)
            b.add(f"{p}.nextn.enorm.weight", (e,), Role.MTP, il)
            b.add(f"{p}.nextn.hnorm.weight", (spec.hc_mult * e,), Role.MTP, il)
            self._mixer(b, spec, f"{p}.nextn.hc_head", il, Role.MTP, inject=False)

    def tail(self, b: Builder, spec: ModelSpec) -> None:
        self._mixer(b, spec, "output_hc", None, Role.OUTPUT, inject=False)
        b.add("output.weight", (spec.n_embd, spec.n_vocab), Role.OUTPUT)

    # ---- compute buffer ------------------------------------------------------------------------

    def stream_activations(self, spec: ModelSpec, n_ubatch: int) -> int:
        """The residual streams and the block mixer's norm, F32 {n_embd, hc, T} each: the graph
        reaches `build_hc_mix`'s inject matmul, the norm's last reader, only from `build_hc_combine`,
        after the token mixer or the FFN, so both are live through it (measured on the pinned
        build's allocator log; the QSA layer's own account is `attention_graph`)."""
        return 2 * 4 * spec.hc_mult * spec.n_embd * n_ubatch

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
        """QSA's k-pool inputs (`build_inp_kpool`), held through the whole graph: the pool mask
        {n_pool, T} F16, the pools' cells (I32 n_pool) and members (I32 {kpool, n_pool}), the tail
        cells (I32 {kpool - 1, T}), and the blocks to re-pool (I32 {kpool, n_new}, their I64 cells and
        I32 M-RoPE positions, 4 x n_new). The layer itself is `attention_graph`."""
        if not a.indexer_kpool:
            return 0, 0
        kp, t = a.indexer_kpool, n_ubatch
        n_new, n_pool = _pools(a, cells, n_seq)
        return 0, 2 * n_pool * t + 4 * n_pool * (1 + kp) + 4 * (kp - 1) * t + n_new * (4 * kp + 8 + 16)

    def attention_graph(
        self,
        spec: ModelSpec,
        a: Attention,
        case: AttentionCase,
    ) -> AttentionGraph | None:
        """A QSA layer of src/models/qwen4exp.cpp for a micro-batch of `n_ubatch` tokens, as ggml-alloc
        sees it: every tensor in graph order and the node after which each dies (in-place ops, views
        and cache writes allocate nothing). Checked tensor by tensor against the pinned build's
        allocator log (tests/data/qwen4exp-qsa-compute.json).

        What the layer sits on: `build_inp_embd`'s rows (the embeddings input and, for mixed batches,
        its copy, which a set_rows view keeps alive; the token rows and the mixed rows die, leaving
        holes), the residual streams and the hyper-connection norm {n_embd, hc, T} F32 that the inject
        matmul reads only at `build_hc_combine`. `build_qsa_sel`: the raw key, the re-pooled blocks'
        member keys gathered {idx_dim, kpool x n_new} and their mean, norm and rope, every pooled key
        gathered {idx_dim, n_pool}, the indexer query and the scores {n_pool, T}; the top blocks, their
        member cells and the tail {n_sel, T} I32; the dump-row arithmetic on four F32 {n_sel, T}
        tensors; the all -inf row repeated to {n_kv + n_sel, T} and the selection {n_kv, T} in the KQ
        mask's type. Then gated GQA (`build_layer_attn`): Q and gate {2 head_dim, n_head, T}, the
        normed Q, K and V (and their rotations for a quantized cache); flash attention's output, or
        the F32 scores {n_kv, T, n_head} (before the selection: the softmax reads them first), KQV and
        its contiguous copy; the gate, the output projection and the combined streams. Reserved with the
        cache full: n_new is every pool (`llama_memory_hybrid_idx_context`: n_pool_real = cells /
        kpool x n_seq_max), n_pool its `kpool_pad`. The k-pool inputs are `attention_activations`;
        `leaf_bytes` the per-layer fills (zero key half, indexer head weights, the -inf row, zeros)."""
        cells, n_ubatch, flash_attn, k_quantized, v_quantized, n_seq = (
            case.cells,
            case.n_ubatch,
            case.flash_attn,
            case.k_quantized,
            case.v_quantized,
            case.n_seq,
        )
        if not a.indexer_kpool:
            return None
        t, e, hc = n_ubatch, spec.n_embd, spec.hc_mult
        kp, d, hd = a.indexer_kpool, a.indexer_head_dim, a.head_dim_k
        mb = 2 if flash_attn else 4
        n_new, n_pool = _pools(a, cells, n_seq)
        n_top = min(n_pool, a.indexer_top_k // kp)
        n_sel = kp * n_top + kp - 1
        row, streams, q = 4 * e * t, 4 * hc * e * t, 4 * hd * a.n_head * t
        kv_rows, sel_rows = 4 * hd * a.n_head_kv * t, 4 * n_sel * t
        nodes = [
            # graph inputs (every leaf is placed before the first node; the other inputs are counted
            # beside the layer): the mixed-batch rows die early, a hole apart from those above
            *input_rows(row),
            GraphNode("res", streams, ("input_embed",)),  # the previous layer's l_last
            GraphNode("hc_norm", streams),
            GraphNode("hc_lo", 4 * spec.hc_low_rank * t),
            GraphNode("hc_gate", streams, ("hc_lo",)),
            GraphNode("mixed", row, ("hc_gate",)),
            GraphNode("k_raw", 4 * d * t),
            GraphNode("k_packed", 8 * d * t, ("k_raw",)),
            GraphNode("cpy_k", 0, ("k_packed",)),
            GraphNode("pool_rows", 4 * d * kp * n_new),
            GraphNode("pool_sum", 4 * d * n_new, ("pool_rows",)),
            GraphNode("pool_rope", 4 * d * n_new, ("pool_sum",)),
            GraphNode("scatter_pooled", 0, ("pool_rope",)),
            GraphNode("pooled", 4 * d * n_pool),
            GraphNode("q_idx", 4 * a.indexer_heads * d * t),
            GraphNode("q_idx_norm", 4 * a.indexer_heads * d * t, ("q_idx",)),
            GraphNode("score", 4 * n_pool * t, ("q_idx_norm", "pooled")),
            GraphNode("top_k", 4 * n_top * t),
            GraphNode("sel_members", 4 * kp * n_top * t),
            GraphNode("sel_idx", sel_rows, ("sel_members",)),
            GraphNode("q_full", 2 * q),
            GraphNode("q", q),
        ]
        # a quantized cache rotates Q, V and K (`llama_mul_mat_hadamard` with its k_rot / v_rot)
        # before the cache write, and the attention output back with v_rot
        q_name, k_name = ("q_rot", "k_rot") if k_quantized else ("q", "k_norm")
        v_name, out = ("v_rot", "kqv_out_rot") if v_quantized else ("v", "kqv_out")
        if k_quantized:
            nodes.append(GraphNode("q_rot", q, ("q",)))
        nodes.append(GraphNode("v", kv_rows))
        if v_quantized:
            nodes.append(GraphNode("v_rot", kv_rows, ("v",)))
        nodes += [GraphNode("k", kv_rows, ("mixed",)), GraphNode("k_norm", kv_rows, ("k",))]
        if k_quantized:
            nodes.append(GraphNode("k_rot", kv_rows, ("k_norm",)))
        nodes.append(GraphNode("cpy_kv", 0, (k_name, v_name)))
        if not flash_attn:  # the scores come first: the softmax reads them before the selection mask
            nodes.append(GraphNode("kq", 4 * cells * t * a.n_head, (q_name,)))
        nodes += [
            GraphNode("zeros", mb * n_sel * t),
            GraphNode("idx_f", sel_rows, ("sel_idx",)),
            GraphNode("top_score", 4 * n_top * t, ("score", "top_k")),
            GraphNode("live_pool", 4 * kp * n_top * t, ("top_score",)),
            GraphNode("live_tail", 4 * (kp - 1) * t),
            GraphNode("live", sel_rows, ("live_pool", "live_tail")),
            GraphNode("ones", sel_rows),
            GraphNode("dump", sel_rows, ("ones",)),
            GraphNode("idx_fixed", 0, ("live", "dump")),
            GraphNode("sel_i32", sel_rows, ("idx_f",)),
            GraphNode("mask_all", mb * (cells + n_sel) * t),
            GraphNode("set_rows_sel", 0, ("zeros", "sel_i32")),
            GraphNode("sel", mb * cells * t, ("mask_all",)),
        ]
        if flash_attn:
            nodes.append(GraphNode("kqv_out", q, (q_name, "sel")))
        else:  # softmax in place
            nodes += [GraphNode("kqv", q, ("sel", "kq")), GraphNode("kqv_out", q, ("kqv",))]
        if v_quantized:
            nodes.append(GraphNode("kqv_out_rot", q, ("kqv_out",)))
        nodes += [
            GraphNode("gate", q, ("q_full",)),
            GraphNode("attn_gated", 0, ("gate",)),
            GraphNode("attn_output", row, (out,)),
            GraphNode("inject", 4 * hc * t, ("hc_norm",)),
            GraphNode("hc_combine", streams, ("res", "attn_output", "inject")),
        ]
        leaves = 4 * d * t + 4 * a.indexer_heads * t + mb * (cells + 2 * n_sel)
        return AttentionGraph(tuple(nodes), leaves)

    # ---- GGUF metadata -------------------------------------------------------------------------

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """Qwen3-Next's keys plus `Qwen4ExpTextModel.set_gguf_parameters`."""
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        qsa = next(la.attn for la in spec.layers if la.attn.kind is not AttnKind.LINEAR)
        blocks = (*spec.layers, *spec.mtp_layers[: inv.mtp_kept])
        kv.update(
            {
                ".hyper_connection.count": spec.hc_mult,
                ".hyper_connection.low_rank": spec.hc_low_rank,
                ".attention.indexer.head_count": qsa.indexer_heads,
                ".attention.indexer.key_length": qsa.indexer_head_dim,
                ".attention.indexer.top_k": qsa.indexer_top_k,
                ".attention.compress_ratios": [la.attn.indexer_kpool for la in blocks],
            }
        )
        ple = spec.ngram_embedding
        if ple is None:
            return kv
        share = ple.rows // ple.n_heads
        kv.update(
            {
                ".ple.layers": [ple.layer],
                ".ple.ngram_size": ple.ngram_size,
                ".ple.heads_per_ngram": ple.heads_per_ngram,
                ".ple.conv_kernel": ple.conv_kernel,
                ".ple.eos_token_id": ple.eos_token_id,
                ".embedding_length_per_layer_input": ple.head_dim,
                ".ple.layer_multipliers": [2 * k + 1 for k in range(ple.ngram_size)],
                ".ple.head_offsets": [h * share for h in range(ple.n_heads)],
                ".ple.head_vocab_sizes": [share] * ple.n_heads,
            }
        )
        if ple.image_token_id >= 0:
            kv[".ple.image_token_id"] = ple.image_token_id
        return kv
