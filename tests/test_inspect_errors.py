"""`moeplan inspect` on broken or hostile files: one line on stderr and exit code 2, never a
traceback (issue 17's reproducers, run through the CLI as a user would)."""

from pathlib import Path

import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from typer.testing import CliRunner

from moeplan.arch.inventory import role_of
from moeplan.cli import app
from moeplan.errors import BadGGUF
from tests.test_gguf_header import gguf_bytes, gstr, kv_u32, shard, tensor_info, u32, write_split

runner = CliRunner()


def llama_file(tensors: list[bytes], data: int) -> bytes:
    arch = gstr("general.architecture") + u32(V.STRING) + gstr("llama")
    return gguf_bytes([arch, kv_u32("llama.block_count", 1)], tensors, data)


def inspect_error(path: Path | str) -> str:
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1, result.output
    return result.stderr


def test_valid_hand_built_file_inspects(tmp_path: Path) -> None:
    p = tmp_path / "ok.gguf"
    p.write_bytes(llama_file([tensor_info("blk.0.attn_q.weight", (8,), T.F32)], 32))
    result = runner.invoke(app, ["inspect", str(p), "--json"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", ["blk.x.attn_q.weight", "blk..attn_q.weight", "blk.\u0663.attn_q.weight"])
def test_layer_that_is_not_a_number(tmp_path: Path, name: str) -> None:
    """`blk.x.attn_q.weight` raised ValueError in role_of; U+0663 is a digit to int(), not to llama.cpp."""
    p = tmp_path / "x.gguf"
    p.write_bytes(llama_file([tensor_info(name, (8,), T.F32)], 32))
    assert "x.gguf: tensor " in inspect_error(p) and "has no layer number after 'blk.'" in inspect_error(p)
    with pytest.raises(BadGGUF, match="no layer number"):
        role_of(name, 4)


def test_file_system_errors(tmp_path: Path) -> None:
    (tmp_path / "dir.gguf").mkdir()
    assert "is a directory, not a GGUF file" in inspect_error(tmp_path / "dir.gguf")
    (tmp_path / "m-00001-of-00000.gguf").write_bytes(gguf_bytes())
    assert "must number its shard 1 to N of N" in inspect_error(tmp_path / "m-00001-of-00000.gguf")
    (tmp_path / "m-00001-of-99999.gguf").write_bytes(gguf_bytes())
    msg = inspect_error(tmp_path / "m-00001-of-99999.gguf")
    assert "missing 99,998 of its 99,999 shards" in msg and len(msg) < 400


def test_inconsistent_files(tmp_path: Path) -> None:
    p = tmp_path / "dup.gguf"
    p.write_bytes(llama_file([tensor_info("output.weight", (1024,), T.F32)] * 10, 4096))
    assert "tensor 'output.weight' appears twice" in inspect_error(p)
    first = write_split(tmp_path, [shard(0, 2, ["a"], 2), shard(1, 2, ["b"], 2, arch="qwen2")])
    assert "architecture 'qwen2' differs" in inspect_error(first)


def test_architecture_name_that_is_not_one(tmp_path: Path) -> None:
    p = tmp_path / "arch.gguf"
    arch = gstr("general.architecture") + u32(V.STRING) + gstr("llama\nerror: all good")
    p.write_bytes(gguf_bytes([arch], [tensor_info("output.weight", (8,), T.F32)], 32))
    assert "general.architecture 'llama\\nerror: all good' is not an architecture name" in inspect_error(p)
