"""A context above the model's maximum is refused in one line, or planned with the rope scaling the
model's card documents (flags in the command, and a notice); never planned silently."""

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from moeplan import api
from moeplan.cli import app
from moeplan.errors import MoeplanError
from moeplan.plan.policy import RopeScaling, context_bounds

RIG = "RTX 4090 + 64GB DDR5-6000"
YARN = RopeScaling("yarn", 4.0, 32768)


@pytest.mark.parametrize("ctx", ["10000000", "400000"])
def test_beyond_the_maximum_is_refused_in_one_line(ctx: str) -> None:
    """Before: --ctx 10000000 planned a 201 GiB disk-streaming plan on a 23 GiB GPU; --ctx 400000 on
    a 262k model got no word."""
    result = CliRunner().invoke(app, ["plan", "qwen3.5-35b-a3b", "--rig", RIG, "--ctx", ctx])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "above the most Qwen3.5-35B-A3B supports, 262,144 tokens" in result.stderr
    assert "at most 262,144 with --ctx" in result.stderr


def test_a_documented_extension_is_planned_with_its_rope_flags_and_a_notice() -> None:
    r = api.plan("qwen3-30b-a3b", RIG, ctx=100000)
    assert r.ctx == 100000 and r.fits
    flags = "--rope-scaling yarn --rope-scale 3.25 --yarn-orig-ctx 32768"
    assert r.rope_scaling == flags and flags in r.command
    rope = next(n for n in r.notices if n.id == "ROPE_SCALING")
    assert rope.severity == "warning" and "beyond the model's maximum of 40,960" in rope.message
    assert "--rope-scale 4 " in api.plan("qwen3-30b-a3b", RIG, ctx=131072).command


def test_within_the_maximum_no_rope_and_beyond_the_extension_refused() -> None:
    at_max = api.plan("qwen3-30b-a3b", RIG, ctx=40960)
    assert at_max.rope_scaling is None and "--rope" not in at_max.command
    assert "ROPE_SCALING" not in {n.id for n in at_max.notices}
    with pytest.raises(MoeplanError, match=r"40,960 tokens \(131,072 with yarn rope scaling\)"):
        api.plan("qwen3-30b-a3b", RIG, ctx=200000)
    with pytest.raises(MoeplanError, match="at most 131,072"):
        api.plan("llama-3.1-8b", RIG, ctx=262144)  # no documented extension: its own 131,072


def test_rope_factor_is_the_smallest_quarter_step_that_reaches_the_context() -> None:
    assert context_bounds(None, 40960, "m", YARN) is None
    assert context_bounds(40960, 40960, "m", YARN) is None
    assert context_bounds(65536, 40960, "m", YARN) == RopeScaling("yarn", 2.0, 32768)
    scaled = context_bounds(50000, 40960, "m", YARN)
    assert scaled is not None and scaled.factor == 1.75 and scaled.max_context >= 50000
    with pytest.raises(MoeplanError):
        context_bounds(131073, 40960, "m", YARN)


def test_cache_that_cannot_be_paged_out_is_not_a_disk_plan() -> None:
    """The KV cache cannot be read back from the model file: when it alone overflows RAM, the plan
    does not fit at all (before: "streams from disk" at 6 tokens/s with 16 GiB of cache in 12 GiB)."""
    r = api.plan("llama-3.1-8b", "16GB DDR4-3200", ctx=131072, ctk="f16", ctv="f16")
    assert not r.fits and not r.streams_from_disk and r.verdict == "does not fit"
    disk = next(n for n in r.notices if n.id == "DISK_MMAP_SLOW")
    assert disk.severity == "error" and "cannot be read back from the file" in disk.message
    assert "(the KV cache and buffers) overflows CPU" in disk.message and "lower --ctx" in disk.message
    streams = api.plan("deepseek-v3.1", RIG)
    assert streams.streams_from_disk and "experts are read from disk" in streams.notices[0].message


def test_weights_a_gpu_must_hold_are_not_blamed_on_the_cache() -> None:
    """On Metal the GPU's mapped buffer spans the file: a model far larger than the Mac overflows by
    weights, and a shorter context cannot help (before: "the KV cache and buffers ... overflow MTL0 by
    605.3 GiB at 4,096 tokens: lower --ctx")."""
    r = api.plan("deepseek-v4-pro", "M4 Max 128")
    disk = next(n for n in r.notices if n.id == "DISK_MMAP_SLOW")
    assert disk.severity == "error" and "the weights a GPU holds" in disk.message
    assert "lower --ctx" not in disk.message and "smaller quantization" in disk.message


def test_web_refuses_beyond_the_maximum_with_a_message() -> None:
    from moeplan.web.app import create_app

    client = TestClient(create_app(), raise_server_exceptions=False)
    r = client.get("/api/plan?model=qwen3.5-35b-a3b&rig=rtx-4090-64gb&ctx=400000")
    assert r.status_code == 400 and "above the most Qwen3.5-35B-A3B supports" in r.text
    ok = client.get("/api/plan?model=qwen3-8b&rig=rtx-4090-64gb&ctx=131072").json()
    assert ok["rope_scaling"] and "ROPE_SCALING" in {n["id"] for n in ok["notices"]}


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_serving_engines_refuse_a_context_beyond_the_maximum(engine: str) -> None:
    """Before: vLLM/SGLang plans cut --ctx 10000000 to 262,144 without a word."""
    result = CliRunner().invoke(
        app, ["plan", "qwen3.5-35b-a3b", "--rig", "8x H100", "--engine", engine, "--ctx", "10000000"]
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "above the most Qwen3.5-35B-A3B supports, 262,144 tokens" in result.stderr


def test_serving_engines_default_to_32k_or_the_models_own_if_smaller() -> None:
    assert api.plan("qwen3.5-35b-a3b", "8x H100", engine="vllm").ctx == 32768
    assert api.plan("qwen3.5-35b-a3b", "8x H100", engine="vllm", ctx=0).ctx == 262144
