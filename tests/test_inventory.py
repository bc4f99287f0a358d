"""The tensor inventory against facts measured on real GGUFs and llama.cpp's own name tables."""

import importlib.util
from pathlib import Path
from types import ModuleType

import gguf
import pytest

from moeplan.arch.inventory import Role, inventory, role_of
from moeplan.memory.weights import predict
from moeplan.quant.native import native_bytes
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog, resolve

# llama.cpp's print_info "model params" of real GGUFs (text model, no MTP), as collected in
# shared/data/architectures.json with their sources.
MEASURED_PARAMS = {
    "gemma-3-270m": (268_098_176, 0),  # exact: LlamaBarn parameterCount / our real file
    "qwen3-30b-a3b": (30_532_122_624, 0),  # exact: LlamaBarn parameterCount
    "deepseek-v3.1": (671.03e9, 0.005e9),
    "llama-3.1-8b": (8.03e9, 0.005e9),
    "qwen3-235b-a22b": (235.09e9, 0.005e9),
    "qwen3-32b": (32.762e9, 0.0005e9),
    "qwen3.5-397b-a17b": (396.35e9, 0.005e9),
    "qwen3.5-9b": (8.95e9, 0.005e9),
    "gemma-3-27b": (27.009e9, 0.0005e9),
}

# Tensor counts of the pinned converter's output (text model; rope_freqs where llama3 rope scaling).
TENSOR_COUNTS = {
    "llama-3.1-8b": 292,
    "llama-3.1-70b": 724,
    "mixtral-8x7b": 323,
    "qwen3-8b": 399,
    "qwen3-32b": 707,
    "qwen3-30b-a3b": 579,
    "qwen3-235b-a22b": 1131,
    "gemma-3-27b": 808,
    "gemma-3-270m": 236,
    "gpt-oss-20b": 459,
    "gpt-oss-120b": 687,
    "llama-4-scout-17b-16e": 628,
    "llama-4-maverick-17b-128e": 531,
}


@pytest.mark.parametrize("model", sorted(MEASURED_PARAMS))
def test_parameter_count_matches_llamacpp(model: str) -> None:
    want, tol = MEASURED_PARAMS[model]
    got = predict(inventory(resolve(model).spec(), mtp=False), FileType.BF16).params_total
    assert abs(got - want) <= tol, f"{model}: {got:,} vs llama.cpp {want:,.0f}"


@pytest.mark.parametrize("model", sorted(TENSOR_COUNTS))
def test_tensor_count(model: str) -> None:
    assert len(inventory(resolve(model).spec()).tensors) == TENSOR_COUNTS[model]


@pytest.fixture(scope="module")
def pinned_gguf_constants(llamacpp_src: Path) -> ModuleType:
    """gguf-py's name tables as in the pinned llama.cpp tree (newer than the gguf wheel on PyPI)."""
    spec = importlib.util.spec_from_file_location(
        "pinned_gguf_constants", llamacpp_src / "gguf-py/gguf/constants.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model", sorted(load_catalog()))
def test_names_are_llamacpp_names(model: str, pinned_gguf_constants: ModuleType) -> None:
    """Every tensor name is one llama.cpp's gguf-py declares for that architecture (`MODEL_TENSORS`)."""
    c = pinned_gguf_constants
    inv = inventory(resolve(model).spec(), mtp=True)
    arch = next(a for a, name in c.MODEL_ARCH_NAMES.items() if name == inv.spec.arch)
    allowed = set()
    for kind in c.MODEL_TENSORS[arch]:
        pattern = c.TENSOR_NAMES[kind]
        allowed |= {pattern.format(bid=i) for i in range(inv.block_count)}
    for t in inv.tensors:
        suffixes = (".weight", ".bias", ".scale")  # .scale: gemma4 router / per-expert scales
        base = t.name.rsplit(".", 1)[0] if t.name.endswith(suffixes) else t.name
        assert base in allowed, f"{t.name} is not a {inv.spec.arch} tensor in gguf-py"
    assert len({t.name for t in inv.tensors}) == len(inv.tensors)


def test_mtp_defaults_follow_the_pinned_converter() -> None:
    qwen = inventory(resolve("qwen3.5-35b-a3b").spec())
    assert (qwen.block_count, qwen.mtp_kept) == (41, 1)
    mtp = [t for t in qwen.tensors if t.layer == 40]
    assert all(t.role is Role.MTP for t in mtp)
    assert {"blk.40.nextn.eh_proj.weight", "blk.40.ffn_up_exps.weight"} <= {t.name for t in mtp}
    assert inventory(resolve("qwen3.5-35b-a3b").spec(), mtp=False).block_count == 40
    # deepseek2: the converter drops DeepSeek-V3's MTP layer whatever is asked
    ds = inventory(resolve("deepseek-v3").spec(), mtp=True)
    assert (ds.block_count, ds.mtp_kept) == (61, 0)
    glm = inventory(resolve("glm-4.5-air").spec())
    assert glm.mtp_kept == 1 and glm.block_count == 47


