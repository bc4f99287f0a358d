"""The fewest GPUs (plan/policy.py, point 4): a plan entirely on the GPUs of a machine with several
runs on the fewest that hold it at its context as fast, named by -dev as llama.cpp numbers them."""

import pytest

from moeplan import api
from moeplan.api import PlanReport
from moeplan.arch.inventory import inventory
from moeplan.engines.llamacpp import parse_placement, plan_memory
from moeplan.errors import MoeplanError
from moeplan.memory.kv import CacheConfig
from moeplan.memory.weights import predict
from moeplan.plan import llamacpp
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog

FOUR_3090 = "4x RTX 3090 + 128GB DDR4-3200"
MIXED = "2x RTX 3090 + 2x RTX 4090 + 128GB DDR4-3200"


def gpus_used(r: PlanReport) -> list[str]:
    return [d.name for d in r.devices if d.weights_bytes and not d.name.startswith("CPU")]


def notice(r: PlanReport, id_: str) -> str | None:
    return next((n.message for n in r.notices if n.id == id_), None)


def on_all_gpus(monkeypatch: pytest.MonkeyPatch, model: str, rig: str) -> PlanReport:
    """The plan as it was before the fewest-GPUs step: llama.cpp's split over every GPU."""
    with monkeypatch.context() as m:
        m.setattr(llamacpp, "_fewest_gpus", lambda inv, c, cpu, gpus, frontend: c)
        return api.plan(model, rig)


