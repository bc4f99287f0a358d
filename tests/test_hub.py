"""Hub references read header-only, against a local stand-in for the Hub (tests/hub_server.py)
serving real GGUF files (one split in 3 shards) and real safetensors files written here."""

import json
import os
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest
from huggingface_hub import constants
from typer.testing import CliRunner

from moeplan import api
from moeplan.cli import app
from moeplan.errors import HubError, MoeplanError
from moeplan.memory.report import SizeReport
from moeplan.sources import hub
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_weights import weights_from_gguf
from moeplan.sources.reference import resolve_model
from tests.gguf_shapes import int8_arrays
from tests.hub_server import TOKEN, HubServer
from tests.test_gguf_header import gguf_bytes, tensor_info

Q = gguf.GGMLQuantizationType
N_EMBD, N_HEAD, N_KV, HEAD_DIM, N_FF_EXP, N_EXPERT, N_USED, N_LAYER, N_VOCAB = (
    256,
    4,
    2,
    64,
    256,
    64,
    4,
    4,
    1000,
)
MB = 1024 * 1024


def _tensors(expert_type: Q) -> list[tuple[str, tuple[int, ...], Q]]:
    """qwen3moe tensors (ggml order, ne0 first) with the experts at `expert_type`."""
    out = [("token_embd.weight", (N_EMBD, N_VOCAB), Q.F16), ("output_norm.weight", (N_EMBD,), Q.F32)]
    out.append(("output.weight", (N_EMBD, N_VOCAB), Q.F16))
    for il in range(N_LAYER):
        b = f"blk.{il}."
        out += [
            (b + "attn_norm.weight", (N_EMBD,), Q.F32),
            (b + "attn_q.weight", (N_EMBD, N_HEAD * HEAD_DIM), Q.F16),
            (b + "attn_k.weight", (N_EMBD, N_KV * HEAD_DIM), Q.F16),
            (b + "attn_v.weight", (N_EMBD, N_KV * HEAD_DIM), Q.F16),
            (b + "attn_output.weight", (N_HEAD * HEAD_DIM, N_EMBD), Q.F16),
            (b + "attn_q_norm.weight", (HEAD_DIM,), Q.F32),
            (b + "attn_k_norm.weight", (HEAD_DIM,), Q.F32),
            (b + "ffn_norm.weight", (N_EMBD,), Q.F32),
            (b + "ffn_gate_inp.weight", (N_EMBD, N_EXPERT), Q.F32),
            (b + "ffn_gate_exps.weight", (N_EMBD, N_FF_EXP, N_EXPERT), expert_type),
            (b + "ffn_up_exps.weight", (N_EMBD, N_FF_EXP, N_EXPERT), expert_type),
            (b + "ffn_down_exps.weight", (N_FF_EXP, N_EMBD, N_EXPERT), expert_type),
        ]
    return out


def _writer(path: Path, file_type: int, split: tuple[int, int, int] | None) -> gguf.GGUFWriter:
    w = gguf.GGUFWriter(path, "qwen3moe")
    if split is None or split[0] == 0:
        w.add_name("Tiny MoE")
        w.add_file_type(file_type)
        w.add_block_count(N_LAYER)
        w.add_context_length(32768)
        w.add_embedding_length(N_EMBD)
        w.add_feed_forward_length(N_FF_EXP * 3)
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_KV)
        w.add_key_length(HEAD_DIM)
        w.add_value_length(HEAD_DIM)
        w.add_expert_count(N_EXPERT)
        w.add_expert_used_count(N_USED)
        w.add_expert_feed_forward_length(N_FF_EXP)
        w.add_rope_freq_base(1e6)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_tokenizer_model("gpt2")
        w.add_token_list([f"tok{i}" for i in range(N_VOCAB)])
    if split is not None:
        w.add_uint16("split.no", split[0])
        w.add_uint16("split.count", split[1])
        w.add_int32("split.tensors.count", split[2])
    return w


