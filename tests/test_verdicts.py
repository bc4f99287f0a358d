"""Checker verdicts with levels (plan/policy.py) in JSON, the CLI and the web checker, and the default
ranking: the best model the rig runs well first, not the smallest."""

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from moeplan import api
from moeplan.cli import app
from moeplan.plan.policy import TOO_SLOW_TOK_S, Verdict, verdict

RIG = "RTX 4090 + 64GB DDR5-6000"
# Llama 4 Maverick left this list when llama-server's context checkpoints (18 GiB of host memory or more:
# 32 of 4,096+ chunked-window cells, memory/checkpoints.py) were counted: it no longer fits 64 GB.
ONE_BIT = ["qwen3.5-397b-a17b"]


def test_verdict_levels_and_the_stated_threshold() -> None:
    assert verdict(True, False, TOO_SLOW_TOK_S) is Verdict.RUNS_WELL
    assert verdict(True, True, 50.0) is Verdict.BELOW_FLOOR
    assert verdict(True, False, TOO_SLOW_TOK_S - 0.1) is Verdict.TOO_SLOW
    assert verdict(True, True, 1.0) is Verdict.TOO_SLOW
    assert verdict(False, False, 100.0) is Verdict.DOES_NOT_FIT
    assert [v.value for v in Verdict] == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def checker() -> list[api.FitRow]:
    return api.fit(RIG)


def test_one_bit_plans_are_not_a_plain_yes(checker: list[api.FitRow]) -> None:
    """Before: "runs: yes" for Qwen3.5-397B at IQ1_S on a 4090 + 64 GB."""
    rows = {r.id: r for r in checker}
    for mid in ONE_BIT:
        r = rows[mid]
        assert r.fits and r.quant.startswith("IQ1") and r.verdict == "below quality floor"
        assert r.verdict_level == Verdict.BELOW_FLOOR.value
    assert rows["qwen3.5-35b-a3b"].verdict == "runs well"
    slow = rows["llama-3.1-70b"]
    assert slow.fits and slow.decode_tok_s < TOO_SLOW_TOK_S and slow.verdict == "too slow"
    assert rows["deepseek-v3.1"].verdict == "does not fit"  # streams from disk


def test_plan_report_carries_the_same_verdict() -> None:
    r = api.plan("qwen3.5-397b-a17b", RIG)
    assert (r.verdict, r.below_floor) == ("below quality floor", True)
    assert r.params_total > 390e9


def test_default_ranking_is_the_best_model_that_runs_well(checker: list[api.FitRow]) -> None:
    """Before: fastest first, so Gemma 270M topped every rig."""
    rows = checker
    assert rows[0].id != "gemma-3-270m" and rows[0].verdict == "runs well"
    levels = [r.verdict_level for r in rows]
    assert levels == sorted(levels)
    well = [r for r in rows if r.verdict == "runs well"]
    assert rows[0].params_total == max(r.params_total for r in well)
    assert [r.params_total for r in well] == sorted((r.params_total for r in well), reverse=True)


def test_cli_fit_has_a_verdict_column() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["fit", "--rig", RIG, "--models", ",".join([*ONE_BIT, "qwen3.5-35b-a3b"])])
    assert result.exit_code == 0, result.output
    assert "verdict" in result.stdout and "below quality floor" in result.stdout
    assert f"under {TOO_SLOW_TOK_S:g} tokens/s" in result.stdout
    rows = json.loads(runner.invoke(app, ["fit", "--rig", RIG, "--models", ONE_BIT[0], "--json"]).stdout)
    assert rows[0]["verdict"] == "below quality floor" and rows[0]["verdict_level"] == 1


@pytest.fixture(scope="module")
def client() -> TestClient:
    from moeplan.web.app import create_app

    return TestClient(create_app(), raise_server_exceptions=False)


def test_web_checker_shows_verdicts_and_ranks_best_first(client: TestClient) -> None:
    page = client.get("/hardware.json?rig=rtx-4090-64gb").json()
    assert page["sort"] == "best" and page["rows"][0]["fit"]["id"] != "gemma-3-270m"
    by_id = {r["fit"]["id"]: r["fit"] for r in page["rows"]}
    assert all(by_id[m]["verdict"] == "below quality floor" for m in ONE_BIT)
    assert page["runs_well"] < page["runs"] and page["too_slow_tok_s"] == TOO_SLOW_TOK_S
    text = client.get("/hardware?rig=rtx-4090-64gb").text
    assert "<th>verdict</th>" in text and '<td class="verdict" data-sort="1">below quality floor</td>' in text
    assert 'id="runs-well-count"' in text
    speed = client.get("/hardware.json?rig=rtx-4090-64gb&sort=speed").json()["rows"]
    assert [r["fit"]["verdict_level"] for r in speed] == sorted(r["fit"]["verdict_level"] for r in speed)
    deploy = client.get("/models/qwen3.5-35b-a3b").text
    # a column, or said once above the table when every rig has the same verdict
    assert "<th>verdict</th>" in deploy or "verdict <strong>" in deploy
