"""Runtime memory against llama.cpp's own logged numbers (shared/reference/llamacpp-internals.md §4b,
§5 and §6: measured with the pinned build on the real Gemma-3-270M Q4_K_M file) and against the
formulas' worked examples. The live comparisons against llama.cpp run in test_llamacpp_memory.py."""

import re
from dataclasses import replace

import pytest

from moeplan import api
from moeplan.arch.inventory import inventory
from moeplan.engines.llamacpp import SERVER, Frontend, _rule_mask, parse_placement, plan_memory
from moeplan.errors import MoeplanError
from moeplan.memory.kv import CacheConfig, context, layer_memory, recurrent_state_values
from moeplan.memory.table import tensor_table
from moeplan.memory.weights import predict
from moeplan.quant.ggml import GGMLType
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import resolve

MiB = 2**20
GEMMA = resolve("gemma-3-270m").spec()


def kv_mib(spec, cfg: CacheConfig) -> float:  # type: ignore[no-untyped-def]
    return sum(lm.k_bytes + lm.v_bytes for lm in layer_memory(spec, cfg)) / MiB


@pytest.mark.parametrize(
    ("cfg", "mib"),
    [
        (CacheConfig(n_ctx=4096), 27.0),  # 12 (3 full layers × 4096 cells) + 15 (15 SWA layers × 1024 cells)
        (CacheConfig(n_ctx=4096, n_seq=4, unified=True), 49.5),  # server: SWA 2560 cells
        (CacheConfig(n_ctx=16384, n_seq=4), 108.0),  # 4 streams of 4096 + 1024 cells
        (CacheConfig(n_ctx=5000), 30.0),  # n_ctx padded to 5120
        (CacheConfig(n_ctx=4096, swa_full=True), 72.0),
        (CacheConfig(n_ctx=4096, n_ubatch=2048), 49.5),  # SWA PAD(512 + 2048) = 2560 cells
        (CacheConfig(n_ctx=4096, type_k=GGMLType.Q8_0, type_v=GGMLType.Q8_0), 27 * 34 / 64),
        (CacheConfig(n_ctx=4096, type_k=GGMLType.Q4_0, type_v=GGMLType.Q4_0), 27 * 18 / 64),
        (CacheConfig(n_ctx=4096, type_k=GGMLType.Q8_0, flash_attn=False), 13.5 * 34 / 64 + 13.5),  # "20"
    ],
)
def test_gemma_kv_matches_llamacpp_logs(cfg: CacheConfig, mib: float) -> None:
    assert kv_mib(GEMMA, cfg) == pytest.approx(mib, abs=0.005)


def test_swa_cells() -> None:
    cells = {lm.cells for lm in layer_memory(GEMMA, CacheConfig(n_ctx=4096, n_seq=4, unified=True))}
    assert cells == {4096, 2560}
    assert context(GEMMA, CacheConfig(n_ctx=5000)).n_ctx == 5120


def test_mla_caches_the_latent_only() -> None:
    ds = resolve("deepseek-v3.1").spec()
    assert sum(lm.total for lm in layer_memory(ds, CacheConfig(n_ctx=8192))) == 61 * 576 * 2 * 8192


def test_recurrent_state_of_qwen3_next() -> None:
    spec = resolve("qwen3-next-80b-a3b").spec()
    linear = next(la.attn for la in spec.layers if la.attn.linear_v_heads)
    assert recurrent_state_values(spec, linear) == 24_576 + 524_288
    one = sum(lm.state_bytes for lm in layer_memory(spec, CacheConfig(n_ctx=4096)))
    assert one == 36 * (24_576 + 524_288) * 4  # 75.4 MiB per sequence, independent of context
    assert sum(lm.state_bytes for lm in layer_memory(spec, CacheConfig(n_ctx=262144, n_seq=4))) == 4 * one
    kv = sum(lm.k_bytes + lm.v_bytes for lm in layer_memory(spec, CacheConfig(n_ctx=4096)))
    assert kv == 12 * 4096 * 2 * (2 * 256) * 2  # 12 full-attention layers only


