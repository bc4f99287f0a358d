"""Every catalog model's GGUF, as moeplan writes it for llama.cpp (materialised), read back by the
file-only path (`spec_from_gguf`: no config.json) gives the same model: layer kinds and widths, and
byte-identical KV cache and recurrent state. The family's `gguf_metadata` and `spec_from_gguf` are
each other's inverse, and both follow what llama.cpp's loader reads."""

import pytest
from validation.materialize import materialize

from moeplan.arch.spec import Layer
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.sources.catalog import load_catalog
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf

CONFIGS = (CacheConfig(n_ctx=5000, n_seq=4), CacheConfig(n_ctx=4096, n_seq=2, unified=True))


def _shape(la: Layer) -> tuple[object, ...]:
    a, f = la.attn, la.ffn
    return (a.kind, a.n_head, a.n_head_kv, a.head_dim_k, a.head_dim_v, a.window, f.kind, f.n_ff, f.n_expert,
            f.n_expert_used, f.n_ff_exp, f.n_ff_shexp)  # fmt: skip


@pytest.mark.parametrize("model_id", sorted(load_catalog()))
def test_materialised_file_reads_back_as_the_same_model(model_id: str) -> None:
    m = materialize(load_catalog()[model_id].spec())
    got, want = spec_from_gguf(read_local(m.path)), m.spec
    assert (got.arch, got.n_embd, got.n_vocab, got.n_layer) == (
        want.arch,
        want.n_embd,
        want.n_vocab,
        want.n_layer,
    )
    assert len(got.mtp_layers) == m.inventory.mtp_kept
    diffs = [(il, _shape(g), _shape(w)) for il, (g, w) in enumerate(zip(got.layers, want.layers, strict=True))
             if _shape(g) != _shape(w)]  # fmt: skip
    assert not diffs, diffs[:3]
    for cfg in CONFIGS:
        assert [lm.total for lm in layer_memory(got, cfg)] == [lm.total for lm in layer_memory(want, cfg)], (
            cfg
        )
