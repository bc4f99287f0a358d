"""Vision in the faces: `plan --vision`, `explain` with --mmproj, /api/plan?vision=, the deploy page's
"with vision" section and the plan form; refusals as one line."""

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from moeplan import api
from moeplan.arch.vision import mmproj_bytes
from moeplan.cli import app
from moeplan.engines.llamacpp_args import parse_command
from moeplan.hardware.rig import parse_rig
from moeplan.plan.llamacpp import Runtime
from moeplan.plan.vision import vision_of_command
from moeplan.quant.ggml import GGMLType
from moeplan.sources.catalog import load_catalog
from moeplan.web.app import create_app

runner = CliRunner()
MIB = 2**20
RIG = "RTX 4090 + 64GB DDR5"


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(), raise_server_exceptions=False)


def test_plan_holds_room_for_the_projector_on_the_main_gpu() -> None:
    text = api.plan("qwen3.6-27b", RIG, alternatives=False, draft="none")
    seen = api.plan("qwen3.6-27b", RIG, alternatives=False, draft="none", vision="bf16")
    assert text.vision is None and seen.vision is not None
    v = seen.vision
    assert (v.device, v.file_type, round(v.weights_bytes / MIB, 2)) == ("CUDA0", "BF16", 887.99)
    gpu = next(d for d in seen.devices if d.name == "CUDA0")
    host = next(d for d in seen.devices if d.name == "CPU")
    assert gpu.vision_bytes == v.weights_bytes + v.compute_bytes and host.vision_bytes == v.host_compute_bytes
    assert gpu.total_bytes <= gpu.capacity_bytes  # the plan fits with the projector loaded
    # without the projector's 1.1 GiB the text plan fills more of the GPU than the vision plan can
    text_gpu = next(d for d in text.devices if d.name == "CUDA0")
    assert gpu.total_bytes - gpu.vision_bytes < text_gpu.total_bytes
    assert seen.command.endswith("--mmproj mmproj-Qwen3.6-27B-BF16.gguf")


def test_no_mmproj_offload_keeps_it_on_the_cpu() -> None:
    r = api.plan("gemma-3-4b", RIG, alternatives=False, draft="none", vision="q8_0", mmproj_offload=False)
    assert r.vision is not None and r.vision.device == "CPU" and r.vision.host_compute_bytes == 0
    assert r.command.endswith("--no-mmproj-offload")
    cpu = next(d for d in r.devices if d.name == "CPU")
    tower = load_catalog()["gemma-3-4b"].vision_tower()
    assert tower is not None
    assert cpu.vision_bytes == mmproj_bytes(tower, GGMLType.Q8_0) + r.vision.compute_bytes


