"""What a person reads must be exact (issue 16): no figure rounded to zero, one clear line for a
missing option, each quantity said once in its unit, no row for a buffer llama.cpp never makes."""

import re

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from moeplan import api
from moeplan.cli import app
from moeplan.web.app import create_app
from moeplan.web.render import extra, label

runner = CliRunner()


def _run(args: list[str]) -> Result:
    return runner.invoke(app, args, prog_name="moeplan")


def test_times_keep_a_real_value() -> None:
    """A per-token latency of 4 ms is "4.0 ms", not "0.00" under a "latency p50 s" header."""
    assert extra(0.004, "latency_p50_s") == "4.0\u00a0ms"
    assert extra(2.5, "ttft_s") == "2.50\u00a0s"
    assert extra(1234.0, "prefill_tok_s") == "1,234"
    assert label("latency_p50_s") == "latency p50" and label("prefill_tok_s") == "prefill tok/s"


def test_deploy_page_of_a_fast_model_shows_no_zero_times() -> None:
    html = TestClient(create_app()).get("/models/gemma-3-270m").text
    table = html[html.index('id="rig-plans"') :]
    table = table[: table.index("</table>")]
    assert not re.search(r">0\.00<", table), "a time rounded to 0.00"
    assert "\u00a0ms" in table  # the fast rigs' latencies, in milliseconds


def test_plan_cli_ttft_in_ms_when_fast() -> None:
    r = runner.invoke(app, ["plan", "gemma-3-270m", "--rig", "8x H100-SXM"])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.stdout.splitlines() if "first token after" in x)
    assert re.search(r"first token after [\d.,]+ ms", line), line


def test_memory_has_no_row_for_a_buffer_llama_cpp_never_makes() -> None:
    """Q8_0 has no repackable type: no CPU_REPACK buffer in llama.cpp's log, so no row."""
    q8 = api.memory("qwen3.5-35b-a3b", "Q8_0", 8192, gpus=0)
    assert [d.device for d in q8.devices] == ["CPU"]
    q4 = api.memory("qwen3.5-35b-a3b", "Q4_K_M", 8192, gpus=0)
    assert [d.device for d in q4.devices] == ["CPU", "CPU_REPACK"]  # Q4_K repacks: the buffer exists
    r = runner.invoke(app, ["memory", "qwen3.5-35b-a3b", "-q", "Q8_0", "--gpus", "0"])
    assert r.exit_code == 0 and "CPU_REPACK" not in r.stdout, r.output


@pytest.mark.parametrize(
    ("rig", "ram"),
    [
        ("8x H100-SXM", "2,048 GiB DDR5-4800 16-channel, 614.4 GB/s"),
        ("RTX 4090 + 64GB DDR5-6000", "64 GiB DDR5-6000 2-channel, 96.0 GB/s"),
        ("M3 Ultra 512GB", "512 GiB unified memory shared with the Apple M3 Ultra GPU, 819.0 GB/s"),
    ],
)
def test_rig_says_each_quantity_once(rig: str, ram: str) -> None:
    """RAM size in GiB once (not "2,048.00 GiB 2048 GB"), bandwidth once."""
    r = runner.invoke(app, ["rig", rig])
    assert r.exit_code == 0, r.output
    row = next(x for x in r.stdout.splitlines() if "│ RAM" in x)
    assert ram in row, row


def _commands_with_required_params() -> list[tuple[str, ...]]:
    """Every command path of the CLI (subgroups' commands included) that needs an argument or option."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    out: list[tuple[str, ...]] = []
    for name, cmd in root.commands.items():
        subs = cmd.commands.items() if isinstance(cmd, typer.core.TyperGroup) else [(None, cmd)]
        out += [
            (name,) if sub is None else (name, sub) for sub, c in subs if any(p.required for p in c.params)
        ]
    return out


REQUIRING = _commands_with_required_params()


def test_the_commands_that_require_something_are_found() -> None:
    assert {("fit",), ("plan",), ("explain",), ("memory",)} <= set(REQUIRING)


@pytest.mark.parametrize("path", REQUIRING, ids=" ".join)
def test_a_missing_required_option_is_one_line(path: tuple[str, ...]) -> None:
    """Each command run with nothing: a command that needs an argument or option names it in one
    `error:` line (with an example where the option has one) and the help to read, no usage box."""
    r = _run(list(path))
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Missing "), r.stderr
    assert f"see 'moeplan {' '.join(path)} --help'" in lines[0]
    assert "╭" not in r.output and "Usage:" not in r.output


def test_fit_without_rig_says_how_to_give_one() -> None:
    r = _run(["fit"])
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        """error: Missing option '--rig' / '-r' (e.g. "RTX 4090 + 64GB DDR5-6000", "2x RTX 3090", """
        """"M3 Ultra 512GB"); see 'moeplan fit --help'"""
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["nosuch"], "error: No such command 'nosuch'; see 'moeplan --help'"),
        (["plan", "qwen3.5-9b", "--bogus", "1"], "error: No such option: --bogus"),
    ],
)
def test_other_usage_errors_are_one_line(args: list[str], said: str) -> None:
    r = _run(args)
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1 and said in r.stderr, r.stderr


def test_no_arguments_still_shows_the_help() -> None:
    r = _run([])
    assert "Usage: moeplan" in r.output and "error:" not in r.output


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        ("-dev CUDA1", ["CPU", "CUDA1"]),
        ("-sm none -mg 3", ["CPU", "CUDA3"]),
        ("-dev CUDA1,CUDA3 -sm none -mg 1", ["CPU", "CUDA3"]),
        ("-dev CUDA2,CUDA0", ["CPU", "CUDA2", "CUDA0"]),
    ],
)
def test_explain_names_devices_as_llama_cpp_does(flags: str, names: list[str]) -> None:
    """A CUDA backend numbers every GPU it finds (ggml-cuda.cu's device list); -dev and -mg pick
    among them and the log keeps their numbers: `-dev CUDA1` loads into "CUDA1 model buffer"."""
    cmd = f"llama-server -m Qwen3.5-9B-Q4_K_M.gguf -ngl 99 {flags} -c 8192"
    r = api.explain(cmd, "4x RTX 3090")
    assert [d.name for d in r.devices] == names
    assert r.bound_by.startswith(names[1]) or r.bound_by.startswith(names[-1]), r.bound_by
