"""The web app through FastAPI's TestClient: every page and its JSON twin, the API, and bad input
answered with 4xx and a helpful message (never a 500)."""

import html
import re

import pytest
from fastapi.testclient import TestClient

from moeplan.web.app import create_app

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
        (f"/?model={MODEL}&rig=RTX 4090&ctx=-5", 400, "context must be between"),
        (f"/index.json?model={MODEL}&rig=RTX 4090&ctx=abc", 400, "whole number"),
        (f"/api/memory?model={MODEL}&ctx=-5", 422, "greater than or equal"),
        (f"/api/plan?model={MODEL}&rig=RTX 4090&quant=Q9_Z", 400, "Q9_Z"),
        ("/models?kind=sparse", 400, "kind must be"),
        ("/compare?a=llama-3.1-8b", 400, "no dense/MoE sibling"),
        ("/hardware?gpu=RTX 3090&count=500", 400, "GPU count"),
        ("/api/size?model=" + "m" * 300, 422, "at most 200"),
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
