"""DeepSeek-V4 Flash and Pro (`deepseek4`): hybrid compressed attention, hyper-connections, hash routing.

Every block attends with one shared key/value head (head_dim 512) over a 128-token sliding window and,
by its `compress_ratios` entry, over a compressed stream too: 4 = CSA (one row per 4 tokens, read
through a lightning indexer with its own compressed keys), 128 = HCA (one row per 128 tokens), 0 =
window only. The residual is `hc_mult` streams mixed by per-block hyper-connection weights (mHC), the
first `num_hash_layers` MoE routers pick experts from a token-id table, and the output projection is
grouped low-rank (`o_groups` x `o_lora_rank`). Pinned llama.cpp: `conversion/deepseek.py`
DeepseekV4Model, `src/models/deepseek4.cpp` (`load_arch_hparams`, `load_arch_tensors`),
`src/llama-kv-cache-dsv4.cpp` (the caches, see `memory/kv.py`).

The converter types each tensor by its checkpoint dtype whatever `--outtype` is (`tensor_force_quant`):
FP8 weights (with a `.scale`) are dequantized and written Q8_0, BF16 ones BF16, F32 ones F32, 1-D
tensors and norms F32, the FP4 routed experts repacked raw as MXFP4, the hash table as I32. The
checkpoint dtypes are those of DeepSeek's reference implementation (`inference/model.py` of the V4
release, e.g. github.com/Nicooo-Wang/DeepSeek-V4-Pro-code@0ec3a03 inference/model.py): `Linear`
weights FP8 (`default_dtype = float8_e4m3fn` for dtype "fp8"), including wo_a ("wo_a is FP8 in
checkpoint") and the shared expert; embedding, router weight (torch default dtype bf16), indexer
`weights_proj`, compressor `wkv`/`wgate` and lm_head ("stored in bf16") BF16; hyper-connection
parameters, attention sinks, compressor `ape` and router bias F32; routed experts FP4 (`expert_dtype`).
The MTP block (`mtp.*`) goes to a separate file (`--mtp` export); the main file drops it.
"""

import dataclasses

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import AttentionCase, AttentionGraph, Family, GGUFValue, GraphNode
from moeplan.arch.from_gguf import GGUFHParams
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, BadGGUF
from moeplan.quant.ggml import GGMLType

T = GGMLType
CSA_RATIO, HCA_RATIO = 4, 128  # the only ratios `load_arch_tensors` accepts besides 0
SQRT_SOFTPLUS = 4  # LLAMA_EXPERT_GATING_FUNC_TYPE_SQRT_SOFTPLUS, the only gating the loader accepts


def _ratios(cfg: Config, n: int) -> list[int]:
    ratios = cfg.get("compress_ratios")
    if (
        not isinstance(ratios, list)
        or len(ratios) < n
        or any(r not in (0, CSA_RATIO, HCA_RATIO) for r in ratios)
    ):
        raise BadConfig(
            f"compress_ratios must give 0, 4 or 128 for each of the {n} layers (and the MTP block)"
        )
    return [int(r) for r in ratios]


def _attention(cfg: Config, ratio: int) -> Attention:
    hd = c.integer(cfg, "head_dim")
    csa = ratio == CSA_RATIO
    return Attention(
        AttnKind.SWA,
        c.integer(cfg, "num_attention_heads"),
        c.integer(cfg, "num_key_value_heads"),
        hd,
        hd,
        c.integer(cfg, "sliding_window"),
        q_lora_rank=c.integer(cfg, "q_lora_rank"),
        qk_rope_head_dim=c.integer(cfg, "qk_rope_head_dim"),
        indexer_heads=c.integer(cfg, "index_n_heads") if csa else 0,
        indexer_head_dim=c.integer(cfg, "index_head_dim") if csa else 0,
        indexer_top_k=c.integer(cfg, "index_topk") if csa else 0,
        shared_kv=True,
        compress_ratio=ratio,
        o_groups=c.integer(cfg, "o_groups"),
        o_lora_rank=c.integer(cfg, "o_lora_rank"),
    )


