"""Intern-S1's text model as the pinned converter writes it (qwen3moe: the text_config's
Qwen3MoeForCausalLM): the Qwen3-235B-A22B layout with the larger Intern-S1 vocabulary, its parameter
count against the published figures (which include the 6B InternViT tower), KV per token and layers."""

from moeplan.arch.inventory import inventory
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog, resolve
from tests.catalog_specs import shapes, spec

INTERN_S1 = "intern-s1"
VISION_PUBLISHED = 6e9  # "a 6B Vision encoder (InternViT)" (InternLM/Intern-S1 README)


def test_layers_are_qwen3_235b_with_the_intern_vocabulary() -> None:
    s, qwen = spec(INTERN_S1), spec("qwen3-235b-a22b")
    assert s.arch == "qwen3moe" and s.n_layer == 94 and s.context_length == 65536
    assert s.layers == qwen.layers and (s.n_embd, s.tied_embeddings) == (qwen.n_embd, False)
    assert {(la.attn.kind, la.ffn.kind) for la in s.layers} == {(AttnKind.FULL, FFNKind.MOE)}
    assert s.n_vocab == 153216 and qwen.n_vocab == 151936
    sh = shapes(s)
    assert sh["token_embd.weight"] == sh["output.weight"] == (4096, 153216)


def test_parameters_vs_published() -> None:
    trunk = predict(inventory(spec(INTERN_S1)), FileType.BF16)
    qwen = predict(inventory(spec("qwen3-235b-a22b")), FileType.BF16)
    # Qwen3-235B-A22B (llama.cpp: 235.09 B) plus 1,280 vocabulary rows in token_embd and output;
    # llama.cpp's print_info of the full-size file (validation.fullsize) says 235.10 B
    assert trunk.params_total == qwen.params_total + 2 * 1280 * 4096 == 235_104_120_320
    published = load_catalog()[INTERN_S1].params_published
    assert published.total == 241e9 and published.active == 28e9
    # the published 241B / 28B count the vision tower too
    assert abs((trunk.params_total + VISION_PUBLISHED) / published.total - 1) < 0.001
    assert abs((trunk.params_active + VISION_PUBLISHED) / published.active - 1) < 0.01


def test_kv_per_token() -> None:
    """94 GQA layers of 4 KV heads x 128, K and V, F16."""
    ctx = 4096
    lms = layer_memory(spec(INTERN_S1), CacheConfig(n_ctx=ctx))
    assert sum(lm.k_bytes + lm.v_bytes for lm in lms) // ctx == 94 * 2 * 4 * 128 * 2


def test_names_resolve() -> None:
    for name in ("intern-s1", "internlm/Intern-S1", "Intern-S1", "InternS1"):
        assert resolve(name).id == INTERN_S1
