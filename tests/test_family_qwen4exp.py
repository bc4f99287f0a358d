"""qwen4exp (Qwen3.8-Flash-Next): the layer plan from config.json (Gated DeltaNet + QSA, hyper-connections,
the n-gram PLE table), the tensors the pinned converter writes and the keys its loader reads, parameter
counts against the release, the indexer / recurrent / PLE-conv bytes by llama.cpp's rules, the QSA
layer's graph as ggml-alloc sees it and the compute buffer against measured runs of the pinned build,
and the configs the family refuses."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from validation.materialize import materialize, shrink
from validation.runtime import (
    COMPUTE_ABS_MIB,
    MemCase,
    Subject,
    compute_ok,
    lean,
    predicted_compute_mib,
    stored_weights,
)

from moeplan.arch.family import AttentionCase
from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, ModelSpec
from moeplan.engines.ggml_alloc import peak_bytes
from moeplan.engines.llamacpp import Frontend, compute_bytes
from moeplan.errors import BadConfig
from moeplan.memory.kv import CacheConfig, context, layer_memory
from moeplan.quant.ggml import GGMLType
from moeplan.sources.catalog import load_catalog

MODEL = "qwen3.8-flash-next"
COMPUTE = Path(__file__).parent / "data" / "qwen4exp-compute.json"
QSA_COMPUTE = Path(__file__).parent / "data" / "qwen4exp-qsa-compute.json"  # 57 server + 8 dry runs
# The runs' largest error: ggml-alloc's small holes, and the Gated DeltaNet state rows several sequences
# gather at -ub 32 (up to 2.6 MiB), which the recurrent estimate leaves out.
QSA_ABS_MIB = 4.0
PLE_ROWS = 320_001_536  # 128 checkpoint shards of 2,500,012 rows (safetensors headers)


def spec() -> ModelSpec:
    return load_catalog()[MODEL].spec()


def config(**changes: Any) -> dict[str, Any]:
    return {**load_catalog()[MODEL].config, **changes}


def test_layer_plan() -> None:
    s = spec()
    full = [il for il, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL]
    assert s.arch == "qwen4exp" and s.n_layer == 48 and full == list(range(3, 48, 4))
    assert all(s.layers[il].attn.kind is AttnKind.LINEAR for il in set(range(48)) - set(full))
    qsa = s.layers[3].attn
    assert (qsa.n_head, qsa.n_head_kv, qsa.head_dim_k) == (24, 2, 256)
    assert (qsa.indexer_heads, qsa.indexer_head_dim, qsa.indexer_top_k, qsa.indexer_kpool) == (
        4,
        128,
        2048,
        4,
    )
    gdn = s.layers[0].attn
    assert (gdn.linear_k_heads, gdn.linear_v_heads, gdn.linear_k_head_dim, gdn.conv_kernel) == (
        16,
        48,
        128,
        4,
    )
    moe = s.layers[0].ffn
    assert (moe.n_expert, moe.n_expert_used, moe.n_ff_exp, moe.n_ff_shexp) == (512, 10, 640, 640)
    assert (s.hc_mult, s.hc_low_rank) == (4, 320)
    assert len(s.mtp_layers) == 1 and s.mtp_layers[0].attn == qsa
    ple = s.ngram_embedding
    assert ple is not None
    assert (ple.layer, ple.rows, ple.head_dim, ple.n_heads, ple.conv_kernel) == (1, PLE_ROWS, 160, 16, 4)


def test_parameters_match_the_release() -> None:
    """179.55B with the MTP block (llama.cpp's print_info of the full-size file: 179.55 B); without the
    n-gram table the trunk is the published 125B; with the 0.45B vision tower it is the checkpoint's
    359,999,963,128 BF16 bytes."""
    s = spec()
    total = sum(t.n_elements for t in inventory(s).tensors)
    no_mtp = sum(t.n_elements for t in inventory(s, mtp=False).tensors)
    assert total == 179_551_050_368 and no_mtp == 176_943_899_520
    assert (no_mtp - PLE_ROWS * 160) / 125e9 == pytest.approx(1, abs=0.01)
    assert load_catalog()[MODEL].params_published.total == 176e9  # "125B-A6B MoE + 51B N-gram"
    assert (total + 0.45e9) * 2 == pytest.approx(359_999_963_128, rel=0.001)


def test_tensors_the_converter_writes() -> None:
    inv = inventory(spec())
    by_name = {t.name: t for t in inv.tensors}
    assert by_name["per_layer_token_embd.weight"].shape == (160, PLE_ROWS)
    assert "output_norm.weight" not in by_name and by_name["output_hc_down.weight"].shape == (10240, 320)
    # the mixer and PLE norms are 1-D in the checkpoint: F32, whatever the output type
    for name in ("blk.0.hc_attn_norm.weight", "blk.1.ple_norm_key.weight", "blk.48.nextn.hnorm.weight"):
        assert by_name[name].shape == (10240,) and by_name[name].stored is GGMLType.F32
    assert by_name["blk.0.hc_ffn_inject.weight"].shape == (10240, 4)
    assert (
        by_name["blk.1.ple_conv1d.weight"].shape == (4, 10240)
        and by_name["blk.1.ple_conv1d.weight"].stored is None
    )
    assert by_name["blk.3.indexer.q_proj.weight"].shape == (2560, 512)
    assert by_name["blk.48.nextn.eh_proj.weight"].shape == (5120, 2560)
    assert sum(".ple_" in n for n in by_name) == 6 and all(
        n.startswith("blk.1.") for n in by_name if ".ple_" in n
    )


def test_gguf_keys() -> None:
    inv = inventory(spec())
    kv = family("qwen4exp").gguf_metadata(inv)
    assert kv[".attention.compress_ratios"] == [0, 0, 0, 4] * 12 + [4]
    assert (kv[".hyper_connection.count"], kv[".hyper_connection.low_rank"]) == (4, 320)
    assert (kv[".ple.layers"], kv[".ple.eos_token_id"], kv[".ple.image_token_id"]) == ([1], 248044, 248056)
    offsets, sizes = kv[".ple.head_offsets"], kv[".ple.head_vocab_sizes"]
    assert isinstance(offsets, list) and isinstance(sizes, list) and len(offsets) == len(sizes) == 16
    assert offsets[-1] + sizes[-1] <= PLE_ROWS  # the loader's range check
    assert family("qwen4exp").u64_keys == {
        ".ple.layer_multipliers",
        ".ple.head_offsets",
        ".ple.head_vocab_sizes",
    }


def test_caches_and_state() -> None:
    """Per token, f16: 12 QSA layers x K+V (2 x 2 heads x 256) and the indexer's raw | pooled key
    (2 x 128); per sequence, F32: 36 Gated DeltaNet conv + state rows and the PLE layer's dilated conv
    history (3 x 3 x 4 x 2560)."""
    s = spec()

    def totals(n_ctx: int, n_seq: int = 1) -> tuple[int, int, int]:
        lms = layer_memory(s, CacheConfig(n_ctx=n_ctx, n_seq=n_seq, unified=True))
        kv = sum(lm.k_bytes + lm.v_bytes for lm in lms)
        return kv, sum(lm.index_bytes for lm in lms), sum(lm.state_bytes for lm in lms)

    (kv1, idx1, st1), (kv2, idx2, _) = totals(1024), totals(2048)
    assert (kv2 - kv1) // 1024 == 12 * 2 * 2 * 256 * 2 and (idx2 - idx1) // 1024 == 12 * 2 * 128 * 2
    gdn = 3 * (48 * 128 + 2 * 16 * 128) + 128 * 48 * 128
    assert st1 == 4 * (36 * gdn + 3 * 3 * 4 * 2560)
    assert totals(1024, n_seq=3)[2] == 3 * st1


def lean_subject() -> Subject:
    mm = materialize(lean(spec()))
    return Subject(MODEL, MODEL, mm.path, mm.spec, mm.inventory, stored_weights(mm), True, mm.holes)


@pytest.mark.parametrize("case", json.loads(COMPUTE.read_text())["cases"], ids=str)
def test_compute_buffer_matches_the_pinned_build(case: dict[str, Any]) -> None:
    mc = MemCase(
        case["ctx"], case["n_seq"], False, case.get("cache", "f16"), case["flash_attn"], case["n_ubatch"]
    )
    predicted = predicted_compute_mib(lean_subject(), mc.config(), mc.frontend())
    assert compute_ok(predicted, case["mib"]) and abs(predicted - case["mib"]) < COMPUTE_ABS_MIB


@pytest.mark.parametrize("run", json.loads(QSA_COMPUTE.read_text())["runs"], ids=str)
def test_qsa_compute_buffer_matches_the_server_runs(run: dict[str, Any]) -> None:
    """-np 1/4, -kvu on/off, -ub 32/512/2048, flash attention on/off, -c 512/4096/32768, and q8_0
    caches (Hadamard-rotated attention): the QSA layer replayed through ggml-alloc
    (`Qwen4Exp.attention_graph`), the FFN and Gated DeltaNet phases on the hyper-connection
    streams (`stream_activations`)."""
    mc = MemCase(
        run["ctx"], run["n_seq"], run["kvu"], run.get("cache", "f16"), run["flash_attn"], run["n_ubatch"]
    )
    fe = Frontend("llama-server", n_outputs_max=run["n_seq"])
    predicted = predicted_compute_mib(lean_subject(), mc.config(), fe)
    assert abs(predicted - run["mib"]) <= QSA_ABS_MIB


@pytest.mark.parametrize("run", json.loads(QSA_COMPUTE.read_text())["fullsize"]["runs"], ids=str)
def test_fullsize_compute_buffer_matches_the_dry_run(run: dict[str, Any]) -> None:
    """The real shapes (header-only file): every layer and the logits of the whole micro-batch on the
    host, within the validation's 5% or 16 MiB (+1 for the truncated integer MiB)."""
    s = spec()
    cfg = CacheConfig(
        n_ctx=run["ctx"], n_ubatch=run["n_ubatch"], flash_attn=run["flash_attn"], n_seq=run["n_seq"]
    )
    on = np.ones(s.n_layer, dtype=np.bool_)
    predicted = compute_bytes(s, cfg, context(s, cfg).n_ubatch, True, on, on) / 2**20
    assert compute_ok(predicted, run["mib"], truncated=True)


def test_qsa_graph_has_the_allocator_logs_shapes() -> None:
    """The lean file at -c 32768 -np 4 -ub 512 with flash attention, as the pinned build's ggml-alloc
    allocated layer 3 (an allocator built with its AT_PRINTF log on): with -kvu every sequence's
    pools live in one 32768-cell stream, so the re-pooled members are gathered {128, 4 x 32768}
    F32 and scored {32832, 512}; without it each stream holds 8192 cells."""
    s = lean_subject().spec
    a = s.layers[3].attn
    rules = family("qwen4exp")
    unified = rules.attention_graph(s, a, AttentionCase(32768, 0, 512, 1, True, 2 * 128, False, False, 4))
    split = rules.attention_graph(s, a, AttentionCase(8192, 0, 512, 4, True, 2 * 128, False, False, 4))
    assert unified is not None and split is not None
    sizes = {n.name: n.nbytes for n in unified.nodes}
    assert sizes["pool_rows"] == 4 * 128 * 131072 and sizes["pooled"] == 4 * 128 * 32832
    assert sizes["score"] == 4 * 32832 * 512 and sizes["sel_idx"] == 4 * 2051 * 512
    assert sizes["mask_all"] == 2 * 34819 * 512 and sizes["sel"] == 2 * 32768 * 512
    assert {n.name: n.nbytes for n in split.nodes}["pool_rows"] == 4 * 128 * 4 * 8192
    # the gather, the scores and the selection masks are live one after another, not at once
    big = ("pool_rows", "pool_sum", "pooled", "score", "mask_all", "sel")
    assert peak_bytes(unified.nodes) < sum(sizes[n] for n in big)


def test_no_ngram_table() -> None:
    """An empty ple_layer_ids writes no PLE keys and no table (`set_gguf_parameters`); only the PLE
    layer's conv row leaves the recurrent state."""
    s = spec_from_config(config(ple_layer_ids=[]))
    names = {t.name for t in inventory(s).tensors}
    assert s.ngram_embedding is None and not any("ple" in n or "per_layer" in n for n in names)
    assert ".ple.layers" not in family("qwen4exp").gguf_metadata(inventory(s))
    cfg = CacheConfig(n_ctx=1024)
    gap = sum(lm.state_bytes for lm in layer_memory(spec(), cfg)) - sum(
        lm.state_bytes for lm in layer_memory(s, cfg)
    )
    assert gap == 4 * 3 * 3 * 4 * 2560


def test_shrink_keeps_the_gather_n_embd_wide() -> None:
    small = shrink(spec())
    ple = small.ngram_embedding
    assert ple is not None and ple.n_heads * ple.head_dim == small.n_embd and ple.eos_token_id < small.n_vocab
    assert small.hc_low_rank == 320 and small.layers[3].attn.indexer_kpool == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hc_count": 1}, "hc_count"),
        ({"indexer_compress_ratio": 3}, "indexer_compress_ratio"),
        ({"indexer_kv_heads": 2}, "indexer_kv_heads"),
        ({"ple_layer_ids": [4]}, "linear_attention"),
        ({"ple_layer_ids": [2, 6]}, "exactly one"),
        ({"ple_embed_dim": 1280}, "ple_embed_dim"),
        ({"eos_token_id": None}, "eos_token_id"),
    ],
)
def test_unmodelled_configs_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BadConfig, match=message):
        spec_from_config(config(**changes))
