"""`inspect` reads ik_llama.cpp files: their IQ*_K, *_KS (per-row scales), *_KT and interleaved *_R4
types, with ik_llama.cpp's block sizes and row metadata (quant/ik_types.py)."""

from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from moeplan.api import inspect_file
from moeplan.quant.ggml import tensor_bytes, type_label
from moeplan.quant.ik_types import IK_LAYOUT, IKType
from moeplan.sources.gguf_header import read_local

# (name, type, ggml shape ne0 first): an ik_llama.cpp MoE mix as its quantizer writes them
TENSORS = [
    ("token_embd.weight", IKType.IQ4_K, (512, 64)),
    ("blk.0.ffn_up_exps.weight", IKType.IQ2_KT, (512, 256, 8)),
    ("blk.0.ffn_down_exps.weight", IKType.IQ4_KS, (256, 512, 8)),
    ("blk.0.attn_q.weight", IKType.Q4_K_R4, (512, 512)),
    ("blk.0.attn_k.weight", IKType.IQ5_KS_R4, (512, 128)),
]


def _write(path: Path) -> None:
    w = GGUFWriter(path, "llama")
    w.add_block_count(1)
    sizes = [tensor_bytes(t, shape) for _, t, shape in TENSORS]
    for (name, t, shape), nbytes in zip(TENSORS, sizes, strict=True):
        w.add_tensor_info(name, tuple(reversed(shape)), np.dtype(np.float16), nbytes, raw_dtype=t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    start = -(-w.fout[0].tell() // 32) * 32
    w.close()
    with open(path, "r+b") as f:
        f.truncate(start + sum(-(-n // 32) * 32 for n in sizes))


def test_row_bytes_follow_ik_llamacpp() -> None:
    # IQ4_KS: one float scale per row (4 bytes) + 136 bytes per 256 values (ggml.c type_traits)
    assert tensor_bytes(IKType.IQ4_KS, (256, 512, 8)) == 512 * 8 * (4 + 136)
    assert tensor_bytes(IKType.IQ2_KT, (512, 256, 8)) == 256 * 8 * (4 + 2 * 68)
    assert tensor_bytes(IKType.IQ4_K, (512, 64)) == 64 * 2 * 144  # no row metadata
    assert IK_LAYOUT[IKType.IQ1_S_R4].block == 32 and type_label(IKType.IQ2_KS) == "iq2_ks"


def test_inspect_reads_an_ik_llamacpp_file(tmp_path: Path) -> None:
    path = tmp_path / "Tiny-IQ2_KT.gguf"
    _write(path)
    header = read_local(path)
    assert [t.type for t in header.tensors] == [t for _, t, _ in TENSORS]
    r = inspect_file(str(path))
    assert r.type_histogram == {"iq2_kt": 1, "iq4_k": 1, "iq4_ks": 1, "iq5_ks_r4": 1, "q4_k_r4": 1}
    assert r.tensor_bytes == sum(tensor_bytes(t, s) for _, t, s in TENSORS)
    assert r.file_bytes == path.stat().st_size
