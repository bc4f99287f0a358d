"""The web app through FastAPI's TestClient: every page and its JSON twin, the API, and bad input
answered with 4xx and a helpful message (never a 500)."""

import asyncio
import html
import json
import re
import socket
import threading
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from uvicorn.importer import import_from_string

from moeplan.cli import app as cli_app
from moeplan.memory.kv import CACHE_TYPES
from moeplan.quant.recipe import FileType
from moeplan.web import app as web_app
from moeplan.web import data, render
from moeplan.web.app import create_app, usable_cores

MODEL = "qwen3.5-35b-a3b"


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(), raise_server_exceptions=False)


PAGES = [
    "/",
    f"/?model={MODEL}&rig=rtx-4090-64gb",
    "/models",
    "/models?kind=moe&sort=experts&desc=1",
    f"/models/{MODEL}",
    "/compare",
    "/compare?a=qwen3-8b&b=qwen3-30b-a3b",
    "/hardware?rig=mac-128gb",
    "/gpus",
    "/gpus?q=4090",
]


@pytest.mark.parametrize("url", PAGES)
def test_page_and_json_twin(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/html")
    assert '<script src="/static/vendor/chart.umd.min.js">' in r.text
    path, _, query = url.partition("?")
    twin = ("/index" if path == "/" else path) + ".json" + (f"?{query}" if query else "")
    j = client.get(twin)
    assert j.status_code == 200, j.text[:300]
    assert j.headers["content-type"].startswith("application/json")
    linked = re.search(r'<link rel="alternate" type="application/json" href="([^"]+)"', r.text)
    assert linked, "the page links its JSON twin"
    assert client.get(html.unescape(linked.group(1))).json() == j.json()


def test_deploy_page_content(client: TestClient) -> None:
    text = client.get(f"/models/{MODEL}").text
    page = client.get(f"/models/{MODEL}.json").json()
    m = page["model"]
    assert m["is_moe"] and m["n_expert"] == 256 and m["n_expert_used"] == 8 and m["n_shared"] == 1
    assert m["params_active"] < m["params_total"] / 5
    assert set(m["attention"]) == {"full", "linear"}
    # the table by quantization: Q4_K_M marked as the quality floor, 8k/32k/128k columns
    rows = {q["quant"]: q for q in page["quants"]}
    assert rows["Q4_K_M"]["floor"] and rows["Q2_K"]["below_floor"] and not rows["Q8_0"]["below_floor"]
    assert list(rows["Q4_K_M"]["vram_bytes"]) == ["8k", "32k", "128k"]
    assert rows["Q4_K_M"]["vram_bytes"]["8k"] < rows["Q4_K_M"]["vram_bytes"]["128k"]
    assert rows["Q8_0"]["file_bytes"] > rows["Q4_K_M"]["file_bytes"]
    assert rows["Q4_K_M"]["smallest"]
    # ready-made plans on the common rigs, each with its command
    labels = [p["label"] for p in page["plans"]]
    assert "2x 24 GB + 128 GB RAM" in labels and "Mac 512 GB" in labels and "8x H200" in labels
    for p in page["plans"]:
        assert p["plan"]["command"].startswith("llama-server -m ")
        assert html.escape(p["plan"]["command"]) in text
    assert "quality floor" in text and "chart-roles" in text and "chart-memory" in text
    assert page["notices"]


def test_deploy_page_shows_datacenter_plans(client: TestClient) -> None:
    serving = client.get("/models/deepseek-v3.1.json").json()["serving"]
    by = {(p["rig"], p["engine"]): p for p in serving}
    assert not by[("8x H100-SXM", "vllm")]["fits"] and by[("8x H200", "vllm")]["fits"]  # FP8 671B
    assert by[("8x H200", "sglang")]["commands"][0] == {
        "where": None,
        "text": by[("8x H200", "sglang")]["commands"][0]["text"],
    }
    assert by[("8x H200", "sglang")]["commands"][0]["text"].startswith("python -m sglang.launch_server")
    multi = by[("2 nodes x 8x H200, 400Gb IB", "vllm")]["commands"]
    assert len(multi) == 3  # Ray head, worker, then serve
    assert [c["where"].split(" ")[:2] for c in multi] == [["node", "0"], ["node", "1"], ["node", "0"]]
    assert [c["text"].split(" ")[0] for c in multi] == ["ray", "ray", "vllm"]  # no label in the command
    assert 'id="serving-plans"' in client.get("/models/deepseek-v3.1").text


def test_deploy_page_by_hf_repo_redirects(client: TestClient) -> None:
    r = client.get("/models/Qwen/Qwen3.5-35B-A3B", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == f"/models/{MODEL}"


def test_models_filter_and_sort(client: TestClient) -> None:
    moe = client.get("/models.json?kind=moe&sort=experts&desc=1").json()["models"]
    assert moe and all(m["is_moe"] for m in moe)
    assert [m["n_expert"] for m in moe] == sorted((m["n_expert"] for m in moe), reverse=True)
    dense = client.get("/models.json?kind=dense&max_gb=10").json()["models"]
    assert dense and all(not m["is_moe"] and m["q4_file_bytes"] <= 10e9 for m in dense)


def test_checker_rig_in_query_string(client: TestClient) -> None:
    small = client.get("/hardware.json?rig=8gb-gpu-32gb").json()
    big = client.get("/hardware.json?rig=8x H200").json()
    assert big["runs"] > small["runs"]
    runs = client.get("/hardware.json?rig=8gb-gpu-32gb&show=runs&kind=moe&sort=model").json()
    assert all(r["fit"]["fits"] and r["is_moe"] for r in runs["rows"])
    names = [r["fit"]["model"].lower() for r in runs["rows"]]
    assert names == sorted(names)
    built = client.get("/hardware.json?gpu=RTX 3090&count=2&ram_gb=128&ram_type=DDR4-3200&channels=4").json()
    assert built["rig"] == "2x RTX 3090 + 128GB DDR4-3200 4-channel"
    assert built["gpus"] == ["GeForce RTX 3090", "GeForce RTX 3090"]
    text = client.get("/hardware?rig=mac-128gb").text
    assert 'id="share-link" href="/hardware?rig=mac-128gb"' in text


def test_compare_defaults_to_sibling_pair(client: TestClient) -> None:
    page = client.get("/compare.json").json()
    assert (page["a"]["model"]["id"], page["b"]["model"]["id"]) == ("qwen3.5-9b", "qwen3.5-35b-a3b")
    one = client.get("/compare.json?a=qwen3-30b-a3b").json()
    assert (one["a"]["model"]["id"], one["b"]["model"]["id"]) == ("qwen3-8b", "qwen3-30b-a3b")
    assert ["qwen3.5-9b", "qwen3.5-35b-a3b"] in page["pairs"]


def test_home_plans(client: TestClient) -> None:
    j = client.get("/index.json?model=Qwen/Qwen3.5-35B-A3B&preset=mac-64gb&ctx=32768").json()
    assert j["plan"]["ctx"] == 32768 and j["model_id"] == MODEL
    text = client.get(f"/?model={MODEL}&rig=rtx-4090-64gb").text
    assert "llama-server -m Qwen3.5-35B-A3B-" in text


# qwen3.5-35b-a3b at Q5_K_M and 8k on a 4090: all layers on the GPU would eat 0.35 GiB into the
# default 1 GiB --fit-target margin, so the plan offloads experts and GPU_MARGIN says what to change.
MARGIN = {"model": MODEL, "rig": "RTX 4090 + 64GB", "quant": "Q5_K_M", "ctx": "8192"}


def test_home_form_takes_cache_ram_and_fit_target(client: TestClient) -> None:
    """The plan form takes llama-server's --cache-ram and llama.cpp's --fit-target as the CLI and
    /api/plan do: boxes with their defaults as placeholders, the values kept in the form (0 too)
    and in the JSON twin's link, and the plan, its prompt cache line and command planned with them."""
    blank = client.get("/").text
    for name, default in (("cache_ram", "8192"), ("fit_target", "1024")):
        box = re.search(rf'<input name="{name}" value="" placeholder="{default}"[^>]*>', blank)
        assert box, name
    params = {"model": MODEL, "rig": "rtx-4090-64gb", "cache_ram": "0", "fit_target": "0"}
    text = client.get("/", params=params).text
    assert 'name="cache_ram" value="0"' in text and 'name="fit_target" value="0"' in text
    twin = html.unescape(re.search(r'<link rel="alternate" type="application/json" href="([^"]+)"', text)[1])
    assert "cache_ram=0" in twin and "fit_target=0" in twin
    page = client.get(twin).json()
    assert (page["cache_ram"], page["fit_target"]) == (0, 0)
    cli = CliRunner().invoke(
        cli_app, ["plan", MODEL, "--rig", "rtx-4090-64gb", "--cache-ram", "0", "--fit-target", "0", "--json"]
    )
    assert cli.exit_code == 0, cli.output
    assert page["plan"] == json.loads(cli.stdout)
    assert (
        page["plan"]["command"].endswith("--cache-ram 0")
        and "Prompt cache: none: --cache-ram 0 (given)" in text
    )
    gpu = next(d for d in page["plan"]["devices"] if d["name"] != "CPU")
    assert gpu["capacity_bytes"] == 24 * 2**30  # nothing kept free: the 4090's whole 24 GiB


def test_what_to_change_lines_follow_the_form(client: TestClient) -> None:
    """The notices that say what to change follow the form's new boxes. GPU_MARGIN, the line saying
    which --fit-target would put every layer on the GPU, counts the margin the form gave, and
    following it in the form gives that plan, the line gone."""

    def notice(page: dict[str, Any]) -> str | None:
        return next((n["message"] for n in page["plan"]["notices"] if n["id"] == "GPU_MARGIN"), None)

    default = client.get("/index.json", params=MARGIN).json()
    wider = client.get("/index.json", params={**MARGIN, "fit_target": "2048"}).json()
    said, wide = notice(default), notice(wider)
    assert said is not None and wide is not None and default["plan"]["strategy"] != "gpu"
    assert "of the 1.0 GiB kept free" in said and "of the 2.0 GiB kept free" in wide
    keep = re.search(r"with --fit-target (\d+) it runs entirely on the GPU", said)
    assert keep is not None and keep[1] in wide
    followed = client.get("/index.json", params={**MARGIN, "fit_target": keep[1]}).json()
    assert followed["plan"]["strategy"] == "gpu" and notice(followed) is None
    one_more = client.get("/index.json", params={**MARGIN, "fit_target": str(int(keep[1]) + 1)}).json()
    assert one_more["plan"]["strategy"] != "gpu"  # the line names the largest margin that does it
    # PROMPT_CACHE_REDUCED, the line saying the policy lowered --cache-ram: a size the form gives
    # is kept as given, the line gone and the prompt cache line naming it the person's
    tight = {"model": "qwen3-30b-a3b", "rig": "RTX 3060 12GB + 16GB DDR4-3200"}
    lowered = client.get("/index.json", params=tight).json()["plan"]
    reduced = next(n["message"] for n in lowered["notices"] if n["id"] == "PROMPT_CACHE_REDUCED")
    size = re.match(r"--cache-ram (\d+):", reduced)
    assert size is not None and "lowered by moeplan" in lowered["prompt_cache"]
    given = client.get("/index.json", params={**tight, "cache_ram": size[1]}).json()["plan"]
    assert given["command"] == lowered["command"] and given["command"].endswith(f"--cache-ram {size[1]}")
    assert "PROMPT_CACHE_REDUCED" not in {n["id"] for n in given["notices"]}
    assert f"--cache-ram {size[1]} (given)" in given["prompt_cache"]


def test_api_plan_takes_cache_ram_and_fit_target_as_the_cli(client: TestClient) -> None:
    """/api/plan's cache_ram and fit_target are the CLI's --cache-ram and --fit-target."""
    for typed in ({"cache_ram": "1024"}, {"cache_ram": "-1", "fit_target": "256"}):
        r = client.get("/api/plan", params={**MARGIN, **typed})
        assert r.status_code == 200, r.text[:300]
        flags = [w for k, v in typed.items() for w in ("--" + k.replace("_", "-"), v)]
        cli = CliRunner().invoke(
            cli_app,
            ["plan", MODEL, "--rig", MARGIN["rig"], "--quant", "Q5_K_M", "--ctx", "8192", *flags, "--json"],
        )
        assert cli.exit_code == 0, cli.output
        assert r.json() == json.loads(cli.stdout)
        assert r.json()["command"].endswith(f"--cache-ram {typed['cache_ram']}")


def test_api_endpoints(client: TestClient) -> None:
    p = client.get(f"/api/plan?model={MODEL}&rig=RTX 4090 %2B 64GB DDR5-6000").json()
    assert p["model"] == "Qwen3.5-35B-A3B" and p["command"].startswith("llama-server")
    q = client.get(f"/api/plan?model={MODEL}&rig=RTX 4090&quant=Q4_K_M&ctx=16384").json()
    assert q["quant"] == "Q4_K_M" and q["ctx"] == 16384
    rows = client.get("/api/fit?rig=mac-64gb").json()
    assert len(rows) == len(client.get("/api/models").json())
    s = client.get("/api/size?model=Qwen/Qwen3.5-35B-A3B&quant=Q8_0").json()
    assert s["quant"] == "Q8_0" and s["active_bytes"] < s["file_bytes"]
    m = client.get(f"/api/memory?model={MODEL}&ctx=8192&placement=-ngl 99").json()
    assert [d["device"] for d in m["devices"]] == ["CPU", "CUDA0"]
    g = client.get("/api/gpus?q=h100").json()
    assert g and all("H100" in x["name"] for x in g)
    assert "rtx-4090-64gb" in client.get("/api/presets").json()
    spec = client.get("/openapi.json").json()
    for path in ("/api/plan", "/api/fit", "/api/size", "/api/memory", "/api/models", "/api/gpus"):
        assert path in spec["paths"]


@pytest.mark.parametrize(
    ("url", "status", "text"),
    [
        ("/models/qwen3.5-35b-a3c", 404, "did you mean qwen3.5-35b-a3b"),
        ("/models/qwen3.5-35b-a3c.json", 404, "did you mean qwen3.5-35b-a3b"),
        ("/api/plan?model=qwen3.5-35b-a3c&rig=RTX 4090", 404, "did you mean"),
        ("/api/plan?model=qwen3.5-35b-a3b&rig=RTX 9999 turbo", 400, "unknown GPU"),
        ("/hardware?rig=RTX 9999 turbo", 400, "unknown GPU"),
        ("/hardware.json?rig=" + "x" * 400, 400, "too long"),
        (f"/?model={MODEL}&rig=RTX 4090&ctx=-5", 400, "context must be a whole number from 256"),
        (f"/index.json?model={MODEL}&rig=RTX 4090&ctx=abc", 400, "whole number"),
        (f"/api/memory?model={MODEL}&ctx=-5", 422, "ctx: write it like 32768, 32k, 128k or 1M, not '-5'"),
        (
            f"/api/memory?model={MODEL}&ctx=100",
            400,
            "ctx must be from 256 to 16,777,216 tokens, or 0 for the",
        ),
        (f"/api/plan?model={MODEL}&rig=RTX 4090&ctx=0", 400, "ctx must be from 256 to 16,777,216 tokens (k"),
        (
            f"/api/plan?model={MODEL}&rig=RTX 4090&quant=Q9_Z",
            400,
            "unknown quantization 'Q9_Z'; choose one of",
        ),
        (f"/api/plan?model={MODEL}&rig=RTX 4090&ctk=q9_0", 422, "not 'q9_0'"),
        ("/models?kind=sparse", 400, "kind must be"),
        ("/compare?a=llama-3.1-8b", 400, "no dense/MoE sibling"),
        ("/hardware?gpu=RTX 3090&count=500", 400, "GPU count"),
        ("/api/size?model=" + "m" * 300, 422, "at most 200"),
        # Unicode digits: str.isdigit() is True for "²" and "⑦", int() then raised (500s before).
        ("/?model=qwen3.5-9b&rig=24gb-gpu-64gb&ctx=%C2%B2", 400, "context must be a whole number"),
        ("/hardware?gpu=RTX+4090&count=%E2%91%A6", 400, "GPU count must be a whole number"),
        ("/hardware?gpu=RTX+4090&ram_gb=-64", 400, "RAM size must be a whole number"),
        ("/models?max_gb=nan", 400, "size must be a number"),
        (f"/?model={MODEL}&rig=RTX 4090&cache_ram=-5", 400, "--cache-ram -5: give MiB (0: no prompt cache)"),
        (f"/?model={MODEL}&rig=RTX 4090&cache_ram=lots", 400, "--cache-ram must be a whole number from 0"),
        (f"/?model={MODEL}&rig=RTX 4090&fit_target=-3", 400, "--fit-target must be a whole number from 0"),
        (f"/api/plan?model={MODEL}&rig=RTX 4090&cache_ram=-5", 400, "--cache-ram -5: give MiB"),
        (f"/api/plan?model={MODEL}&rig=RTX 4090&cache_ram=2147483648", 400, "--cache-ram must be from 0"),
        (f"/api/plan?model={MODEL}&rig=RTX 4090&fit_target=-3", 422, "fit_target: write it like 1024 or 256"),
        (f"/api/plan?model={MODEL}&rig=RTX 4090&fit_target=16777217", 400, "--fit-target must be from 0"),
        (f"/api/plan?model={MODEL}&rig=H100&engine=vllm&cache_ram=0", 400, "leave it out for vllm"),
        (
            f"/api/plan?model={MODEL}&rig=H100&engine=vllm&fit_target=512",
            400,
            "--fit-target describe llama.cpp",
        ),
        (f"/api/plan?model={MODEL}&rig=RTX 4090&qaunt=Q8_0", 422, "qaunt: not a parameter of /api/plan"),
        ("/api/gpus?q=4090&q=5090", 422, "q: given more than once"),
    ],
)
def test_bad_input_is_4xx_with_message(client: TestClient, url: str, status: int, text: str) -> None:
    r = client.get(url)
    assert r.status_code == status, r.text[:300]
    assert text in r.text


def test_html_is_escaped(client: TestClient) -> None:
    r = client.get("/models?q=<script>alert(1)</script>")
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;" in r.text
    e = client.get("/models/<img src=x onerror=alert(1)>")
    assert e.status_code == 404 and "<img src=x" not in e.text


def test_pages_are_timed(client: TestClient) -> None:
    r = client.get("/gpus")
    assert r.headers["server-timing"].startswith("app;dur=")


def test_api_reference_page_and_no_cdn(client: TestClient) -> None:
    r = client.get("/api")
    assert r.status_code == 200 and "GET /api/plan" in r.text and "did-you-mean" in r.text
    assert client.get("/docs").status_code == 404  # FastAPI's CDN-backed docs are off
    for url in ("/", f"/models/{MODEL}", "/hardware?rig=mac-64gb", "/api"):
        text = client.get(url).text
        assert not re.search(r'(?:src|href)="(?:https?:)?//', text), url


def test_typed_rigs_and_numbers(client: TestClient) -> None:
    # "+" typed in an address bar arrives as a space: the rig still reads (a 400 before).
    r = client.get("/hardware.json?rig=RTX 4090 + 64GB DDR5-6000")
    assert r.status_code == 200, r.text[:300]
    assert r.json()["ram_bytes"] == 64 * 2**30 and r.json()["gpus"] == ["GeForce RTX 4090"]
    home = client.get("/index.json?model=qwen3.5-9b&rig=RTX 4090 + 64GB&ctx=32k").json()
    assert home["plan"]["ctx"] == 32768


def test_openapi_document_declares_what_the_server_enforces(client: TestClient) -> None:
    """The document is written from the validators: quant and ctx as the strings people type (the
    characters a name or a number of tokens may hold as a pattern, the names and the range in the
    description), the llama.cpp cache types as enums in either case, the ranges the code checks,
    and the error body the app sends for 400, 404 and 422 (the document declared FastAPI's list)."""
    spec = client.get("/openapi.json").json()
    params = {
        path: {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        for path in ("/api/plan", "/api/memory", "/api/size")
    }
    plan = {name: p["schema"] for name, p in params["/api/plan"].items()}
    for path, name in [
        ("/api/plan", "quant"),
        ("/api/plan", "format"),
        ("/api/memory", "quant"),
        ("/api/size", "quant"),
    ]:
        p = params[path][name]
        schema = next((s for s in p["schema"].get("anyOf", []) if s.get("type") == "string"), p["schema"])
        assert schema["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_-]*$" and schema["maxLength"] == 32, (path, name)
        assert all(re.fullmatch(schema["pattern"], x) for x in p["schema"]["examples"]), (path, name)
    for path in ("/api/plan", "/api/memory", "/api/size"):
        assert ", ".join(FileType.__members__) in params[path]["quant"]["description"], path
    assert "fp8, mxfp4" in params["/api/plan"]["quant"]["description"]
    # /api/memory, as `moeplan memory`, takes llama.cpp's -c 0 (the model's context); a plan's
    # context left open is the use's, so /api/plan has no 0
    for path, zero in (("/api/plan", ""), ("/api/memory", ", or 0 for the model's own")):
        p = params[path]["ctx"]
        schema = next((s for s in p["schema"].get("anyOf", []) if s.get("type") == "string"), p["schema"])
        assert schema["pattern"] == "^[0-9]+(?:\\.[0-9]+)?[kKmM]?$" and schema["maxLength"] == 24, path
        assert f"from 256 to 16,777,216 tokens{zero} (k = 1,024: 32k, 128k, 1M)" in p["description"], path
        assert p["schema"]["examples"] == ["32768", "32k", "128k", "1M"], path
    cache = [next(s for s in plan[k]["anyOf"] if s.get("type") == "string")["enum"] for k in ("ctk", "ctv")]
    assert cache[0] == cache[1] == [*CACHE_TYPES, *(t.upper() for t in CACHE_TYPES)]
    for name, pattern, said in (
        (
            "cache_ram",
            "^-?[0-9]+$",
            "from 0 to 2,147,483,647 MiB, or 0 for no prompt cache, or -1 for no limit",
        ),
        ("fit_target", "^[0-9]+(?:\\.[0-9]+)?$", "from 0 to 16,777,216 MiB; default 1024"),
    ):
        schema = next(s for s in plan[name]["anyOf"] if s.get("type") == "string")
        assert (schema["pattern"], schema["maxLength"]) == (pattern, 24), name
        assert said in params["/api/plan"][name]["description"], name
        assert all(re.fullmatch(pattern, x) for x in params["/api/plan"][name]["schema"]["examples"]), name
    n_seq = next(s for s in plan["n_seq"]["anyOf"] if s.get("type") == "integer")
    assert (n_seq["minimum"], n_seq["maximum"]) == (1, 256)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, ops in spec["paths"].items():
        op = ops["get"]
        declared = {int(code) for code in op["responses"]}
        assert declared == ({200, 400, 404, 422} if op.get("parameters") else {200, 422}), path
        for code in declared - {200}:
            ref = op["responses"][str(code)]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/ErrorBody", (path, code)
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["detail", "error"]


@pytest.mark.parametrize(
    "url",
    [
        f"/api/memory?model={MODEL}&ctx=32 k",
        f"/api/plan?model={MODEL}&rig=RTX 4090&quant=Q4 K M",  # the document's characters, exactly
        f"/api/plan?model={MODEL}&rig=RTX 4090&n_seq=0",
        f"/api/size?model={MODEL}&mtp=maybe",
        "/api/fit",
        f"/api/plan?model={MODEL}&rig=RTX 4090&qaunt=Q8_0",
        "/api/presets?rig=mac-64gb",
        "/api/gpus?q=4090&q=5090",
    ],
)
def test_422_body_is_the_declared_error_body(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 422 and set(r.json()) == {"detail", "error"}
    assert r.json()["error"] == "RequestValidationError" and r.json()["detail"]


RIG = "RTX 4090 + 64GB DDR5-6000"


@pytest.mark.parametrize(
    ("typed", "exact"),
    [
        ({"ctx": "128k"}, {"ctx": "131072"}),
        ({"ctx": "1.5k", "quant": "q4km"}, {"ctx": "1536", "quant": "Q4_K_M"}),
        (
            {"quant": "q4_k_m", "ctk": "Q8_0", "ctv": "Q8_0"},
            {"quant": "Q4_K_M", "ctk": "q8_0", "ctv": "q8_0"},
        ),
    ],
)
def test_api_plan_reads_what_people_type(
    client: TestClient, typed: dict[str, str], exact: dict[str, str]
) -> None:
    """`ctx=128k` and `quant=q4km` were a 422 (the query schema was an integer and an enum of the
    canonical names); they read as the CLI and the home form read them."""
    r = client.get("/api/plan", params={"model": MODEL, "rig": RIG, **typed})
    assert r.status_code == 200, r.text[:300]
    assert r.json() == client.get("/api/plan", params={"model": MODEL, "rig": RIG, **exact}).json()


def test_api_spellings_equal_the_cli(client: TestClient) -> None:
    api_plan = client.get(
        "/api/plan", params={"model": MODEL, "rig": RIG, "ctx": "128k", "quant": "q4km"}
    ).json()
    cli = CliRunner().invoke(
        cli_app, ["plan", MODEL, "--rig", RIG, "--ctx", "128k", "--quant", "q4km", "--json"]
    )
    assert cli.exit_code == 0, cli.output
    assert (api_plan["ctx"], api_plan["quant"]) == (131072, "Q4_K_M") and api_plan == json.loads(cli.stdout)
    memory = client.get("/api/memory", params={"model": MODEL, "ctx": "32k", "quant": "q4km"}).json()
    cli = CliRunner().invoke(cli_app, ["memory", MODEL, "--ctx", "32k", "--quant", "q4km", "--json"])
    assert cli.exit_code == 0, cli.output
    assert (memory["n_ctx"], memory["quant"]) == (32768, "Q4_K_M") and memory == json.loads(cli.stdout)
    assert (
        memory == client.get("/api/memory", params={"model": MODEL, "ctx": "32768", "quant": "Q4_K_M"}).json()
    )
    # llama.cpp's -c 0, the model's trained context (262,144, its max_position_embeddings): `moeplan
    # memory --ctx 0` took it, /api/memory answered 400 (ctx must be from 256)
    whole = client.get("/api/memory", params={"model": MODEL, "ctx": "0"})
    assert whole.status_code == 200, whole.text[:300]
    cli = CliRunner().invoke(cli_app, ["memory", MODEL, "--ctx", "0", "--json"])
    assert cli.exit_code == 0, cli.output
    assert whole.json() == json.loads(cli.stdout) and whole.json()["n_ctx"] == 262144
    size = client.get("/api/size", params={"model": MODEL, "quant": "q8_0"}).json()
    assert (
        size["quant"] == "Q8_0"
        and size == client.get("/api/size", params={"model": MODEL, "quant": "Q8_0"}).json()
    )
    vllm = {"model": MODEL, "rig": "H100", "engine": "vllm"}
    fp8 = client.get("/api/plan", params={**vllm, "format": "fp8"}).json()
    assert fp8["weight_format"] == "fp8"
    assert fp8 == client.get("/api/plan", params={**vllm, "format": "FP8"}).json()
    assert fp8 == client.get("/api/plan", params={**vllm, "quant": "Fp8"}).json()


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        (
            {"ctx": "100"},
            400,
            "ctx must be from 256 to 16,777,216 tokens (k = 1,024: 32k, 128k, 1M), not 100",
        ),
        ({"ctx": "32M"}, 400, "ctx must be from 256 to 16,777,216 tokens"),
        ({"ctx": "12.3"}, 400, "ctx must be a whole number from 256"),
        ({"ctx": "12x"}, 422, "ctx: write it like 32768, 32k, 128k or 1M, not '12x'"),
        ({"ctx": " 128k"}, 422, "ctx: write it like"),
        ({"quant": "q4kz"}, 400, "unknown quantization 'q4kz'"),
        ({"quant": "UD-Q5_K_XL"}, 400, "'UD-Q5_K_XL' is unsloth's dynamic recipe"),
        ({"quant": "Q4.K.M"}, 422, "quant: write it like Q4_K_M, q4_k_m, q4km, fp8 or awq, not 'Q4.K.M'"),
        ({"engine": "vllm", "format": "q4km"}, 400, "Q4_K_M is a llama.cpp GGUF type"),
        ({"ctk": "Q9_0"}, 422, "ctk: Input should be"),
    ],
)
def test_bad_typed_values_are_one_line_errors(
    client: TestClient, params: dict[str, str], status: int, text: str
) -> None:
    r = client.get("/api/plan", params={"model": MODEL, "rig": RIG, **params})
    assert r.status_code == status, r.text[:300]
    assert text in r.json()["detail"] and "\n" not in r.json()["detail"]


@pytest.mark.parametrize("quant", list(FileType.__members__))
def test_every_quant_the_document_names_is_accepted(client: TestClient, quant: str) -> None:
    r = client.get(f"/api/size?model={MODEL}&quant={quant}")
    assert r.status_code == 200, r.text[:300]
    assert r.json()["quant"] == quant


def test_heavy_pages_compute_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two deploy pages held mid-computation at once (so they run side by side in the threadpool),
    and cheap requests, sync and async, are answered meanwhile; a page computed on the event loop
    would block it and the barrier would time out instead."""
    held = threading.Barrier(3, timeout=30)  # two heavy pages and this test
    release = threading.Event()
    real = data.deploy_page

    def slow_deploy_page(model: str) -> data.DeployPage:
        held.wait()
        assert release.wait(30)
        return real(model)

    monkeypatch.setattr(data, "deploy_page", slow_deploy_page)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=create_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://moeplan.test") as c:
            heavy = [asyncio.create_task(c.get(f"/models/{m}.json")) for m in ("qwen3-8b", "qwen3-30b-a3b")]
            await asyncio.to_thread(held.wait)
            presets = await asyncio.wait_for(c.get("/api/presets"), 30)
            gpus = await asyncio.wait_for(c.get("/api/gpus?q=4090"), 30)
            assert presets.status_code == gpus.status_code == 200
            assert not any(t.done() for t in heavy)
            release.set()
            answers = await asyncio.wait_for(asyncio.gather(*heavy), 120)
            assert [r.status_code for r in answers] == [200, 200]

    try:
        asyncio.run(scenario())
    finally:
        release.set()


def test_serve_starts_workers_from_the_app_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """`moeplan serve --workers N` gives uvicorn the factory's import string (it needs one to start
    worker processes) and N workers, by default one per usable core; 0 workers is refused."""
    calls: list[tuple[str, int, int | None]] = []
    monkeypatch.setattr(
        web_app, "run_server", lambda host, port, workers: calls.append((host, port, workers))
    )
    runner = CliRunner()
    assert runner.invoke(cli_app, ["serve", "--port", "8123", "--workers", "3"]).exit_code == 0
    assert calls == [("127.0.0.1", 8123, 3)]
    bad = runner.invoke(cli_app, ["serve", "--workers", "0"])
    assert bad.exit_code == 2 and "--workers" in bad.output and "Traceback" not in bad.output
    config = web_app.server_config("127.0.0.1", 8123, 3)
    assert isinstance(config.app, str) and import_from_string(config.app) is create_app
    assert config.factory and config.workers == 3
    assert web_app.server_config("127.0.0.1", 8123).workers == usable_cores()


def test_worker_sockets_send_without_delay() -> None:
    """The socket uvicorn's worker processes share says it is TCP, so asyncio turns TCP_NODELAY on
    for each connection (without it every keep-alive answer waited ~40 ms for a delayed ACK)."""
    listener = web_app.server_config("127.0.0.1", 0, 2).bind_socket()
    nodelay: list[int] = []

    async def accept_one() -> None:
        def made(transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

        protocol = type("Probe", (asyncio.Protocol,), {"connection_made": lambda self, t: made(t)})
        server = await asyncio.get_running_loop().create_server(protocol, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname())
        while not nodelay:
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    with listener:
        assert listener.proto == socket.IPPROTO_TCP
        asyncio.run(asyncio.wait_for(accept_one(), 30))
    assert nodelay == [1]


@pytest.mark.parametrize(
    "path",
    ["/?model=qwen3.5-35b-a3b&rig=rtx-4090-64gb", "/compare?a=qwen3.5-9b&b=qwen3.5-35b-a3b"],
)
def test_latency_percentiles_said_once_where_they_agree(client: TestClient, path: str) -> None:
    """Before: 'latency p50: 5.1 ms · latency p95: 5.1 ms · latency p99: 5.1 ms' for one sequence,
    whose percentiles are one number; the deploy page's table says them as the same one group."""
    text = html.unescape(re.sub(r"<[^>]+>", "", client.get(path).text))
    assert "latency p50 / p95 / p99" in text and "latency p95" not in text


# A command box as the pages have drawn it (a quoted file name with markup characters, an -ot regex).
COMMAND = "llama-server -m 'My Model <Q4_K_M>.gguf' -c 8192 -ot blk\\.(1[0-9])\\.ffn_.*_exps\\.=CPU -fa on"
COMMAND_BOX = (
    '<div class="command"><code class="cmd" style="--arg-ch: 36">'
    '<span class="arg">llama-server</span> '
    '<span class="arg">-m &#39;My Model &lt;Q4_K_M&gt;.gguf&#39;</span> '
    '<span class="arg">-c 8192</span> '
    '<span class="arg">-ot blk\\.(1[0-9])\\.ffn_.*_exps\\.=CPU</span> '
    '<span class="arg">-fa on</span></code>'
    '<button type="button" class="copy" data-copy="'
    "llama-server -m &#39;My Model &lt;Q4_K_M&gt;.gguf&#39; "
    "-c 8192 -ot blk\\.(1[0-9])\\.ffn_.*_exps\\.=CPU -fa on"
    '" hidden>copy</button></div>\n'
)


def test_a_command_box_is_drawn_from_one_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The box's spans and its --arg-ch width come from one split of the command
    (render.command_spans; two filters split it twice before), the markup byte for byte as it was."""
    splits: list[str] = []
    split = render._arg_groups
    monkeypatch.setattr(render, "_arg_groups", lambda cmd: splits.append(cmd) or split(cmd))
    drawn = render.ENV.from_string('{% import "macros.html" as m %}{{ m.command(c) }}').render(c=COMMAND)
    assert drawn == COMMAND_BOX and splits == [COMMAND]
