"""The llama.cpp planner on the seed scenarios (rigs built here; the rig grammar has its own tests)."""

import pytest

from moeplan import api
from moeplan.arch.inventory import inventory
from moeplan.engines.llamacpp import parse_placement, plan_memory, render_command
from moeplan.hardware.spec import GPU, Host, Node, Rig
from moeplan.memory.kv import CacheConfig
from moeplan.memory.weights import predict
from moeplan.plan.llamacpp import GiB, device_slots, plan
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import resolve

RTX4090 = GPU("GeForce RTX 4090", "NVIDIA", 24 * GiB, 1008e9, 165.2, "Ada Lovelace", fp8=True)
RTX5080 = GPU("GeForce RTX 5080", "NVIDIA", 16 * GiB, 960e9, 112.6, "Blackwell", fp8=True, mxfp4=True)
RTX4060 = GPU("GeForce RTX 4060", "NVIDIA", 8 * GiB, 272e9, 30.0, "Ada Lovelace", fp8=True)
A6000 = GPU("RTX A6000", "NVIDIA", 48 * GiB, 768e9, 154.8, "Ampere")
H200 = GPU("H200", "NVIDIA", 141 * 10**9, 4.8e12, 989.0, "Hopper", fp8=True)


def rig(gpus: list[GPU], ram_gib: int, ram_bw: float = 96e9) -> Rig:
    return Rig(
        (Node(tuple(gpus), Host(ram_gib * GiB, ram_bw, "DDR5-6000 dual-channel", 16, 25e9, 5e9)),), "test"
    )


def test_35b_a3b_on_a_24gb_gpu_runs_entirely_on_the_gpu() -> None:
    r = api.plan_on_rig("qwen3.5-35b-a3b", rig([RTX4090], 64))
    assert r.fits and r.strategy == "gpu" and r.quant == "Q4_K_M"
    gpu = next(d for d in r.devices if d.name == "CUDA0")
    assert gpu.total_bytes <= gpu.capacity_bytes and gpu.margin_bytes == GiB and gpu.runtime_bytes > 0
    # Q5_K_M all on the GPU needs 23.0 GiB of llama.cpp buffers + 0.39 GiB of CUDA runtime: it fitted
    # the old flat 1 GiB headroom by 39 MB, and misses llama.cpp's own 1 GiB --fit-target margin on top
    # of the runtime; the planner keeps the margin and moves two layers' experts instead ...
    q5 = api.plan_on_rig("qwen3.5-35b-a3b", rig([RTX4090], 64), quant="Q5_K_M", ctx=8192)
    assert q5.fits and "--n-cpu-moe 2 " in q5.command
    # ... and with a smaller margin (--fit-target 256) it runs entirely on the GPU
    small = api.plan_on_rig(
        "qwen3.5-35b-a3b", rig([RTX4090], 64), quant="Q5_K_M", ctx=8192, rt=api.runtime(fit_target_mib=256)
    )
    assert small.fits and small.strategy == "gpu"
    assert "--n-cpu-moe" not in small.command and "-ngl 99" in small.command


def test_35b_a3b_on_16gb_with_64gb_ram_offloads_some_experts() -> None:
    r = api.plan_on_rig("qwen3.5-35b-a3b", rig([RTX5080], 64), quant="Q4_K_M")
    assert r.fits and r.strategy == "n_cpu_moe"
    n = int(r.command.split("--n-cpu-moe ")[1].split()[0])
    assert 0 < n < 40
    assert "MOE_EXPERT_CPU_OFFLOAD" in {x.id for x in r.notices}
    # the latency spread is quoted for the plan's own sequences in flight (-np 4 here)
    four = api.plan_on_rig("qwen3.5-35b-a3b", rig([RTX5080], 64), quant="Q4_K_M", n_seq=4)
    assert "MOE_LATENCY_VARIANCE" in {x.id for x in four.notices}
    # one layer fewer on the CPU would not fit: N is the smallest
    spec = resolve("qwen3.5-35b-a3b").spec()
    fewer = plan(spec, rig([RTX5080], 64), ctx=r.ctx, quant=FileType.Q4_K_M)
    assert fewer.chosen.flags == f"-ngl 99 --n-cpu-moe {n}"
    _, gpus = device_slots(rig([RTX5080], 64))
    inv = inventory(spec, mtp=False)
    mem = plan_memory(
        inv,
        predict(inv, FileType.Q4_K_M),
        CacheConfig(n_ctx=r.ctx, unified=True),
        parse_placement(f"-ngl 99 --n-cpu-moe {n - 1}"),
        ("CUDA0",),
    )
    assert mem.device("CUDA0").total_bytes > gpus[0].capacity_bytes


def test_9b_on_an_8gb_gpu() -> None:
    r = api.plan_on_rig("qwen3.5-9b", rig([RTX4060], 32))
    assert r.fits and r.strategy == "gpu"
    assert r.decode_tok_s > 10


def test_deepseek_on_one_24gb_gpu_and_128gb_ram_says_only_sub_4_bit_fits() -> None:
    r = api.plan_on_rig("deepseek-v3.1", rig([RTX4090], 128))
    assert r.fits and r.quant not in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M")
    assert "QUANT_BELOW_MOE_FLOOR" in {n.id for n in r.notices}
    assert any(a.quant == "Q4_K_M" and not a.fits for a in r.alternatives)


def test_deepseek_on_too_little_memory_streams_from_disk() -> None:
    r = api.plan_on_rig("deepseek-v3.1", rig([RTX4090], 64))
    assert r.strategy == "disk" and not r.fits and r.decode_tok_s < 2
    assert "DISK_MMAP_SLOW" in {n.id for n in r.notices}
    # which experts miss the page cache varies per token: a spread around the mean step
    assert r.latency_p50_s < r.latency_p95_s < r.latency_p99_s
    assert abs(r.latency_p50_s * r.decode_tok_s - 1) < 0.1