def test_a_30b_moe_two_3090s_hold_runs_on_two_of_four(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: Qwen3-30B-A3B at Q8_0 (30 GiB) spread over all four 3090s (-ts 12,12,12,13), where
    two hold it at the model's whole context; the same quantization, context and decode speed now
    leave two GPUs free, and the notice gives the replica's -dev list."""
    r = api.plan("qwen3-30b-a3b", FOUR_3090)
    spread = on_all_gpus(monkeypatch, "qwen3-30b-a3b", FOUR_3090)
    assert " -ngl 99 -dev CUDA0,CUDA1 -ts " in r.command and gpus_used(r) == ["CUDA0", "CUDA1"]
    assert len(gpus_used(spread)) == 4 and " -dev " not in spread.command
    assert (r.quant, r.ctx, r.decode_tok_s) == (spread.quant, spread.ctx, spread.decode_tok_s)
    assert all(d.total_bytes <= d.capacity_bytes for d in r.devices)
    free = notice(r, "GPUS_FREE")
    assert free is not None and free.startswith("2 of 4 GPUs hold the model at 40,960 tokens")
    assert "the other 2 GPUs are free" in free and "same command with -dev CUDA2,CUDA3 --port 8081" in free
    assert notice(r, "MULTI_GPU_REQUIRED") is not None  # one 3090 does not hold it


def test_the_context_is_grown_on_all_gpus_before_moving_to_fewer() -> None:
    """Before: Qwen3.5-27B on four 3090s ran on one (-sm none) at 32,768 tokens, the most one GPU
    holds; all four hold its full 262,144, and so do two: the subset keeps the context."""
    r = api.plan("qwen3.5-27b", FOUR_3090)
    assert r.ctx == 262144 and r.quant == "Q6_K"
    assert " -dev CUDA0,CUDA1 -ts " in r.command and gpus_used(r) == ["CUDA0", "CUDA1"]


def test_a_model_that_needs_all_four_stays_on_four() -> None:
    r = api.plan("qwen3.5-122b-a10b", FOUR_3090)
    assert " -dev " not in r.command and " -sm none " not in r.command and " -ts " in r.command
    assert gpus_used(r) == ["CUDA0", "CUDA1", "CUDA2", "CUDA3"]
    assert notice(r, "GPUS_FREE") is None and notice(r, "MULTI_GPU_REQUIRED") is not None


def test_a_mixed_rig_runs_on_the_faster_cards(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two 3090s (936 GB/s) and two 4090s (1,008 GB/s): the two 4090s hold Qwen3-30B-A3B, faster
    than split over all four; the free 3090s are not the plan's GPUs, so no replica command."""
    r = api.plan("qwen3-30b-a3b", MIXED)
    spread = on_all_gpus(monkeypatch, "qwen3-30b-a3b", MIXED)
    assert " -dev CUDA2,CUDA3 -ts " in r.command and gpus_used(r) == ["CUDA2", "CUDA3"]
    assert (r.quant, r.ctx) == (spread.quant, spread.ctx) and r.decode_tok_s > spread.decode_tok_s
    free = notice(r, "GPUS_FREE")
    assert free is not None and "e.g. for other work" in free and "--port" not in free


def test_one_gpu_of_a_mixed_pair_is_the_faster_or_larger() -> None:
    """A single GPU that is not the first is named by -dev (the first alone stays -sm none): the
    4090 beside a 3090, and of two 4060 Ti of the same bandwidth the 16 GB one."""
    faster = api.plan("muse-glimmer-30b", "RTX 3090 + RTX 4090 + 64GB DDR5-6000")
    assert " -ngl 99 -dev CUDA1 " in faster.command and gpus_used(faster) == ["CUDA1"]
    free = notice(faster, "GPUS_FREE")
    assert free is not None and free.startswith("one GPU holds") and "the other GPU is free" in free
    larger = api.plan("qwen3-8b", "RTX 4060 Ti 8GB + RTX 4060 Ti 16GB + 64GB DDR5-6000")
    assert " -ngl 99 -dev CUDA1 " in larger.command and gpus_used(larger) == ["CUDA1"]


def test_the_vision_projectors_gpu_is_kept_and_not_called_free() -> None:
    """llama-server loads the projector on the first GPU whatever -dev says (clip_init): with it,
    Gemma 3 27B keeps CUDA0 (busy anyway, though it then has less room than its peers), and no
    replica command is offered (a second server's projector would go to CUDA0 again)."""
    r = api.plan("gemma-3-27b", FOUR_3090, vision="f16")
    assert " -dev CUDA0,CUDA1 -ts " in r.command
    free = notice(r, "GPUS_FREE")
    assert free is not None and "the other 2 GPUs are free, e.g. for other work" in free
    bare = notice(api.plan("gemma-3-27b", FOUR_3090), "GPUS_FREE")
    assert bare is not None and "the same command with -dev CUDA2,CUDA3 --port 8081" in bare


def test_the_plans_command_is_explained_as_it_was_planned() -> None:
    """explain reads the plan's -dev list: the same GPUs, memory and speed, nothing to change."""
    r = api.plan("qwen3-30b-a3b", FOUR_3090)
    e = api.explain(r.command, FOUR_3090)
    assert e.suggestion == "moeplan would run it the same way"
    assert [d.name for d in e.devices if d.weights_bytes and d.name != "CPU"] == ["CUDA0", "CUDA1"]
    assert e.decode_tok_s == r.decode_tok_s and e.fits


def test_explain_of_a_spread_suggests_the_fewer_gpus_with_one_device_list() -> None:
    cmd = "llama-server -m Qwen3-30B-A3B-Q8_0.gguf -c 40960 -dev CUDA0,CUDA1,CUDA2,CUDA3 -ngl 99 -fa on -np 1"
    e = api.explain(cmd, FOUR_3090)
    assert e.suggestion.startswith("moeplan would use -ngl 99 -dev CUDA0,CUDA1 -ts ")
    assert e.suggestion.endswith(
        "2 GPUs hold it, as fast as spread over 4; the other 2 are free for more replicas"
    )
    assert e.suggested_command is not None and e.suggested_command.count("-dev") == 1
    assert " -dev CUDA0,CUDA1 " in e.suggested_command and "-m Qwen3-30B-A3B-Q8_0.gguf" in e.suggested_command


def test_dev_splits_the_layers_by_the_listed_gpus_free_memory() -> None:
    """llama.cpp's model devices are -dev's list (llama_prepare_model_devices): without -ts the
    default split shares the layers by those devices' free memory alone, in the list's order, and
    a GPU left out holds nothing and is not in the plan."""
    inv = inventory(load_catalog()["qwen3-30b-a3b"].spec(), mtp=False)
    w = predict(inv, FileType.Q4_K_M)
    cfg = CacheConfig(n_ctx=8192)
    gpus = ("CUDA0", "CUDA1", "CUDA2", "CUDA3")
    free = (24 * 2**30, 8 * 2**30, 16 * 2**30, 16 * 2**30)
    two = plan_memory(inv, w, cfg, parse_placement("-ngl 99 -dev CUDA1,CUDA2"), gpus, free=free)
    assert [d.device for d in two.devices if not d.device.startswith("CPU")] == ["CUDA1", "CUDA2"]
    # 48 layers and the output layer, split 8:16 by position: layers 0-16 (il/49 below 1/3) on CUDA1,
    # 17-47 and the output on CUDA2; every layer caches the same K and V
    kv1, kv2 = two.device("CUDA1").kv_bytes, two.device("CUDA2").kv_bytes
    assert kv1 * 31 == kv2 * 17
    swapped = plan_memory(inv, w, cfg, parse_placement("-ngl 99 -dev CUDA2,CUDA1"), gpus, free=free)
    per_layer = kv1 // 17  # listed first, CUDA2 (16 GiB) takes layers 0-32 (il/49 below 2/3)
    assert (swapped.device("CUDA2").kv_bytes, swapped.device("CUDA1").kv_bytes) == (
        33 * per_layer,
        15 * per_layer,
    )
    with pytest.raises(MoeplanError, match=r"-dev CUDA7: the devices are CUDA0, CUDA1, CUDA2, CUDA3"):
        plan_memory(inv, w, cfg, parse_placement("-ngl 99 -dev CUDA7"), gpus)
    with pytest.raises(MoeplanError, match="-dev lists CUDA1 twice"):
        parse_placement("-dev CUDA1,CUDA1")
    assert parse_placement("-dev none").devices == () and parse_placement("-ngl 99").devices is None
