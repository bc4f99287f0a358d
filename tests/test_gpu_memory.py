"""GPU backends, build rules and the calibration against real CUDA / Vulkan / Metal logs.

The logs (tests/data/gpu_memory_logs.json) are explained by `validation.gpu_logs` from the rules read
in llama.cpp's source; these tests hold the records that are explained to the issue's tolerances
and check each backend's and build's rule on its own.
"""

import pytest
from validation import gpu_logs

from moeplan import api
from moeplan.arch.inventory import inventory
from moeplan.engines import builds
from moeplan.engines.gpu_backends import backend, backend_of_device, vendor_backend
from moeplan.engines.llamacpp import Frontend, layer_devices, parse_placement, plan_memory
from moeplan.errors import MoeplanError
from moeplan.hardware.rig import parse_rig
from moeplan.memory.kv import CacheConfig
from moeplan.memory.weights import predict
from moeplan.plan.llamacpp import GiB, Runtime, device_slots
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog
from tests.test_plan import RTX4090, rig

MIB = 2**20
RECORDS = {r["id"]: r for r in __import__("json").loads(gpu_logs.LOGS.read_text())["records"]}
# GPUs whose compute, KV/state and total moeplan explains (the others' reasons are in REPORT.md).
EXPLAINED = {
    "r01/CUDA0", "r06/CUDA1", "r06/CUDA2", "r06/CUDA3", "r21/Vulkan0", "r28/MTL0",
    "r34/CUDA0", "r34/CUDA1", "r36/Vulkan0", "r40/CUDA0",
}  # fmt: skip
# KV/state (and compute) explained; the model term is a third-party recipe moeplan does not predict.
KV_AND_COMPUTE = {"r05/CUDA0", "r30/CUDA1", "r30/CUDA2", "r30/CUDA3"}


@pytest.fixture(scope="module")
def rows() -> dict[str, dict]:
    return {r["id"]: r for s in gpu_logs.SETUPS for r in gpu_logs.compare(s, RECORDS[s.record])}


def test_every_record_has_a_setup_and_a_reason(rows: dict[str, dict]) -> None:
    assert {s.record for s in gpu_logs.SETUPS} == set(RECORDS)
    assert set(rows) == set(gpu_logs.REASONS)


@pytest.mark.parametrize("gpu", sorted(EXPLAINED))
def test_explained_records_within_tolerance(rows: dict[str, dict], gpu: str) -> None:
    assert rows[gpu]["ok"] == {"compute": True, "context": True, "total": True}, rows[gpu]


@pytest.mark.parametrize("gpu", sorted(KV_AND_COMPUTE))
def test_kv_and_compute_exact_where_the_recipe_is_third_party(rows: dict[str, dict], gpu: str) -> None:
    assert rows[gpu]["ok"]["compute"] and rows[gpu]["ok"]["context"], rows[gpu]


def test_kv_exact_on_every_record(rows: dict[str, dict]) -> None:
    assert all(r["ok"]["context"] for r in rows.values()), [
        k for k, r in rows.items() if not r["ok"]["context"]
    ]


def _setup(model: str, quant: str = "Q4_K_M"):  # type: ignore[no-untyped-def]
    spec = load_catalog()[model].spec()
    inv = inventory(spec, mtp=False)
    return spec, inv, predict(inv, FileType.parse(quant))


def test_op_offload_copies_the_largest_host_expert_to_the_main_gpu_only() -> None:
    _, inv, w = _setup("qwen3-30b-a3b")
    cfg = CacheConfig(n_ctx=8192)
    p = parse_placement("-ngl 99 --cpu-moe -ts 1,1")
    on = plan_memory(inv, w, cfg, p, ("CUDA0", "CUDA1"))
    off = plan_memory(inv, w, cfg, p, ("CUDA0", "CUDA1"), op_offload=False)
    table = on.table
    largest = max(table.nbytes[table.row(n)] for n in table.names if "_exps" in n)
    assert on.device("CUDA0").offload_copy_bytes == round(largest)
    assert on.device("CUDA1").offload_copy_bytes == 0
    assert on.device("CUDA0").compute_bytes > off.device("CUDA0").compute_bytes + largest * 0.9
    assert on.device("CUDA1").compute_bytes == off.device("CUDA1").compute_bytes
    # below the backend's minimum batch (32) nothing is offloaded
    small = plan_memory(inv, w, CacheConfig(n_ctx=8192, n_ubatch=16), p, ("CUDA0", "CUDA1"))
    assert small.device("CUDA0").offload_copy_bytes == 0


