"""The planning policy (plan/policy.py) as a practitioner meets it: context first, then quality at or
above the floor, then speed; the KV cache type, -ub and -np as levers; the trade table."""

import pytest
from typer.testing import CliRunner

from moeplan import api
from moeplan.cli import app
from moeplan.errors import MoeplanError
from moeplan.hardware.rig import parse_rig
from moeplan.plan.policy import DEFAULT_CONTEXT, LONG_CONTEXT, USES, use_named
from moeplan.sources.reference import resolve_model

RIG_4090 = "RTX 4090 + 64GB DDR5-6000"
QWEN = "qwen3.5-35b-a3b"


def test_default_plan_is_not_beaten_by_asking_for_more_context() -> None:
    """Before: Q5_K_M at 8k with the GPU at 23.0 of 23.0 GiB, while --ctx 131072 gave Q4_K_M on the
    GPU and faster. Now the default is at least 32k, all on the GPU, and no slower than that."""
    default = api.plan(QWEN, RIG_4090)
    asked = api.plan(QWEN, RIG_4090, ctx=131072)
    assert (default.quant, default.strategy) == ("Q4_K_M", "gpu")
    assert default.ctx >= max(DEFAULT_CONTEXT, asked.ctx)
    assert default.decode_tok_s >= asked.decode_tok_s
    assert "--n-cpu-moe" not in default.command


def test_higher_quality_that_moves_experts_off_the_gpu_loses_and_says_why() -> None:
    r = api.plan(QWEN, RIG_4090)
    q5 = next(a for a in r.alternatives if a.quant == "Q5_K_M" and a.fits and a.strategy == "n_cpu_moe")
    assert "weights move off the GPU" in q5.why_not


def test_the_trade_table_answers_why_not_q5_k_m() -> None:
    r = api.plan(QWEN, RIG_4090)
    cells = {(c.quant, c.ctx): c for c in r.trade}
    assert {"Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M"} == {c.quant for c in r.trade}
    assert {8192, 32768, 131072, 262144} == {c.ctx for c in r.trade}
    assert [c for c in r.trade if c.chosen] == [cells[("Q4_K_M", r.ctx)]]
    # Q5_K_M keeps its experts on the GPU at no context (llama.cpp's 1 GiB --fit-target margin and
    # the CUDA runtime beside the buffers): every Q5_K_M cell offloads, slower than the chosen plan
    q5 = [c for (q, _), c in cells.items() if q == "Q5_K_M" and c.fits]
    assert q5 and all(c.strategy == "n_cpu_moe" for c in q5)
    assert all(c.decode_tok_s is not None and c.decode_tok_s < r.decode_tok_s for c in q5)
    assert not api.plan_on_rig(resolve_model(QWEN), parse_rig(RIG_4090), alternatives=False).trade


def test_long_contexts_use_a_q8_0_cache_unless_the_user_chose() -> None:
    long = api.plan(QWEN, RIG_4090, ctx=2 * LONG_CONTEXT)
    assert (long.cache_type_k, long.cache_type_v) == ("q8_0", "q8_0")
    assert "-ctk q8_0 -ctv q8_0" in long.command
    short = api.plan(QWEN, RIG_4090, ctx=LONG_CONTEXT)
    assert short.cache_type_k == "f16" and "-ctk" not in short.command
    kept = api.plan(QWEN, RIG_4090, ctx=2 * LONG_CONTEXT, ctk="f16", ctv="f16")
    assert kept.cache_type_k == "f16" and "-ctk" not in kept.command


def test_uses_name_context_and_slots() -> None:
    code = api.plan(QWEN, RIG_4090, use="code")
    assert code.use == "code" and code.ctx >= USES["code"].ctx
    batch = api.plan(QWEN, RIG_4090, use="batch")
    assert batch.n_seq == 4 and "-np 4" in batch.command and batch.ctx >= USES["batch"].ctx
    assert api.plan(QWEN, RIG_4090, use="batch", n_seq=2).n_seq == 2  # --np wins over the use
    with pytest.raises(MoeplanError, match="unknown use 'agents'"):
        use_named("agents")


def test_a_small_model_gets_its_own_context() -> None:
    r = api.plan("qwen3-8b", RIG_4090)  # 40,960 tokens: the whole of it fits
    assert r.ctx == 40960


def test_larger_micro_batch_where_experts_sit_in_ram() -> None:
    """With experts in RAM, llama.cpp copies them to the GPU per micro-batch: -ub 2048 where it fits."""
    r = api.plan(QWEN, RIG_4090, quant="Q5_K_M", ctx=8192)
    assert r.strategy == "n_cpu_moe" and r.n_ubatch == 2048 and "-ub 2048" in r.command
    gpu_only = api.plan(QWEN, RIG_4090)
    assert gpu_only.n_ubatch == 512 and "-ub" not in gpu_only.command


def test_cli_help_states_the_default_context_and_uses() -> None:
    result = CliRunner().invoke(app, ["plan", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.stdout.split())
    assert "default: the most that fits" not in text.lower()
    assert f"{DEFAULT_CONTEXT:,}" in text and "chat" in text and "code" in text and "batch" in text


def test_cli_plan_prints_the_trade() -> None:
    result = CliRunner().invoke(app, ["plan", QWEN, "--rig", RIG_4090])
    assert result.exit_code == 0, result.output
    assert "the trade" in result.stdout and "Q5_K_M" in result.stdout and "* " in result.stdout
    bad = CliRunner().invoke(app, ["plan", QWEN, "--rig", RIG_4090, "--use", "agents"])
    assert bad.exit_code == 2 and "unknown use" in bad.stderr


def test_web_shows_the_trade_on_the_deploy_page_and_the_plan_box() -> None:
    from fastapi.testclient import TestClient

    from moeplan.web.app import create_app

    client = TestClient(create_app(), raise_server_exceptions=False)
    page = client.get(f"/models/{QWEN}.json").json()
    rig24 = next(p for p in page["plans"] if p["rig"] == "24gb-gpu-64gb")["plan"]
    assert (
        any(c["quant"] == "Q5_K_M" for c in rig24["trade"]) and sum(c["chosen"] for c in rig24["trade"]) == 1
    )
    text = client.get(f"/models/{QWEN}").text
    assert 'id="trade"' in text and text.count('<table class="trade">') == len(page["plans"])
    home = client.get(f"/?model={QWEN}&rig=rtx-4090-64gb").text
    assert '<table class="trade">' in home and "★" in home
    api_plan = client.get(f"/api/plan?model={QWEN}&rig=rtx-4090-64gb&use=code").json()
    assert api_plan["use"] == "code" and api_plan["ctx"] >= 131072 and api_plan["trade"]
    assert (
        client.get(f"/api/plan?model={QWEN}&rig=rtx-4090-64gb&use=agents").status_code == 422
    )  # not in the enum


def test_deploy_page_extras_are_speed_numbers_only() -> None:
    """The ready-made plans table adds a column per speed number of PlanReport; the policy's own
    fields (verdict level, parameters, -np, -ub) are not speeds."""
    from moeplan.web import data

    extras = data.plan_extras(data.plan(QWEN, "rtx-4090-64gb"))
    assert "prefill_tok_s" in extras
    assert not {"verdict_level", "params_total", "n_seq", "n_ubatch"} & set(extras)
