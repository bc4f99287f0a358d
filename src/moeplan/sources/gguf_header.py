"""A bounded GGUF header reader: metadata and tensor table, never the tensor data.

Written here rather than using gguf-py's `GGUFReader` because that one memory-maps the whole file
and trusts every count in it: a 400 GB model or a hostile header would be read or allocated
blindly, and it cannot read over HTTP ranges. This reader pulls bytes on demand from a
`ByteSource` (a local file here; the Hub source supplies range reads), stops at the end of the
tensor table, and rejects counts and lengths beyond fixed limits with a one-line error.
"""

import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from moeplan.errors import BadGGUF
from moeplan.gguf_constants import GGUFValueType
from moeplan.quant.ggml import GGMLType, TensorType, tensor_bytes
from moeplan.quant.ik_types import IKType

MAGIC = b"GGUF"
MAX_HEADER_BYTES = 256 * 1024 * 1024  # largest header we agree to read (vocab arrays make them MBs)
MAX_TENSORS = 1_000_000
MAX_KV = 100_000
MAX_DIMS = 4
MAX_STRING = 64 * 1024 * 1024
KEEP_ARRAY_ITEMS = 4096  # numeric arrays up to this length are kept (per-layer hparams); longer are skipped

Scalar = int | float | bool | str
Value = Scalar | list[Scalar] | None


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

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, n: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read(n)


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # ggml order, ne0 first
    type: TensorType
    offset: int  # relative to the start of the data section
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    source: str
    version: int
    metadata: dict[str, Value]
    skipped_arrays: dict[str, int]  # key -> length, for long arrays (e.g. the vocabulary) not kept
    tensors: tuple[GGUFTensor, ...]
    alignment: int
    data_offset: int
    file_size: int
    header_bytes_read: int

    @property
    def tensor_data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


class _Cursor:
    """Sequential reads over a ByteSource, fetched in chunks, bounded by MAX_HEADER_BYTES."""

    CHUNK = 1 << 20

    def __init__(self, src: ByteSource, name: str, limit: int) -> None:
        self.src, self.name, self.limit = src, name, min(limit, src.size)
        self.buf = b""
        self.buf_start = 0
        self.pos = 0
        # A remote source asks for a small first read that doubles up to CHUNK (few bytes for small
        # headers, few round trips for large ones); a local file reads CHUNK at a time.
        self.chunk = int(getattr(src, "first_chunk", self.CHUNK))

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > self.limit:
            if end > self.src.size:
                raise BadGGUF(
                    f"{self.name}: truncated GGUF header (needs {end} bytes, file has {self.src.size})"
                )
            raise BadGGUF(f"{self.name}: GGUF header larger than the {self.limit:,}-byte limit")
        if end > self.buf_start + len(self.buf):
            keep = self.buf[self.pos - self.buf_start :]
            more = max(self.chunk, end - self.pos - len(keep))
            self.chunk = min(2 * self.chunk, max(self.chunk, self.CHUNK))
            fetched = self.src.read(self.pos + len(keep), min(more, self.limit - self.pos - len(keep)))
            self.buf, self.buf_start = keep + fetched, self.pos
            if end > self.buf_start + len(self.buf):
                raise BadGGUF(f"{self.name}: truncated GGUF header")
        out = self.buf[self.pos - self.buf_start : end - self.buf_start]
        self.pos = end
        return out

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def string(self) -> str:
        n = self.u64()
        if n > MAX_STRING:
            raise BadGGUF(f"{self.name}: string of {n} bytes in the header exceeds the limit")
        return self.take(n).decode("utf-8", errors="replace")