def test_cli_plan_vision_json_and_table() -> None:
    result = runner.invoke(app, ["plan", "qwen3.5-35b-a3b", "--rig", RIG, "--vision", "q8_0", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["vision"]["file_type"] == "Q8_0" and "--mmproj" in r["command"]
    table = runner.invoke(app, ["plan", "qwen3.5-35b-a3b", "--rig", RIG, "--vision", "q8_0"])
    assert table.exit_code == 0 and "vision projector on CUDA0" in table.output
    assert "vision" in table.output.split("command:")[0]  # the per-device table's column


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["plan", "qwen3-8b", "--rig", RIG, "--vision", "f16"], "no vision tower"),
        (["plan", "gemma-3-4b", "--rig", RIG, "--vision", "q4_k"], "f16, bf16, q8_0"),
        (["plan", "gemma-3-4b", "--rig", "2x H100", "-e", "vllm", "--vision", "f16"], "vLLM and SGLang"),
        (["plan", "gemma-3-4b", "--rig", RIG, "--no-mmproj-offload"], "add --vision"),
        (
            ["explain", "llama-server -m Qwen3-8B-Q4_K_M.gguf --mmproj mmproj-F16.gguf", "--rig", RIG],
            "--mmproj",
        ),
        (["explain", "llama-server -m Qwen3.6-27B-Q4_K_M.gguf --mmproj m.gguf", "--rig", RIG], "mmproj-F16"),
        (
            ["explain", "llama-server -m Qwen3.6-27B-Q4_K_M.gguf --image-max-tokens 64", "--rig", RIG],
            "without",
        ),
        (
            [
                "explain",
                "llama-server -m Qwen3.6-27B-Q4_K_M.gguf --mmproj mmproj-F16.gguf -mmdev CUDA3",
                "--rig",
                RIG,
            ],
            "-mmdev",
        ),
    ],
)
def test_refused_in_one_line(args: list[str], said: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert said in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_explain_reads_mmproj_flags() -> None:
    cmd = "llama-server -m Qwen3.6-27B-Q4_K_M.gguf -ngl 99 -c 32768 --mmproj mmproj-BF16.gguf"
    r = api.explain(cmd, RIG)
    assert r.vision is not None and r.vision.device == "CUDA0" and r.vision.warmup_px == 1472
    assert "--mmproj" not in " ".join(r.ignored_flags)
    gpu = next(d for d in r.devices if d.name == "CUDA0")
    assert gpu.vision_bytes == r.vision.weights_bytes + r.vision.compute_bytes
    # -mm, kept on the CPU, with a smaller image budget: the warmup image shrinks (set_warmup_n_tokens)
    small = api.explain(
        "llama-server -m Qwen3.6-27B-Q4_K_M.gguf -c 32768 -mm mmproj-Q8_0.gguf --no-mmproj-offload "
        "--image-max-tokens 256",
        RIG,
    )
    assert small.vision is not None and small.vision.device == "CPU" and small.vision.warmup_px == 16 * 16 * 2
    assert small.vision.file_type == "Q8_0" and small.vision.compute_bytes < r.vision.compute_bytes


def test_hf_without_mmproj_notes_the_auto_download() -> None:
    tower = load_catalog()["qwen3.6-27b"].vision_tower()
    rig = parse_rig(RIG)
    v, note = vision_of_command(
        parse_command("llama-server -hf unsloth/Qwen3.6-27B-GGUF:Q4_K_M"), "m", tower, rig, Runtime()
    )
    assert v is None and note is not None and "--no-mmproj" in note
    off = parse_command("llama-server -hf unsloth/Qwen3.6-27B-GGUF:Q4_K_M --no-mmproj")
    assert vision_of_command(off, "m", tower, rig, Runtime()) == (None, None)


def test_api_plan_vision(client: TestClient) -> None:
    r = client.get("/api/plan", params={"model": "gemma-3-12b", "rig": RIG, "vision": "f16"})
    assert r.status_code == 200
    body = r.json()
    assert body["vision"]["device"] == "CUDA0" and body["vision"]["warmup_px"] == 896
    assert any(d["vision_bytes"] for d in body["devices"])
    bad = client.get("/api/plan", params={"model": "qwen3-8b", "rig": RIG, "vision": "f16"})
    assert bad.status_code == 400 and "no vision tower" in bad.json()["detail"]
    assert (
        client.get("/api/plan", params={"model": "gemma-3-12b", "rig": RIG, "vision": "q4"}).status_code
        == 422
    )
    vllm = client.get(
        "/api/plan", params={"model": "gemma-3-12b", "rig": "2x H100", "engine": "vllm", "vision": "f16"}
    )
    assert vllm.status_code == 400 and "vLLM and SGLang" in vllm.json()["detail"]


def test_deploy_page_offers_vision(client: TestClient) -> None:
    page = client.get("/models/gemma-3-4b")
    assert page.status_code == 200 and 'id="vision"' in page.text and "--mmproj" in page.text
    twin = client.get("/models/gemma-3-4b.json").json()["vision"]
    assert {f["file_type"] for f in twin["files"]} == {"F16", "BF16", "Q8_0", "F32"}
    assert all("--mmproj" in p["plan"]["command"] for p in twin["plans"])
    assert 'id="vision"' not in client.get("/models/qwen3-8b").text


def test_plan_form_with_vision(client: TestClient) -> None:
    page = client.get("/", params={"model": "qwen3.6-27b", "rig": RIG, "vision": "bf16"})
    assert page.status_code == 200 and "With vision: vision projector on CUDA0" in page.text
    assert '<option value="bf16" selected>' in page.text
