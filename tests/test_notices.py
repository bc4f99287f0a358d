"""Each notice (notices.py) appears where its condition holds and nowhere else, and speaks of the
plan beside which it is shown (CLI, JSON, and every rig of the web deploy page)."""

import html
import re

import pytest
from fastapi.testclient import TestClient

from moeplan import api
from moeplan.api import PlanReport
from moeplan.web import render

RIG_4090 = "RTX 4090 + 64GB DDR5-6000"
RIG_5080 = "RTX 5080 16GB + 64GB DDR5-6000"


def ids(r: PlanReport) -> set[str]:
    return {n.id for n in r.notices}


def message(r: PlanReport, notice: str) -> str:
    return next(n.message for n in r.notices if n.id == notice)


def test_disk_mmap_slow_only_when_weights_exceed_ram_and_vram() -> None:
    assert "DISK_MMAP_SLOW" in ids(api.plan("deepseek-v3.1", RIG_4090))
    assert "DISK_MMAP_SLOW" not in ids(api.plan("deepseek-v3.1", "RTX 4090 + 256GB DDR5-6000"))


def test_expert_offload_only_when_experts_sit_on_the_cpu_of_a_gpu_rig() -> None:
    offloaded = api.plan("gpt-oss-120b", RIG_4090)
    assert offloaded.strategy == "n_cpu_moe" and "MOE_EXPERT_CPU_OFFLOAD" in ids(offloaded)
    n = offloaded.command.split("--n-cpu-moe ")[1].split()[0]
    assert f"experts of {n} layers" in message(offloaded, "MOE_EXPERT_CPU_OFFLOAD")
    assert "MOE_EXPERT_CPU_OFFLOAD" not in ids(api.plan("qwen3.5-35b-a3b", RIG_4090))  # all on the GPU
    assert "MOE_EXPERT_CPU_OFFLOAD" not in ids(api.plan("qwen3-30b-a3b", "64GB DDR5-6000"))  # no GPU


def test_below_floor_only_when_the_floor_does_not_fit() -> None:
    assert "QUANT_BELOW_MOE_FLOOR" in ids(api.plan("deepseek-v3.1", "RTX 4090 + 128GB DDR5-6000"))
    dense = api.plan("llama-3.1-70b", "RTX 4060 + 32GB DDR5-6000")
    assert "QUANT_BELOW_FLOOR" in ids(dense) and dense.quant in message(dense, "QUANT_BELOW_FLOOR")
    assert not ids(api.plan("qwen3.5-35b-a3b", RIG_4090)) & {"QUANT_BELOW_MOE_FLOOR", "QUANT_BELOW_FLOOR"}
    asked = api.plan("llama-3.1-70b", "RTX 4060 + 32GB DDR5-6000", quant="IQ2_M")  # the user's choice
    assert "QUANT_BELOW_FLOOR" not in ids(asked)


def test_mxfp4_notice_only_with_mxfp4_weights_on_gpus_without_it() -> None:
    assert "MXFP4_NEEDS_BLACKWELL" in ids(api.plan("gpt-oss-20b", RIG_4090))
    assert "MXFP4_NEEDS_BLACKWELL" not in ids(api.plan("gpt-oss-20b", RIG_5080))
    assert "MXFP4_NEEDS_BLACKWELL" not in ids(api.plan("gpt-oss-20b", "64GB DDR5-6000"))  # no GPU
    # Before: said on every Mac ("only on Blackwell GPUs"): native FP4 is a CUDA path, no Mac has one
    assert "MXFP4_NEEDS_BLACKWELL" not in ids(api.plan("gpt-oss-120b", "M3 Ultra 512"))
    assert "MXFP4_NEEDS_BLACKWELL" in ids(api.plan("gpt-oss-120b", "8x H100"))  # Hopper: no FP4 MMA


def test_multi_gpu_required_only_when_one_card_does_not_suffice() -> None:
    """Before: "split over 8 GPUs" beside 8x H100 for gpt-oss-120b, which one H100 holds."""
    one_suffices = api.plan("gpt-oss-120b", "8x H100")
    assert [d.name for d in one_suffices.devices if d.weights_bytes and d.name != "CPU"] == ["CUDA0"]
    assert "MULTI_GPU_REQUIRED" not in ids(one_suffices)
    needed = api.plan("qwen3.5-397b-a17b", "8x H100")
    assert needed.strategy == "gpu" and "MULTI_GPU_REQUIRED" in ids(needed)
    assert needed.command.split(" -ts ")[1].split()[0] in message(needed, "MULTI_GPU_REQUIRED")