_SCALAR_FORMATS: dict[GGUFValueType, str] = {
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


def _value_type(cur: _Cursor, key: str) -> GGUFValueType:
    raw = cur.u32()
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise BadGGUF(f"{cur.name}: key '{key}' has unknown value type {raw}") from None


def _scalar(cur: _Cursor, vt: GGUFValueType) -> Scalar:
    if vt == GGUFValueType.STRING:
        return cur.string()
    fmt = _SCALAR_FORMATS[vt]
    v: Scalar = struct.unpack(fmt, cur.take(struct.calcsize(fmt)))[0]
    return v


def _value(cur: _Cursor, key: str, skipped: dict[str, int]) -> Value:
    vt = _value_type(cur, key)
    if vt != GGUFValueType.ARRAY:
        return _scalar(cur, vt)
    item = _value_type(cur, key)
    n = cur.u64()
    if item == GGUFValueType.ARRAY:
        raise BadGGUF(f"{cur.name}: nested arrays under '{key}' are not supported")
    if n > cur.limit:
        raise BadGGUF(f"{cur.name}: array '{key}' claims {n} items, more than the header can hold")
    if item != GGUFValueType.STRING and n <= KEEP_ARRAY_ITEMS:
        return [_scalar(cur, item) for _ in range(n)]
    skipped[key] = n
    if item == GGUFValueType.STRING:
        for _ in range(n):
            cur.take(cur.u64())
    else:
        cur.take(n * struct.calcsize(_SCALAR_FORMATS[item]))
    return None


def _tensor_type(raw: int) -> TensorType | None:
    """Mainline llama.cpp's type, else ik_llama.cpp's (its ids do not overlap mainline's others)."""
    for enum in (GGMLType, IKType):
        try:
            return enum(raw)
        except ValueError:
            pass
    return None


def read_header(src: ByteSource, name: str, limit: int = MAX_HEADER_BYTES) -> GGUFHeader:
    """Parse one GGUF file's header from `src`."""
    cur = _Cursor(src, name, limit)
    if cur.take(4) != MAGIC:
        raise BadGGUF(f"{name}: not a GGUF file (bad magic)")
    version = cur.u32()
    if version not in (2, 3):
        raise BadGGUF(f"{name}: unsupported GGUF version {version} (expected 2 or 3)")
    n_tensors, n_kv = cur.u64(), cur.u64()
    if n_tensors > MAX_TENSORS:
        raise BadGGUF(f"{name}: header claims {n_tensors} tensors (limit {MAX_TENSORS})")
    if n_kv > MAX_KV:
        raise BadGGUF(f"{name}: header claims {n_kv} metadata keys (limit {MAX_KV})")
    metadata: dict[str, Value] = {}
    skipped: dict[str, int] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = _value(cur, key, skipped)
    infos = []
    for _ in range(n_tensors):
        tname = cur.string()
        n_dims = cur.u32()
        if not 1 <= n_dims <= MAX_DIMS:
            raise BadGGUF(f"{name}: tensor '{tname}' has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        shape = tuple(cur.u64() for _ in range(n_dims))
        raw_type = cur.u32()
        ttype = _tensor_type(raw_type)
        if ttype is None:
            raise BadGGUF(f"{name}: tensor '{tname}' has unknown ggml type {raw_type}")
        infos.append((tname, shape, ttype, cur.u64()))
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise BadGGUF(f"{name}: general.alignment must be a power of two, got {alignment!r}")
    data_offset = -(-cur.pos // alignment) * alignment
    tensors = []
    for tname, shape, ttype, off in infos:
        try:
            nbytes = tensor_bytes(ttype, shape)
        except ValueError as e:
            raise BadGGUF(f"{name}: tensor '{tname}': {e}") from None
        if data_offset + off + nbytes > src.size:
            raise BadGGUF(f"{name}: tensor '{tname}' lies beyond the end of the file (truncated download?)")
        tensors.append(GGUFTensor(tname, shape, ttype, off, nbytes))
    return GGUFHeader(
        name, version, metadata, skipped, tuple(tensors), alignment, data_offset, src.size, cur.pos
    )


_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")


def shard_paths(path: Path) -> list[Path]:
    """All shards of a split GGUF (`-00001-of-00003.gguf`), or just `path`."""
    m = _SPLIT.match(path.name)
    if not m:
        return [path]
    n = int(m.group("n"))
    return [path.with_name(f"{m.group('stem')}-{i:05d}-of-{n:05d}.gguf") for i in range(1, n + 1)]


@dataclass(frozen=True)
class GGUFModel:
    """The headers of all shards of one model, seen as one file."""

    shards: tuple[GGUFHeader, ...]

    @property
    def metadata(self) -> dict[str, Value]:
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


def read_model(shards: Sequence[tuple[str, ByteSource]]) -> GGUFModel:
    headers = tuple(read_header(src, name) for name, src in shards)
    expected = headers[0].metadata.get("split.count")
    if isinstance(expected, int) and expected != len(headers):
        raise BadGGUF(f"{headers[0].source}: split.count says {expected} shards, {len(headers)} given")
    return GGUFModel(headers)


def read_local(path: str | os.PathLike[str]) -> GGUFModel:
    """Read a local GGUF file; a split file brings in every shard beside it."""
    p = Path(path)
    paths = shard_paths(p)
    if len(paths) == 1 and not p.exists():
        raise BadGGUF(f"{p}: no such file")
    missing = [s.name for s in paths if not s.exists()]
    if missing:
        raise BadGGUF(f"{p}: missing shard(s) {', '.join(missing)} of a split GGUF")
    return read_model([(str(s), LocalFile(s)) for s in paths])