# config.json scalars that reach only the GGUF metadata (`set_gguf_parameters`): no tensor, cache or
# buffer depends on them.
_SCALAR_KEYS = (
    (".attention.compress_rope_freq_base", "compress_rope_theta"),
    (".hyper_connection.sinkhorn_iterations", "hc_sinkhorn_iters"),
    (".hyper_connection.epsilon", "hc_eps"),
    (".expert_weights_scale", "routed_scaling_factor"),
    (".attention.layer_norm_rms_epsilon", "rms_norm_eps"),
    (".rope.freq_base", "rope_theta"),
    (".swiglu_limit", "swiglu_limit"),  # written per layer as swiglu_clamp_exp/shexp
)


def _scalars(cfg: Config) -> tuple[tuple[str, float], ...]:
    return tuple((key, float(c.get(cfg, name))) for key, name in _SCALAR_KEYS)


class DeepSeek4(Family):
    arch = "deepseek4"
    model_types = ("deepseek_v4",)
    mtp_kept = False  # DeepseekV4Model.filter_tensors skips `mtp.*` unless exporting the MTP file
    mixed_batch = False

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        if cfg.get("expert_dtype") != "fp4":
            raise BadConfig(
                f"DeepSeek-V4 with expert_dtype {cfg.get('expert_dtype')!r} is not modelled: the pinned "
                "converter repacks routed experts from FP4 only (DeepseekV4Model._write_mxfp4_expert_tensor)"
            )
        if cfg.get("scoring_func") != "sqrtsoftplus":
            raise BadConfig("DeepSeek-V4's llama.cpp loader accepts only scoring_func 'sqrtsoftplus'")
        n = c.integer(cfg, "num_hidden_layers")
        ratios = _ratios(cfg, n)
        n_hash = c.integer(cfg, "num_hash_layers")
        moe = c.routed_and_shared_moe(cfg)
        layers = [
            Layer(_attention(cfg, ratios[il]), dataclasses.replace(moe, hash_routed=il < n_hash))
            for il in range(n)
        ]
        mtp = c.mtp(cfg, Layer(_attention(cfg, ratios[n] if len(ratios) > n else 0), moe))
        spec = c.base(cfg, self.arch, layers, mtp_layers=mtp, gguf_scalars=_scalars(cfg))
        flags = frozenset({"norm_topk_prob"} if cfg.get("norm_topk_prob") else set())
        return dataclasses.replace(spec, hc_mult=c.integer(cfg, "hc_mult"), flags=flags)

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """The keys `load_arch_hparams` reads: every layer slides (`set_swa_pattern(0)`), its cache
        kind is its `attention.compress_ratios` entry, the first `hash_layer_count` route by table."""
        n = hp.n_layer_all - hp.n_nextn
        ratios = hp.value("attention.compress_ratios")
        if (
            not isinstance(ratios, list)
            or len(ratios) < hp.n_layer_all
            or any(r not in (0, CSA_RATIO, HCA_RATIO) for r in ratios)
        ):
            raise BadGGUF(f"{hp.name}: deepseek4.attention.compress_ratios must give 0, 4 or 128 per block")
        hd = hp.integer("attention.key_length")

        def attention(ratio: int) -> Attention:
            csa = ratio == CSA_RATIO
            return Attention(
                AttnKind.SWA,
                hp.integer("attention.head_count"),
                hp.integer("attention.head_count_kv"),
                hd,
                hd,
                hp.integer("attention.sliding_window"),
                q_lora_rank=hp.integer("attention.q_lora_rank"),
                qk_rope_head_dim=hp.integer("rope.dimension_count"),
                indexer_heads=hp.integer("attention.indexer.head_count") if csa else 0,
                indexer_head_dim=hp.integer("attention.indexer.key_length") if csa else 0,
                indexer_top_k=hp.integer("attention.indexer.top_k") if csa else 0,
                shared_kv=True,
                compress_ratio=ratio,
                o_groups=hp.integer("attention.output_group_count"),
                o_lora_rank=hp.integer("attention.output_lora_rank"),
            )

        n_ff_exp, n_shared = hp.integer("expert_feed_forward_length"), hp.integer("expert_shared_count")
        moe = FFN(
            FFNKind.MOE,
            n_expert=hp.integer("expert_count"),
            n_expert_used=hp.integer("expert_used_count"),
            n_ff_exp=n_ff_exp,
            n_shared=n_shared,
            n_ff_shexp=n_ff_exp * n_shared,
        )
        n_hash = hp.integer("hash_layer_count")
        layers = tuple(
            Layer(attention(int(ratios[il])), dataclasses.replace(moe, hash_routed=il < n_hash))
            for il in range(n)
        )
        mtp = tuple(Layer(attention(int(ratios[il])), moe) for il in range(n, hp.n_layer_all))
        embd = hp.shape("token_embd.weight")
        if embd is None:
            raise BadGGUF(f"{hp.name}: no token_embd.weight tensor")
        clamp = hp.value("swiglu_clamp_exp")
        limit = clamp[0] if isinstance(clamp, list) and clamp else clamp
        if not isinstance(limit, int | float):
            raise BadGGUF(f"{hp.name}: deepseek4.swiglu_clamp_exp is missing")
        found = [(key, hp.value(key[1:])) for key, _ in _SCALAR_KEYS[:-1]]
        scalars = (
            *((k, float(v)) for k, v in found if isinstance(v, int | float)),
            (".swiglu_limit", float(limit)),
        )
        return ModelSpec(
            name=hp.name,
            arch=self.arch,
            n_embd=hp.integer("embedding_length"),
            n_vocab=embd[1],
            tied_embeddings=False,
            layers=layers,
            context_length=hp.integer("context_length", 0),
            mtp_layers=mtp,
            flags=frozenset({"norm_topk_prob"} if hp.value("expert_weights_norm") else set()),
            model_type="deepseek_v4",
            gguf_scalars=scalars,
            hc_mult=hp.integer("hyper_connection.count"),
        )

    # ---- tensors -------------------------------------------------------------------------------

    def head(self, b: Builder, spec: ModelSpec) -> None:
        b.add("token_embd.weight", (spec.n_embd, spec.n_vocab), Role.EMBED, stored=T.BF16)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        p, e, a = f"blk.{il}", spec.n_embd, layer.attn
        attn, norm = layout.mtp_or(Role.ATTN, mtp), layout.mtp_or(Role.NORM, mtp)
        hc_dim, hc_mix = spec.hc_mult * e, (2 + spec.hc_mult) * spec.hc_mult
        b.add(f"{p}.attn_norm.weight", (e,), norm, il)
        b.add(f"{p}.attn_sinks.weight", (a.n_head,), attn, il)
        b.add(f"{p}.attn_q_a.weight", (e, a.q_lora_rank), attn, il, T.Q8_0)
        b.add(f"{p}.attn_q_a_norm.weight", (a.q_lora_rank,), norm, il)
        b.add(f"{p}.attn_q_b.weight", (a.q_lora_rank, a.n_head * a.head_dim_k), attn, il, T.Q8_0)
        b.add(f"{p}.attn_kv.weight", (e, a.head_dim_k), attn, il, T.Q8_0)
        b.add(f"{p}.attn_kv_a_norm.weight", (a.head_dim_k,), norm, il)
        # written 2-D {n_head*head_dim/o_groups, o_groups*o_lora_rank}; the loader reshapes it to 3-D
        b.add(
            f"{p}.attn_output_a.weight",
            (a.n_head * a.head_dim_k // a.o_groups, a.o_groups * a.o_lora_rank),
            attn,
            il,
            T.Q8_0,
        )
        b.add(f"{p}.attn_output_b.weight", (a.o_groups * a.o_lora_rank, e), attn, il, T.Q8_0)
        for part in ("attn", "ffn"):
            b.add(f"{p}.hc_{part}_fn.weight", (hc_dim, hc_mix), attn, il, T.F32)
            b.add(f"{p}.hc_{part}_base.weight", (hc_mix,), attn, il)
            b.add(f"{p}.hc_{part}_scale.weight", (3,), attn, il)
        if a.compress_ratio:
            self._compressor(b, f"{p}.attn_compressor", il, e, a.head_dim_k, a.compress_ratio, attn)
        if a.indexer_heads:
            b.add(f"{p}.indexer.proj.weight", (e, a.indexer_heads), attn, il, T.BF16)
            b.add(
                f"{p}.indexer.attn_q_b.weight",
                (a.q_lora_rank, a.indexer_heads * a.indexer_head_dim),
                attn,
                il,
                T.Q8_0,
            )
            self._compressor(b, f"{p}.indexer_compressor", il, e, a.indexer_head_dim, a.compress_ratio, attn)
        self.ffn(b, spec, p, il, layer, mtp)
        if mtp:
            layout.nextn(b, p, il, e, spec.n_vocab)

    @staticmethod
    def _compressor(b: Builder, p: str, il: int, e: int, hd: int, ratio: int, role: Role) -> None:
        """Gated pooling of `ratio` tokens into one row of `hd`; CSA's (ratio 4) windows overlap, so
        its projections are twice as wide (`coff`, `load_arch_tensors`)."""
        coff = 2 if ratio == CSA_RATIO else 1
        b.add(f"{p}_kv.weight", (e, coff * hd), role, il, T.BF16)
        b.add(f"{p}_gate.weight", (e, coff * hd), role, il, T.BF16)
        b.add(f"{p}_ape.weight", (coff * hd, ratio), role, il, T.F32)
        b.add(f"{p}_norm.weight", (hd,), Role.MTP if role is Role.MTP else Role.NORM, il)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        f, e = layer.ffn, spec.n_embd
        router = layout.mtp_or(Role.ROUTER, mtp)
        b.add(f"{p}.ffn_gate_inp.weight", (e, f.n_expert), router, il, T.BF16)
        if f.hash_routed:
            b.add(f"{p}.ffn_gate_tid2eid.weight", (f.n_expert_used, spec.n_vocab), router, il, T.I32)
        else:
            b.add(f"{p}.exp_probs_b.bias", (f.n_expert,), router, il)
        b.add(f"{p}.ffn_norm.weight", (e,), layout.mtp_or(Role.NORM, mtp), il)
        layout.expert_stacks(b, p, il, f, e, layout.mtp_or(Role.EXPERT, mtp), T.MXFP4)
        shexp = layout.mtp_or(Role.SHARED_EXPERT, mtp)
        b.add(f"{p}.ffn_gate_shexp.weight", (e, f.n_ff_shexp), shexp, il, T.Q8_0)
        b.add(f"{p}.ffn_up_shexp.weight", (e, f.n_ff_shexp), shexp, il, T.Q8_0)
        b.add(f"{p}.ffn_down_shexp.weight", (f.n_ff_shexp, e), shexp, il, T.Q8_0)

    def tail(self, b: Builder, spec: ModelSpec) -> None:
        e, hc = spec.n_embd, spec.hc_mult
        b.add("output_norm.weight", (e,), Role.NORM)
        b.add("output.weight", (e, spec.n_vocab), Role.OUTPUT, stored=T.BF16)
        b.add("output_hc_fn.weight", (hc * e, hc), Role.OUTPUT, stored=T.F32)
        b.add("output_hc_base.weight", (hc,), Role.OUTPUT)
        b.add("output_hc_scale.weight", (1,), Role.OUTPUT)

    # ---- compute graph -------------------------------------------------------------------------

    def compute_gap(self, spec: ModelSpec, n_seq: int) -> str:
        """Measured against the pinned llama-fit-params on full-size Flash and Pro (header-only GGUFs:
        ctx 4096-262144, -ub 512/2048, flash attention on and off, f16 and q8_0 caches) and on
        materialised ones (tests/data/deepseek4-compute.json). `attention_graph` replays one block;
        what it leaves out is where earlier blocks left their tensors. Block 1 starts above the first
        block's freed embedding rows, `hc_init` and `hc_attn_post` (2 F32 rows and 2 stream sets per
        token), split by small live tensors into holes its q does not fit: where that stack (input
        row, those holes, the live streams, wq_b's output and q) outweighs the logits phase per
        token, the buffer measured up to 17% above the estimate (Pro, -c 4096 -ub 512: 499 vs 415
        MiB). With several sequences, up to 18% (Flash, -c 262144 -ub 512 -np 4: 382 vs 312 MiB).
        Otherwise within 10% (or 6 MiB on the small files)."""
        a = spec.layers[0].attn
        row, streams, q = spec.n_embd, spec.hc_mult * spec.n_embd, a.n_head * a.head_dim_k
        first_block = 3 * row + 3 * streams + 2 * q  # F32 values per token
        logits = spec.n_vocab + 2 * row
        if first_block > logits:
            return (
                "DeepSeek-V4: llama.cpp's compute buffer measured up to 17% above moeplan's figure "
                "(holes the first block leaves in ggml-alloc's buffer under block 1); keep that headroom"
            )
        if n_seq > 1:
            return (
                "DeepSeek-V4 with several sequences: llama.cpp's compute buffer measured up to 18% above "
                "moeplan's figure (holes earlier layers leave in ggml-alloc's buffer); keep that headroom"
            )
        return ""

    def attention_graph(
        self,
        spec: ModelSpec,
        a: Attention,
        case: AttentionCase,
    ) -> AttentionGraph:
        """`build_attention_impl` of src/models/deepseek4.cpp for a micro-batch of `n_ubatch` tokens,
        from the previous layer's hyper-connection streams to the attention output; every tensor
        that grows with the tokens or the context, in graph order, and where each is last used.

        F32 {hc_mult * n_embd, T} residual streams: the previous block's `hc_attn_post` is freed
        when its `l_last` is built, leaving a hole of its size below the streams. q: wq_b's F32
        {head_dim, n_head, T} output, its RMS norm beside it (rope in place), Hadamard-rotated for a
        quantized K cache (`llama_mul_mat_hadamard` with the cache's `k_rot`). Compressed layers
        attend over `ggml_concat(raw_k, comp_k)`, {head_dim, raw + compressed cells, n_stream} in
        the K type, under `ggml_concat(raw_mask, comp_mask)`. CSA (ratio 4) builds that mask from
        the lightning indexer (`build_lid_top_k`: F32 scores {compressed, T}, `ggml_top_k` I32 and
        its cont) and `build_top_k_mask` (a -inf fill of the CSA mask, the top-k rows set to zero
        from a {1, k, T} zeros leaf, plus the mask: two mask-sized tensors). Flash attention
        writes F32 {head_dim, n_head, T}; without it the graph transposes V (a copy of the keys),
        builds F32 scores {cells, T, n_head} before the mask, then softmax in place, KQV and its
        contiguous copy. Masks are F16 with flash attention, else F32 (the graph inputs themselves
        are counted with the other KQ masks, engines/llamacpp.py)."""
        cells, comp_cells, n_ubatch, n_stream, flash_attn, k_cell_bytes, k_quantized = (
            case.cells,
            case.comp_cells,
            case.n_ubatch,
            case.n_stream,
            case.flash_attn,
            case.k_cell_bytes,
            case.k_quantized,
        )
        t, hd, mb = n_ubatch, a.head_dim_k, 2 if flash_attn else 4
        ratio, resid, q = a.compress_ratio, 4 * spec.hc_mult * spec.n_embd * t, 4 * a.n_head * hd * t
        kv_cells = cells + comp_cells if ratio else cells
        nodes = [
            GraphNode("inp_embd", 4 * spec.n_embd * t),  # a graph input, live to the end
            GraphNode("hc_attn_post.prev", resid),
            GraphNode("l_last.prev", resid, ("hc_attn_post.prev",)),
            GraphNode("q_b", q),
            GraphNode("q", q, ("q_b",)),
        ]
        if k_quantized:
            nodes.append(GraphNode("q_rot", q, ("q",)))
        q_name = "q_rot" if k_quantized else "q"
        k_name = "k_all" if ratio else ""
        if ratio:
            nodes.append(GraphNode("k_all", k_cell_bytes * kv_cells * n_stream))
        if not flash_attn:
            nodes += [
                GraphNode("v_cont", 2 * hd * kv_cells * n_stream),
                GraphNode("kq", 4 * a.n_head * kv_cells * t, (q_name, *filter(None, [k_name]))),
            ]
        mask = ""
        if ratio == 4:
            k = min(a.indexer_top_k, comp_cells)
            nodes += [
                GraphNode("lid_score", 4 * comp_cells * t),
                GraphNode("top_k", 4 * k * t, ("lid_score",)),
                GraphNode("top_k_cont", 4 * k * t, ("top_k",)),
                GraphNode("mask_fill", mb * comp_cells * t),
                GraphNode("set_rows", 0, ("top_k_cont",)),
                GraphNode("top_k_mask", mb * comp_cells * t, ("mask_fill",)),
            ]
            mask = "kq_mask"
            nodes.append(GraphNode(mask, mb * kv_cells * t, ("top_k_mask",)))
        elif ratio:
            mask = "kq_mask"
            nodes.append(GraphNode(mask, mb * kv_cells * t))
        if flash_attn:
            nodes.append(GraphNode("attn_out", q, tuple(filter(None, (q_name, k_name, mask)))))
        else:
            nodes += [
                GraphNode("kqv", q, tuple(filter(None, ("kq", "v_cont", mask)))),
                GraphNode("attn_out", q, ("kqv",)),
            ]
        if k_quantized:
            nodes.append(GraphNode("attn_out_rot", q, ("attn_out",)))
        leaf = mb * min(a.indexer_top_k, comp_cells) * t if ratio == 4 else 0
        return AttentionGraph(tuple(nodes), leaf)

    # ---- GGUF metadata -------------------------------------------------------------------------

    def rope_dims(self, spec: ModelSpec, a: Attention) -> int:
        return a.qk_rope_head_dim

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """`set_gguf_parameters` of DeepseekV4Model."""
        kv = super().gguf_metadata(inv)
        spec = inv.spec
        scalars = dict(spec.gguf_scalars)
        limit = scalars.pop(".swiglu_limit")
        kv.update(scalars)
        kv[".hyper_connection.sinkhorn_iterations"] = int(scalars[".hyper_connection.sinkhorn_iterations"])
        a = spec.layers[0].attn
        idx = next(la.attn for la in spec.layers if la.attn.indexer_heads)
        moe = spec.layers[0].ffn
        n = inv.block_count
        kv.update(
            {
                ".attention.q_lora_rank": a.q_lora_rank,
                ".attention.indexer.head_count": idx.indexer_heads,
                ".attention.indexer.key_length": idx.indexer_head_dim,
                ".attention.indexer.top_k": idx.indexer_top_k,
                ".attention.output_group_count": a.o_groups,
                ".attention.output_lora_rank": a.o_lora_rank,
                ".attention.compress_ratios": [
                    la.attn.compress_ratio for la in (*spec.layers, *spec.mtp_layers)
                ],
                ".hyper_connection.count": spec.hc_mult,
                ".hash_layer_count": sum(la.ffn.hash_routed for la in spec.layers),
                ".embedding_length_out": spec.n_embd * spec.hc_mult,
                ".expert_gating_func": SQRT_SOFTPLUS,
                ".expert_weights_norm": spec.has("norm_topk_prob"),
                ".swiglu_clamp_exp": [limit] * n,
                ".swiglu_clamp_shexp": [limit] * n,
            }
        )
        kv[".expert_shared_count"] = moe.n_shared
        kv.pop(".expert_shared_feed_forward_length", None)  # the loader sizes the shared FFN n_ff_exp x count
        return kv