def test_scout_on_two_48gb_gpus_splits_layers() -> None:
    r = api.plan_on_rig("llama-4-scout-17b-16e", rig([A6000, A6000], 128))
    assert r.fits and r.strategy == "gpu" and "-ts " in r.command
    assert "MULTI_GPU_REQUIRED" in {n.id for n in r.notices}
    assert {d.name for d in r.devices} >= {"CUDA0", "CUDA1"}


def test_kimi_on_8x_h200() -> None:
    r = api.plan_on_rig("kimi-k2.5", rig([H200] * 8, 2048, 300e9))
    assert r.fits and r.strategy == "gpu"
    assert all(d.total_bytes <= d.capacity_bytes for d in r.devices)


def test_user_choices_are_kept() -> None:
    r = api.plan_on_rig("qwen3-30b-a3b", rig([RTX4090], 64), ctx=32768, quant="Q8_0", ctk="q8_0", ctv="q8_0")
    assert r.quant == "Q8_0" and r.ctx == 32768 and "-ctk q8_0 -ctv q8_0" in r.command
    assert "CONTEXT_REDUCED" not in {n.id for n in r.notices}


def test_cpu_only_rig() -> None:
    r = api.plan_on_rig("qwen3-30b-a3b", rig([], 64))
    assert r.fits and r.strategy == "cpu" and "-ngl 0" in r.command


def test_render_command() -> None:
    cmd = render_command("m.gguf", 8192, "-ngl 99 --n-cpu-moe 4", n_seq=2, cache_k="q8_0", cache_v="q8_0")
    assert (
        cmd == "llama-server -m m.gguf -c 8192 -ngl 99 --n-cpu-moe 4 -fa on -ctk q8_0 -ctv q8_0 -np 2 --jinja"
    )


@pytest.mark.parametrize(
    "model", ["gpt-oss-20b", "glm-4.5-air", "mixtral-8x7b", "gemma-3-27b", "qwen3-next-80b-a3b"]
)
def test_every_architecture_plans(model: str) -> None:
    r = api.plan_on_rig(model, rig([RTX4090], 64))
    assert r.fits and r.command.startswith("llama-server")


def test_mxfp4_models_keep_their_released_expert_precision() -> None:
    r = api.plan_on_rig("gpt-oss-20b", rig([RTX4090], 64))
    assert r.quant == "MXFP4_MOE" and r.strategy == "gpu"
    assert "MXFP4_NEEDS_BLACKWELL" in {n.id for n in r.notices}  # Ada runs MXFP4 but not natively
    assert "MXFP4_NEEDS_BLACKWELL" not in {
        n.id for n in api.plan_on_rig("gpt-oss-20b", rig([RTX5080], 64)).notices
    }
    # the notice follows the plan's weights: llama-quantize's Q4_K_M requantizes the experts
    q4 = api.plan_on_rig("gpt-oss-20b", rig([RTX4090], 64), quant="Q4_K_M")
    assert q4.quant == "Q4_K_M" and "MXFP4_NEEDS_BLACKWELL" not in {n.id for n in q4.notices}


@pytest.mark.parametrize(
    ("model", "ngl", "reader"),
    [
        ("lfm2.5-8b-a1b", "-ngl 99", "CUDA0"),  # the output norm is written `token_embd_norm`
        ("lfm2.5-8b-a1b", "-ngl 0", "CPU"),
        ("llama-3.2-1b", "-ngl 99", "CUDA0"),
        ("llama-3.2-1b", "-ngl 1", "CUDA0"),  # the output layer is the first one -ngl offloads
    ],
)
def test_the_tied_output_matmul_is_read_where_the_output_layer_is(model: str, ngl: str, reader: str) -> None:
    """The tied copy of token_embd is read by the output layer's device; token_embd itself stays on
    the CPU and is only gathered a row per token, so an all-GPU plan reads no weights on the host."""
    from moeplan.perf.traffic import token_work

    spec = resolve(model).spec()
    inv = inventory(spec, mtp=False)
    cache = CacheConfig(n_ctx=4096)
    mem = plan_memory(inv, predict(inv, FileType.Q8_0), cache, parse_placement(ngl), ("CUDA0",))
    assert spec.tied_embeddings and mem.output_device == reader
    work = token_work(spec, mem, cache)
    embd = float(mem.table.nbytes[mem.table.row("token_embd.weight")])
    assert work.devices[reader].dense_bytes >= embd
    if ngl == "-ngl 99":
        assert "CPU" not in work.devices or work.devices["CPU"].dense_bytes == 0


@pytest.mark.parametrize(
    ("model", "stem"),
    [
        ("gemma-3-12b", "gemma-3-12b-it"),
        ("c4ai-command-r7b-12-2024", "c4ai-command-r7b-12-2024"),
        ("nemotron-3-nano-4b", "NVIDIA-Nemotron-3-Nano-4B"),  # the repository's -BF16 dropped
    ],
)
def test_commands_name_the_gguf_as_uploads_do(model: str, stem: str) -> None:
    """The -m file is named after the Hub repository, as GGUF uploads are (gemma-3-12b-it-Q4_K_M.gguf),
    not after the display name ('Gemma 3 12B', which a shell needs quoted)."""
    r = api.plan_on_rig(model, rig([RTX4090], 64), quant="Q4_K_M", ctx=8192)
    assert f"-m {stem}-Q4_K_M.gguf " in r.command and "'" not in r.command
