"""GGUF headers of the costliest shapes the reader's limits used to allow (issue 17), written byte by
byte to a path. Long runs of zeros are left as holes (sparse files), so a 256 MB header costs a few
KB of disk. Used by the fuzz tests and `python -m tests.gguf_shapes` (the before/after figures)."""

import contextlib
import json
import re
import resource
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------------ measuring them

MIB = 2**20
FULL_INT8 = 256 * MIB - 4096  # at the local header limit: about 10 GB before issue 17
WORST: dict[str, Callable[[Path], None]] = {  # each past a limit, or the first figure
    "int8-arrays-16MB": lambda p: int8_arrays(p, 16 * MIB),
    "empty-strings-33.5M": lambda p: empty_strings(p, (256 * MIB - 4096) // 8),
    "tensors-1M": lambda p: many_tensors(p, 1_000_000),
}
FULL: dict[str, Callable[[Path], None]] = {  # just under a limit, and the biggest files
    "empty-strings-1.9M": lambda p: empty_strings(p, 1_900_000),
    "tensors-19k": lambda p: many_tensors(p, 19_000),
    "int8-arrays-64MB": lambda p: int8_arrays(p, 64 * MIB),
    "int8-arrays-256MB": lambda p: int8_arrays(p, FULL_INT8),
}


def _status(key: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS, VmHWM, VmSize)."""
    m = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert m is not None, key
    return int(m.group(1)) * 1024


def measure(path: Path) -> dict[str, Any]:
    """Read `path` as `moeplan inspect` does, in this process: seconds, the peak resident memory
    above what the process held before (the kernel's high-water mark, reset first), and the outcome:
    "ok" or the one-line error. Any other exception propagates."""
    from moeplan import api
    from moeplan.errors import MoeplanError

    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _status("VmRSS")
    t0 = time.monotonic()
    try:
        api.inspect_file(str(path))
        outcome = "ok"
    except MoeplanError as e:
        outcome = str(e)
    return {"seconds": time.monotonic() - t0, "peak": _status("VmHWM") - before, "outcome": outcome}


def measure_all(
    shapes: dict[str, Callable[[Path], None]], folder: Path, cap: int
) -> dict[str, dict[str, Any]]:
    """Write each shape and measure it, the address space capped `cap` bytes above the warmed-up
    process, so that a blow-up ends in MemoryError rather than the machine's memory."""
    from moeplan import api
    from moeplan.errors import MoeplanError

    warm = folder / "warm.gguf"
    many_tensors(warm, 4)
    with contextlib.suppress(MoeplanError):
        api.inspect_file(str(warm))  # imports and caches: not part of any shape's cost
    limit = _status("VmSize") + cap
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    out = {}
    for name, write in shapes.items():
        path = folder / f"{name}.gguf"
        write(path)
        out[name] = measure(path)
        path.unlink()
    return out


def main() -> None:
    """`python -m tests.gguf_shapes [--full] [--only NAME] [--json]`: each worst shape's figures."""
    shapes = {**WORST, **(FULL if "--full" in sys.argv else {})}
    if "--only" in sys.argv:
        name = sys.argv[sys.argv.index("--only") + 1]
        shapes = {name: {**WORST, **FULL}[name]}
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure_all(shapes, Path(tmp), 2 * 2**30)
    if "--json" in sys.argv:
        print(json.dumps(figures))
        return
    for name, f in figures.items():
        seconds, peak, outcome = f["seconds"], f["peak"], str(f["outcome"])
        print(f"{name:22s} {seconds:6.2f} s {peak / MIB:7.1f} MiB  {outcome[:110]}")


if __name__ == "__main__":
    main()
