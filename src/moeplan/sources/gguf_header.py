"""A bounded GGUF header reader: metadata and tensor table, never the tensor data.

Written here rather than using gguf-py's `GGUFReader` because that one memory-maps the whole file,
trusts every count in it and builds numpy views for every vocabulary item: a hostile header is read
or allocated blindly, and it cannot read over HTTP ranges. This reader pulls bytes on demand from a
`ByteSource` (a local file here; the Hub source supplies range reads), stops at the end of the
tensor table, and spends from a `HeaderBudget` — bytes read, items walked, bytes held — so that its
cost is bounded whatever the header's shape; past a limit it stops with a one-line error naming the
setting that raises it.

It checks what llama.cpp's own reader checks (`gguf_init_from_file_impl` in ggml/src/gguf.cpp of
build 11434: unique non-empty keys, `general.alignment` a UINT32 power of two, tensor names under
GGML_MAX_NAME and unique, dimensions and element counts in int64 range, known types whose rows fill
whole blocks, each tensor's offset where the previous one's padded data ends) and what its model
loader checks (`llama_model_loader` in src/llama-model-loader.cpp: tensor data within the file, and
for split files the shard numbers, the shard count and the tensor count), so a file llama.cpp
refuses is refused here too.
"""

import os
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from moeplan.errors import BadGGUF, MoeplanError, printable
from moeplan.gguf_constants import GGUFValueType
from moeplan.quant.ggml import GGMLType, TensorType, tensor_bytes
from moeplan.quant.ik_types import IKType

MAGIC = b"GGUF"
MIB = 2**20
MAX_HEADER_BYTES = 256 * MIB  # largest header read from a local file (vocab arrays make them MBs)
# Keys, tensors and strings walked, and bytes a parsed header may hold: gemma-3-270m's header (a
# 262k vocabulary, 236 tensors) walks 286,000 items and holds 0.25 MiB; a big MoE's few thousand
# tensors add a few MiB.
MAX_ITEMS = 2_000_000
MAX_MEMORY = 64 * MIB
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME: gguf.cpp refuses a tensor name of 64 bytes or more
MAX_STRING = 64 * MIB
KEEP_ARRAY_ITEMS = 4096  # numeric arrays up to this length are kept (per-layer hparams); longer are skipped
HEADER_MB_ENV = "MOEPLAN_GGUF_HEADER_MB"
ITEMS_ENV = "MOEPLAN_GGUF_ITEMS"
MEMORY_MB_ENV = "MOEPLAN_GGUF_MEMORY_MB"
# Bytes charged per tensor entry: its GGUFTensor, name and shape here, and the TensorSpec and
# TypedTensor `inspect` builds from it (tracemalloc over 20,000 tensors: the header holds 235 bytes
# a tensor, inspect peaks at 540), so that the budget bounds what reading a file costs downstream.
TENSOR_COST = 1024
KEY_COST = 120  # a metadata entry's dict slot and its value object, beside the key's own bytes
# Items a tensor entry counts for against MAX_ITEMS: reading it costs about 50 µs and `inspect` 75
# (20,000 tensors), a string 0.5 µs (1.9M), on the shared test machine; the default budget then
# admits 20,000 tensors (real files: a few thousand at most), either way about a second.
TENSOR_ITEMS = 100
INT64_MAX = 2**63 - 1

Scalar = int | float | bool | str
Value = Scalar | list[Scalar] | None


