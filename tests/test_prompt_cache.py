"""llama-server's prompt cache in host RAM (memory/prompt_cache.py): its bound under --cache-ram
(default 8192 MiB, -1: n_ctx tokens of state, 0: none), counted in the host's total, lowered by the
policy where it keeps a plan from fitting, and read from `plan --cache-ram` and explain's -cram."""

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from moeplan import api
from moeplan.arch.inventory import inventory
from moeplan.cli import app
from moeplan.engines.llamacpp import CPU, Frontend, parse_placement, plan_memory
from moeplan.errors import MoeplanError
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.memory.prompt_cache import DEFAULT_CACHE_RAM_MIB, prompt_cache_bytes, token_bound_bytes
from moeplan.memory.weights import predict
from moeplan.numbers import cache_ram
from moeplan.plan.options import PlanOptions
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog
from moeplan.web.app import create_app

MiB, GiB = 2**20, 2**30
# Qwen3-30B-A3B Q4_K_M with 29 layers of experts in RAM: 10 GiB of weights in a 16 GB host, where
# 8 GiB more of prompt cache cannot fit (host capacity 12 GiB after moeplan's reserve).
MODEL, TIGHT, ROOMY = "qwen3-30b-a3b", "RTX 3060 12GB + 16GB DDR4-3200", "RTX 3060 12GB + 64GB DDR4-3200"


def _host(devices: "list[api.PlanDevice]") -> "api.PlanDevice":
    return next(d for d in devices if d.name == CPU)


def test_the_bound_is_the_limit_and_minus_one_is_n_ctx_tokens_of_state() -> None:
    dense = load_catalog()["qwen3-8b"].spec()
    cfg = CacheConfig(n_ctx=32768, n_seq=4, unified=True)
    assert prompt_cache_bytes(dense, cfg, DEFAULT_CACHE_RAM_MIB) == 8 * GiB
    assert prompt_cache_bytes(dense, cfg, 1024) == GiB
    assert prompt_cache_bytes(dense, cfg, 0) == 0
    # Full attention only: n_ctx tokens of state are the unified KV cache of the context and 12 bytes
    # of metadata per cell (layers x cells x K,V x 8 heads x 128 x F16).
    meta = 32768 * 12
    assert token_bound_bytes(dense, cfg) == sum(la.total for la in layer_memory(dense, cfg)) + meta
    assert prompt_cache_bytes(dense, cfg, -1) == 36 * 32768 * 2 * 8 * 128 * 2 + meta
    # Sliding-window layers: a saved entry holds its tokens, not the window, so more than allocated;
    # the 306-token entry the pinned server logged at 5.386 MiB (validation/prompt_cache.py).
    gemma = load_catalog()["gemma-3-270m"].spec()
    assert round(token_bound_bytes(gemma, CacheConfig(n_ctx=306, kv_pad=1)) / MiB, 3) == 5.386
    swa = load_catalog()["gpt-oss-20b"].spec()
    assert token_bound_bytes(swa, cfg) > sum(la.total for la in layer_memory(swa, cfg))


def test_only_llama_server_holds_one_and_it_is_in_the_host_total() -> None:
    spec = load_catalog()[MODEL].spec()
    inv = inventory(spec, mtp=False)
    w = predict(inv, FileType.parse("Q4_K_M"))
    cfg = CacheConfig(n_ctx=8192, n_seq=4, unified=True)

    def host(fe: Frontend) -> tuple[int, int]:
        d = plan_memory(inv, w, cfg, parse_placement("-ngl 0"), (), fe).device(CPU)
        return d.prompt_cache_bytes, d.total_bytes

    (server, total), (none, bare) = host(Frontend("llama-server")), host(Frontend())
    assert (server, none) == (8 * GiB, 0) and total - bare == 8 * GiB
    assert host(Frontend("llama-server", cache_ram=512))[0] == 512 * MiB


def test_where_8_gib_of_cache_would_not_fit_the_plan_lowers_cache_ram() -> None:
    r = api.plan(MODEL, TIGHT)
    n = int(r.command.split("--cache-ram ")[1].split()[0])
    assert r.fits and r.strategy == "n_cpu_moe" and 0 <= n < DEFAULT_CACHE_RAM_MIB and n % 256 == 0
    host = _host(r.devices)
    assert host.prompt_cache_bytes == n * MiB and host.total_bytes <= host.capacity_bytes
    assert host.total_bytes + 256 * MiB > host.capacity_bytes  # the most that fits, to a step
    assert "PROMPT_CACHE_REDUCED" in {x.id for x in r.notices}
    assert r.prompt_cache is not None and "lowered by moeplan" in r.prompt_cache
    # Kept at the server's 8 GiB, Q4_K_M does not fit beside it: the planner falls to a smaller file.
    fixed = api.plan(MODEL, TIGHT, PlanOptions(cache_ram=DEFAULT_CACHE_RAM_MIB))
    assert fixed.quant != r.quant or not fixed.fits
    assert fixed.command.endswith("--cache-ram 8192") and "PROMPT_CACHE_REDUCED" not in {
        x.id for x in fixed.notices
    }


def test_a_host_with_room_keeps_the_servers_default() -> None:
    r = api.plan(MODEL, ROOMY)
    assert "--cache-ram" not in r.command
    assert _host(r.devices).prompt_cache_bytes == 8 * GiB
    assert r.prompt_cache is not None and r.prompt_cache.startswith("up to 8.00 GiB of host RAM")
    assert "cache_ram_mib = 8192" in r.prompt_cache