def test_context_reduced_speaks_of_this_plans_context_and_only_when_left_open() -> None:
    short = api.plan("gpt-oss-120b", "8gb-gpu-32gb")
    assert f"context set to {short.ctx:,} tokens, below the 32,768" in message(short, "CONTEXT_REDUCED")
    grown = api.plan("gpt-oss-120b", RIG_5080)
    ladder = f"context set to {grown.ctx:,} tokens, the largest step of the context ladder"
    assert ladder in message(grown, "CONTEXT_REDUCED")
    assert "CONTEXT_REDUCED" not in ids(api.plan("qwen3.5-35b-a3b", RIG_4090))  # the model's maximum
    assert "CONTEXT_REDUCED" not in ids(api.plan("gpt-oss-120b", RIG_5080, ctx=8192))  # asked for


def test_kv_cache_dominates_suggests_q8_0_only_for_an_f16_cache() -> None:
    f16 = api.plan("llama-3.1-8b", RIG_4090, ctx=131072, ctk="f16", ctv="f16")
    assert "KV_CACHE_DOMINATES" in ids(f16)
    q8 = api.plan("llama-3.1-8b", RIG_4090, ctx=131072, ctk="q8_0", ctv="q8_0")
    assert "KV_CACHE_DOMINATES" not in ids(q8)  # before: "a q8_0 cache halves it" beside -ctk q8_0
    assert "KV_CACHE_DOMINATES" not in ids(api.plan("llama-3.1-8b", RIG_4090, ctx=8192))


@pytest.mark.parametrize("n_seq", [1, 4])
def test_latency_notice_speaks_of_the_plans_own_sequences(n_seq: int) -> None:
    """Before: "with 4 sequences in flight" beside -np 1."""
    r = api.plan("gpt-oss-120b", "16gb-gpu-64gb", n_seq=n_seq)
    assert f"-np {n_seq} " in r.command
    for n in r.notices:
        if n.id == "MOE_LATENCY_VARIANCE":
            assert ("one sequence" if n_seq == 1 else f"{n_seq} sequences in flight") in n.message
    assert ("MOE_LATENCY_VARIANCE" in ids(r)) == (n_seq == 4)  # one sequence: the same experts' reads
    disk = api.plan("gpt-oss-120b", "8gb-gpu-32gb")  # one sequence: each token's disk reads vary
    assert disk.strategy == "disk" and "with one sequence" in message(disk, "MOE_LATENCY_VARIANCE")


def test_dense_alternative_only_when_the_moe_plan_offloads() -> None:
    """Before: DENSE_ALTERNATIVE beside a plan with every weight on the GPU."""
    on_gpu = api.plan("qwen3.5-35b-a3b", RIG_4090)
    assert on_gpu.strategy == "gpu" and "DENSE_ALTERNATIVE" not in ids(on_gpu)
    offloaded = api.plan("qwen3.5-35b-a3b", RIG_5080)
    assert offloaded.strategy == "n_cpu_moe" and "Qwen3.5-9B" in message(offloaded, "DENSE_ALTERNATIVE")


@pytest.fixture(scope="module")
def client() -> TestClient:
    from moeplan.web.app import create_app

    return TestClient(create_app(), raise_server_exceptions=False)


def test_deploy_page_notices_belong_to_the_rigs_they_name(client: TestClient) -> None:
    """Before: one row per notice id with the first rig's wording ("context set to 4,096" beside
    rigs planned at 16k and 64k, "split over 2 GPUs" beside 8x H100)."""
    page = client.get("/models/gpt-oss-120b.json").json()
    own = {p["label"]: {(n["id"], n["message"]) for n in p["plan"]["notices"]} for p in page["plans"]}
    for row in page["notices"]:
        for label in row["rigs"]:
            assert (row["id"], row["message"]) in own[label], (label, row["message"])
    for label, notices in own.items():  # and every rig's notices are listed
        for notice in notices:
            assert any((r["id"], r["message"]) == notice and label in r["rigs"] for r in page["notices"])
    text = client.get("/models/gpt-oss-120b").text
    table = text.split('id="rig-plans"')[1].split("</table>")[0]
    rows = re.findall(r"<tr class=\"[^\"]*\">(.*?)</tr>", table, re.S)
    assert len(rows) == len(page["plans"])
    for row, p in zip(rows, page["plans"], strict=True):
        shown = [html.unescape(t) for t in re.findall(r'<span class="pill [a-z]+" title="([^"]*)">', row)]
        assert shown == [n["message"] for n in p["plan"]["notices"]]


