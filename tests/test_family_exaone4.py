"""exaone4 (EXAONE-4.0-32B, EXAONE-4.0-1.2B): the tensors conversion/exaone.py writes and
src/models/exaone4.cpp loads (post-norms only, per-head q/k norms, the llama3 rope_freqs), parameter
counts, the 32B's 3:1 sliding/global pattern with RoPE-less global layers and the 1.2B's full
attention (exaone4.cpp windows only a 64-layer model), the KV cache, what a file reads back as, and the
configs this family refuses."""

import dataclasses
from typing import Any

import pytest
from validation.llamacpp import load_check
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind
from moeplan.errors import UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory, pad
from moeplan.sources.catalog import load_catalog
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import hparams as gguf_hparams
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, full_kv_per_token, shapes, spec

# (parameters incl. the rope factors, tensors, layers, F16 KV bytes per token of the full layers)
MODELS: dict[str, tuple[int, int, int, int]] = {
    # llama.cpp prints 32.00 B; 64 rope factors
    "exaone-4.0-32b": (32_003_216_448, 3 + 1 + 64 * 11, 64, 16 * 2 * 8 * 128 * 2),
    # tied (no output.weight); llama.cpp prints 1.28 B; 32 rope factors
    "exaone-4.0-1.2b": (1_279_391_520, 2 + 1 + 30 * 11, 30, 30 * 2 * 8 * 64 * 2),
}
BLOCK = {
    "attn_q.weight",
    "attn_k.weight",
    "attn_v.weight",
    "attn_output.weight",
    "attn_q_norm.weight",
    "attn_k_norm.weight",
    "post_attention_norm.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
    "post_ffw_norm.weight",
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_parameters_tensors_and_kv(model: str) -> None:
    n_params, n_tensors, n_layer, kv = MODELS[model]
    s = spec(model)
    inv = inventory(s)
    assert s.arch == "exaone4" and s.n_layer == n_layer and s.flags == {"rope_freqs"}
    assert sum(t.n_elements for t in inv.tensors) == n_params
    assert len(inv.tensors) == n_tensors
    assert full_kv_per_token(s) == kv
    assert abs(n_params / load_catalog()[model].params_published.total - 1) < 0.07


def test_block_has_only_post_norms_and_head_qk_norms() -> None:
    t = shapes(spec("exaone-4.0-32b"))
    assert {n.removeprefix("blk.9.") for n in t if n.startswith("blk.9.")} == BLOCK
    assert t["blk.9.attn_q_norm.weight"] == t["blk.9.attn_k_norm.weight"] == (128,)
    assert t["blk.9.attn_output.weight"] == (5120, 5120)
    assert t["rope_freqs.weight"] == (64,) and t["output.weight"] == (5120, 102400)
    t = shapes(spec("exaone-4.0-1.2b"))
    assert "output.weight" not in t and t["rope_freqs.weight"] == (32,)


def test_32b_slides_three_layers_of_four_and_skips_rope_on_the_global_ones() -> None:
    s = spec("exaone-4.0-32b")
    lllg = [(AttnKind.SWA, True)] * 3 + [(AttnKind.FULL, False)]
    assert [(la.attn.kind, la.attn.rope) for la in s.layers] == lllg * 16
    assert {la.attn.window for la in s.layers if la.attn.kind is AttnKind.SWA} == {4096}
    kv = family("exaone4").gguf_metadata(inventory(s))
    assert kv[".attention.sliding_window"] == 4096
    assert kv[".attention.sliding_window_pattern"] == [il % 4 < 3 for il in range(64)]
    assert kv[".rope.dimension_count"] == 128


def test_32b_kv_cache() -> None:
    """16 global layers grow with the context; 48 SWA layers hold PAD256(4096 + ubatch) cells."""
    layers = layer_memory(spec("exaone-4.0-32b"), CacheConfig(n_ctx=32768))
    full = [lm for lm in layers if lm.kind is AttnKind.FULL]
    swa = [lm for lm in layers if lm.kind is AttnKind.SWA]
    assert len(full) == 16 and {lm.cells for lm in full} == {32768}
    assert len(swa) == 48 and {lm.cells for lm in swa} == {pad(4096 + 512)}


def test_only_64_layers_slide() -> None:
    """exaone4.cpp: a window in a config of another depth is ignored (all full attention, with RoPE);
    at 64 layers without a window the loader's 4096 and period 4 apply."""
    small = spec_from_config(config("exaone-4.0-1.2b", sliding_window=4096, sliding_window_pattern="LLLG"))
    assert {(la.attn.kind, la.attn.rope) for la in small.layers} == {(AttnKind.FULL, True)}
    assert (
        spec_from_config(config("exaone-4.0-32b", sliding_window=None)).layers
        == spec("exaone-4.0-32b").layers
    )


def test_layer_types_set_the_pattern() -> None:
    types = ["full_attention" if il % 2 else "sliding_attention" for il in range(64)]
    s = spec_from_config(config("exaone-4.0-32b", layer_types=types))
    assert [la.attn.kind is AttnKind.SWA for la in s.layers] == [il % 2 == 0 for il in range(64)]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_file_reads_back_as_materialised(model: str) -> None:
    m = materialize(spec(model))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.flags == m.spec.flags
    assert got.tied_embeddings == m.spec.tied_embeddings
    assert shapes(got) == shapes(m.spec)


@pytest.mark.parametrize(
    ("changes", "error"),
    [({"head_dim": 96}, UnsupportedArchitecture), ({"num_nextn_predict_layers": 1}, UnsupportedArchitecture)],
)
def test_guards(changes: dict[str, Any], error: type[Exception]) -> None:
    """attn_output is {n_embd, n_embd}: the query width must be hidden_size; NextN blocks are not modelled."""
    with pytest.raises(error):
        spec_from_config(config("exaone-4.0-1.2b", **changes))


@pytest.mark.llamacpp
@pytest.mark.parametrize("model", sorted(MODELS))
def test_inventory_is_what_llamacpp_loads(model: str) -> None:
    """exaone4.cpp creates exactly the inventory's tensors and allocates the bytes moeplan predicts."""
    c = load_check(model, completion=False)
    assert c["ok"], (c.get("failure"), c["error"])
    assert c["predicted"]["tensors"] == MODELS[model][1]


def test_files_with_nextn_layers_are_refused() -> None:
    """The loader keeps NextN blocks this family does not model (their tensors differ)."""
    hp = gguf_hparams(read_local(materialize(spec("exaone-4.0-1.2b")).path))
    blocks = hp.integer("block_count")
    meta = {**hp.meta, "exaone4.block_count": blocks + 1, "exaone4.nextn_predict_layers": 1}
    with pytest.raises(UnsupportedArchitecture):
        family("exaone4").spec_from_gguf(dataclasses.replace(hp, meta=meta))
