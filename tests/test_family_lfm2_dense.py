"""Dense LFM2 (`lfm2`: LFM2.5-1.2B, -350M, -230M): layer kinds from config.json, the FFN width the
converter derives (LFM2Model._add_feed_forward_length), the tensors src/models/lfm2.cpp loads,
parameter counts against the published checkpoints (sources in each YAML), published GGUF sizes,
and KV / conv state by llama.cpp's rules."""

import pytest

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.memory.weights import file_bytes, predict
from moeplan.quant.recipe import FileType
from tests.catalog_specs import config, kv_bytes_per_token, shapes, spec, state_bytes_per_sequence

# (model, layers, attention layers, n_embd, FFN width, tensors, parameters of the checkpoint)
MODELS = [
    ("lfm2.5-1.2b-instruct", 16, [2, 5, 8, 10, 12, 14], 2048, 8192, 148, 1_170_340_608),
    ("lfm2.5-350m", 16, [2, 5, 8, 10, 12, 14], 1024, 4608, 148, 354_483_968),
    ("lfm2.5-230m", 14, [2, 4, 6, 8, 10, 12], 1024, 2560, 132, 229_693_184),
]


@pytest.mark.parametrize(("model", "n_layer", "attn", "e", "n_ff", "n_tensors", "params"), MODELS)
def test_layers_tensors_and_parameters(
    model: str, n_layer: int, attn: list[int], e: int, n_ff: int, n_tensors: int, params: int
) -> None:
    s = spec(model)
    assert (s.arch, s.n_layer, s.n_embd, s.n_vocab, s.tied_embeddings) == ("lfm2", n_layer, e, 65536, True)
    assert [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL] == attn
    assert {(la.ffn.kind, la.ffn.n_ff) for la in s.layers} == {(FFNKind.DENSE, n_ff)}
    inv = inventory(s)
    assert len(inv.tensors) == n_tensors
    assert sum(t.n_elements for t in inv.tensors) == params


def test_tensors_follow_lfm2_cpp() -> None:
    """load_arch_tensors: shortconv {L_cache, E} / in_proj {E, 3E} / out_proj {E, E} on conv layers,
    Q/K/V/O with per-head q/k norms on attention layers, a dense FFN everywhere, the output norm as
    token_embd_norm and no output tensor for a tied model."""
    sh = shapes(spec("lfm2.5-1.2b-instruct"))
    assert sh["blk.0.shortconv.conv.weight"] == (3, 2048) and sh["blk.0.shortconv.in_proj.weight"] == (
        2048,
        6144,
    )
    assert sh["blk.2.attn_k.weight"] == (2048, 8 * 64) and sh["blk.2.attn_q_norm.weight"] == (64,)
    assert sh["blk.15.ffn_down.weight"] == (8192, 2048) and "blk.1.ffn_gate_inp.weight" not in sh
    assert sh["token_embd_norm.weight"] == (2048,) and "output.weight" not in sh


def test_ffn_width_is_the_converters_auto_adjust() -> None:
    """int(2 x ff / 3) x multiplier, rounded up to block_multiple_of; the raw width without the flag."""
    adjusted = spec_from_config(config("lfm2.5-350m", block_ffn_dim_multiplier=2.0))
    assert adjusted.layers[0].ffn.n_ff == 8960  # int(2.0 x 4437) = 8874 -> 35 x 256
    raw = spec_from_config(config("lfm2.5-350m", block_auto_adjust_ff_dim=False))
    assert raw.layers[0].ffn.n_ff == 6656


def test_an_untied_dense_model_writes_its_head() -> None:
    """gguf-py lists OUTPUT for LFM2 (not for LFM2MOE): a checkpoint with an lm_head keeps it."""
    untied = spec_from_config(config("lfm2.5-230m", tie_word_embeddings=False))
    assert shapes(untied)["output.weight"] == (1024, 65536)
    moe = spec_from_config(config("lfm2.5-8b-a1b", tie_word_embeddings=False))
    assert "output.weight" not in shapes(moe)


@pytest.mark.parametrize(
    ("quant", "published"),
    [(FileType.Q8_0, 1_246_253_888), (FileType.Q4_K_M, 730_895_168)],
)
def test_published_gguf_sizes(quant: FileType, published: int) -> None:
    """LiquidAI's LFM2.5-1.2B-Instruct-GGUF files (sources in the YAML); the predicted tensor data
    plus metadata comes within 0.03% (the same ~207 KB both times: the metadata)."""
    s = spec("lfm2.5-1.2b-instruct")
    got = file_bytes(predict(inventory(s), quant), s.n_vocab)
    assert abs(got / published - 1) < 0.0003


@pytest.mark.parametrize(("model", "n_conv", "e"), [
    ("lfm2.5-1.2b-instruct", 10, 2048),
    ("lfm2.5-350m", 10, 1024),
    ("lfm2.5-230m", 8, 1024),
])  # fmt: skip
def test_kv_and_conv_state(model: str, n_conv: int, e: int) -> None:
    """6 attention layers of 8 KV heads of 64 (F16); each conv layer keeps n_embd x (L_cache - 1) F32."""
    s = spec(model)
    assert kv_bytes_per_token(s) == 6 * 2 * 8 * 64 * 2
    assert state_bytes_per_sequence(s) == n_conv * e * (3 - 1) * 4