def env_count(name: str, default: int, unit: int = 1, minimum: int = 1) -> int:
    """A whole number of at least `minimum` from the environment (ASCII digits only), times `unit`."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not re.fullmatch(r"[0-9]{1,12}", text) or int(text) < minimum:
        kind = "a positive whole number" if minimum == 1 else f"a whole number of at least {minimum}"
        raise MoeplanError(f"{name} must be {kind}, got {raw!r}")
    return int(text) * unit


@dataclass(frozen=True)
class HeaderBudget:
    """What reading one model's header(s) may cost, whatever their shape: bytes read per file (I/O),
    keys, tensors and array items walked (CPU), bytes held by the result (memory)."""

    header_bytes: int = MAX_HEADER_BYTES
    items: int = MAX_ITEMS
    memory: int = MAX_MEMORY

    @classmethod
    def from_env(cls, header_bytes: int = MAX_HEADER_BYTES) -> "HeaderBudget":
        """The defaults, each raised or lowered by its environment variable."""
        return cls(
            env_count(HEADER_MB_ENV, header_bytes, MIB),
            env_count(ITEMS_ENV, MAX_ITEMS),
            env_count(MEMORY_MB_ENV, MAX_MEMORY, MIB),
        )


class _Meter:
    """The items and memory a model's headers have spent (one meter is shared by all its shards)."""

    def __init__(self, budget: HeaderBudget) -> None:
        self.budget = budget
        self.items = 0
        self.memory = 0

    def spend(self, name: str, what: str, items: int = 0, memory: int = 0) -> None:
        self.items += items
        self.memory += memory
        if self.items > self.budget.items:
            raise BadGGUF(
                f"{name}: {what} takes the header past its budget of {self.budget.items:,} items to read "
                f"(set {ITEMS_ENV} higher if the file is genuine)"
            )
        if self.memory > self.budget.memory:
            raise BadGGUF(
                f"{name}: {what} needs more than the {self.budget.memory / MIB:g} MiB a header may hold "
                f"(set {MEMORY_MB_ENV} higher if the file is genuine)"
            )


class ByteSource(Protocol):
    """Random access to the bytes of one file."""

    @property
    def size(self) -> int: ...

    def read(self, offset: int, n: int) -> bytes: ...


class LocalFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._size = path.stat().st_size
        except OSError as e:
            raise BadGGUF(f"cannot read {path}: {e.strerror}") from None
        if path.is_dir():
            raise BadGGUF(f"{path} is a directory, not a GGUF file")

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, n: int) -> bytes:
        try:
            with self.path.open("rb") as f:
                f.seek(offset)
                return f.read(n)
        except OSError as e:
            raise BadGGUF(f"cannot read {self.path}: {e.strerror}") from None


