"""DeepSeek-V4 Flash and Pro (deepseek4): the layer plan from config.json (compress ratios, indexer,
hash routing), the pinned converter's tensors and their checkpoint-typed storage, parameter counts
against published figures, the `llama_kv_cache_dsv4` caches against a real llama.cpp log, and the
compute buffer (its compressed attention replayed through ggml-alloc) against measured dry runs."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from validation.materialize import shrink
from validation.runtime import lean, parse_memory_log, predicted_caches

from moeplan.arch.family import AttentionCase
from moeplan.arch.inventory import inventory
from moeplan.arch.registry import rules, spec_from_config
from moeplan.arch.spec import AttnKind, ModelSpec
from moeplan.engines.llamacpp import compute_bytes
from moeplan.errors import BadConfig
from moeplan.memory.kv import CacheConfig, cache_type, context, layer_memory
from moeplan.quant.ggml import GGMLType, tensor_bytes
from moeplan.sources.catalog import load_catalog
from tests.catalog_specs import spec

FLASH, PRO = "deepseek-v4-flash", "deepseek-v4-pro"
LOG = Path(__file__).parent / "data" / "deepseek4-materialised-c1024.log"
COMPUTE = Path(__file__).parent / "data" / "deepseek4-compute.json"  # llama-fit-params, pinned build
GiB, MiB = 1 << 30, 1 << 20


def params(s: ModelSpec, checkpoint: bool = False) -> int:
    return sum(t.n_elements for t in inventory(s, checkpoint=checkpoint).tensors)


def test_layer_plan_follows_compress_ratios() -> None:
    for model_id, kinds, topk in ((FLASH, {0: 2, 4: 21, 128: 20}, 512), (PRO, {128: 31, 4: 30}, 1024)):
        s = spec(model_id)
        assert Counter(la.attn.compress_ratio for la in s.layers) == kinds
        assert all(
            la.attn.kind is AttnKind.SWA and la.attn.window == 128 and la.attn.shared_kv for la in s.layers
        )
        assert all(bool(la.attn.indexer_heads) == (la.attn.compress_ratio == 4) for la in s.layers)
        assert {la.attn.indexer_top_k for la in s.layers if la.attn.indexer_heads} == {topk}
        assert [la.ffn.hash_routed for la in s.layers[:4]] == [True, True, True, False]
        assert s.hc_mult == 4 and len(s.mtp_layers) == 1 and s.mtp_layers[0].attn.compress_ratio == 0


def test_parameters_match_the_published_totals() -> None:
    """Flash 284B (the main file; the MTP block goes to its own GGUF), Pro 1.6T (with the MTP block)."""
    assert params(spec(FLASH)) == pytest.approx(284e9, rel=0.002)
    assert params(spec(PRO), checkpoint=True) == pytest.approx(1.6e12, rel=0.002)
    assert params(spec(PRO)) < params(spec(PRO), checkpoint=True)  # the main file drops mtp.*


def test_converter_keeps_the_checkpoint_dtypes() -> None:
    """FP8 -> Q8_0, BF16 stays, F32 stays, FP4 experts -> MXFP4, the hash table I32, whatever --outtype."""
    inv = inventory(spec(FLASH))
    stored = {t.name: t.stored for t in inv.tensors}
    want = {
        "token_embd.weight": GGMLType.BF16,
        "output.weight": GGMLType.BF16,
        "output_hc_fn.weight": GGMLType.F32,
        "blk.0.attn_q_b.weight": GGMLType.Q8_0,
        "blk.0.attn_output_a.weight": GGMLType.Q8_0,
        "blk.0.hc_attn_fn.weight": GGMLType.F32,
        "blk.0.ffn_gate_inp.weight": GGMLType.BF16,
        "blk.0.ffn_gate_tid2eid.weight": GGMLType.I32,
        "blk.0.ffn_up_exps.weight": GGMLType.MXFP4,
        "blk.0.ffn_down_shexp.weight": GGMLType.Q8_0,
        "blk.2.attn_compressor_kv.weight": GGMLType.BF16,
        "blk.2.attn_compressor_ape.weight": GGMLType.F32,
        "blk.2.indexer.proj.weight": GGMLType.BF16,
        "blk.2.indexer.attn_q_b.weight": GGMLType.Q8_0,
        "blk.3.exp_probs_b.bias": GGMLType.F32,
    }
    assert {n: stored[n] for n in want} == want
    assert "blk.3.ffn_gate_tid2eid.weight" not in stored and "blk.0.exp_probs_b.bias" not in stored
    assert "blk.3.indexer.proj.weight" not in stored  # HCA layers have no indexer
    # CSA windows overlap: its compressor projections are twice as wide as HCA's
    shapes = {t.name: t.shape for t in inv.tensors}
    assert shapes["blk.2.attn_compressor_kv.weight"] == (4096, 1024)
    assert shapes["blk.3.attn_compressor_kv.weight"] == (4096, 512)
    assert shapes["blk.3.attn_compressor_ape.weight"] == (512, 128)


def test_caches_match_the_llamacpp_log() -> None:
    """The materialised lean Flash at -c 1024 (the pinned llama-completion's log, tests/data): the
    window, CSA, HCA and indexer caches to the logged MiB and cells, the three compressor states."""
    small = lean(shrink(spec(FLASH)))
    measured = parse_memory_log(LOG.read_text())["caches"]
    predicted = predicted_caches(small, CacheConfig(n_ctx=1024))
    assert set(predicted) == set(measured) == {"swa", "csa", "hca", "indexer", "dsv4_state"}
    for kind, m in measured.items():
        p = predicted[kind]
        assert (p["cells"], p["layers"]) == (m["cells"], m["layers"]), kind
        assert abs(p["mib"] - m["mib"]) <= 0.005 * m.get("lines", 1), kind


def test_full_size_kv_at_one_million_tokens() -> None:
    """Flash, -c 1048576, f16: 43 window layers x PAD256(128 + 512) cells x 512 x 2 B, 21 CSA and 20
    HCA compressed caches of 262144 and 8192 cells, the CSA layers' 128-wide indexer keys."""
    lms = layer_memory(spec(FLASH), CacheConfig(n_ctx=1 << 20))
    window = 43 * 768 * 1024
    comp = 21 * 262144 * 1024 + 20 * 8192 * 1024
    index = 21 * 262144 * 256
    assert sum(lm.k_bytes for lm in lms) == window and sum(lm.v_bytes for lm in lms) == 0
    assert sum(lm.comp_bytes for lm in lms) == comp and sum(lm.index_bytes for lm in lms) == index
    state = 21 * 2 * 4 * (8 * 1024 + 8 * 256) + 20 * 2 * 4 * 128 * 512
    assert sum(lm.state_bytes for lm in lms) == state
    # Pro at 1M: about the 9.62 GiB per sequence DeepSeek states (llama.cpp adds the window and indexer)
    pro = sum(lm.cache_bytes for lm in layer_memory(spec(PRO), CacheConfig(n_ctx=1 << 20))) / GiB
    assert 9.6 < pro < 9.7


def test_caches_stay_per_sequence_with_unified_kv() -> None:
    """`llama_kv_cache_dsv4` passes unified = false: -kvu -np 4 -c 4096 gives 4 streams of 4096."""
    s = spec(FLASH)
    kvu = layer_memory(s, CacheConfig(n_ctx=4096, n_seq=4, unified=True))
    one = layer_memory(s, CacheConfig(n_ctx=4096))
    assert [lm.total for lm in kvu] == [4 * lm.total for lm in one]


def test_unmodelled_configs_are_refused() -> None:
    cfg = dict(load_catalog()[FLASH].config)
    with pytest.raises(BadConfig, match="expert_dtype"):
        spec_from_config({**cfg, "expert_dtype": None})
    with pytest.raises(BadConfig, match="compress_ratios"):
        spec_from_config({**cfg, "compress_ratios": [8] * 44})
    with pytest.raises(BadConfig, match="compress_ratios"):
        spec_from_config({**cfg, "compress_ratios": [0] * 10})


def test_materialised_shrink_keeps_the_cached_widths() -> None:
    small = shrink(spec(FLASH))
    a = next(la.attn for la in small.layers if la.attn.indexer_heads)
    assert (a.head_dim_k, a.indexer_head_dim, a.window, a.compress_ratio) == (512, 128, 128, 4)
    assert a.n_head * a.head_dim_k % a.o_groups == 0  # attn_output_a's groups split the heads


def _predicted_compute_mib(s: ModelSpec, cfg: CacheConfig) -> float:
    """The CPU compute buffer of llama-fit-params' dry run: every layer and the logits of the whole
    micro-batch on the host."""
    on = np.ones(s.n_layer, dtype=np.bool_)
    return compute_bytes(s, cfg, context(s, cfg).n_ubatch, True, on, on) / MiB


def test_compute_buffer_matches_the_measured_table() -> None:
    """The pinned llama-fit-params on full-size Flash and Pro (header-only GGUFs) and on materialised
    ones (embedding base 256 and 512), over contexts, micro-batches, sequences, flash attention and
    cache types (tests/data): within 10% or 6 MiB (+1 for the truncated integer
    MiB); where the plan warns (`DeepSeek4.compute_gap`: Pro, several sequences), within 20%."""
    table = json.loads(COMPUTE.read_text())
    for group in table["models"]:
        s = spec(group["model"]) if group["width"] is None else shrink(spec(group["model"]), group["width"])
        for r in group["runs"]:
            t = cache_type(r.get("cache", "f16"))
            cfg = CacheConfig(
                n_ctx=r["ctx"],
                n_ubatch=r["ubatch"],
                flash_attn=r["flash_attn"],
                n_seq=r["n_seq"],
                type_k=t,
                type_v=t,
            )
            predicted, measured = _predicted_compute_mib(s, cfg), r["compute_mib"]
            warned = rules("deepseek4").compute_gap(spec(group["model"]), r["n_seq"])
            tolerance = max((0.20 if warned else 0.10) * measured, 6) + 1
            assert abs(predicted - measured) <= tolerance, (group["model"], group["width"], r, predicted)


def test_compressed_attention_tensors_have_the_graphs_shapes() -> None:
    """Full-size Flash, -c 65536 -ub 512: the CSA layer's tensors as `build_attention_impl` shapes them
    (F16 masks with flash attention, F32 without), and the F16 / F32 {1, top-k, T} zeros leaf."""
    s, t = spec(FLASH), 512
    a = next(la.attn for la in s.layers if la.attn.compress_ratio == 4)
    lm = next(lm for lm in layer_memory(s, CacheConfig(n_ctx=65536, n_ubatch=t)) if lm.layer == 2)
    assert (lm.cells, lm.comp_cells) == (768, 16384)  # PAD256(128 + 512) window cells, 65536 / 4 rows
    family = rules("deepseek4")
    for fa, mask in ((True, 2), (False, 4)):
        graph = family.attention_graph(
            s, a, AttentionCase(lm.cells, lm.comp_cells, t, 1, fa, 2 * a.head_dim_k, False, False, 1)
        )
        assert graph is not None and graph.leaf_bytes == mask * a.indexer_top_k * t
        sizes = {n.name: n.nbytes for n in graph.nodes}
        assert sizes["q"] == 4 * 64 * 512 * t  # F32 {head_dim, n_head, T}
        assert sizes["l_last.prev"] == 4 * 4 * 4096 * t  # F32 {n_embd, hc_mult, T}
        assert sizes["k_all"] == 2 * 512 * (768 + 16384)  # F16 {head_dim, window + compressed rows}
        assert sizes["lid_score"] == 4 * 16384 * t  # F32 indexer scores {compressed rows, T}
        assert sizes["top_k_mask"] == mask * 16384 * t
        assert sizes["kq_mask"] == mask * (768 + 16384) * t
        assert ("kq" in sizes) is not fa and sizes.get("kq", 0) == (0 if fa else 4 * 64 * (768 + 16384) * t)


def test_unified_kv_compressed_attention_spans_every_sequence() -> None:
    """-kvu leaves DeepSeek-V4's caches one stream per sequence (`llama_kv_cache_dsv4`), so a
    compressed layer's `ggml_concat(raw_k, comp_k)` holds all n_seq streams: the materialised Flash
    under llama-server -c 32768 -np 4 -kvu -ub 512 measured 100.38 MiB (F16 cache) and 86.98 MiB
    (Q8_0) of CPU compute on the pinned build (validation/results/kv_state.json), 73.5 / 69.4 MiB
    when the graph was given the context's single stream."""
    s = shrink(spec(FLASH))
    assert {lm.n_stream for lm in layer_memory(s, CacheConfig(n_ctx=32768, n_seq=4, unified=True))} == {4}
    on = np.ones(s.n_layer, dtype=np.bool_)
    for t, measured in ((GGMLType.F16, 100.38), (GGMLType.Q8_0, 86.98)):
        cfg = CacheConfig(n_ctx=32768, n_seq=4, unified=True, type_k=t, type_v=t)
        predicted = compute_bytes(s, cfg, 4, True, on, on) / MiB  # llama-server: one output per slot
        assert abs(predicted - measured) <= 0.05 * measured, (t, predicted)


def test_compute_gap_is_declared_where_it_was_measured() -> None:
    """Flash with one sequence is covered; with several it is not, nor is Pro, whose first blocks'
    stack (wider streams, 128 heads) outweighs its logits phase; other families declare none."""
    family = rules("deepseek4")
    assert not family.compute_gap(spec(FLASH), 1)
    assert "18%" in family.compute_gap(spec(FLASH), 4)
    assert "17%" in family.compute_gap(spec(PRO), 1)
    assert not rules("qwen3moe").compute_gap(spec("qwen3-30b-a3b"), 4)


# antirez/deepseek-v4-gguf (huggingface.co/antirez/deepseek-v4-gguf README, files table and recipe):
# routed experts as named, attention projections / shared experts / output Q8_0, router, embedding,
# indexer, compressor and hyper-connection weights F16, norms / sinks / bias F32, hash table I32.
ANTIREZ_GIB = {"q4": 153.3, "q2": 80.8}


def _antirez_type(name: str, shape: tuple[int, ...], file: str) -> GGMLType:
    if "_exps." in name:
        if file == "q4":
            return GGMLType.Q4_K
        return GGMLType.Q2_K if "ffn_down_exps" in name else GGMLType.IQ2_XXS
    q8 = (
        "attn_q_a.",
        "attn_q_b.",
        "attn_kv.",
        "attn_output_a.",
        "attn_output_b.",
        "_shexp.",
        "output.weight",
    )
    if "indexer" not in name and any(k in name for k in q8):
        return GGMLType.Q8_0
    if "tid2eid" in name:
        return GGMLType.I32
    if len(shape) == 1 or name.endswith("_norm.weight"):
        return GGMLType.F32
    return GGMLType.F16


@pytest.mark.parametrize("file", sorted(ANTIREZ_GIB))
def test_tensor_inventory_reproduces_published_files(file: str) -> None:
    """Every tensor at its real shape: a published recipe's sizes come out to the GiB it states."""
    inv = inventory(spec(FLASH))
    size = sum(tensor_bytes(_antirez_type(t.name, t.shape, file), t.shape) for t in inv.tensors) / GiB
    assert size == pytest.approx(ANTIREZ_GIB[file], abs=0.05)
