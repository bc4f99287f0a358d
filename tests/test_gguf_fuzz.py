"""Fuzzing the GGUF header reader and `inspect` (issue 17): hypothesis builds headers from GGUF's own
grammar (keys of every value type, arrays whose counts lie, tensor tables of valid and invalid names,
shapes, types and offsets) and then corrupts their bytes; every one must end in the file's report or
a MoeplanError, within a time limit and a memory cap; sets of shards must be one split or a
MoeplanError. The costliest shapes the old limits allowed
(`tests/gguf_shapes.py`) run in a subprocess whose address space is capped, and must stay within the
budget.

A few seconds in the suite; `make fuzz` runs many more examples and the full-size shapes
(MOEPLAN_FUZZ_EXAMPLES, MOEPLAN_FUZZ_FULL)."""

import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moeplan import api
from moeplan.errors import MoeplanError
from moeplan.quant.ggml import GGMLType, tensor_bytes
from moeplan.sources.gguf_header import MAX_MEMORY, MIB, HeaderBudget, LocalFile, read_header, read_local
from tests.gguf_shapes import int8_arrays, many_tensors
from tests.test_gguf_header import shard, write_split

T_ = TypeVar("T_")
EXAMPLES = int(os.environ.get("MOEPLAN_FUZZ_EXAMPLES", "60"))
FULL = os.environ.get("MOEPLAN_FUZZ_FULL") == "1"
TIME_LIMIT_S = 5.0  # one generated header, read and inspected (the shared test machine is slow)
SHAPE_TIME_LIMIT_S = 20.0
SLACK = 16 * MIB  # the reader's 1 MiB chunks, inspect's report, allocator pages
REPO = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ GGUF grammar

