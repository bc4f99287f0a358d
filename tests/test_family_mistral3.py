"""Mistral 3 (`mistral3`): Mistral3ForConditionalGeneration / Ministral3ForCausalLM text models as the
pinned converter writes them (conversion/mistral3.py Ministral3Model: llama's tensors under the name
mistral3, plus the yarn log multiplier and Llama-4 temperature scale for ministral3 configs), and the
text-only MistralForCausalLM that stays `llama`."""

from typing import Any

import pytest
from validation.materialize import materialize

from moeplan.api import predict_size
from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.errors import BadConfig
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.sources.catalog import resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf

TEXT: dict[str, Any] = {
    "hidden_size": 512,
    "intermediate_size": 1024,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 1000,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 4096,
}
YARN = {
    "rope_type": "yarn",
    "factor": 16.0,
    "original_max_position_embeddings": 256,
    "mscale_all_dim": 1.0,
    "llama_4_scaling_beta": 0.1,
    "rope_theta": 1e6,
}


def multimodal(text: dict[str, Any], arch: str = "Mistral3ForConditionalGeneration") -> dict[str, Any]:
    return {"architectures": [arch], "model_type": "mistral3", "text_config": text}


def names(cfg: dict[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    return [(t.name, t.shape) for t in inventory(spec_from_config(cfg)).tensors]


def test_ministral3_is_llamas_layout_under_its_own_name() -> None:
    m3 = spec_from_config(multimodal({**TEXT, "model_type": "ministral3", "rope_parameters": YARN}))
    llama = {**TEXT, "model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    assert m3.arch == "mistral3"
    assert names(multimodal({**TEXT, "model_type": "ministral3", "rope_parameters": YARN})) == names(llama)


@pytest.mark.parametrize(
    ("cfg", "arch"),
    [
        # Mistral Small 3.x / Magistral: a `mistral` text_config inside Mistral3ForConditionalGeneration
        (multimodal({**TEXT, "model_type": "mistral", "rope_theta": 1e9}), "mistral3"),
        # Devstral 2: the text-only Ministral3ForCausalLM
        (
            {
                **TEXT,
                "model_type": "ministral3",
                "architectures": ["Ministral3ForCausalLM"],
                "rope_parameters": YARN,
            },
            "mistral3",
        ),
        # a bare ministral3 text_config (no architectures) can only be Ministral3Model
        ({**TEXT, "model_type": "ministral3", "rope_parameters": YARN}, "mistral3"),
        # conversion/llama.py converts these as plain llama
        ({**TEXT, "model_type": "mistral", "architectures": ["MistralForCausalLM"]}, "llama"),
        (multimodal({**TEXT, "model_type": "mistral"}, "LlavaForConditionalGeneration"), "llama"),
        ({**TEXT, "model_type": "mistral"}, "llama"),
    ],
)
def test_the_converter_class_decides_the_architecture(cfg: dict[str, Any], arch: str) -> None:
    assert spec_from_config(cfg).arch == arch


def test_ministral3_writes_the_yarn_log_multiplier_and_temperature_scale() -> None:
    spec = spec_from_config(multimodal({**TEXT, "model_type": "ministral3", "rope_parameters": YARN}))
    kv = family("mistral3").gguf_metadata(inventory(spec))
    assert kv[".attention.temperature_scale"] == 0.1
    assert kv[".rope.scaling.yarn_log_multiplier"] == 1.0
    plain = spec_from_config(multimodal({**TEXT, "model_type": "mistral"}))
    assert ".attention.temperature_scale" not in family("mistral3").gguf_metadata(inventory(plain))


@pytest.mark.parametrize(
    "rope",
    [
        None,
        {"rope_type": "default", "rope_theta": 1e6},
        {k: v for k, v in YARN.items() if k != "llama_4_scaling_beta"},
    ],
)
def test_ministral3_without_the_yarn_keys_the_converter_asserts_is_refused(
    rope: dict[str, Any] | None,
) -> None:
    with pytest.raises(BadConfig):
        spec_from_config(multimodal({**TEXT, "model_type": "ministral3", "rope_parameters": rope}))


@pytest.mark.parametrize(
    ("model", "params", "published", "tied"),
    [
        # the model cards split each release into its language model and a 0.4B Pixtral encoder
        ("ministral-3-3b-2512", 3_429_006_336, 3.4e9, True),
        ("ministral-3-8b-2512", 8_489_553_920, 8.4e9, False),
        ("ministral-3-14b-2512", 13_506_073_600, 13.5e9, False),
    ],
)
def test_ministral3_parameters_match_the_cards(model: str, params: int, published: float, tied: bool) -> None:
    entry = resolve(model)
    inv = inventory(entry.spec())
    assert sum(t.n_elements for t in inv.tensors) == params
    assert abs(params / published - 1) < 0.015
    assert entry.params_published.total == published
    assert any(t.name == "output.weight" for t in inv.tensors) is not tied
    assert entry.spec().context_length == 262_144


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("mistralai/Ministral-3-8B-Reasoning-2512", "ministral-3-8b-2512"),
        ("Ministral-3-14B-Base-2512", "ministral-3-14b-2512"),
        ("unsloth/Ministral-3-3B-Instruct-2512-GGUF", "ministral-3-3b-2512"),
    ],
)
def test_base_and_reasoning_releases_share_the_instruct_entry(name: str, model: str) -> None:
    assert resolve(name).id == model


def test_file_reads_back_as_mistral3() -> None:
    m = materialize(resolve("ministral-3-3b-2512").spec())
    got = spec_from_gguf(read_local(m.path))
    assert got.arch == "mistral3" and got.tied_embeddings
    assert [(t.name, t.shape) for t in inventory(got).tensors] == [
        (t.name, t.shape) for t in m.inventory.tensors
    ]


def test_the_24b_trunk_is_shared_and_only_ministral3_writes_the_temperature_keys() -> None:
    """Mistral Small 3.2 (text model_type mistral) and Devstral Small 2 (ministral3, a new rope) hold the
    same 23.57B-parameter tensors; only the latter gets Llama-4 query scaling."""
    small, devstral = (
        resolve("mistral-small-3.2-24b-2506").spec(),
        resolve("devstral-small-2-24b-2512").spec(),
    )
    assert small.arch == devstral.arch == "mistral3"
    small_inv, devstral_inv = inventory(small), inventory(devstral)
    assert [(t.name, t.shape) for t in small_inv.tensors] == [(t.name, t.shape) for t in devstral_inv.tensors]
    assert sum(t.n_elements for t in small_inv.tensors) == 23_572_403_200
    assert ".attention.temperature_scale" not in family("mistral3").gguf_metadata(small_inv)
    assert family("mistral3").gguf_metadata(devstral_inv)[".attention.temperature_scale"] == 0.1
    assert (small.context_length, devstral.context_length) == (131_072, 393_216)  # devstral: yarn 48 x 8192


@pytest.mark.parametrize(
    "name", ["mistralai/Mistral-Small-3.1-24B-Instruct-2503", "mistralai/Magistral-Small-2509"]
)
def test_releases_with_the_same_text_model_are_served_by_the_3_2_entry(name: str) -> None:
    assert resolve(name).id == "mistral-small-3.2-24b-2506"


def test_mistralai_ministral3_q4_k_m_files_differ_from_the_prediction_only_by_metadata() -> None:
    """mistralai's own Q4_K_M GGUFs of the three sizes (LlamaBarn catalog, ggml-org/Llama-macOS@95d9a3c2
    Catalog+Ministral3.swift) exceed moeplan's prediction by one constant: the tensor data and the tensor
    table agree exactly, only the Tekken tokenizer metadata is estimated short."""
    published = {
        "ministral-3-3b-2512": 2_147_023_008,
        "ministral-3-8b-2512": 5_198_911_904,
        "ministral-3-14b-2512": 8_239_593_024,
    }
    gaps = {m: size - predict_size(m, "Q4_K_M").file_bytes for m, size in published.items()}
    assert len(set(gaps.values())) == 1 and 0 < next(iter(gaps.values())) < 4 * 2**20, gaps


def test_devstral_2_is_a_text_only_ministral3_without_query_scaling() -> None:
    """Ministral3ForCausalLM: 88 layers, llama.cpp's printed 125.03 B; llama_4_scaling_beta 0 writes a
    zero temperature scale, which llama_model_mistral3 reads as no scaling."""
    spec = resolve("devstral-2-123b-2512").spec()
    inv = inventory(spec)
    assert spec.arch == "mistral3" and spec.n_layer == 88 and not spec.tied_embeddings
    assert sum(t.n_elements for t in inv.tensors) == 125_025_988_608
    kv = family("mistral3").gguf_metadata(inv)
    assert kv[".attention.temperature_scale"] == 0.0 and kv[".rope.scaling.yarn_log_multiplier"] == 0.0
    assert spec.context_length == 262_144  # yarn 64 x 4096


def test_medium_3_5_is_devstral_2s_text_model_behind_the_vision_wrapper() -> None:
    """Mistral3ForConditionalGeneration with a ministral3 text_config of Devstral-2's shapes: the same
    tensors; the 128B of the name adds the 48-layer Pixtral tower (mmproj) to its 125.03 B, and the
    KV cache is 88 layers x 8 KV heads x 128 (K and V, F16) = 352 KiB a token."""
    medium, devstral = resolve("mistral-medium-3.5-128b"), resolve("devstral-2-123b-2512")
    m_inv, d_inv = inventory(medium.spec()), inventory(devstral.spec())
    assert medium.spec().arch == "mistral3"
    assert [(t.name, t.shape) for t in m_inv.tensors] == [(t.name, t.shape) for t in d_inv.tensors]
    vision = 48 * (4 * 1664**2 + 3 * 1664 * 8192)  # the tower's attention and MLP weights
    assert abs((sum(t.n_elements for t in m_inv.tensors) + vision) / 128e9 - 1) < 0.01
    kv = sum(lm.k_bytes + lm.v_bytes for lm in layer_memory(medium.spec(), CacheConfig(n_ctx=8192)))
    assert kv == 8192 * 88 * 2 * 8 * 128 * 2
    assert medium.context_length == 262_144 and resolve("Mistral-Medium-3.5").id == medium.id


# MistralForCausalLM releases (conversion/llama.py: plain llama): parameters of the inventory, the
# published figure (Mistral-Nemo: general.parameter_count of the converted file, ollama/ollama#8277)
MISTRAL_LLAMA = {
    "mistral-nemo-instruct-2407": (12_247_782_400, 363, 40, 5120, 131072),
    "mistral-7b-instruct-v0.3": (7_248_023_552, 291, 32, 4096, 32768),
}


@pytest.mark.parametrize("model", sorted(MISTRAL_LLAMA))
def test_text_only_mistral_releases_are_llama_with_128_wide_heads(model: str) -> None:
    params, n_tensors, n_layer, n_embd, vocab = MISTRAL_LLAMA[model]
    s = resolve(model).spec()
    assert (s.arch, s.n_layer, s.n_embd, s.n_vocab, s.tied_embeddings) == (
        "llama",
        n_layer,
        n_embd,
        vocab,
        False,
    )
    inv = inventory(s)
    assert sum(t.n_elements for t in inv.tensors) == params == resolve(model).params_published.total
    assert len(inv.tensors) == n_tensors  # 2 + 1 + 9 per layer: untied head
    by = {t.name: t.shape for t in inv.tensors}
    # 32 query heads of 128 (head_dim set for Nemo, derived for the 7B): 4096 wide whatever n_embd is
    assert by["blk.0.attn_q.weight"] == (n_embd, 4096) and by["blk.0.attn_output.weight"] == (4096, n_embd)
    assert by["blk.0.attn_k.weight"] == (n_embd, 1024)
    kv = family("llama").gguf_metadata(inv)
    assert (kv[".attention.key_length"], kv[".attention.head_count_kv"]) == (128, 8)
    # 8 KV heads x 128 x (K + V) x 2 bytes per layer and token, every layer full attention
    mem = layer_memory(s, CacheConfig(n_ctx=4096))
    assert sum(m.k_bytes + m.v_bytes for m in mem) == 4096 * n_layer * 4096


def test_nemo_carries_the_instructs_million_positions_but_plans_128k() -> None:
    """The Instruct's config (and its GGUF's context_length) says 1024000; the card's trained window,
    the catalog's context, is 128k. The Base shares the entry."""
    entry = resolve("Mistral-Nemo")
    assert entry.id == "mistral-nemo-instruct-2407" and resolve("Mistral-Nemo-Base-2407").id == entry.id
    assert spec_from_config(entry.config).context_length == 1_024_000
    assert (entry.spec().context_length, entry.context_length) == (131072, 131072)  # planned, refused above
    assert resolve("Mistral-7B-v0.3").id == "mistral-7b-instruct-v0.3"