def test_cache_ram_refuses_negative_sizes_other_than_minus_one() -> None:
    assert (cache_ram("-1"), cache_ram("0"), cache_ram("4096"), cache_ram(None)) == (-1, 0, 4096, None)
    for bad in ("-2", "-8192"):
        with pytest.raises(MoeplanError, match=f"--cache-ram {bad}: give MiB"):
            cache_ram(bad)
    with pytest.raises(MoeplanError, match="--cache-ram"):
        cache_ram("lots")
    with pytest.raises(MoeplanError, match="--cache-ram -3"):
        Frontend("llama-server", cache_ram=-3)
    with pytest.raises(MoeplanError, match="--cache-ram -3"):
        api.plan(MODEL, ROOMY, PlanOptions(cache_ram=-3))
    with pytest.raises(MoeplanError, match="prompt cache: leave it out for vllm"):
        api.plan(MODEL, "H100-SXM", PlanOptions(engine="vllm", cache_ram=0))
    result = CliRunner().invoke(app, ["plan", MODEL, "--rig", ROOMY, "--cache-ram", "-5"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "--cache-ram -5: give MiB (0: no prompt cache) or -1 (no limit)" in result.stderr


def test_explain_reads_cram_from_the_command() -> None:
    cmd = "llama-server -m Qwen3-30B-A3B-Q4_K_M.gguf -c 32768 -ngl 99 --n-cpu-moe 29"
    default = api.explain(cmd, ROOMY)
    assert _host(default.devices).prompt_cache_bytes == 8 * GiB
    short = api.explain(cmd + " -cram 2048", ROOMY)
    assert _host(short.devices).prompt_cache_bytes == 2 * GiB and "(in the command)" in str(
        short.prompt_cache
    )
    off = api.explain(cmd + " --cache-ram 0", ROOMY)
    assert _host(off.devices).prompt_cache_bytes == 0 and str(off.prompt_cache).startswith("none")
    unlimited = api.explain(cmd + " --cache-ram -1", ROOMY)
    assert 0 < _host(unlimited.devices).prompt_cache_bytes < 8 * GiB  # 32K tokens of Qwen3-30B's KV
    assert "no size limit" in str(unlimited.prompt_cache)
    assert "--cache-ram" not in " ".join(unlimited.ignored_flags)
    with pytest.raises(MoeplanError, match="--cache-ram -3"):
        api.explain(cmd + " -cram -3", ROOMY)
    tool = api.explain(cmd.replace("llama-server", "llama-completion"), ROOMY)
    assert _host(tool.devices).prompt_cache_bytes == 0 and tool.prompt_cache is None


def test_explain_names_a_smaller_cache_ram_as_the_fix() -> None:
    cmd = "llama-server -m Qwen3-30B-A3B-Q4_K_M.gguf -c 32768 -ngl 99 --n-cpu-moe 29"
    r = api.explain(cmd, TIGHT)
    assert not r.fits and set(r.overflow) == {CPU}
    fix = next(f for f in r.fixes if f.startswith("--cache-ram "))
    n = int(fix.split()[1])
    assert 0 <= n < DEFAULT_CACHE_RAM_MIB
    assert api.explain(f"{cmd} --cache-ram {n}", TIGHT).fits
    assert not api.explain(f"{cmd} --cache-ram {n + 256}", TIGHT).fits


def test_memory_shows_the_bound_and_refuses_it_without_the_server() -> None:
    r = api.memory(MODEL, "Q4_K_M", 8192)
    assert _host_report(r).prompt_cache_bytes == 8 * GiB and r.prompt_cache is not None
    off = api.memory(MODEL, "Q4_K_M", 8192, cache_ram=0)
    assert _host_report(off).prompt_cache_bytes == 0 and off.total_bytes == r.total_bytes - 8 * GiB
    assert api.memory(MODEL, "Q4_K_M", 8192, frontend="completion").prompt_cache is None
    with pytest.raises(MoeplanError, match="--cache-ram sizes llama-server's prompt cache"):
        api.memory(MODEL, "Q4_K_M", 8192, frontend="completion", cache_ram=1024)


def _host_report(r: api.MemoryReport) -> api.DeviceReport:
    return next(d for d in r.devices if d.device == CPU)


def test_builds_before_the_prompt_cache_hold_none() -> None:
    old = api.memory(MODEL, "Q4_K_M", 8192, llamacpp_build=6000)
    assert _host_report(old).prompt_cache_bytes == 0
    assert str(old.prompt_cache).startswith("none: llama-server b6000 predates it")
    with pytest.raises(MoeplanError, match="b6000 has no prompt cache"):
        api.memory(MODEL, "Q4_K_M", 8192, llamacpp_build=6000, cache_ram=1024)


def test_the_home_pages_plan_card_shows_the_prompt_cache() -> None:
    page = TestClient(create_app()).get(f"/?model={MODEL}&rig=rtx-4090-64gb")
    assert page.status_code == 200
    # the host's cell in the devices table (render.gib writes a no-break space)
    assert "<th>prompt cache</th>" in page.text and "<td>8.0\u00a0GiB</td>" in page.text
    assert (
        "Prompt cache: up to 8.00 GiB of host RAM: --cache-ram 8192 (llama-server&#39;s default" in page.text
    )


def test_a_lever_kept_at_its_default_sets_no_flag_and_no_notice() -> None:
    """Before: where only the prompt cache had to shrink, the plan still carried
    `--ctx-checkpoints 32` (llama-server's own default) and CTX_CHECKPOINTS_REDUCED said the host
    could not hold 32 checkpoints, beside a plan that holds all 32."""
    r = api.plan("qwen3.5-9b", "M4 Pro 24GB")
    ids = {n.id for n in r.notices}
    assert "PROMPT_CACHE_REDUCED" in ids and "--cache-ram" in r.command
    assert "CTX_CHECKPOINTS_REDUCED" not in ids and "--ctx-checkpoints" not in r.command