@dataclass(frozen=True, slots=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # ggml order, ne0 first
    type: TensorType
    offset: int  # relative to the start of the data section
    nbytes: int


class Metadata(Mapping[str, Value]):
    """A header's key-value pairs. Numeric arrays are held as numpy arrays (their bytes, not a Python
    int object per item) and handed out as lists, made once, when first read: an array nothing reads
    costs its bytes only."""

    def __init__(self, values: dict[str, Scalar | np.ndarray | None]) -> None:
        self._values = values
        self._lists: dict[str, list[Scalar]] = {}

    def __getitem__(self, key: str) -> Value:
        v = self._values[key]
        if not isinstance(v, np.ndarray):
            return v
        out = self._lists.get(key)
        if out is None:
            out = self._lists[key] = v.tolist()
        return out

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Metadata({len(self)} keys)"


@dataclass(frozen=True)
class GGUFHeader:
    source: str
    version: int
    metadata: Metadata
    skipped_arrays: dict[str, int]  # key -> length, for long arrays (e.g. the vocabulary) not kept
    tensors: tuple[GGUFTensor, ...]
    alignment: int
    data_offset: int
    file_size: int
    header_bytes_read: int

    @property
    def tensor_data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


_U64 = struct.Struct("<Q")


class _Cursor:
    """Sequential reads over a ByteSource, fetched in chunks, bounded by the header byte limit."""

    CHUNK = 1 << 20

    def __init__(self, src: ByteSource, name: str, limit: int, meter: _Meter) -> None:
        self.src, self.name, self.limit, self.meter = src, name, min(limit, src.size), meter
        self.buf = b""
        self.buf_start = 0
        self.pos = 0
        # A remote source asks for a small first read that doubles up to CHUNK (few bytes for small
        # headers, few round trips for large ones); a local file reads CHUNK at a time.
        self.chunk = int(getattr(src, "first_chunk", self.CHUNK))

    def _check_end(self, end: int) -> None:
        if end > self.limit:
            if end > self.src.size:
                raise BadGGUF(
                    f"{self.name}: truncated GGUF header (needs {end} bytes, file has {self.src.size})"
                )
            raise BadGGUF(
                f"{self.name}: GGUF header larger than the {self.limit:,}-byte limit "
                f"(set {HEADER_MB_ENV} higher if the file is genuine)"
            )

    def _fill(self, n: int) -> None:
        """Make the buffer hold bytes [pos, pos + n)."""
        end = self.pos + n
        self._check_end(end)
        if end > self.buf_start + len(self.buf):
            keep = self.buf[self.pos - self.buf_start :]
            more = max(self.chunk, end - self.pos - len(keep))
            self.chunk = min(2 * self.chunk, max(self.chunk, self.CHUNK))
            fetched = self.src.read(self.pos + len(keep), min(more, self.limit - self.pos - len(keep)))
            self.buf, self.buf_start = keep + fetched, self.pos
            if end > self.buf_start + len(self.buf):
                raise BadGGUF(f"{self.name}: truncated GGUF header")

    def take(self, n: int) -> bytes:
        self._fill(n)
        out = self.buf[self.pos - self.buf_start : self.pos - self.buf_start + n]
        self.pos += n
        return out

    def skip(self, n: int) -> None:
        """Step over `n` bytes nothing keeps, without reading them."""
        self._check_end(self.pos + n)
        self.pos += n

    def skip_strings(self, count: int) -> None:
        """Step over `count` strings nothing keeps (a vocabulary), reading only their lengths: each
        is looked up in one of eight u64 views of the buffer, one per byte offset mod 8 (a third
        faster than `struct.unpack_from`; native order, which is GGUF's little-endian on x86 and ARM)."""
        while count:
            self._fill(8)
            buf, base = memoryview(self.buf), self.buf_start
            views = [buf[k : k + (len(buf) - k) // 8 * 8].cast("Q") for k in range(8)]
            p, last = self.pos - base, len(buf) - 8
            while count and p <= last:
                p += 8 + views[p & 7][p >> 3]
                count -= 1
            self._check_end(base + p)  # a string running past the file or the limit
            self.pos = base + p

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self.take(8))[0])

    def string(self, what: str) -> str:
        n = self.u64()
        if n > MAX_STRING:
            raise BadGGUF(f"{self.name}: string of {n} bytes in the header exceeds the limit")
        self._check_end(self.pos + n)
        # Two bytes a byte: invalid UTF-8 decodes to U+FFFD, a 2-byte character in the string.
        self.meter.spend(self.name, what, memory=2 * n + 64)
        return self.take(n).decode("utf-8", errors="replace")


_FORMATS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
_SCALARS = {vt: struct.Struct(f) for vt, f in _FORMATS.items()}
_DTYPES = {vt: np.dtype(f) for vt, f in _FORMATS.items()}


def _value_type(cur: _Cursor, key: str) -> GGUFValueType:
    raw = cur.u32()
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise BadGGUF(f"{cur.name}: key '{printable(key)}' has unknown value type {raw}") from None


def _scalar(cur: _Cursor, key: str, vt: GGUFValueType) -> Scalar:
    if vt == GGUFValueType.STRING:
        return cur.string(f"the value of '{printable(key)}'")
    fmt = _SCALARS[vt]
    v: Scalar = fmt.unpack(cur.take(fmt.size))[0]
    return v


def _value(cur: _Cursor, key: str, skipped: dict[str, int]) -> Scalar | np.ndarray | None:
    vt = _value_type(cur, key)
    if key == "general.alignment" and vt != GGUFValueType.UINT32:  # gguf.cpp: must be UINT32
        raise BadGGUF(f"{cur.name}: general.alignment must be of type UINT32, not {vt.name}")
    if vt != GGUFValueType.ARRAY:
        return _scalar(cur, key, vt)
    item = _value_type(cur, key)
    n = cur.u64()
    if item == GGUFValueType.ARRAY:
        raise BadGGUF(f"{cur.name}: nested arrays under '{printable(key)}' are not supported")
    if n > cur.limit:
        raise BadGGUF(f"{cur.name}: array '{printable(key)}' claims {n} items, more than the header can hold")
    if item != GGUFValueType.STRING and n <= KEEP_ARRAY_ITEMS:
        dtype = _DTYPES[item]
        cur.meter.spend(cur.name, f"array '{printable(key)}'", memory=n * dtype.itemsize + 160)
        return np.frombuffer(cur.take(n * dtype.itemsize), dtype)
    skipped[key] = n
    if item == GGUFValueType.STRING:
        cur.meter.spend(cur.name, f"array '{printable(key)}' of {n:,} strings", items=n)
        cur.skip_strings(n)
    else:
        cur.skip(n * _DTYPES[item].itemsize)
    return None


def _tensor_type(raw: int) -> TensorType | None:
    """Mainline llama.cpp's type, else ik_llama.cpp's (its ids do not overlap mainline's others)."""
    for enum in (GGMLType, IKType):
        try:
            return enum(raw)
        except ValueError:
            pass
    return None


def _tensor_info(cur: _Cursor, seen: set[str]) -> tuple[str, tuple[int, ...], TensorType, int]:
    """One tensor-table entry, checked as gguf.cpp checks it."""
    name = cur.name
    n = cur.u64()
    if n >= MAX_NAME:
        raise BadGGUF(f"{name}: a tensor name of {n} bytes is too long (llama.cpp allows {MAX_NAME - 1})")
    tname = cur.take(n).decode("utf-8", errors="replace")
    if tname in seen:
        raise BadGGUF(f"{name}: tensor '{printable(tname)}' appears twice in the tensor table")
    seen.add(tname)
    n_dims = cur.u32()
    if not 1 <= n_dims <= MAX_DIMS:
        raise BadGGUF(
            f"{name}: tensor '{printable(tname)}' has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
        )
    shape = tuple(cur.u64() for _ in range(n_dims))
    elements = 1
    for d in shape:
        elements *= d
    if max(shape) > INT64_MAX or elements > INT64_MAX:
        raise BadGGUF(
            f"{name}: tensor '{printable(tname)}' has shape {shape}, more elements than int64 can count"
        )
    raw_type = cur.u32()
    ttype = _tensor_type(raw_type)
    if ttype is None:
        raise BadGGUF(f"{name}: tensor '{printable(tname)}' has unknown ggml type {raw_type}")
    return tname, shape, ttype, cur.u64()


def read_header(src: ByteSource, name: str, budget: HeaderBudget | None = None) -> GGUFHeader:
    """Parse one GGUF file's header from `src` within `budget` (default: `HeaderBudget.from_env()`)."""
    budget = budget or HeaderBudget.from_env()
    return _read_header(src, name, budget, _Meter(budget))


def _read_header(src: ByteSource, name: str, budget: HeaderBudget, meter: _Meter) -> GGUFHeader:
    cur = _Cursor(src, name, budget.header_bytes, meter)
    if cur.take(4) != MAGIC:
        raise BadGGUF(f"{name}: not a GGUF file (bad magic)")
    version = cur.u32()
    if version not in (2, 3):
        raise BadGGUF(f"{name}: unsupported GGUF version {version} (expected 2 or 3)")
    n_tensors, n_kv = cur.u64(), cur.u64()
    meter.spend(
        name,
        f"a table of {n_tensors:,} tensors",
        items=n_tensors * TENSOR_ITEMS,
        memory=n_tensors * TENSOR_COST,
    )
    meter.spend(name, f"{n_kv:,} metadata keys", items=n_kv, memory=n_kv * KEY_COST)
    values: dict[str, Scalar | np.ndarray | None] = {}
    skipped: dict[str, int] = {}
    for _ in range(n_kv):
        key = cur.string("a metadata key")
        if not key:
            raise BadGGUF(f"{name}: a metadata key is empty")
        if key in values:
            raise BadGGUF(f"{name}: metadata key '{printable(key)}' appears twice")
        values[key] = _value(cur, key, skipped)
    metadata = Metadata(values)
    seen: set[str] = set()
    infos = [_tensor_info(cur, seen) for _ in range(n_tensors)]
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise BadGGUF(f"{name}: general.alignment must be a power of two, got {alignment!r}")
    data_offset = -(-cur.pos // alignment) * alignment
    tensors = []
    expected = 0
    for tname, shape, ttype, off in infos:
        try:
            nbytes = tensor_bytes(ttype, shape)
        except ValueError as e:
            raise BadGGUF(f"{name}: tensor '{printable(tname)}': {e}") from None
        if off != expected:  # gguf.cpp: each tensor starts where the previous one's padded data ends
            raise BadGGUF(
                f"{name}: tensor '{printable(tname)}' is at offset {off} of the data section, not {expected} "
                f"where the tensor before it ends (padded to {alignment} bytes)"
            )
        if data_offset + off + nbytes > src.size:
            raise BadGGUF(
                f"{name}: tensor '{printable(tname)}' lies beyond the end of the file (truncated download?)"
            )
        tensors.append(GGUFTensor(tname, shape, ttype, off, nbytes))
        expected = off + -(-nbytes // alignment) * alignment
    return GGUFHeader(
        name, version, metadata, skipped, tuple(tensors), alignment, data_offset, src.size, cur.pos
    )


_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<i>[0-9]{5})-of-(?P<n>[0-9]{5})\.gguf$")
SHOW_MISSING = 3  # missing shards named in an error; the rest are counted


def shard_paths(path: Path) -> list[Path]:
    """All shards of a split GGUF (`-00001-of-00003.gguf`, llama.cpp's `llama_split_path`), or just
    `path`."""
    m = _SPLIT.match(path.name)
    if not m:
        return [path]
    i, n = int(m.group("i")), int(m.group("n"))
    if not 1 <= i <= n:
        raise BadGGUF(f"{path}: a split file name must number its shard 1 to N of N (-00001-of-00003)")
    return [path.with_name(f"{m.group('stem')}-{k:05d}-of-{n:05d}.gguf") for k in range(1, n + 1)]


@dataclass(frozen=True)
class GGUFModel:
    """The headers of all shards of one model, seen as one file."""

    shards: tuple[GGUFHeader, ...]

    @property
    def metadata(self) -> Metadata:
        return self.shards[0].metadata

    @property
    def tensors(self) -> tuple[GGUFTensor, ...]:
        return tuple(t for s in self.shards for t in s.tensors)

    @property
    def file_bytes(self) -> int:
        return sum(s.file_size for s in self.shards)

    @property
    def tensor_data_bytes(self) -> int:
        return sum(s.tensor_data_bytes for s in self.shards)

    @property
    def header_bytes_read(self) -> int:
        return sum(s.header_bytes_read for s in self.shards)


def _whole(h: GGUFHeader, key: str) -> int | None:
    """An integer key (a bool is not one, whatever Python says), None when absent."""
    v = h.metadata.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadGGUF(f"{h.source}: {printable(key)} must be an integer, got {v!r}")
    return v


def _check_split(headers: tuple[GGUFHeader, ...]) -> None:
    """The shards are one split, in order: llama_model_loader's checks (split.count, each shard's
    split.no, split.tensors.count, no tensor twice) plus one a planner needs (one architecture)."""
    first = headers[0]
    count = _whole(first, "split.count")
    if (count or 1) != len(headers):
        raise BadGGUF(f"{first.source}: split.count says {count or 1} shards, {len(headers)} given")
    arch = first.metadata.get("general.architecture")
    seen: dict[str, str] = {}
    for i, h in enumerate(headers):
        if len(headers) > 1:
            no, n = _whole(h, "split.no"), _whole(h, "split.count")
            if no != i or n != count:
                raise BadGGUF(
                    f"{h.source}: split.no {no} and split.count {n}, expected {i} and {count} "
                    "(shards of different splits, or a renamed file)"
                )
        other = h.metadata.get("general.architecture")
        if other is not None and other != arch:
            raise BadGGUF(f"{h.source}: architecture {other!r} differs from the first shard's {arch!r}")
        for t in h.tensors:
            if seen.setdefault(t.name, h.source) != h.source:
                raise BadGGUF(f"{h.source}: tensor '{printable(t.name)}' is also in {seen[t.name]}")
    total = _whole(first, "split.tensors.count")
    if len(headers) > 1 and total != len(seen):
        raise BadGGUF(f"{first.source}: split.tensors.count is {total}, the shards hold {len(seen)}")


def read_model(shards: Sequence[tuple[str, ByteSource]], budget: HeaderBudget | None = None) -> GGUFModel:
    """The headers of every shard of one model, within one budget."""
    if not shards:
        raise BadGGUF("no GGUF file given")
    budget = budget or HeaderBudget.from_env()
    meter = _Meter(budget)
    headers = tuple(_read_header(src, name, budget, meter) for name, src in shards)
    _check_split(headers)
    return GGUFModel(headers)


def read_local(path: str | os.PathLike[str]) -> GGUFModel:
    """Read a local GGUF file; a split file brings in every shard beside it."""
    p = Path(path)
    paths = shard_paths(p)
    if len(paths) == 1 and not p.exists():
        raise BadGGUF(f"{p}: no such file")
    missing = [s.name for s in paths if not s.exists()]
    if missing:
        more = f" and {len(missing) - SHOW_MISSING:,} more" if len(missing) > SHOW_MISSING else ""
        raise BadGGUF(
            f"{p}: missing {len(missing):,} of its {len(paths):,} shards "
            f"({', '.join(missing[:SHOW_MISSING])}{more})"
        )
    return read_model([(str(s), LocalFile(s)) for s in paths])
