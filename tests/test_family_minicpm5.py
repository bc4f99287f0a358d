"""MiniCPM5-1B: a plain `llama` (the pinned converter's LlamaModel) whose 16 query heads of 128 make
the query wider than the 1536 hidden size; parameter count, tensors, KV and the official GGUF sizes
against the published figures (sources in the YAML)."""

import pytest

from moeplan.arch.inventory import inventory
from moeplan.memory.weights import file_bytes, predict
from moeplan.quant.recipe import FileType
from tests.catalog_specs import kv_bytes_per_token, shapes, spec

MODEL = "minicpm5-1b"


def test_shape_and_parameters() -> None:
    """24 bias-free GQA layers (16 q / 2 kv heads of 128), FFN 4608, untied 130,560-row head: the
    card's 1,080,632,832 parameters, 679,552,512 of them outside the two embedding tables."""
    s = spec(MODEL)
    assert (s.arch, s.n_layer, s.n_embd, s.n_vocab, s.tied_embeddings) == ("llama", 24, 1536, 130560, False)
    a = s.layers[0].attn
    assert (a.n_head, a.n_head_kv, a.head_dim_k) == (16, 2, 128)
    inv = inventory(s)
    assert len(inv.tensors) == 219
    total = sum(t.n_elements for t in inv.tensors)
    assert total == 1_080_632_832 and total - 2 * 130560 * 1536 == 679_552_512
    sh = shapes(s)
    assert sh["blk.0.attn_q.weight"] == (1536, 2048) and sh["blk.0.attn_output.weight"] == (2048, 1536)
    assert sh["output.weight"] == (1536, 130560)


def test_kv_per_token() -> None:
    assert kv_bytes_per_token(spec(MODEL)) == 24 * 2 * 2 * 128 * 2


@pytest.mark.parametrize(
    ("quant", "published_gb"),
    [(FileType.F16, 2.17), (FileType.Q8_0, 1.15), (FileType.Q4_K_M, 0.688)],
)
def test_official_gguf_sizes(quant: FileType, published_gb: float) -> None:
    """openbmb/MiniCPM5-1B-GGUF as the card rounds it (to the last digit given)."""
    s = spec(MODEL)
    got = file_bytes(predict(inventory(s), quant), s.n_vocab) / 1e9
    assert round(got, len(str(published_gb).split(".")[1])) == published_gb