def test_bad_cache_settings() -> None:
    with pytest.raises(MoeplanError, match="requires flash attention"):
        CacheConfig(n_ctx=4096, type_v=GGMLType.Q8_0, flash_attn=False)
    with pytest.raises(MoeplanError, match="unknown KV cache type"):
        api.memory("qwen3-8b", "Q4_K_M", 4096, ctk="q3_k")


# Dry-run / log figures (MiB) for gemma-3-270m Q4_K_M at -c 4096, from the reference (§5, §6.1, §6.2).
WEIGHTS = predict(inventory(GEMMA), FileType.Q4_K_M)
INV = inventory(GEMMA)


def mib(x: int) -> float:
    return x / MiB


def test_cpu_only_buffers() -> None:
    plan = plan_memory(INV, WEIGHTS, CacheConfig(n_ctx=4096))
    cpu, repack = plan.device("CPU"), plan.device("CPU_REPACK")
    assert mib(cpu.weights_bytes) == pytest.approx(222.51, abs=0.005)  # "-lm none: CPU model buffer 222.51"
    assert mib(repack.weights_bytes) == pytest.approx(12.66, abs=0.005)
    assert mib(cpu.kv_bytes) == 27.0
    assert mib(cpu.compute_bytes) == pytest.approx(524.53, rel=0.05)
    assert mib(cpu.output_bytes) == 1.0
    server = plan_memory(INV, WEIGHTS, CacheConfig(n_ctx=4096, n_seq=4, unified=True), frontend=SERVER)
    assert mib(server.device("CPU").compute_bytes) == pytest.approx(24.78, abs=16)
    assert mib(server.device("CPU").output_bytes) == 4.0


@pytest.mark.parametrize(
    ("flags", "rpc", "host"),
    [  # (model, context, compute) MiB per device from llama-fit-params -fitp on with a 2 GiB RPC device
        ("-ngl 99", (235, 27, 522), (170, 0, 10)),
        ("-ngl 18", (231, 26, 513), (173, 1, 23)),
        ('-ngl 99 -ot "ffn_(up|gate|down)=CPU"', (188, 27, 518), (210, 0, 19)),
        ("-ngl 99 -nkvo", (235, 0, 517), (170, 27, 10)),
        ("-ngl 10", (202, 15, 513), (195, 12, 23)),
        ("-ngl 1", (170, 0, 513), (222, 27, 23)),
    ],
)
def test_rpc_device_placement(flags: str, rpc: tuple[int, int, int], host: tuple[int, int, int]) -> None:
    plan = plan_memory(INV, WEIGHTS, CacheConfig(n_ctx=4096), parse_placement(flags), ("RPC0",), Frontend())
    r, h = plan.device("RPC0"), plan.device("CPU")
    # the dry run truncates to whole MiB and reports CPU_REPACK apart from Host
    assert int(mib(r.weights_bytes)) == rpc[0] and int(mib(r.kv_bytes)) == rpc[1]
    assert int(mib(h.weights_bytes)) == host[0] and int(mib(h.kv_bytes)) == host[1]
    assert mib(r.compute_bytes) == pytest.approx(rpc[2], abs=16)
    assert mib(h.compute_bytes) == pytest.approx(host[2], abs=16)


def test_placement_parsing() -> None:
    p = parse_placement('-ngl 99 --n-cpu-moe 2 -ot "exps=CPU,blk\\.5\\.=CUDA0" -ts 3,1')
    assert p.n_gpu_layers == 99 and p.tensor_split == (3.0, 1.0)
    assert [b for _, b in p.overrides] == ["CPU", "CPU", "CUDA0"]
    assert p.overrides[0][0] == 2  # --n-cpu-moe 2: llama.cpp's rules for layers 0 and 1
    for bad, msg in [
        ("-ngl", "needs a value"),
        ("-ngl x", "integer"),
        ("-ot foo", "REGEX=BUFFER_TYPE"),
        ("-ot (=CPU", "invalid"),
        ("--bogus", "unsupported placement flag"),
        ("-ts 0,0", "not all zero"),
    ]:
        with pytest.raises(MoeplanError, match=msg):
            parse_placement(bad)


