"""PlanOptions: the one request every face passes to api.plan (normalised, refused, hashed once)."""

import dataclasses
import subprocess
import sys

import pytest

from moeplan import api
from moeplan.errors import BadInput, MoeplanError
from moeplan.plan.options import LLAMACPP_ONLY, PlanOptions, applicable
from moeplan.web import data


def test_bounded_trims_lowers_and_leaves_empty_open() -> None:
    o = PlanOptions(
        quant=" q4_k_m ", ctk="q8_0 ", ctv="", use=" chat", draft=" mtp", vision=" BF16 "
    ).bounded()
    assert (o.quant, o.ctk, o.ctv, o.use, o.draft, o.vision) == (
        "q4_k_m",
        "q8_0",
        None,
        "chat",
        "mtp",
        "bf16",
    )
    assert PlanOptions(quant="   ").bounded().quant is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (PlanOptions(quant="Q" * 33), "quantization is too long (33 characters; at most 32)"),
        (PlanOptions(weight_format="f" * 40), "weight format is too long (40 characters; at most 32)"),
        (PlanOptions(ctk="x" * 17), "K cache type is too long (17 characters; at most 16)"),
        (PlanOptions(ctv="x" * 17), "V cache type is too long (17 characters; at most 16)"),
        (PlanOptions(draft="d" * 65), "draft is too long (65 characters; at most 64)"),
        (PlanOptions(vision="f16f16f16"), "vision is too long (9 characters; at most 8)"),
        (PlanOptions(ctx=100), "context must be between 256 and 16,777,216 tokens, not 100"),
        (PlanOptions(n_seq=0), "parallel sequences must be between 1 and 256, not 0"),
        (PlanOptions(n_seq=257), "parallel sequences must be between 1 and 256, not 257"),
    ],
)
def test_bounded_refuses_what_no_person_types(options: PlanOptions, message: str) -> None:
    with pytest.raises(BadInput) as e:
        options.bounded()
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("options", "starts"),
    [
        (PlanOptions(engine="ollama"), "unknown engine 'ollama': use llamacpp, vllm or sglang"),
        (PlanOptions(weight_format="fp8"), "--format names vLLM/SGLang weights"),
        (PlanOptions(mmproj_offload=False), "--no-mmproj-offload places the vision projector"),
        (PlanOptions(engine="vllm", quant="fp8", weight_format="fp8"), "--quant and --format both"),
        (PlanOptions(engine="vllm", backend="cuda"), "--backend, --llamacpp-build, --no-op-offload"),
        (PlanOptions(engine="sglang", op_offload=False), "--backend, --llamacpp-build, --no-op-offload"),
        (PlanOptions(engine="vllm", fit_target_mib=512), "--backend, --llamacpp-build"),
        (
            PlanOptions(engine="sglang", n_seq=4),
            "--np, --ctk, --ctv and --use are llama.cpp settings (sglang",
        ),
        (PlanOptions(engine="vllm", use="chat"), "--np, --ctk, --ctv and --use"),
        (PlanOptions(engine="vllm", draft="none"), "--draft, --acceptance and --draft-n"),
        (PlanOptions(engine="vllm", n_draft=2), "--draft, --acceptance and --draft-n"),
        (PlanOptions(engine="vllm", vision="f16"), "--vision, --no-mmproj-offload: vision is planned for"),
        (PlanOptions(engine="sglang", mmproj_offload=False), "--vision, --no-mmproj-offload"),
        (PlanOptions(engine="vllm", alternatives=False), "flash attention and the losing alternatives"),
    ],
)
def test_check_refuses_what_the_engine_cannot_apply(options: PlanOptions, starts: str) -> None:
    with pytest.raises(MoeplanError) as e:
        options.check()
    assert str(e.value).startswith(starts)


def test_check_accepts_what_each_engine_plans() -> None:
    PlanOptions(ctx=8192, quant="Q4_K_M", n_seq=2, ctk="q8_0", use="code", draft="auto", vision="f16").check()
    PlanOptions(engine="vllm", ctx=8192, quant="fp8").check()
    PlanOptions(engine="sglang", weight_format="nvfp4").check()


def test_applicable_is_what_check_lets_through() -> None:
    assert applicable("vllm") == applicable("sglang") == {"engine", "ctx", "quant", "weight_format"}
    assert applicable("llamacpp") == {f.name for f in dataclasses.fields(PlanOptions)} - {"weight_format"}
    refused = set().union(*(names for names, _ in LLAMACPP_ONLY))
    assert not refused & applicable("vllm")
    assert refused | applicable("vllm") == {f.name for f in dataclasses.fields(PlanOptions)}


def test_options_are_frozen_hashable_and_equal_by_value() -> None:
    a = PlanOptions(ctx=8192, quant="Q4_K_M")
    assert a == PlanOptions(quant="Q4_K_M", ctx=8192)
    assert hash(a) == hash(PlanOptions(quant="Q4_K_M", ctx=8192))
    assert a != PlanOptions(ctx=8192, quant="Q5_K_M")
    assert len({a, PlanOptions(ctx=8192, quant="Q4_K_M"), PlanOptions()}) == 2
    assert PlanOptions(vision=" F16").bounded() == PlanOptions(vision="f16")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.ctx = 4096  # type: ignore[misc]
    assert a.given() == {"ctx", "quant"}


def test_refused_before_any_model_is_read() -> None:
    with pytest.raises(MoeplanError, match=r"llama\.cpp settings"):
        api.plan("no-such-model", "H100", engine="vllm", ctk="q8_0")


def test_options_object_and_keywords_plan_alike() -> None:
    kw = api.plan("qwen3-0.6b", "RTX 4090 + 64GB DDR5-6000", ctx=8192, quant="Q8_0", alternatives=False)
    o = api.plan(
        "qwen3-0.6b", "RTX 4090 + 64GB DDR5-6000", PlanOptions(ctx=8192, quant="Q8_0", alternatives=False)
    )
    assert o.model_dump() == kw.model_dump()


def test_web_cache_keys_on_the_normalised_options() -> None:
    data._plan.cache_clear()
    first = data.plan(
        "qwen3-0.6b", "RTX 4090 + 64GB DDR5-6000", PlanOptions(ctx=8192, quant="q8_0", use="Chat")
    )
    again = data.plan(
        "qwen3-0.6b", "RTX 4090 + 64GB DDR5-6000", PlanOptions(ctx=8192, quant=" Q8_0 ", use="chat")
    )
    assert again is first
    assert data._plan.cache_info().hits == 1


def test_the_options_module_loads_nothing_heavy() -> None:
    heavy = ("numpy", "pydantic", "moeplan.api", "moeplan.engines.vision")
    code = f"import sys, moeplan.plan.options; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