def test_rpc_has_no_op_offload_and_cpu_figures_do_not_change() -> None:
    _, inv, w = _setup("qwen3-30b-a3b")
    cfg = CacheConfig(n_ctx=4096)
    p = parse_placement("-ngl 99 --cpu-moe")
    rpc = plan_memory(inv, w, cfg, p, ("RPC0",))
    assert rpc.device("RPC0").offload_copy_bytes == 0 and rpc.device("RPC0").runtime_bytes == 0
    cpu = plan_memory(inv, w, cfg, parse_placement("-ngl 0"))
    assert cpu.device("CPU").runtime_bytes == 0


def test_gpu_mask_copy_is_freed_before_the_logits() -> None:
    """On a GPU the logits phase does not hold the KQ mask (a graph input's copy), on the CPU it does."""
    _, inv, w = _setup("qwen3-8b")
    cfg = CacheConfig(n_ctx=32768)
    p = parse_placement("-ngl 99")
    fe = Frontend()  # 512 outputs: the logits phase is the peak
    gpu = plan_memory(inv, w, cfg, p, ("CUDA0",), fe).device("CUDA0").compute_bytes
    rpc = plan_memory(inv, w, cfg, p, ("RPC0",), fe).device("RPC0").compute_bytes
    mask = 32768 * 512 * 2
    assert rpc - gpu == mask


def test_metal_maps_the_whole_file_and_has_no_runtime_line() -> None:
    _, inv, w = _setup("gpt-oss-20b", "MXFP4_MOE")
    cfg = CacheConfig(n_ctx=8192)
    mtl = plan_memory(inv, w, cfg, parse_placement("-ngl 99"), ("MTL0",))
    cuda = plan_memory(inv, w, cfg, parse_placement("-ngl 99"), ("CUDA0",))
    embd = mtl.table.nbytes[mtl.table.row("token_embd.weight")]
    assert mtl.device("MTL0").weights_bytes == cuda.device("CUDA0").weights_bytes + round(embd)
    assert mtl.device("MTL0").runtime_bytes == 0 and cuda.device("CUDA0").runtime_bytes > 0


def test_default_split_follows_free_memory() -> None:
    p = parse_placement("-ngl 99")
    equal = layer_devices(40, ("CUDA0", "CUDA1"), p)
    by_free = layer_devices(40, ("CUDA0", "CUDA1"), p, (24 * 2**30, 8 * 2**30))
    assert equal.count("CUDA0") == 21  # 41 slots (40 layers + output), upper_bound at 1/2
    assert by_free.count("CUDA0") == 31 and by_free[-1] == "CUDA1"  # upper_bound at 3/4
    given = layer_devices(40, ("CUDA0", "CUDA1"), parse_placement("-ngl 99 -ts 1,1"), (24 * 2**30, 8 * 2**30))
    assert given == equal


def test_old_ngl_keeps_the_output_layer_on_the_cpu() -> None:
    p = parse_placement("-ngl 10")
    new = layer_devices(24, ("CUDA0",), p)
    old = layer_devices(24, ("CUDA0",), p, output_first=False)
    assert new[-1] == "CUDA0" and new.count("CUDA0") == 10
    assert old[-1] == "CPU" and old[14:24] == ("CUDA0",) * 10 and old.count("CUDA0") == 10


def test_build_rules() -> None:
    cfg, fe = builds.at_build(7000, CacheConfig(n_ctx=4096, n_seq=4), Frontend("llama-server", 4))
    assert fe.n_outputs_max is None and cfg.mla_v_cache and not cfg.swa_full
    cfg, fe = builds.at_build(5050, CacheConfig(n_ctx=4096), Frontend("llama-server", 4))
    assert cfg.swa_full
    cfg, fe = builds.at_build(builds.PINNED_BUILD, CacheConfig(n_ctx=4096), Frontend("llama-server", 4))
    assert fe.n_outputs_max == 4 and not cfg.mla_v_cache and not cfg.swa_full
    assert builds.describe(builds.PINNED_BUILD) == "llama.cpp b11434 (pinned)"
    assert "#23861" in builds.describe(8650)
    with pytest.raises(MoeplanError, match="llamacpp-build"):
        builds.check_build(99999)


def test_old_mla_cache_holds_v_too() -> None:
    _, inv, w = _setup("deepseek-v3")
    p = parse_placement("-ngl 99 --cpu-moe")
    new = plan_memory(inv, w, CacheConfig(n_ctx=8192), p, ("CUDA0",)).device("CUDA0").kv_bytes
    cfg, _ = builds.at_build(7000, CacheConfig(n_ctx=8192), Frontend())
    old = plan_memory(inv, w, cfg, p, ("CUDA0",)).device("CUDA0").kv_bytes
    assert new == 8192 * 576 * 2 * 61 and old == 8192 * (576 + 512) * 2 * 61