INTERESTING = [0, 1, 2, 3, 31, 32, 33, 255, 256, 4095, 4096, 4097, 2**31 - 1, 2**31, 2**32 - 1, 2**32]
INTERESTING += [2**62, 2**63 - 1, 2**63, 2**64 - 1]
u64s = st.sampled_from(INTERESTING) | st.integers(0, 2**64 - 1)
KEYS = [
    "general.architecture",
    "general.alignment",
    "general.name",
    "general.file_type",
    "llama.block_count",
    "llama.expert_count",
    "llama.expert_used_count",
    "llama.nextn_predict_layers",
    "llama.attention.head_count",
    "split.count",
    "split.no",
    "split.tensors.count",
    "tokenizer.ggml.tokens",
]
NAMES = [
    "token_embd.weight",
    "output.weight",
    "output_norm.weight",
    "blk.0.attn_q.weight",
    "blk.0.ffn_up_exps.weight",
    "blk.1.ssm_a",
    "blk.99999999999.attn_k.weight",
    "blk.x.attn_q.weight",
    "blk..ffn_down.weight",
    "blk.\u0663.attn_v.weight",
    "blk.",
]
TYPES = [int(t) for t in (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_K, T.Q6_K, T.IQ2_XXS, T.MXFP4)]
FORMATS = {V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i"}
FORMATS |= {V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d"}


def u32(n: int) -> bytes:
    return struct.pack("<I", n % 2**32)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n % 2**64)


def gstr(b: bytes) -> bytes:
    return u64(len(b)) + b


texts = st.binary(max_size=12) | st.sampled_from([k.encode() for k in [*KEYS, "llama", "qwen3moe"]])


@st.composite
def scalar(draw: st.DrawFn, vt: V) -> bytes:
    if vt == V.STRING:
        return gstr(draw(texts))
    fmt = FORMATS[vt]
    return draw(st.binary(min_size=struct.calcsize(fmt), max_size=struct.calcsize(fmt)))


def mostly(good: st.SearchStrategy[T_], bad: st.SearchStrategy[T_]) -> st.SearchStrategy[T_]:
    """`good` nine times in ten: deep paths get reached, and still every check gets hit."""
    return st.integers(0, 9).flatmap(lambda n: bad if n == 0 else good)


@st.composite
def kv(draw: st.DrawFn) -> bytes:
    key = draw(mostly(st.sampled_from(KEYS).map(str.encode), texts))
    vt = draw(st.sampled_from([*FORMATS, V.STRING, V.ARRAY, V.ARRAY]))
    if vt != V.ARRAY:
        return gstr(key) + u32(vt) + draw(scalar(vt))
    item = draw(st.sampled_from([*FORMATS, V.STRING]))
    items = draw(st.lists(scalar(item), max_size=6))
    count = draw(mostly(st.just(len(items)), u64s))  # a count that may lie
    return gstr(key) + u32(V.ARRAY) + u32(item) + u64(count) + b"".join(items)


@st.composite
def tensor(draw: st.DrawFn, offset: int) -> tuple[bytes, int]:
    name = draw(mostly(st.sampled_from(NAMES).map(str.encode), texts))
    dims = st.sampled_from([1, 2, 4, 256, 512])
    shape = draw(mostly(st.lists(dims, min_size=1, max_size=3), st.lists(dims | u64s, max_size=5)))
    ttype = draw(mostly(st.sampled_from(TYPES), st.integers(0, 2**32 - 1)))
    try:
        nbytes = tensor_bytes(GGMLType(ttype), tuple(shape))
    except (ValueError, IndexError):  # an unknown type, a shape no block fits, no dimensions
        nbytes = 32
    off = draw(mostly(st.just(offset), u64s))
    n_dims = draw(mostly(st.just(len(shape)), st.integers(0, 2**32 - 1)))
    entry = gstr(name) + u32(n_dims) + b"".join(u64(d) for d in shape) + u32(ttype) + u64(off)
    return entry, nbytes


ARCH = gstr(b"general.architecture") + u32(V.STRING) + gstr(b"llama")
BLOCKS = gstr(b"llama.block_count") + u32(V.UINT32) + u32(2)


@st.composite
def gguf_files(draw: st.DrawFn) -> bytes:
    kvs = draw(mostly(st.just([ARCH, BLOCKS]), st.just([]))) + draw(st.lists(kv(), max_size=5))
    tensors, offset = [], 0
    for _ in range(draw(st.integers(0, 5))):
        entry, nbytes = draw(tensor(offset))
        tensors.append(entry)
        offset += -(-nbytes // 32) * 32
    n_tensors = draw(mostly(st.just(len(tensors)), u64s))
    n_kv = draw(mostly(st.just(len(kvs)), u64s))
    version = draw(mostly(st.just(3), st.sampled_from([2, 1, 4, 2**32 - 1])))
    head = b"GGUF" + u32(version) + u64(n_tensors) + u64(n_kv) + b"".join(kvs) + b"".join(tensors)
    data = draw(mostly(st.just(offset), st.sampled_from([0, offset // 2, offset + 64])))
    raw = bytearray(head + b"\0" * (-len(head) % 32 + min(data, 2**20)))
    for at, value in draw(
        mostly(st.just([]), st.lists(st.tuples(st.integers(0, len(raw)), u64s), max_size=3))
    ):
        raw[at : at + 8] = u64(value)  # a length, count or offset overwritten with a hostile one
    cut = draw(mostly(st.none(), st.integers(0, len(raw))))
    return bytes(raw if cut is None else raw[:cut])


# ------------------------------------------------------------------ the property


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("fuzz")
    warm = d / "warm.gguf"
    many_tensors(warm, 4)
    api.inspect_file(str(warm))  # imports and caches, before memory is traced
    yield d


@given(raw=gguf_files())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
def test_any_header_is_a_report_or_a_one_line_error(folder: Path, raw: bytes) -> None:
    path = folder / "fuzz.gguf"
    path.write_bytes(raw)
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        for step in (lambda: read_header(LocalFile(path), path.name), lambda: api.inspect_file(str(path))):
            try:
                step()
            except MoeplanError as e:
                assert str(e).strip() and "\n" not in str(e), repr(str(e))
    finally:
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < TIME_LIMIT_S, f"{elapsed:.1f}s"
    assert peak < MAX_MEMORY + SLACK, f"{peak:,} bytes"


# ------------------------------------------------------------------ the worst shapes


def run_shapes(*args: str) -> dict[str, dict[str, object]]:
    """`python -m tests.gguf_shapes --json` in a fresh process (its address space capped 2 GiB
    above the warmed-up interpreter, so that a blow-up cannot take the machine's memory)."""
    r = subprocess.run(
        [sys.executable, "-m", "tests.gguf_shapes", "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    figures: dict[str, dict[str, object]] = json.loads(r.stdout)
    return figures


def test_worst_shapes_stay_within_the_budget() -> None:
    """Issue 17's figures before: 16 MB of INT8 arrays 689 MB and 8 s, 33.5M empty strings 17 s,
    1M tensors 10 s and 440 MB; with MOEPLAN_FUZZ_FULL=1 also 64 MB of INT8 arrays (2.6 GB and
    35 s), 256 MB (about 10 GB), and shapes just under the item budget."""
    figures = run_shapes(*(["--full"] if FULL else []))
    expected = {
        "int8-arrays-16MB": "no general.architecture",  # read in full, held in its bytes
        "empty-strings-33.5M": "past its budget of 2,000,000 items to read (set MOEPLAN_GGUF_ITEMS",
        "empty-strings-1.9M": "no general.architecture",  # just under the item budget
        "tensors-1M": "a table of 1,000,000 tensors takes the header past its budget",
        "tensors-19k": "ok",  # just under it, inspected
        "int8-arrays-64MB": "needs more than the 64 MiB a header may hold (set MOEPLAN_GGUF_MEMORY_MB",
        "int8-arrays-256MB": "needs more than the 64 MiB",
    }
    for name, f in figures.items():
        assert expected[name] in str(f["outcome"]), (name, f)
        assert float(str(f["seconds"])) < SHAPE_TIME_LIMIT_S, (name, f)
        assert int(str(f["peak"])) < MAX_MEMORY + SLACK, (name, f)
    assert int(str(figures["int8-arrays-16MB"]["peak"])) < 16 * MIB + SLACK  # was 43 times its size


def test_a_lower_memory_budget_is_kept(tmp_path: Path) -> None:
    """The memory budget is the bound, not the defaults: at 8 MiB, 16 MB of INT8 arrays stop at it."""
    p = tmp_path / "int8.gguf"
    int8_arrays(p, 16 * MIB)
    tracemalloc.start()
    with pytest.raises(MoeplanError, match="needs more than the 8 MiB a header may hold"):
        read_header(LocalFile(p), p.name, HeaderBudget(memory=8 * MIB))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 * MIB + 4 * MIB, f"{peak:,} bytes"


# ------------------------------------------------------------------ split files

shard_numbers = st.integers(0, 4) | st.just(2**16 - 1)
NAMES_IN_SHARDS = ["a", "b", "c", "d", "blk.0.attn_q.weight"]


@st.composite
def splits(draw: st.DrawFn) -> list[bytes]:
    """Shards as llama-gguf-split writes them, each field now and then wrong."""
    n = draw(st.integers(1, 4))
    names = draw(st.permutations(NAMES_IN_SHARDS))
    cuts = sorted(draw(st.lists(st.integers(0, len(names)), min_size=n - 1, max_size=n - 1)))
    parts = [names[a:b] for a, b in zip([0, *cuts], [*cuts, len(names)], strict=True)]
    out = []
    for i, part in enumerate(parts):
        tensors = draw(
            mostly(st.just(part), st.lists(st.sampled_from(NAMES_IN_SHARDS), max_size=3, unique=True))
        )
        no = draw(mostly(st.just(i), shard_numbers))
        count = draw(mostly(st.just(n), shard_numbers))
        total = draw(mostly(st.just(len(names)), shard_numbers))
        arch = draw(mostly(st.just("llama" if i == 0 else None), st.sampled_from(["llama", "qwen2", None])))
        out.append(shard(no, count, tensors, total, arch))
    return out


@given(shards=splits())
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_any_set_of_shards_is_one_split_or_a_one_line_error(folder: Path, shards: list[bytes]) -> None:
    split = folder / f"split-{len(shards)}"
    split.mkdir(exist_ok=True)
    first = write_split(split, shards)
    try:
        model = read_local(first)
    except MoeplanError as e:
        assert str(e).strip() and "\n" not in str(e), repr(str(e))
        return
    names = [t.name for t in model.tensors]
    assert len(names) == len(set(names))  # what is accepted is one consistent split
    if len(shards) > 1:
        assert [s.metadata["split.no"] for s in model.shards] == list(range(len(shards)))
        assert {s.metadata["split.count"] for s in model.shards} == {len(shards)}
        assert model.metadata["split.tensors.count"] == len(names)