def write_gguf(folder: Path, stem: str, file_type: int, expert_type: Q, shards: int = 1) -> list[Path]:
    tensors = _tensors(expert_type)
    per = -(-len(tensors) // shards)
    paths = []
    for i in range(shards):
        name = f"{stem}.gguf" if shards == 1 else f"{stem}-{i + 1:05d}-of-{shards:05d}.gguf"
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        w = _writer(path, file_type, None if shards == 1 else (i, shards, len(tensors)))
        for tname, shape, ttype in tensors[i * per : (i + 1) * per]:
            if ttype in (Q.F16, Q.F32):
                w.add_tensor(tname, np.zeros(shape[::-1], np.float16 if ttype == Q.F16 else np.float32))
                continue
            block, type_size = gguf.GGML_QUANT_SIZES[ttype]
            byte_shape = (*shape[::-1][:-1], shape[0] // block * type_size)
            w.add_tensor(tname, np.zeros(byte_shape, np.uint8), raw_dtype=ttype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        paths.append(path)
    return paths


LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 512,
    "intermediate_size": 1536,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "vocab_size": 8000,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
DTYPE_BYTES = {"BF16": 2, "F32": 4, "F8_E4M3": 1}


def _hf_tensors(cfg: dict[str, object], fp8: bool) -> list[tuple[str, str, tuple[int, ...]]]:
    h, f, v, n = (
        int(cfg[k]) for k in ("hidden_size", "intermediate_size", "vocab_size", "num_hidden_layers")
    )  # type: ignore[call-overload]
    kv = h // 8 * 4
    out = [("model.embed_tokens.weight", "BF16", (v, h)), ("model.norm.weight", "BF16", (h,))]
    out.append(("lm_head.weight", "BF16", (v, h)))
    for il in range(n):
        p = f"model.layers.{il}."
        out += [
            (p + "input_layernorm.weight", "BF16", (h,)),
            (p + "post_attention_layernorm.weight", "BF16", (h,)),
        ]
        for name, shape in (
            ("self_attn.q_proj", (h, h)),
            ("self_attn.k_proj", (kv, h)),
            ("self_attn.v_proj", (kv, h)),
            ("self_attn.o_proj", (h, h)),
            ("mlp.gate_proj", (f, h)),
            ("mlp.up_proj", (f, h)),
            ("mlp.down_proj", (h, f)),
        ):
            out.append((p + name + ".weight", "F8_E4M3" if fp8 else "BF16", shape))
            if fp8:
                out.append(
                    (p + name + ".weight_scale_inv", "F32", (-(-shape[0] // 128), -(-shape[1] // 128)))
                )
    return out


def write_safetensors(folder: Path, cfg: dict[str, object], fp8: bool, shards: int = 2) -> list[Path]:
    """The safetensors format by hand: 8-byte little-endian header length, JSON header, data."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = _hf_tensors(cfg, fp8)
    per = -(-len(tensors) // shards)
    weight_map, paths = {}, []
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        offset = 0
        for tname, dtype, shape in tensors[i * per : (i + 1) * per]:
            nbytes = int(np.prod(shape)) * DTYPE_BYTES[dtype]
            header[tname] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[tname] = name
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with (folder / name).open("wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            fh.truncate(8 + len(raw) + offset)
        paths.append(folder / name)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    conf = dict(cfg)
    if fp8:
        conf["quantization_config"] = {"quant_method": "fp8", "weight_block_size": [128, 128]}
    (folder / "config.json").write_text(json.dumps(conf))
    return paths


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("hubfiles")
    return {
        "q4": write_gguf(root / "gguf", "Tiny-MoE-Q4_K_M", 15, Q.Q4_K),
        "q8": write_gguf(root / "gguf" / "Q8_0", "Tiny-MoE-Q8_0", 7, Q.Q8_0, shards=3),
        "bf16": write_safetensors(root / "bf16", LLAMA_CONFIG, fp8=False),
        "fp8": write_safetensors(root / "fp8", LLAMA_CONFIG, fp8=True),
    }


@pytest.fixture(scope="module")
def server(files: dict[str, list[Path]]) -> Iterator[HubServer]:
    s = HubServer()
    gguf_files = {"Tiny-MoE-Q4_K_M.gguf": files["q4"][0], **{f"Q8_0/{p.name}": p for p in files["q8"]}}
    gguf_files["README.md"] = files["q4"][0].with_name("README.md")
    gguf_files["README.md"].write_text("# Tiny MoE GGUF\n")
    s.add("test-org/Tiny-MoE-GGUF", gguf_files)
    s.add("test-org/Gated-GGUF", {"Tiny-MoE-Q4_K_M.gguf": files["q4"][0]}, gated=True)
    for key in ("bf16", "fp8"):
        folder = files[key][0].parent
        s.add(f"test-org/Tiny-Llama-{key.upper()}", {p.name: p for p in sorted(folder.iterdir())})
    s.start()
    yield s
    s.stop()


@pytest.fixture
def hub_env(server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """huggingface_hub pointed at the local server through its endpoint setting, with a fresh home."""
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    server.reset_counts()
    hub.forget_failures()  # remembered per process: each test starts from a clean slate
    return server


def _same(a: SizeReport, b: SizeReport) -> None:
    skip = {"notes", "source", "quant"}
    assert a.model_dump(exclude=skip) == b.model_dump(exclude=skip)


def test_gguf_reference_reads_only_the_header(hub_env: HubServer, files: dict[str, list[Path]]) -> None:
    local = files["q4"][0]
    remote = api.inspect_file("hf://test-org/Tiny-MoE-GGUF:q4_k_m")
    _same(remote, api.inspect_file(str(local)))
    assert remote.quant == "Q4_K_M" and remote.source == "gguf header (hub)"
    served = hub_env.served["test-org/Tiny-MoE-GGUF/Tiny-MoE-Q4_K_M.gguf"]
    size = local.stat().st_size
    assert size > 20 * MB and 0 < served <= 128 * 1024 and served / size < 0.01
    found = hub.read_gguf(hub.HubRef("test-org/Tiny-MoE-GGUF", None, "Tiny-MoE-Q4_K_M.gguf"))
    assert weights_from_gguf(found.model).tensors == weights_from_gguf(read_local(local)).tensors
    assert found.model.metadata == read_local(local).metadata


def test_split_gguf_in_a_subfolder(hub_env: HubServer, files: dict[str, list[Path]]) -> None:
    remote = api.predict_size("test-org/Tiny-MoE-GGUF:Q8_0", "Q4_K_M")  # the file's quant wins
    _same(remote, api.inspect_file(str(files["q8"][1])))
    assert remote.quant == "Q8_0" and remote.type_histogram["q8_0"] == 3 * N_LAYER
    for p in files["q8"]:
        served = hub_env.served[f"test-org/Tiny-MoE-GGUF/Q8_0/{p.name}"]
        assert 0 < served <= 128 * 1024 and served / p.stat().st_size < 0.01, p.name
    total = sum(p.stat().st_size for p in files["q8"])
    assert total > 40 * MB and remote.file_bytes == total


def test_second_call_is_served_from_the_cache(hub_env: HubServer) -> None:
    first = api.inspect_file("hf://test-org/Tiny-MoE-GGUF:Q8_0")
    assert sum(hub_env.ranges.values()) >= 3
    hub_env.reset_counts()
    second = api.inspect_file("hf://test-org/Tiny-MoE-GGUF:Q8_0")
    assert not hub_env.ranges and not hub_env.served  # the listing only, no header bytes
    _same(first, second)
    assert "fetched now: 0 bytes" in second.notes[1]


def test_gguf_reference_plans(hub_env: HubServer) -> None:
    r = resolve_model("hf://test-org/Tiny-MoE-GGUF:Q4_K_M")
    assert r.spec is not None and r.spec_source == "GGUF metadata" and r.spec.arch == "qwen3moe"
    assert r.file_type is not None and r.file_type.name == "Q4_K_M"
    m = api.memory("hf://test-org/Tiny-MoE-GGUF:Q4_K_M", "Q8_0", 4096)
    assert m.quant == "Q4_K_M" and m.model == "Tiny MoE"
    assert r.weights is not None
    assert sum(d.weights_bytes for d in m.devices) == r.weights.tensor_bytes  # the real tensor types
    p = api.plan("hf://test-org/Tiny-MoE-GGUF:Q4_K_M", "RTX 4090 + 64GB DDR5-6000")
    assert p.fits and p.quant == "Q4_K_M" and "Tiny-MoE-Q4_K_M.gguf" in p.command
    rows = api.fit("RTX 4090 + 64GB DDR5-6000", models=["hf://test-org/Tiny-MoE-GGUF:Q4_K_M"])
    assert rows[0].id == "hf://test-org/Tiny-MoE-GGUF:Q4_K_M" and rows[0].fits


@pytest.mark.parametrize("key", ["bf16", "fp8"])
def test_safetensors_repo(hub_env: HubServer, files: dict[str, list[Path]], key: str) -> None:
    repo = f"test-org/Tiny-Llama-{key.upper()}"
    st = hub.read_safetensors(hub.HubRef(repo))
    expected = sum(int(np.prod(s)) * DTYPE_BYTES[d] for _, d, s in _hf_tensors(LLAMA_CONFIG, key == "fp8"))
    assert st.tensor_bytes == expected and st.file_bytes == sum(p.stat().st_size for p in files[key])
    assert st.release_format == key
    if key == "fp8":
        assert set(st.bytes_by_dtype()) == {"BF16", "F32", "F8_E4M3"} and st.scale_tensors == 7 * 4
    else:
        assert set(st.bytes_by_dtype()) == {"BF16"} and st.scale_tensors == 0
    for p in files[key]:
        served = hub_env.served[f"{repo}/{p.name}"]
        assert 0 < served <= 128 * 1024 and served / p.stat().st_size < 0.02, p.name
    assert st.file_bytes > 20 * MB
    r = api.predict_size(f"hf://{repo}", "Q4_K_M")
    assert r.source == "predicted" and r.native_bytes == expected and r.native_format == key
    catalog_like = api.memory(f"hf://{repo}", "Q4_K_M", 2048)
    assert catalog_like.model == repo and catalog_like.total_bytes > 0


def test_hub_ls_and_cli(hub_env: HubServer) -> None:
    listing = api.hub_ls("test-org/Tiny-MoE-GGUF")
    assert [(g.quant, len(g.files), g.complete) for g in listing.gguf] == [
        ("Q8_0", 3, True),
        ("Q4_K_M", 1, True),
    ]
    runner = CliRunner()
    res = runner.invoke(app, ["hub", "ls", "test-org/Tiny-MoE-GGUF", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["gguf"][0]["files"][0] == "Q8_0/Tiny-MoE-Q8_0-00001-of-00003.gguf"
    res = runner.invoke(app, ["hub", "ls", "test-org/Tiny-MoE-GGUF"])
    assert res.exit_code == 0 and "Q4_K_M" in res.output and "3" in res.output
    res = runner.invoke(app, ["size", "hf://test-org/Tiny-MoE-GGUF:Q4_K_M", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["quant"] == "Q4_K_M"
    res = runner.invoke(app, ["inspect", "hf://test-org/Tiny-MoE-GGUF:Q8_0"])
    assert res.exit_code == 0 and "qwen3moe" in res.output


def _error(ref: str) -> str:
    with pytest.raises(MoeplanError) as e:
        api.predict_size(ref, "Q4_K_M")
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_errors_people_can_act_on(hub_env: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "not found" in _error("hf://test-org/Nope:Q4_K_M")
    msg = _error("hf://test-org/Tiny-MoE-GGUF:Q2_K")
    assert "no GGUF file of 'Q2_K'" in msg and "Q4_K_M" in msg and "Q8_0" in msg
    msg = _error("hf://test-org/Gated-GGUF:Q4_K_M")
    assert "gated" in msg and "HF_TOKEN" in msg and "huggingface-cli login" in msg
    assert "GGUF repository" in _error("hf://test-org/Tiny-MoE-GGUF")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert api.predict_size("hf://test-org/Gated-GGUF:Q4_K_M", "Q4_K_M").quant == "Q4_K_M"


def test_header_limit(hub_env: HubServer) -> None:
    with pytest.raises(MoeplanError, match="larger than the 4,096-byte limit"):
        hub.read_gguf(hub.HubRef("test-org/Tiny-MoE-GGUF", None, "Q4_K_M"), limit=4096)
    with pytest.raises(HubError, match="exceeds the 1,000-byte limit"):
        hub.read_safetensors(hub.HubRef("test-org/Tiny-Llama-BF16"), limit=1000)
    assert max(hub_env.served.values(), default=0) <= 4096


def test_network_unreachable(hub_env: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    msg = _error("hf://test-org/Tiny-MoE-GGUF:Q4_K_M")
    assert "cannot reach" in msg and dead in msg


@pytest.mark.parametrize(
    "ref",
    [
        "http://169.254.169.254/latest/meta-data:Q4_K_M",
        "https://evil.example/org/repo/resolve/main/x.gguf",
        "file:///etc/passwd",
        "s3://bucket/org/repo",
        "ftp://127.0.0.1/org/repo",
    ],
)
def test_only_the_configured_endpoint_is_fetched(hub_env: HubServer, ref: str) -> None:
    with pytest.raises(HubError, match=r"refused|only the configured Hub endpoint"):
        resolve_model(ref)
    assert not hub_env.requests


def test_endpoint_urls_and_reference_forms(hub_env: HubServer) -> None:
    url = f"{hub_env.url}/test-org/Tiny-MoE-GGUF/blob/main/Tiny-MoE-Q4_K_M.gguf"
    assert hub.parse_ref(url) == hub.HubRef("test-org/Tiny-MoE-GGUF", "main", "Tiny-MoE-Q4_K_M.gguf")
    assert api.inspect_file(url).quant == "Q4_K_M"
    assert hub.parse_ref("qwen3.5-35b-a3b") is None and hub.parse_ref("Qwen/Qwen3.5-35B-A3B") is None
    assert hub.parse_ref("hf://org/repo@v1:Q4_K_M") == hub.HubRef("org/repo", "v1", "Q4_K_M")
    with pytest.raises(HubError):
        hub.parse_ref("hf://org/repo:../../etc/passwd")
    with pytest.raises(HubError):
        hub.parse_ref("hf://not-a-repo")


def test_web_plan_box_takes_hub_references_and_nothing_else(hub_env: HubServer) -> None:
    """The web app's /api/plan reads a Hub reference header-only from the configured endpoint, and
    refuses any other URL before making a request (no SSRF)."""
    from fastapi.testclient import TestClient

    from moeplan.web.app import create_app

    client = TestClient(create_app())
    ok = client.get("/api/plan", params={"model": "hf://test-org/Tiny-MoE-GGUF:Q4_K_M", "rig": "RTX 4090"})
    assert ok.status_code == 200 and ok.json()["quant"] == "Q4_K_M"
    fetched = len(hub_env.requests)
    for ref in ("https://evil.example/x.gguf", "file:///etc/passwd", "http://127.0.0.1:1/org/repo:Q4_K_M"):
        bad = client.get("/api/plan", params={"model": ref, "rig": "RTX 4090"})
        assert bad.status_code == 400 and bad.json()["error"] == "HubError"
    assert len(hub_env.requests) == fetched  # not one request for the refused references


# ---------------------------------------------------------------- hostile files on the Hub (issue 17)


def _evil(hub_env: HubServer, tmp_path: Path, repo: str, write: Callable[[Path], None]) -> str:
    path = tmp_path / f"{repo.split('/')[1]}-Q4_K_M.gguf"
    write(path)
    hub_env.add(repo, {path.name: path})
    return f"hf://{repo}:Q4_K_M"


def test_hostile_hub_file_costs_its_budget_once(hub_env: HubServer, tmp_path: Path) -> None:
    """Issue 17: a 16 MB header of 4,096-item INT8 arrays cost 8.9 s and +640 MB per
    `/api/plan?model=hf://...` request, re-parsed every time. Now it is held in its bytes, the
    failure (no architecture) is remembered, and the next request costs nothing."""
    ref = _evil(hub_env, tmp_path, "evil/Int8-GGUF", lambda p: int8_arrays(p, 16 * MB))
    api.inspect_file("hf://test-org/Tiny-MoE-GGUF:Q4_K_M")  # the Hub client's imports, not traced
    tracemalloc.start()
    t0 = time.monotonic()
    assert "no general.architecture" in _error(ref)
    elapsed = time.monotonic() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 24 * MB, f"{peak:,} bytes"
    assert elapsed < 8, f"{elapsed:.1f}s"
    hub_env.reset_counts()
    t0 = time.monotonic()
    assert "no general.architecture" in _error(ref)
    assert time.monotonic() - t0 < 0.5 and not hub_env.requests  # not even the listing


def test_failures_are_remembered_for_the_ttl(
    hub_env: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = gguf_bytes(tensors=[tensor_info("w", (1024,), Q.F32)] * 10, data=4096)
    ref = _evil(hub_env, tmp_path, "evil/Dup-GGUF", lambda p: p.write_bytes(raw))
    assert "tensor 'w' appears twice" in _error(ref)
    hub_env.reset_counts()
    assert "tensor 'w' appears twice" in _error(ref) and not hub_env.requests
    later = time.monotonic() + hub.FAILURE_TTL_S + 1
    monkeypatch.setattr(hub.time, "monotonic", lambda: later)
    assert "tensor 'w' appears twice" in _error(ref)
    assert hub_env.requests and not hub_env.served  # listed again; the header bytes are on disk
    monkeypatch.setenv("MOEPLAN_HUB_FAILURE_TTL_S", "0")
    hub.forget_failures()
    for _ in range(2):
        hub_env.reset_counts()
        _error(ref)
        assert hub_env.requests  # nothing remembered


def test_a_new_token_is_not_answered_from_memory(hub_env: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "gated" in _error("hf://test-org/Gated-GGUF:Q4_K_M")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert api.predict_size("hf://test-org/Gated-GGUF:Q4_K_M", "Q4_K_M").quant == "Q4_K_M"


def test_header_cache_is_bounded(hub_env: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: the on-disk header cache never evicted. It keeps MOEPLAN_HEADER_CACHE_MB, least
    recently used first."""
    root = hub._cache_root()
    stale = root / "old--repo" / "c0ffee" / "big.gguf.e.head"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * (2 * MB))
    os.utime(stale, (1_000_000, 1_000_000))
    monkeypatch.setenv("MOEPLAN_HEADER_CACHE_MB", "1")
    api.inspect_file("hf://test-org/Tiny-MoE-GGUF:Q4_K_M")
    kept = [p for p in root.rglob("*") if p.is_file()]
    assert not stale.exists() and [p.name.split(".")[0] for p in kept] == ["Tiny-MoE-Q4_K_M"]
    assert sum(p.stat().st_size for p in kept) <= MB
    hub_env.reset_counts()
    api.inspect_file("hf://test-org/Tiny-MoE-GGUF:Q4_K_M")
    assert not hub_env.served  # what was kept still serves


def test_trim_cache_evicts_least_recently_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i, name in enumerate(["a", "b", "c"]):
        (tmp_path / name).write_bytes(b"\0" * (MB // 2))
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    monkeypatch.setenv("MOEPLAN_HEADER_CACHE_MB", "1")
    assert hub.trim_cache(tmp_path) == MB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c"]
    monkeypatch.setenv("MOEPLAN_HEADER_CACHE_MB", "lots")
    with pytest.raises(MoeplanError, match="MOEPLAN_HEADER_CACHE_MB must be a positive whole number"):
        hub.trim_cache(tmp_path)


def test_home_page_plans_a_hub_reference(hub_env: HubServer) -> None:
    """The home page's plan box answers a Hub reference as /api/plan does (it answered 404 after
    computing the plan: it looked the reference up in the catalog for the deploy-page link)."""
    from fastapi.testclient import TestClient

    from moeplan.web.app import create_app

    client = TestClient(create_app())
    ref = "hf://test-org/Tiny-MoE-GGUF:Q4_K_M"
    api_plan = client.get("/api/plan", params={"model": ref, "rig": "RTX 4090"})
    page = client.get("/index.json", params={"model": ref, "rig": "RTX 4090"})
    assert api_plan.status_code == page.status_code == 200, page.text[:300]
    assert page.json()["plan"] == api_plan.json() and page.json()["model_id"] is None
    html_page = client.get("/", params={"model": ref, "rig": "RTX 4090"})
    assert html_page.status_code == 200 and "Tiny-MoE-Q4_K_M.gguf" in html_page.text
    assert "deploy page of" not in html_page.text  # a Hub model has no deploy page to link
