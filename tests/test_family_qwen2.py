"""qwen2 (Qwen2.5 dense, Qwen2.5-Coder, QwQ-32B, DeepSeek-R1-Distill-Qwen): the tensors the pinned
llama.cpp's `llama_model_qwen2::load_arch_tensors` creates (q/k/v biases, no o_proj bias, no
output.weight when tied), parameter counts against the published figures, KV per token, full
attention on every layer, the names people type (R1-Distill-Llama and Coder-7B aliases), and the
configs the family refuses."""

from typing import Any

import pytest
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import UnsupportedArchitecture
from moeplan.memory.weights import predict, quant_model
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, kv_bytes_per_token, shapes, spec

# id: (parameters of the GGUF, tensors, published total in billions, allowed distance in billions)
PARAMS: dict[str, tuple[int, int, float, float]] = {
    # model cards (Qwen's "Number of Parameters", two decimals below 10B)
    "qwen2.5-0.5b-instruct": (494_032_768, 290, 0.49, 0.005),  # tied: 24 x 12 + 2 tensors
    "qwen2.5-1.5b-instruct": (1_543_714_304, 338, 1.54, 0.005),
    "qwen2.5-3b-instruct": (3_085_938_688, 434, 3.09, 0.005),
    "qwen2.5-7b-instruct": (7_615_616_512, 339, 7.61, 0.01),  # untied: + output.weight
    "qwen2.5-14b-instruct": (14_770_033_664, 579, 14.7, 0.1),
    "qwen2.5-coder-14b-instruct": (14_770_033_664, 579, 14.7, 0.1),
    "qwen2.5-72b-instruct": (72_706_203_648, 963, 72.7, 0.01),
    # the 32B cards say 32.5B; the HF API counts the same shapes' checkpoint exactly (R1-Distill below)
    "qwen2.5-32b-instruct": (32_763_876_352, 771, 32.5, 0.3),
    "qwen2.5-coder-32b-instruct": (32_763_876_352, 771, 32.5, 0.3),
    "qwq-32b": (32_763_876_352, 771, 32.5, 0.3),
    # exact: the HF API's safetensors total; a training project's 1,777,088,000 in 339 tensors
    "deepseek-r1-distill-qwen-32b": (32_763_876_352, 771, 32.763876352, 0),
    "deepseek-r1-distill-qwen-1.5b": (1_777_088_000, 339, 1.777088, 0),
}
TIED = {"qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct"}
BLOCK = {
    "attn_norm.weight",
    "attn_q.weight",
    "attn_k.weight",
    "attn_v.weight",
    "attn_q.bias",
    "attn_k.bias",
    "attn_v.bias",
    "attn_output.weight",
    "ffn_norm.weight",
    "ffn_gate.weight",
    "ffn_up.weight",
    "ffn_down.weight",
}


def test_catalog_holds_the_models() -> None:
    assert {m: spec(m).arch for m in PARAMS} == dict.fromkeys(PARAMS, "qwen2")
    assert {m for m in PARAMS if spec(m).tied_embeddings} == TIED


@pytest.mark.parametrize("model", sorted(PARAMS))
def test_parameters_tensors_and_published_total(model: str) -> None:
    n_params, n_tensors, published, tolerance = PARAMS[model]
    inv = inventory(spec(model))
    assert sum(t.n_elements for t in inv.tensors) == n_params
    assert len(inv.tensors) == n_tensors
    assert abs(predict(inv, FileType.BF16).params_total / 1e9 - published) <= tolerance + 1e-9
    assert abs(load_catalog()[model].params_published.total - round(published * 1e9)) < 1e6


@pytest.mark.parametrize(
    "model", ["qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct", "deepseek-r1-distill-qwen-1.5b"]
)
def test_tensors_are_llama_cpp_qwen2s(model: str) -> None:
    """src/models/qwen2.cpp: attn_q {n_embd, n_embd} and attn_output {n_embd, n_embd}, k/v {n_embd,
    n_embd_gqa}, the optional q/k/v biases of create_tensor_qkv (the checkpoint always has them), no
    attn_output.bias, dense SwiGLU; output.weight only for an untied head."""
    s = spec(model)
    t = shapes(s)
    e, a = s.n_embd, s.layers[0].attn
    kv = a.n_head_kv * a.head_dim_k
    assert a.n_head * a.head_dim_k == e
    for il in range(s.n_layer):
        assert {n.removeprefix(f"blk.{il}.") for n in t if n.startswith(f"blk.{il}.")} == BLOCK
    assert t["blk.0.attn_q.weight"] == t["blk.0.attn_output.weight"] == (e, e)
    assert t["blk.0.attn_k.weight"] == t["blk.0.attn_v.weight"] == (e, kv)
    assert (t["blk.0.attn_q.bias"], t["blk.0.attn_k.bias"], t["blk.0.attn_v.bias"]) == ((e,), (kv,), (kv,))
    heads = {n for n in t if not n.startswith("blk.")}
    assert heads == {"token_embd.weight", "output_norm.weight"} | (
        {"output.weight"} if not s.tied_embeddings else set()
    )