def test_mla_split_and_leading_dense_layers() -> None:
    inv = inventory(resolve("deepseek-v3.1").spec())
    by_name = {t.name: t for t in inv.tensors}
    assert by_name["blk.0.attn_k_b.weight"].shape == (128, 512, 128)
    assert by_name["blk.0.attn_v_b.weight"].shape == (512, 128, 128)
    assert "blk.0.attn_kv_b.weight" not in by_name
    assert "blk.2.ffn_up.weight" in by_name and "blk.3.ffn_up.weight" not in by_name
    assert by_name["blk.3.ffn_gate_exps.weight"].shape == (7168, 2048, 256)
    assert by_name["blk.3.ffn_gate_shexp.weight"].role is Role.SHARED_EXPERT
    assert by_name["blk.3.ffn_gate_inp.weight"].stored is gguf.GGMLQuantizationType.F32


def test_hybrid_linear_attention_layers() -> None:
    inv = inventory(resolve("qwen3.5-35b-a3b").spec(), mtp=False)
    names = {t.name: t for t in inv.tensors}
    assert names["blk.3.attn_q.weight"].shape == (2048, 2 * 16 * 256)  # output gate folded into attn_q
    assert names["blk.0.attn_qkv.weight"].shape == (2048, 2 * 16 * 128 + 32 * 128)
    assert names["blk.0.ssm_conv1d.weight"].stored is gguf.GGMLQuantizationType.F32
    assert names["blk.0.ssm_beta.weight"].role is Role.SSM
    assert "blk.3.attn_qkv.weight" not in names and "blk.0.attn_q.weight" not in names
    assert sum(1 for n in names if n.endswith("attn_q.weight")) == 10


def test_gpt_oss_experts_stay_mxfp4_and_tied_models_have_no_output() -> None:
    oss = {t.name: t for t in inventory(resolve("gpt-oss-20b").spec()).tensors}
    assert oss["blk.0.ffn_down_exps.weight"].stored is gguf.GGMLQuantizationType.MXFP4
    assert oss["blk.0.attn_sinks.weight"].shape == (64,)
    gemma = {t.name for t in inventory(resolve("gemma-3-270m").spec()).tensors}
    assert "output.weight" not in gemma and "token_embd.weight" in gemma


def test_llama4_interleaving_and_shared_expert() -> None:
    mav = inventory(resolve("llama-4-maverick-17b-128e").spec())
    names = {t.name for t in mav.tensors}
    assert "blk.0.ffn_up.weight" in names and "blk.0.ffn_up_exps.weight" not in names
    assert "blk.1.ffn_up_exps.weight" in names and "blk.1.ffn_up_shexp.weight" in names
    assert "rope_freqs.weight" not in names  # Maverick has no llama3 rope scaling; Scout has
    assert "rope_freqs.weight" in {t.name for t in inventory(resolve("llama-4-scout-17b-16e").spec()).tensors}


def test_role_of_names_from_files() -> None:
    assert role_of("blk.3.ffn_down_exps.weight", 40) == (Role.EXPERT, 3)
    assert role_of("blk.3.ffn_gate_inp_shexp.weight", 40) == (Role.SHARED_EXPERT, 3)
    assert role_of("blk.40.attn_q.weight", 40) == (Role.MTP, 40)
    assert role_of("blk.0.attn_qkv.weight", 40, frozenset({0})) == (Role.SSM, 0)
    assert role_of("blk.3.attn_qkv.weight", 40) == (Role.ATTN, 3)
    assert role_of("output_norm.weight", 40) == (Role.NORM, None)
    assert role_of("rope_freqs.weight", 40) == (Role.ATTN, None)


def test_native_release_sizes() -> None:
    """The official safetensors: DeepSeek-V3's card says 685B parameters including the 14B MTP module."""
    ds = inventory(resolve("deepseek-v3").spec(), checkpoint=True)
    params = sum(t.n_elements for t in ds.tensors)
    assert abs(params - 685e9) / 685e9 < 0.002
    fp8 = native_bytes(ds.tensors, "fp8")
    assert params < fp8 < 1.01 * params  # one byte per weight, plus block scales and BF16 embeddings
    oss = inventory(resolve("gpt-oss-120b").spec(), checkpoint=True)
    experts = [t for t in oss.tensors if t.role is Role.EXPERT and t.name.endswith(".weight")]
    assert native_bytes(experts, "mxfp4") * 8 / sum(t.n_elements for t in experts) == 4.25
    kimi = inventory(resolve("kimi-k2.5").spec(), checkpoint=True)
    assert native_bytes(kimi.tensors, "int4") < 0.3 * native_bytes(kimi.tensors, "bf16")