def test_backend_names() -> None:
    assert backend("vulkan").device_prefix == "Vulkan"
    assert vendor_backend("Apple").name == "Metal" and vendor_backend("NVIDIA").name == "CUDA"
    assert backend_of_device("Vulkan1").name == "Vulkan" and backend_of_device("CPU") is None
    with pytest.raises(MoeplanError, match="unknown backend"):
        backend("opencl2")


def test_a_unified_gpu_keeps_the_share_the_rig_gives_it() -> None:
    """The rig already holds an Apple GPU's working set (3/4 of 512 GB); Metal must not cut it again."""
    cpu, (mtl,) = device_slots(parse_rig("M3 Ultra 512"))
    assert mtl.name == "MTL0" and mtl.capacity_bytes == 384 * GiB - Runtime().fit_target_bytes
    assert cpu.capacity_bytes < 128 * GiB  # the host has what the GPU's share leaves


def test_a_plan_that_fitted_only_by_the_flat_headroom_says_what_to_change() -> None:
    r = api.plan_on_rig("qwen3.5-35b-a3b", rig([RTX4090], 64), quant="Q5_K_M", ctx=8192)
    ids = {n.id: n.message for n in r.notices}
    assert "--fit-target" in ids["GPU_MARGIN"] and "--no-op-offload" in ids["OP_OFFLOAD_COPY"]


def test_explain_lists_one_step_fixes_and_reads_vulkan_from_the_rig() -> None:
    cmd = "llama-server -m Qwen3-30B-A3B-Q4_K_M.gguf -c 16384 -ngl 99 --n-cpu-moe 12 -ub 2048 -b 2048"
    r = api.explain(cmd, "RTX 4060 Ti 16GB + 64GB DDR5")
    assert (
        not r.fits
        and r.fixes
        and all(f.startswith(("-ub", "--no-op-offload", "--n-cpu-moe 13")) for f in r.fixes)
    )
    v = api.explain(cmd, "RTX 4060 Ti 16GB (Vulkan) + 64GB DDR5", llamacpp_build=8650)
    assert v.backend == "Vulkan" and {d.name for d in v.devices} == {"CPU", "Vulkan0"}
    assert "#23861" in v.llamacpp_build and v.build_notes
    p = api.plan("gpt-oss-20b", "RX 7900 XTX (Vulkan) + 64GB DDR5", ctx=8192)
    assert p.backend == "Vulkan" and "Vulkan0" in {d.name for d in p.devices}
    with pytest.raises(MoeplanError, match="--backend says CUDA"):
        api.explain(cmd, "RTX 4060 Ti 16GB (Vulkan)", backend="cuda")


def test_pipeline_parallelism_keeps_the_mask_copies_beside_the_logits() -> None:
    _, inv, w = _setup("qwen3-8b")
    cfg = CacheConfig(n_ctx=32768)
    fe = Frontend()
    pp = plan_memory(inv, w, cfg, parse_placement("-ngl 99 -ts 1,1"), ("CUDA0", "CUDA1"), fe)
    no_pp = plan_memory(inv, w, cfg, parse_placement("-ngl 36 -ts 1,1"), ("CUDA0", "CUDA1"), fe)
    assert no_pp.device("CPU").weights_bytes > 0  # layer 0 on the CPU: no pipeline parallelism
    mask = 32768 * 512 * 2
    assert pp.device("CUDA1").compute_bytes - no_pp.device("CUDA1").compute_bytes == mask


def test_web_checker_takes_vulkan_from_its_form() -> None:
    from fastapi.testclient import TestClient

    from moeplan.web import data
    from moeplan.web.app import create_app

    client = TestClient(create_app(), raise_server_exceptions=False)
    # a small catalog keeps this fast: the page plans every model on the rig
    catalog = {k: v for k, v in data.summaries().items() if k == "qwen3-0.6b"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(data, "summaries", lambda: catalog)
        mp.setattr(data, "fit", lambda rig: api.fit(rig, list(catalog)))
        r = client.get("/hardware.json", params={"rig": "RX 7900 XTX + 64GB DDR5", "backend": "vulkan"})
    assert r.status_code == 200 and r.json()["rig"].endswith("(Vulkan)"), r.text
    bad = client.get("/hardware.json", params={"rig": "RX 7900 XTX", "backend": "opencl"})
    assert bad.status_code == 400


def test_a_backend_that_cannot_apply_is_refused() -> None:
    with pytest.raises(MoeplanError, match="Metal runs on Apple GPUs only"):
        api.plan("qwen3-8b", "RTX 4090 + 32GB", backend="metal")
    with pytest.raises(MoeplanError, match="no GPU"):
        api.plan("qwen3-8b", "64GB DDR5", backend="vulkan")
    with pytest.raises(MoeplanError, match="cannot be negative"):
        api.runtime(fit_target_mib=-1)