@pytest.mark.parametrize(
    ("model", "layers", "kv_heads"),
    [
        ("qwen2.5-0.5b-instruct", 24, 2),  # head 64
        ("qwen2.5-7b-instruct", 28, 4),
        ("qwen2.5-72b-instruct", 80, 8),
        ("deepseek-r1-distill-qwen-1.5b", 28, 2),
    ],
)
def test_full_attention_on_every_layer_and_kv_per_token(model: str, layers: int, kv_heads: int) -> None:
    """qwen2.cpp reads no sliding window: every layer caches K and V of every token (F16)."""
    s = spec(model)
    assert s.n_layer == layers
    assert {(la.attn.kind, la.attn.window, la.attn.n_head_kv) for la in s.layers} == {
        (AttnKind.FULL, 0, kv_heads)
    }
    assert {la.ffn.kind for la in s.layers} == {FFNKind.DENSE}
    head = s.n_embd // s.layers[0].attn.n_head
    assert kv_bytes_per_token(s) == layers * 2 * kv_heads * head * 2
    assert ".attention.sliding_window" not in family("qwen2").gguf_metadata(inventory(s))


def test_qwq_and_r1_distill_32b_keep_the_qwen2_5_32b_shapes() -> None:
    """Both are fine-tunes of Qwen2.5-32B: the same tensors, other contexts (40960, 131072, 32768)."""
    base = shapes(spec("qwen2.5-32b-instruct"))
    assert shapes(spec("qwq-32b")) == shapes(spec("deepseek-r1-distill-qwen-32b")) == base
    contexts = {
        m: spec(m).context_length for m in ("qwq-32b", "deepseek-r1-distill-qwen-32b", "qwen2.5-32b-instruct")
    }
    assert contexts == {
        "qwq-32b": 40960,
        "deepseek-r1-distill-qwen-32b": 131072,
        "qwen2.5-32b-instruct": 32768,
    }


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        ("Qwen2.5-7B-Instruct", "qwen2.5-7b-instruct"),
        ("Qwen/Qwen2.5-Coder-7B-Instruct", "qwen2.5-7b-instruct"),
        ("bartowski/Qwen2.5-Coder-32B-Instruct-GGUF", "qwen2.5-coder-32b-instruct"),
        ("QwQ-32B", "qwq-32b"),
        ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-r1-distill-qwen-1.5b"),
        ("unsloth/DeepSeek-R1-Distill-Llama-8B-GGUF", "llama-3.1-8b"),
        ("DeepSeek-R1-Distill-Llama-70B", "llama-3.1-70b"),
    ],
)
def test_names_people_type(name: str, model_id: str) -> None:
    assert resolve(name).id == model_id


def test_r1_distill_llama_8b_is_llama_3_1_8b() -> None:
    """The HF API counts 8,030,261,248 parameters for DeepSeek-R1-Distill-Llama-8B: Llama-3.1-8B's
    inventory less the 64-value rope_freqs tensor the converter adds."""
    inv = inventory(spec("llama-3.1-8b"))
    assert sum(t.n_elements for t in inv.tensors if t.name != "rope_freqs.weight") == 8_030_261_248


def test_quantizer_sees_a_70b_in_80_qwen2_layers() -> None:
    """qwen2.cpp load_arch_hparams: 80 layers are LLM_TYPE_70B, so llama-quantize lifts Q4_K_M's Q4_K
    attn_v to Q5_K on Qwen2.5-72B (the layers use_more_bits leaves at Q4_K); 64 layers are not."""
    inv = inventory(spec("qwen2.5-72b-instruct"))
    assert quant_model(inv).is_70b and not quant_model(inventory(spec("qwen2.5-32b-instruct"))).is_70b
    q4 = predict(inv, FileType.Q4_K_M).tensors
    attn_v = {t.type.name for t in q4 if t.spec.name.endswith("attn_v.weight")}
    assert attn_v == {"Q5_K", "Q6_K"}


@pytest.mark.parametrize("model", ["qwen2.5-0.5b-instruct", "qwen2.5-7b-instruct"])
def test_qwen2_file_reads_back_as_materialised(model: str) -> None:
    """A qwen2 file gives back its layers, biases (from the tensor names) and tied head."""
    m = materialize(spec(model))
    got = spec_from_gguf(read_local(m.path))
    assert got.layers == m.spec.layers and got.tied_embeddings == m.spec.tied_embeddings
    assert shapes(got) == shapes(m.spec)


@pytest.mark.parametrize(
    "changes",
    [
        {"use_sliding_window": True},  # qwen2.cpp has no window; HF would slide past max_window_layers
        {"head_dim": 64},  # 28 x 64 query rows are narrower than hidden_size 3584
    ],
)
def test_qwen2_guards(changes: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedArchitecture):
        spec_from_config(config("qwen2.5-7b-instruct", **changes))