def test_compute_gap_notice_only_where_the_family_declares_one_for_the_plans_sequences() -> None:
    """DeepSeek-V4 declares a gap for several sequences (`DeepSeek4.compute_gap`), none for one;
    other families none."""
    rig = "8x H200 + 2TB DDR5-4800"
    ids = {n.id for n in api.plan("deepseek-v4-flash", rig, n_seq=4).notices}
    assert "COMPUTE_BUFFER_UNDERESTIMATED" in ids
    ids = {n.id for n in api.plan("deepseek-v4-flash", rig, n_seq=1).notices}
    assert "COMPUTE_BUFFER_UNDERESTIMATED" not in ids
    assert "COMPUTE_BUFFER_UNDERESTIMATED" not in {n.id for n in api.plan("qwen3.5-9b", RIG_4090).notices}


def test_gpus_free_where_fewer_gpus_of_several_hold_the_plan() -> None:
    """Before: llama.cpp's default split spread muse-glimmer-30b (23 GB) over all eight H100s
    (-ts 7,6,...); one holds it at the planned context, as fast, and the other seven are free. And
    Qwen3.5-397B, which no one H100 holds, was spread over all eight where four hold it as fast."""
    one = api.plan("muse-glimmer-30b", "8x H100")
    assert " -sm none " in one.command and " -ts " not in one.command
    assert [d.name for d in one.devices if d.name != "CPU"] == ["CUDA0"]
    assert "the other 7 GPUs are free" in message(one, "GPUS_FREE")
    assert f"{one.ctx:,} tokens" in message(one, "GPUS_FREE")
    assert "GPUS_FREE" not in ids(api.plan("muse-glimmer-30b", "RTX 4090 + 64GB DDR5-6000"))  # one GPU
    half = api.plan("qwen3.5-397b-a17b", "8x H100")  # no single H100 holds it; four do, as fast
    assert " -dev CUDA0,CUDA1,CUDA2,CUDA3 -ts " in half.command
    assert "4 of 8 GPUs hold the model" in message(half, "GPUS_FREE")
    assert "the same command with -dev CUDA4,CUDA5,CUDA6,CUDA7 --port 8081" in message(half, "GPUS_FREE")
    needed = api.plan("qwen3.5-122b-a10b", "4x RTX 3090 + 128GB DDR4-3200")  # three cannot hold it
    assert " -ts " in needed.command and " -dev " not in needed.command and "GPUS_FREE" not in ids(needed)


def test_drafting_notice_is_short_and_worded_once_for_every_rig_it_holds_on(client: TestClient) -> None:
    """Before: a 400-character SPECULATIVE_DRAFTING notice on every rig row, each with its own
    speed-up pasted in (1.23x ... 2.10x), so the page listed eight near-identical paragraphs. The
    speed-up and memory stand beside each rig's drafting command; the notice says what to add and
    what file it needs, in the same words wherever the chosen plan itself takes drafting."""
    page = client.get("/models/qwen3.5-35b-a3b.json").json()
    rows = [r for r in page["notices"] if r["id"] == "SPECULATIVE_DRAFTING"]
    plain = [r for r in rows if "no room for it" not in r["message"]]
    assert len(plain) == 1 and len(plain[0]["rigs"]) >= 5
    for r in rows:
        assert len(r["message"]) <= 260 and "x the decode speed" not in r["message"]
        assert "--spec-type draft-mtp" in r["message"] and "MTP layers" in r["message"]
    proposed = {p["label"] for p in page["plans"] if any(d["proposed"] for d in p["plan"]["drafting"])}
    assert {label for r in rows for label in r["rigs"]} == proposed  # only where drafting pays


def test_drafting_on_a_smaller_plan_names_that_plan() -> None:
    r = api.plan("qwen3.5-35b-a3b", RIG_4090, draft="auto")
    (d,) = r.drafting
    base_ctx = int(d.command.split(" -c ")[1].split()[0])
    assert base_ctx < r.ctx  # the chosen plan fills the GPU with context
    assert f"at {base_ctx:,} tokens (this one has no room for it)" in message(r, "SPECULATIVE_DRAFTING")


def test_memory_drafting_frees_is_signed_once(client: TestClient) -> None:
    """Before: 'with drafting (draft-mtp, 1.31x, CPU +0.5 GiB, CUDA0 +-0.1 GiB)' on the 8 GB rig,
    where drafting on a smaller plan frees some GPU memory."""
    text = client.get("/models/qwen3.5-35b-a3b").text
    changes = re.findall(r"(CUDA0|CPU) ([+-][0-9.]+)\u00a0GiB", text)
    assert changes and "+-" not in text
    # Which rig's drafting plan frees memory moves with the planner; the sign is the formatter's.
    assert (render.gib_change(-0.06 * 2**30), render.gib_change(0.71 * 2**30)) == (
        "-0.1\u00a0GiB",
        "+0.7\u00a0GiB",
    )
