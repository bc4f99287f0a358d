"""GGUF headers of the costliest shapes the reader's limits used to allow (issue 17), written byte by
byte to a path. Long runs of zeros are left as holes (sparse files), so a 256 MB header costs a few
KB of disk. Used by the fuzz tests and `python -m tests.gguf_shapes` (the before/after figures)."""

import struct
from pathlib import Path

from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

ALIGN = 32


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def gstr(s: str) -> bytes:
    b = s.encode()
    return u64(len(b)) + b


def preamble(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + u32(3) + u64(n_tensors) + u64(n_kv)


def int8_arrays(path: Path, total_bytes: int, items: int = 4096) -> None:
    """Keys holding `items`-long INT8 arrays until the header is `total_bytes` long: each array was
    kept as a Python list of ints (about 43 times its bytes on disk)."""
    values = bytes((i * 37) % 256 for i in range(items))  # both signs: ints outside CPython's small-int cache
    one = len(gstr("k.000000")) + 4 + 4 + 8 + items
    n = max(1, total_bytes // one)
    with path.open("wb") as f:
        f.write(preamble(0, n))
        for i in range(n):
            f.write(gstr(f"k.{i:06d}") + u32(V.ARRAY) + u32(V.INT8) + u64(items) + values)


def empty_strings(path: Path, items: int) -> None:
    """One array of `items` empty strings (8 zero bytes each): a hole on disk, and one walk per item."""
    head = preamble(0, 1) + gstr("tokenizer.ggml.tokens") + u32(V.ARRAY) + u32(V.STRING) + u64(items)
    with path.open("wb") as f:
        f.write(head)
        f.truncate(len(head) + 8 * items)


def many_tensors(path: Path, n: int) -> None:
    """`n` one-block F32 tensors (32 elements, 128 bytes each) laid out as gguf.cpp expects; the data
    section is a hole."""
    with path.open("wb") as f:
        f.write(preamble(n, 1) + gstr("general.architecture") + u32(V.STRING) + gstr("llama"))
        for i in range(n):
            f.write(gstr(f"blk.{i}.attn_q.weight") + u32(1) + u64(32) + u32(T.F32) + u64(128 * i))
        head = f.tell()
        f.truncate(-(-head // ALIGN) * ALIGN + 128 * n)
