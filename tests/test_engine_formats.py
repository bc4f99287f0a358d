"""vLLM / SGLang weight formats: `--quant` names one (or is refused with the reason), the API takes
the engine, and every command points at a checkpoint the catalog records with its source."""

import json
import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from moeplan import api
from moeplan.cli import app
from moeplan.engines.formats import parse_weight_format
from moeplan.errors import MoeplanError
from moeplan.hardware.rig import parse_rig
from moeplan.sources.catalog import load_catalog
from moeplan.web.app import create_app

runner = CliRunner()
REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def plan_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["plan", *args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert isinstance(out, dict)
    return out


def refused(*args: str) -> str:
    result = runner.invoke(app, ["plan", *args])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    return result.stderr


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("FP8", "fp8"),
        ("awq", "awq"),
        ("GPTQ", "awq"),
        ("MXFP4", "mxfp4"),
        ("NVFP4", "nvfp4"),
        ("int4", "int4"),
    ],
)
def test_quant_names_a_weight_format(name: str, fmt: str) -> None:
    assert parse_weight_format(name, "vllm") == fmt


def test_gguf_types_are_refused_with_the_reason() -> None:
    with pytest.raises(MoeplanError, match=r"Q4_K_M is a llama\.cpp GGUF type: vllm serves"):
        parse_weight_format("q4_k_m", "vllm")
    with pytest.raises(MoeplanError, match="unknown weight format 'fp9'"):
        parse_weight_format("fp9", "sglang")


def test_quant_fp8_plans_fp8_like_format_fp8() -> None:
    """Was: --quant FP8 planned BF16 ("does not fit") while --format fp8 fit."""
    by_quant = plan_json("qwen3.5-35b-a3b", "--rig", "L40S", "--engine", "vllm", "--quant", "FP8")
    by_format = plan_json("qwen3.5-35b-a3b", "--rig", "L40S", "--engine", "vllm", "--format", "fp8")
    assert by_quant == by_format
    assert by_quant["fits"] and by_quant["weight_format"] == "fp8"
    assert by_quant["hf_repo"] == "Qwen/Qwen3.5-35B-A3B-FP8"  # Qwen's own FP8 release
    assert not plan_json("qwen3.5-35b-a3b", "--rig", "L40S", "--engine", "vllm")["fits"]  # BF16


def test_options_that_cannot_apply_are_refused() -> None:
    assert "Q4_K_M is a llama.cpp GGUF type" in refused(
        "qwen3.5-35b-a3b", "--rig", "H100", "--engine", "vllm", "--quant", "Q4_K_M"
    )
    assert "add --engine vllm or --engine sglang" in refused(
        "qwen3.5-35b-a3b", "--rig", "RTX 4090", "--format", "fp8"
    )
    assert "llama.cpp settings" in refused("qwen3-8b", "--rig", "H100", "--engine", "sglang", "--ctk", "q8_0")
    assert "give one" in refused(
        "qwen3-8b", "--rig", "H100", "-e", "vllm", "--quant", "fp8", "--format", "awq"
    )


def test_awq_points_at_a_published_awq_checkpoint() -> None:
    """Was: `vllm serve Qwen/Qwen3-32B --quantization awq_marlin`, the BF16 repository."""
    p = api.serving_plan("qwen3-32b", parse_rig("H100"), "vllm", quant="AWQ")
    assert p.hf_repo == "Qwen/Qwen3-32B-AWQ" and p.weight_format == "awq"
    assert p.commands[0].text.startswith("vllm serve Qwen/Qwen3-32B-AWQ ")
    assert "--quantization" not in p.commands[0].text  # the engine reads it from the checkpoint


def test_int4_is_met_by_a_gptq_checkpoint() -> None:
    p = api.serving_plan("qwen3.5-35b-a3b", parse_rig("RTX 4090"), "vllm", quant="INT4")
    assert p.hf_repo == "Qwen/Qwen3.5-35B-A3B-GPTQ-Int4" and p.weight_format == "awq"


def test_fp8_of_a_bf16_release_without_fp8_checkpoint_is_quantized_online() -> None:
    p = api.serving_plan("mixtral-8x7b", parse_rig("H100"), "vllm", quant="fp8")
    assert p.hf_repo == "mistralai/Mixtral-8x7B-v0.1"
    assert "--quantization fp8" in p.commands[0].text
    assert any(a.startswith("online FP8") for a in p.assumptions)


def test_fp8_of_a_vlm_with_an_fp8_release_points_at_it() -> None:
    """Was: `vllm serve zai-org/GLM-4.6V ... --quantization fp8`, online FP8 of the BF16 repository."""
    p = api.serving_plan("glm-4.6v", parse_rig("8x H100"), "vllm", quant="fp8")
    assert p.hf_repo == "zai-org/GLM-4.6V-FP8" and "--quantization" not in p.commands[0].text


def test_no_recorded_checkpoint_is_said_and_no_repo_is_invented() -> None:
    p = api.serving_plan("mixtral-8x7b", parse_rig("B200"), "sglang", quant="nvfp4")
    assert p.hf_repo is None
    assert p.notices[0].id == "NO_CHECKPOINT"
    cmd = p.commands[0].text
    assert "<NVFP4 checkpoint of mistralai/Mixtral-8x7B-v0.1>" in cmd and "--quantization" not in cmd


def test_the_api_takes_the_engine_and_format() -> None:
    client = TestClient(create_app())
    base = "/api/plan?model=qwen3.5-35b-a3b&rig=L40S"
    r = client.get(base + "&engine=vllm&quant=FP8")
    assert r.status_code == 200 and r.json()["hf_repo"] == "Qwen/Qwen3.5-35B-A3B-FP8"
    assert (
        client.get(base + "&engine=sglang&format=fp8")
        .json()["commands"][0]["text"]
        .startswith("python -m sglang.launch_server --model-path Qwen/Qwen3.5-35B-A3B-FP8 ")
    )
    bad = client.get(base + "&engine=vllm&quant=Q4_K_M")
    assert bad.status_code == 400 and "GGUF type" in bad.json()["detail"]
    assert client.get(base + "&format=fp8").status_code == 400
    assert client.get(base).json()["command"].startswith("llama-server")  # llama.cpp by default


def test_catalog_checkpoints_are_real_releases_with_sources() -> None:
    for entry in load_catalog().values():
        repos = [c.repo for c in entry.checkpoints]
        assert len(set(repos)) == len(repos), entry.id
        for c in entry.checkpoints:
            assert REPO.match(c.repo) and c.repo != entry.hf_repo, (entry.id, c.repo)
            assert c.format != entry.release_format, (entry.id, c.repo)  # the release serves itself
            assert c.source.startswith("https://"), (entry.id, c.repo)
    assert sum(len(e.checkpoints) for e in load_catalog().values()) >= 50