def test_n_cpu_moe_moves_only_expert_stacks() -> None:
    spec = resolve("qwen3.5-35b-a3b").spec()
    inv = inventory(spec, mtp=False)
    w = predict(inv, FileType.Q4_K_M)
    cfg = CacheConfig(n_ctx=8192)
    all_gpu = plan_memory(inv, w, cfg, parse_placement("-ngl 99"), ("CUDA0",))
    some = plan_memory(inv, w, cfg, parse_placement("-ngl 99 --n-cpu-moe 10"), ("CUDA0",))
    every = plan_memory(inv, w, cfg, parse_placement("-ngl 99 --cpu-moe"), ("CUDA0",))
    experts = [t for t in w.tensors if t.spec.role.value == "expert"]
    first10 = sum(t.nbytes for t in experts if t.spec.layer is not None and t.spec.layer < 10)
    assert some.device("CPU").weights_bytes - all_gpu.device("CPU").weights_bytes == first10
    assert every.device("CPU").weights_bytes - all_gpu.device("CPU").weights_bytes == sum(
        t.nbytes for t in experts
    )
    assert some.device("CUDA0").kv_bytes == all_gpu.device("CUDA0").kv_bytes  # KV follows the layer


def test_n_cpu_moe_count_matches_llamacpps_rule_per_layer() -> None:
    """--n-cpu-moe N, kept as the count N, moves the tensors that llama.cpp's N rules
    `blk\\.{i}\\.ffn_..._exps` (i < N) match with regex search, names that only look alike included."""
    spec = resolve("qwen3.5-35b-a3b").spec()
    layout = tensor_table(predict(inventory(spec, mtp=True), FileType.Q4_K_M)).layout
    odd = ("blk.01.ffn_up_exps.weight", "blk.12.ffn_gate_up_exps.weight", "x.blk.3.ffn_down_chexps")
    odd += ("blk.3.ffn_up_exps.blk.1.ffn_down_exps", "blk.2.ffn_up.weight", "blk.4.attn_q.weight")
    for names in (layout.names, odd):
        lay = replace(layout, names=names)
        for n in range(spec.n_layer + 3):
            rules = [re.compile(rf"blk\.{i}\.ffn_(up|down|gate|gate_up)_(ch|)exps") for i in range(n)]
            want = [any(r.search(name) for r in rules) for name in names]
            assert _rule_mask(lay, n).tolist() == want, (n, names)


def test_tensor_split_and_unknown_buffer() -> None:
    spec = resolve("llama-3.1-8b").spec()
    inv = inventory(spec)
    w = predict(inv, FileType.Q4_K_M)
    plan = plan_memory(
        inv, w, CacheConfig(n_ctx=8192), parse_placement("-ngl 99 -ts 3,1"), ("CUDA0", "CUDA1")
    )
    per_layer = 8192 * 2 * (8 * 128) * 2
    # 33 slots (32 layers + output) split 3:1: layers 0-24 on CUDA0, 25-31 and the output on CUDA1
    assert plan.device("CUDA0").kv_bytes == 25 * per_layer and plan.device("CUDA1").kv_bytes == 7 * per_layer
    assert any(t == "output.weight" for t in plan.tensors_on("CUDA1"))
    with pytest.raises(MoeplanError, match="buffer type 'CUDA7' is unknown"):
        plan_memory(inv, w, CacheConfig(n_ctx=8192), parse_placement("-ot blk=CUDA7"), ("CUDA0",))


def test_memory_api_json_keys() -> None:
    r = api.memory("qwen3.5-35b-a3b", "Q4_K_M", 32768, n_cpu_moe=20).model_dump()
    for d in r["devices"]:
        assert {"device", "weights_bytes", "kv_bytes", "state_bytes", "compute_bytes", "total_bytes"} <= set(
            d
        )
    assert [d["device"] for d in r["devices"]] == ["CPU", "CUDA0"]
