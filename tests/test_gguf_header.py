"""The bounded GGUF header reader: real files written by gguf-py's GGUFWriter, and hostile headers
built byte by byte, all in tmp_path (no network)."""

import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType as V

from moeplan.errors import BadGGUF, MoeplanError
from moeplan.sources.gguf_header import (
    KEEP_ARRAY_ITEMS,
    MAX_HEADER_BYTES,
    MAX_ITEMS,
    MAX_STRING,
    TENSOR_ITEMS,
    ByteSource,
    GGUFHeader,
    HeaderBudget,
    LocalFile,
    read_header,
    read_local,
)

TIB = 2**40
FAST_S = 1.0  # every hostile input must be rejected within this
SMALL_PEAK = 16 * 2**20  # ... and without allocating more than this


# ---------------------------------------------------------------- byte sources


class MemorySource:
    """Bytes in memory; `size` may claim more than there is (a huge remote file, say)."""

    def __init__(self, data: bytes, size: int | None = None) -> None:
        self.data = data
        self._size = len(data) if size is None else size

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, n: int) -> bytes:
        return self.data[offset : offset + n]


class CountingSource:
    """Wraps a ByteSource and records every read() request."""

    def __init__(self, inner: ByteSource) -> None:
        self.inner = inner
        self.requests: list[tuple[int, int]] = []

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def bytes_requested(self) -> int:
        return sum(n for _, n in self.requests)

    def read(self, offset: int, n: int) -> bytes:
        self.requests.append((offset, n))
        return self.inner.read(offset, n)


class HeaderOnlySource:
    """Reports the full file size but serves nothing at or past `cut`: the tensor data is gone."""

    def __init__(self, inner: ByteSource, cut: int) -> None:
        self.inner, self.cut = inner, cut

    @property
    def size(self) -> int:
        return self.inner.size

    def read(self, offset: int, n: int) -> bytes:
        return self.inner.read(offset, max(0, min(n, self.cut - offset)))


# ---------------------------------------------------------------- real GGUF files


def pad(n: int, align: int) -> int:
    return -(-n // align) * align


def write_gguf(path: Path, build: Callable[[gguf.GGUFWriter], None], **writer_kw: int) -> None:
    """Write a GGUF (or, with split_max_tensors, its shards) with gguf-py's own writer."""
    w = gguf.GGUFWriter(path, "llama", **writer_kw)
    build(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def quant_rows(t: T, ne0: int, rows: int, fill: int = 0) -> np.ndarray:
    """Raw bytes of a quantized tensor of ggml shape (ne0, rows), as GGUFWriter.add_tensor takes them."""
    blk, size = gguf.GGML_QUANT_SIZES[t]
    return np.full((rows, ne0 // blk * size), fill, dtype=np.uint8)


def add_quant(w: gguf.GGUFWriter, name: str, t: T, ne0: int, rows: int, fill: int = 0) -> None:
    w.add_tensor(name, quant_rows(t, ne0, rows, fill), raw_dtype=t)


# (name, ggml type, ggml shape ne0 first, nbytes, offset in the data section with 32-byte alignment)
TENSORS = [
    ("token_embd.weight", T.F32, (8, 4), 128, 0),
    ("blk.0.attn_q.weight", T.F16, (16, 3), 96, 128),
    ("blk.0.ffn_down.weight", T.Q8_0, (64, 2), 136, 224),  # 2 rows x 2 blocks x 34 bytes, padded to 160
    ("blk.0.ffn_up.weight", T.Q4_K, (256, 3), 432, 384),  # 3 rows x 144 bytes, padded to 448
    ("blk.0.ffn_gate_exps.weight", T.F16, (32, 3, 2), 384, 832),
    ("output_norm.weight", T.F32, (5,), 20, 1216),  # last; padded to 32
]
N_VOCAB = 5000


def build_model(w: gguf.GGUFWriter) -> None:
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_int64("test.negative", -7)
    w.add_float64("test.f64", 0.25)
    w.add_bool("test.flag", True)
    w.add_string("general.name", "tiny")
    w.add_array("llama.feed_forward_length", [64, 128, 256])
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(N_VOCAB)])
    w.add_array("tokenizer.ggml.scores", [0.5] * (KEEP_ARRAY_ITEMS + 1))
    w.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.add_tensor("blk.0.attn_q.weight", np.full((3, 16), 2.0, dtype=np.float16))
    add_quant(w, "blk.0.ffn_down.weight", T.Q8_0, 64, 2, fill=0x11)
    add_quant(w, "blk.0.ffn_up.weight", T.Q4_K, 256, 3, fill=0x22)
    w.add_tensor("blk.0.ffn_gate_exps.weight", np.full((2, 3, 32), 3.0, dtype=np.float16))
    w.add_tensor("output_norm.weight", np.array([1, 2, 3, 4, 5], dtype=np.float32))


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.gguf"
    write_gguf(p, build_model)
    return p


def read_path(p: Path, limit: int = MAX_HEADER_BYTES) -> GGUFHeader:
    return read_header(LocalFile(p), p.name, HeaderBudget(header_bytes=limit))


# ---------------------------------------------------------------- happy path


def test_metadata_scalars_and_arrays(model_path: Path) -> None:
    h = read_path(model_path)
    md = h.metadata
    assert h.version == 3
    assert md["general.architecture"] == "llama"
    assert md["general.name"] == "tiny"
    assert md["llama.block_count"] == 2
    assert md["llama.rope.freq_base"] == 10000.0
    assert md["test.negative"] == -7
    assert md["test.f64"] == 0.25
    assert md["test.flag"] is True
    assert md["llama.feed_forward_length"] == [64, 128, 256]  # short numeric array: kept
    # long arrays are skipped: present with no value, their length recorded
    assert md["tokenizer.ggml.tokens"] is None
    assert md["tokenizer.ggml.scores"] is None
    assert h.skipped_arrays == {
        "tokenizer.ggml.tokens": N_VOCAB,
        "tokenizer.ggml.scores": KEEP_ARRAY_ITEMS + 1,
    }


def test_tensor_table(model_path: Path) -> None:
    h = read_path(model_path)
    got = [(t.name, t.type, t.shape, t.nbytes, t.offset) for t in h.tensors]
    assert got == TENSORS
    assert h.alignment == 32
    assert h.data_offset % 32 == 0
    assert h.header_bytes_read <= h.data_offset < h.header_bytes_read + 32
    assert h.file_size == model_path.stat().st_size


def test_offsets_point_at_the_tensor_data(model_path: Path) -> None:
    h = read_path(model_path)
    raw = model_path.read_bytes()
    by_name = {t.name: t for t in h.tensors}

    def data(name: str) -> bytes:
        t = by_name[name]
        return raw[h.data_offset + t.offset : h.data_offset + t.offset + t.nbytes]

    assert data("token_embd.weight") == np.arange(32, dtype=np.float32).tobytes()
    assert data("blk.0.ffn_down.weight") == b"\x11" * 136
    assert data("blk.0.ffn_up.weight") == b"\x22" * 432
    assert data("output_norm.weight") == np.array([1, 2, 3, 4, 5], dtype=np.float32).tobytes()


def test_tensor_data_bytes_matches_the_data_section(model_path: Path) -> None:
    h = read_path(model_path)
    section = h.file_size - h.data_offset
    # GGUFWriter pads every tensor, the last included, to the alignment
    last = h.tensors[-1]
    assert section == last.offset + pad(last.nbytes, h.alignment) == 1248
    padding = sum(pad(t.nbytes, h.alignment) - t.nbytes for t in h.tensors)
    assert h.tensor_data_bytes == section - padding == sum(t[3] for t in TENSORS) == 1196


def test_tensor_data_bytes_with_only_the_last_tensor_padded(tmp_path: Path) -> None:
    p = tmp_path / "aligned.gguf"

    def build(w: gguf.GGUFWriter) -> None:
        w.add_tensor("a", np.zeros((4, 16), dtype=np.float32))  # 256 bytes
        add_quant(w, "b", T.Q8_0, 512, 2)  # 2 x 16 x 34 = 1088 = 34 x 32 bytes
        w.add_tensor("c", np.zeros(3, dtype=np.float16))  # 6 bytes, padded to 32

    write_gguf(p, build)
    h = read_path(p)
    assert [t.nbytes for t in h.tensors] == [256, 1088, 6]
    assert h.tensor_data_bytes == (h.file_size - h.data_offset) - (32 - 6)


def test_custom_alignment_is_honoured(tmp_path: Path) -> None:
    p = tmp_path / "align64.gguf"

    def build(w: gguf.GGUFWriter) -> None:
        w.add_custom_alignment(64)
        w.add_tensor("a", np.zeros(3, dtype=np.float32))
        w.add_tensor("b", np.ones(5, dtype=np.float32))

    write_gguf(p, build)
    h = read_path(p)
    assert h.alignment == 64
    assert h.metadata["general.alignment"] == 64
    assert h.data_offset % 64 == 0
    assert [(t.offset, t.nbytes) for t in h.tensors] == [(0, 12), (64, 20)]
    assert h.file_size - h.data_offset == 128
    raw = p.read_bytes()
    off = h.data_offset + 64
    assert raw[off : off + 20] == np.ones(5, dtype=np.float32).tobytes()


def test_version_2_is_accepted(model_path: Path) -> None:
    raw = bytearray(model_path.read_bytes())
    raw[4:8] = struct.pack("<I", 2)
    h = read_header(MemorySource(bytes(raw)), "v2.gguf")
    assert h.version == 2
    assert len(h.tensors) == len(TENSORS)


def test_read_local_single_file(model_path: Path) -> None:
    m = read_local(model_path)
    assert len(m.shards) == 1
    assert m.metadata["general.name"] == "tiny"
    assert [t.name for t in m.tensors] == [t[0] for t in TENSORS]
    assert m.file_bytes == model_path.stat().st_size
    assert m.tensor_data_bytes == 1196
    assert m.header_bytes_read == m.shards[0].header_bytes_read


# ---------------------------------------------------------------- bounded reading


@pytest.fixture
def big_path(tmp_path: Path) -> Path:
    p = tmp_path / "big.gguf"

    def build(w: gguf.GGUFWriter) -> None:
        w.add_uint32("llama.block_count", 1)
        w.add_tensor("small", np.zeros(8, dtype=np.float32))
        w.add_tensor("big", np.zeros((5, 1_000_000), dtype=np.float32))  # 20 MB

    write_gguf(p, build)
    return p


def test_reads_only_the_header_of_a_large_file(big_path: Path) -> None:
    src = CountingSource(LocalFile(big_path))
    h = read_header(src, big_path.name)
    assert h.file_size > 20_000_000
    assert h.tensors[1].nbytes == 20_000_000
    assert h.header_bytes_read < 1_000
    # one read-ahead chunk at most: a few percent of the file, never the tensor data
    assert src.bytes_requested <= 2**20
    assert src.bytes_requested < h.file_size // 10
    assert all(offset < h.data_offset for offset, _ in src.requests)


def test_needs_none_of_the_tensor_data(big_path: Path) -> None:
    full = read_path(big_path)
    cut = HeaderOnlySource(LocalFile(big_path), full.data_offset)
    h = read_header(cut, big_path.name)
    assert h == full


def test_result_does_not_depend_on_tensor_data(model_path: Path) -> None:
    full = read_path(model_path)
    raw = model_path.read_bytes()
    garbage = raw[: full.data_offset] + b"\xff" * (len(raw) - full.data_offset)
    assert read_header(MemorySource(garbage), model_path.name) == full


# ---------------------------------------------------------------- split files


SPLIT_NAMES = [f"m-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]


@pytest.fixture
def split_dir(tmp_path: Path) -> Path:
    def build(w: gguf.GGUFWriter) -> None:
        w.add_uint32("llama.block_count", 3)
        for i in range(6):
            w.add_tensor(f"t{i}", np.full(8 * (i + 1), i, dtype=np.float32))

    write_gguf(tmp_path / "m.gguf", build, split_max_tensors=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == SPLIT_NAMES
    return tmp_path


@pytest.mark.parametrize("which", SPLIT_NAMES)
def test_split_model_reads_every_shard(split_dir: Path, which: str) -> None:
    m = read_local(split_dir / which)
    assert [s.source for s in m.shards] == [str(split_dir / n) for n in SPLIT_NAMES]
    assert m.metadata["split.count"] == 3
    assert m.metadata["llama.block_count"] == 3
    assert [s.metadata["split.no"] for s in m.shards] == [0, 1, 2]
    assert [t.name for t in m.tensors] == [f"t{i}" for i in range(6)]
    assert [t.shape for t in m.tensors] == [(8 * (i + 1),) for i in range(6)]
    assert m.tensor_data_bytes == sum(32 * (i + 1) for i in range(6))
    assert m.file_bytes == sum((split_dir / n).stat().st_size for n in SPLIT_NAMES)
    assert m.header_bytes_read == sum(s.header_bytes_read for s in m.shards)


def test_split_model_with_a_missing_shard(split_dir: Path) -> None:
    (split_dir / SPLIT_NAMES[1]).unlink()
    with pytest.raises(BadGGUF) as e:
        read_local(split_dir / SPLIT_NAMES[0])
    msg = one_line(e.value)
    assert SPLIT_NAMES[1] in msg
    assert "missing 1 of its 3 shards" in msg


def test_split_count_disagreeing_with_the_shards(tmp_path: Path) -> None:
    names = [f"x-{i:05d}-of-00002.gguf" for i in (1, 2)]
    for no, name in enumerate(names):

        def build(w: gguf.GGUFWriter, no: int = no) -> None:
            w.add_uint16("split.no", no)
            w.add_uint16("split.count", 3)
            w.add_tensor(f"t{no}", np.zeros(8, dtype=np.float32))

        write_gguf(tmp_path / name, build)
    with pytest.raises(BadGGUF, match=r"split\.count says 3 shards, 2 given") as e:
        read_local(tmp_path / names[0])
    one_line(e.value)


# ---------------------------------------------------------------- hostile headers


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg.strip() and "\n" not in msg, repr(msg)
    return msg


@contextmanager
def fast_and_small() -> Iterator[None]:
    """The body must finish within FAST_S seconds, allocating no more than SMALL_PEAK bytes."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        yield
    finally:
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < FAST_S, f"took {elapsed:.2f}s"
    assert peak < SMALL_PEAK, f"allocated {peak} bytes"


def expect_bad(src: ByteSource, match: str, limit: int = MAX_HEADER_BYTES) -> str:
    with fast_and_small(), pytest.raises(BadGGUF, match=match) as e:
        read_header(src, "evil.gguf", HeaderBudget(header_bytes=limit))
    msg = one_line(e.value)
    assert msg.startswith("evil.gguf: ")
    return msg


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def gstr(s: str | bytes, length: int | None = None) -> bytes:
    """A GGUF string; `length` overrides the declared length."""
    b = s.encode() if isinstance(s, str) else s
    return u64(len(b) if length is None else length) + b


def preamble(n_tensors: int = 0, n_kv: int = 0, version: int = 3, magic: bytes = b"GGUF") -> bytes:
    return magic + u32(version) + u64(n_tensors) + u64(n_kv)


def kv_u32(key: str, value: int) -> bytes:
    return gstr(key) + u32(V.UINT32) + u32(value)


def kv_array(key: str, item_type: int, n: int, items: bytes = b"") -> bytes:
    return gstr(key) + u32(V.ARRAY) + u32(item_type) + u64(n) + items


def tensor_info(name: str, shape: tuple[int, ...], ggml_type: int, offset: int = 0) -> bytes:
    return gstr(name) + u32(len(shape)) + b"".join(u64(d) for d in shape) + u32(ggml_type) + u64(offset)


def gguf_bytes(kvs: Sequence[bytes] = (), tensors: Sequence[bytes] = (), data: int = 0) -> bytes:
    """A complete GGUF: preamble, the given KV pairs and tensor infos, padding, `data` bytes of data."""
    head = preamble(len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (pad(len(head), 32) - len(head) + data)


def on_disk(tmp_path: Path, raw: bytes) -> LocalFile:
    p = tmp_path / "evil.gguf"
    p.write_bytes(raw)
    return LocalFile(p)


def test_hostile_builder_makes_valid_files(tmp_path: Path) -> None:
    """The helpers below are sound: a well-formed hand-built header parses."""
    raw = gguf_bytes(
        [kv_u32("general.alignment", 32), kv_array("a", V.UINT8, 3, b"\1\2\3")],
        [tensor_info("w", (32, 2), T.Q8_0), tensor_info("v", (4,), T.F32, 96)],
        data=128,
    )
    h = read_header(on_disk(tmp_path, raw), "ok.gguf")
    assert h.metadata == {"general.alignment": 32, "a": [1, 2, 3]}
    assert [(t.name, t.shape, t.type, t.offset, t.nbytes) for t in h.tensors] == [
        ("w", (32, 2), T.Q8_0, 0, 68),
        ("v", (4,), T.F32, 96, 16),
    ]
    assert h.data_offset + 128 == h.file_size


HOSTILE: list[tuple[str, bytes, str]] = [
    ("bad-magic", preamble(magic=b"GGML") + b"\0" * 64, "not a GGUF file"),
    ("empty-magic", b"\0" * 64, "bad magic"),
    ("version-1", preamble(version=1) + b"\0" * 64, "unsupported GGUF version 1 "),
    ("version-99", preamble(version=99) + b"\0" * 64, "unsupported GGUF version 99 "),
    (
        "too-many-tensors",
        preamble(n_tensors=MAX_ITEMS // TENSOR_ITEMS + 1),
        f"a table of {MAX_ITEMS // TENSOR_ITEMS + 1:,} tensors takes the header past .*MOEPLAN_GGUF_ITEMS",
    ),
    ("too-many-tensors-2^63", preamble(n_tensors=2**63), "tensors takes the header past its budget of"),
    (
        "too-many-kv",
        preamble(n_kv=MAX_ITEMS + 1),
        f"{MAX_ITEMS + 1:,} metadata keys takes .*MOEPLAN_GGUF_ITEMS",
    ),
    ("too-many-kv-2^64-1", preamble(n_kv=2**64 - 1), "metadata keys takes the header past"),
    ("huge-key", preamble(n_kv=1) + gstr("k", length=2**62), "string of 4611686018427387904 bytes"),
    (
        "huge-string-value",
        preamble(n_kv=1) + gstr("k") + u32(V.STRING) + gstr("v", length=MAX_STRING + 1),
        f"string of {MAX_STRING + 1} bytes in the header exceeds the limit",
    ),
    (
        "huge-tensor-name",
        preamble(n_tensors=1) + gstr("t", length=2**64 - 1),
        "a tensor name of 18446744073709551615 bytes is too long \\(llama.cpp allows 63\\)",
    ),
    ("array-2^60", preamble(n_kv=1) + kv_array("a", V.UINT8, 2**60), "array 'a' claims 1152921504606846976"),
    ("string-array-2^60", preamble(n_kv=1) + kv_array("a", V.STRING, 2**60), "array 'a' claims"),
    ("nested-array", preamble(n_kv=1) + kv_array("a", V.ARRAY, 2), "nested arrays under 'a'"),
    (
        "unknown-value-type",
        preamble(n_kv=1) + gstr("k") + u32(13) + b"\0" * 16,
        "'k' has unknown value type 13",
    ),
    (
        "unknown-value-type-big",
        preamble(n_kv=1) + gstr("k") + u32(2**32 - 1),
        "unknown value type 4294967295",
    ),
    (
        "unknown-item-type",
        preamble(n_kv=1) + kv_array("a", 99, 1, b"\0" * 8),
        "'a' has unknown value type 99",
    ),
    ("zero-dims", gguf_bytes(tensors=[gstr("t") + u32(0) + b"\0" * 64]), "tensor 't' has 0 dimensions"),
    ("five-dims", gguf_bytes(tensors=[tensor_info("t", (1, 1, 1, 1, 1), T.F32)]), "'t' has 5 dimensions"),
    ("2^32-1-dims", gguf_bytes(tensors=[gstr("t") + u32(2**32 - 1)]), "has 4294967295 dimensions"),
    ("removed-ggml-type-4", gguf_bytes(tensors=[tensor_info("t", (32,), 4)]), "'t' has unknown ggml type 4"),
    ("unknown-ggml-type", gguf_bytes(tensors=[tensor_info("t", (32,), 1000)]), "unknown ggml type 1000"),
    (
        "data-past-eof",
        gguf_bytes(tensors=[tensor_info("t", (1024,), T.F32)], data=4095),
        "tensor 't' lies beyond the end of the file",
    ),
    (
        "offset-past-eof",
        gguf_bytes(tensors=[tensor_info("t", (8,), T.F32, offset=2**63)], data=64),
        "tensor 't' is at offset 9223372036854775808 of the data section, not 0",
    ),
    (
        "huge-shape",
        gguf_bytes(tensors=[tensor_info("t", (2**63, 2**63, 2**63, 2**63), T.F32)], data=64),
        "'t' has shape .* more elements than int64 can count",
    ),
    (
        "row-not-multiple-of-block",
        gguf_bytes(tensors=[tensor_info("t", (33, 2), T.Q8_0)], data=1024),
        "tensor 't': row of 33 elements is not a multiple of the Q8_0 block \\(32\\)",
    ),
    (
        "row-not-multiple-of-k-block",
        gguf_bytes(tensors=[tensor_info("t", (128,), T.Q4_K)], data=1024),
        "not a multiple of the Q4_K block \\(256\\)",
    ),
    ("alignment-48", gguf_bytes([kv_u32("general.alignment", 48)]), "power of two, got 48"),
    ("alignment-0", gguf_bytes([kv_u32("general.alignment", 0)]), "power of two, got 0"),
    (
        "alignment-float",
        gguf_bytes([gstr("general.alignment") + u32(V.FLOAT32) + struct.pack("<f", 32.0)]),
        "general.alignment must be of type UINT32, not FLOAT32",
    ),
    (
        "alignment-string",
        gguf_bytes([gstr("general.alignment") + u32(V.STRING) + gstr("32")]),
        "general.alignment must be of type UINT32, not STRING",
    ),
    # lengths that pass their own check but overrun the file
    ("string-past-eof", preamble(n_kv=1) + gstr("k", length=1000), "truncated"),
    ("array-items-past-eof", preamble(n_kv=1) + kv_array("a", V.UINT8, 10**8), "'a' claims 100000000"),
    (
        "string-array-item-2^62",
        preamble(n_kv=1) + kv_array("a", V.STRING, 3, gstr("x", length=2**62)),
        "truncated",
    ),
    ("kv-count-past-eof", preamble(n_kv=100_000), "truncated"),
    ("tensor-count-past-eof", preamble(n_tensors=MAX_ITEMS // TENSOR_ITEMS), "truncated"),
    ("short-preamble", b"GGUF" + u32(3) + u64(0), "truncated"),
    ("empty-file", b"", "truncated"),
    # the consistency checks of gguf.cpp's gguf_init_from_file_impl (issue 17)
    (
        "duplicate-tensor-name",
        gguf_bytes(tensors=[tensor_info("a", (8,), T.F32), tensor_info("a", (8,), T.F32, 32)], data=64),
        "tensor 'a' appears twice in the tensor table",
    ),
    (
        "overlapping-offsets",
        gguf_bytes(tensors=[tensor_info("a", (16,), T.F32), tensor_info("b", (8,), T.F32, 32)], data=96),
        "tensor 'b' is at offset 32 of the data section, not 64 where the tensor before it ends",
    ),
    (
        "unaligned-offset",
        gguf_bytes(tensors=[tensor_info("a", (8,), T.F32), tensor_info("b", (8,), T.F32, 40)], data=96),
        "tensor 'b' is at offset 40 .*, not 32 .*padded to 32 bytes",
    ),
    (
        "gap-between-tensors",
        gguf_bytes(tensors=[tensor_info("a", (8,), T.F32), tensor_info("b", (8,), T.F32, 64)], data=96),
        "tensor 'b' is at offset 64 .*, not 32",
    ),
    (
        "first-tensor-not-at-0",
        gguf_bytes(tensors=[tensor_info("a", (8,), T.F32, 32)], data=64),
        "tensor 'a' is at offset 32 .*, not 0",
    ),
    (
        "alignment-bool",
        gguf_bytes([gstr("general.alignment") + u32(V.BOOL) + b"\x01"]),
        "general.alignment must be of type UINT32, not BOOL",
    ),
    (
        "alignment-uint64",
        gguf_bytes([gstr("general.alignment") + u32(V.UINT64) + u64(32)]),
        "general.alignment must be of type UINT32, not UINT64",
    ),
    ("duplicate-key", gguf_bytes([kv_u32("k", 1), kv_u32("k", 2)]), "metadata key 'k' appears twice"),
    ("empty-key", gguf_bytes([kv_u32("", 1)]), "a metadata key is empty"),
    # found by the fuzz test: names from the file are shown escaped, the error stays one line
    (
        "key-with-a-newline",
        preamble(n_kv=1) + gstr("llama.block_count\n\x00general") + u32(25970),
        "key 'llama.block_count\\\\n\\\\x00general' has unknown value type 25970",
    ),
    (
        "tensor-name-with-an-escape",
        gguf_bytes(tensors=[tensor_info("w\x1b[2J", (8,), T.F32)] * 2, data=64),
        "tensor 'w\\\\x1b\\[2J' appears twice",
    ),
    (
        "long-key-cut",
        preamble(n_kv=1) + gstr("k" * 500) + u32(99),
        "key 'k{80}…' has unknown value type 99",
    ),
    (
        "tensor-name-of-64-bytes",
        gguf_bytes(tensors=[tensor_info("t" * 64, (8,), T.F32)], data=32),
        "a tensor name of 64 bytes is too long \\(llama.cpp allows 63\\)",
    ),
    (
        "dimension-2^63",
        gguf_bytes(tensors=[tensor_info("t", (2**63,), T.F32)], data=32),
        "'t' has shape \\(9223372036854775808,\\), more elements than int64 can count",
    ),
    (
        "elements-past-int64",
        gguf_bytes(tensors=[tensor_info("t", (2**32, 2**31), T.F32)], data=32),
        "more elements than int64 can count",
    ),
]


@pytest.mark.parametrize(("raw", "match"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_header_on_disk(tmp_path: Path, raw: bytes, match: str) -> None:
    expect_bad(on_disk(tmp_path, raw), match)


# The same headers in a source that claims to be 1 TiB (a huge remote file): the limits, not the
# file size, must stop them, still quickly and without big allocations. Cases that rely on the
# real end of the file are left out.
_EOF_CASES = {"data-past-eof", "offset-past-eof", "huge-shape", "array-items-past-eof"}
BOMBS = [h for h in HOSTILE if h[0] not in _EOF_CASES and h[2] != "truncated"]


@pytest.mark.parametrize(("raw", "match"), [h[1:] for h in BOMBS], ids=[h[0] for h in BOMBS])
def test_hostile_header_claiming_a_huge_file(raw: bytes, match: str) -> None:
    expect_bad(MemorySource(raw, size=TIB), match)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (preamble(n_kv=1) + gstr("k", length=MAX_STRING), "needs more than the 64 MiB a header may hold"),
        (preamble(n_kv=1) + kv_array("a", V.UINT64, MAX_HEADER_BYTES), "larger than"),
        (preamble(n_kv=1) + kv_array("a", V.STRING, MAX_HEADER_BYTES + 1), "claims"),
        (preamble(n_kv=1) + kv_array("a", V.STRING, 10**6, gstr("x", length=2**62)), "truncated"),
        (preamble(n_tensors=MAX_ITEMS // TENSOR_ITEMS // 2, n_kv=100_000), "truncated"),
    ],
    ids=[
        "string-of-max-string-bytes",
        "array-past-limit",
        "string-array-past-limit",
        "string-item-2^62",
        "max-counts",
    ],
)
def test_huge_file_bounded_by_the_header_limit(raw: bytes, match: str) -> None:
    """A remote file of 1 TiB whose header declares big but allowed lengths: the reader asks for at
    most the header limit and fails on what is not there."""
    src = CountingSource(MemorySource(raw, size=TIB))
    expect_bad(src, match)
    assert all(offset + n <= MAX_HEADER_BYTES for offset, n in src.requests)


@pytest.mark.parametrize("cut", ["kv", "tensor-table"])
def test_truncated_real_file(model_path: Path, tmp_path: Path, cut: str) -> None:
    raw = model_path.read_bytes()
    h = read_path(model_path)
    if cut == "kv":
        at = raw.index(b"tokenizer.ggml.tokens") + 30  # inside the vocabulary
        assert at < raw.index(b"token_embd.weight")
    else:
        at = raw.index(b"blk.0.ffn_up.weight") + 5  # inside the tensor table
        assert at < h.header_bytes_read
    msg = expect_bad(on_disk(tmp_path, raw[:at]), "truncated GGUF header")
    assert f"file has {at}" in msg


def test_file_cut_inside_the_tensor_data(model_path: Path, tmp_path: Path) -> None:
    """A truncated download whose header is whole: caught by the tensor bounds check."""
    raw = model_path.read_bytes()
    h = read_path(model_path)
    last = h.tensors[-1]
    expect_bad(on_disk(tmp_path, raw[: h.data_offset + last.offset + 4]), "'output_norm.weight' lies beyond")


def test_header_larger_than_the_limit(model_path: Path) -> None:
    h = read_path(model_path)
    assert h.header_bytes_read > 40_000  # the vocabulary
    src = CountingSource(LocalFile(model_path))
    expect_bad(src, "GGUF header larger than the .* limit", limit=20_000)
    assert all(offset + n <= 20_000 for offset, n in src.requests)
    # below the vocabulary's item count, the array itself is rejected up front
    expect_bad(LocalFile(model_path), f"'tokenizer.ggml.tokens' claims {N_VOCAB} items", limit=4096)
    # a limit that the header fits in is fine
    assert read_path(model_path, limit=h.header_bytes_read) == read_path(model_path)


def test_duplicate_names_at_one_offset_are_not_counted_twice(tmp_path: Path) -> None:
    """Issue 17: ten entries of one 4,096-byte tensor, all at offset 0, were read as 40,960 tensor
    bytes in a file of 8,576 bytes; gguf.cpp refuses the repeated name."""
    raw = gguf_bytes(tensors=[tensor_info("w", (1024,), T.F32)] * 10, data=4096)
    expect_bad(on_disk(tmp_path, raw), "tensor 'w' appears twice")


def test_alignment_true_is_not_read_as_1(tmp_path: Path) -> None:
    """Issue 17: a BOOL `general.alignment = true` passed as the integer 1 (a bool is an int in
    Python); gguf.cpp requires the key's type to be UINT32."""
    raw = gguf_bytes([gstr("general.alignment") + u32(V.BOOL) + b"\x01"], [tensor_info("a", (8,), T.F32)], 32)
    expect_bad(on_disk(tmp_path, raw), "general.alignment must be of type UINT32, not BOOL")


def test_skipped_numeric_array_is_not_read(tmp_path: Path) -> None:
    """A long numeric array nothing keeps is stepped over: its bytes are never requested."""
    n = 8 * 2**20  # 64 MB of UINT64
    raw = preamble(n_kv=2) + kv_array("a", V.UINT64, n) + b"\0" * (8 * n) + kv_u32("general.alignment", 32)
    src = CountingSource(MemorySource(raw))
    h = read_header(src, "big-array.gguf")
    assert h.skipped_arrays == {"a": n} and h.metadata["general.alignment"] == 32
    assert src.bytes_requested < 3 * 2**20


def test_kept_arrays_are_compact(tmp_path: Path) -> None:
    """Issue 17: 4,096-item INT8 arrays were kept as Python lists (43 times their bytes); they are
    held as numpy arrays now, a list made only for a key that is read."""
    from tests.gguf_shapes import int8_arrays

    p = tmp_path / "int8.gguf"
    int8_arrays(p, 4 * 2**20)
    size = p.stat().st_size
    tracemalloc.start()
    h = read_path(p)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(h.metadata) > 900
    assert held < 1.2 * size, f"{held:,} bytes held for a {size:,}-byte header"
    assert peak < held + 3 * 2**20  # and the reader's 1 MiB chunks
    first = h.metadata["k.000000"]
    assert isinstance(first, list) and len(first) == 4096 and first[:3] == [0, 37, 74] and first[7] == 3


def test_budget_is_set_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.gguf_shapes import empty_strings

    p = tmp_path / "vocab.gguf"
    empty_strings(p, 300_000)
    assert read_path(p).skipped_arrays == {"tokenizer.ggml.tokens": 300_000}
    monkeypatch.setenv("MOEPLAN_GGUF_ITEMS", "100000")
    with pytest.raises(BadGGUF, match=r"past its budget of 100,000 items .*set MOEPLAN_GGUF_ITEMS higher"):
        read_header(LocalFile(p), p.name)
    for bad in ("", "0", "-5", "1e6", "\u0663"):  # U+0663: an Arabic-Indic digit, which int() accepts
        monkeypatch.setenv("MOEPLAN_GGUF_MEMORY_MB", bad)
        with pytest.raises(MoeplanError, match="MOEPLAN_GGUF_MEMORY_MB must be a positive whole number"):
            read_header(LocalFile(p), p.name)


def test_nonexistent_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(BadGGUF, match=r"nope\.gguf") as e:
        read_local(missing)
    one_line(e.value)
    with pytest.raises(BadGGUF, match=r"cannot read .*nope\.gguf") as e:
        LocalFile(missing)
    one_line(e.value)


# ---------------------------------------------------------------- split consistency (issue 17)


def kv_u16(key: str, value: int) -> bytes:
    return gstr(key) + u32(V.UINT16) + struct.pack("<H", value)


def shard(no: int, count: int, tensors: Sequence[str], total: int, arch: str | None = "llama") -> bytes:
    """One shard as llama-gguf-split writes it: split.no, split.count, split.tensors.count."""
    kvs = [kv_u16("split.no", no), kv_u16("split.count", count)]
    kvs.append(gstr("split.tensors.count") + u32(V.INT32) + struct.pack("<i", total))
    if arch is not None:
        kvs.append(gstr("general.architecture") + u32(V.STRING) + gstr(arch))
    infos = [tensor_info(name, (8,), T.F32, 32 * i) for i, name in enumerate(tensors)]
    return gguf_bytes(kvs, infos, data=32 * len(tensors))


def write_split(folder: Path, shards: Sequence[bytes]) -> Path:
    for i, raw in enumerate(shards):
        (folder / f"s-{i + 1:05d}-of-{len(shards):05d}.gguf").write_bytes(raw)
    return folder / f"s-00001-of-{len(shards):05d}.gguf"


def test_hand_built_split_reads(tmp_path: Path) -> None:
    m = read_local(write_split(tmp_path, [shard(0, 2, ["a"], 2), shard(1, 2, ["b"], 2, arch=None)]))
    assert [t.name for t in m.tensors] == ["a", "b"]


@pytest.mark.parametrize(
    ("second", "match"),
    [
        (shard(1, 3, ["b"], 3), r"s-00002-of-00002\.gguf: split\.no 1 and split\.count 3, expected 1 and 2"),
        (shard(0, 2, ["b"], 2), r"split\.no 0 and split\.count 2, expected 1 and 2 \(shards of different"),
        (shard(1, 2, ["b"], 2, arch="qwen2"), "architecture 'qwen2' differs from the first shard's 'llama'"),
        (shard(1, 2, ["a"], 2), r"s-00002-of-00002\.gguf: tensor 'a' is also in .*s-00001-of-00002\.gguf"),
        (shard(1, 2, ["b", "c"], 3), r"split\.tensors\.count is 2, the shards hold 3"),
    ],
    ids=["other-split", "renamed-first-shard", "other-architecture", "tensor-twice", "tensor-count"],
)
def test_shards_of_one_split_only(tmp_path: Path, second: bytes, match: str) -> None:
    """Issue 17: only the first shard's split.count was checked; llama_model_loader checks every
    shard's split.no, the tensor count and repeated tensors, and a planner needs one architecture."""
    first = write_split(tmp_path, [shard(0, 2, ["a"], 2), second])
    with pytest.raises(BadGGUF, match=match) as e:
        read_local(first)
    one_line(e.value)


def test_split_count_must_be_an_integer(tmp_path: Path) -> None:
    p = tmp_path / "flag.gguf"
    p.write_bytes(gguf_bytes([gstr("split.count") + u32(V.BOOL) + b"\x01"]))
    with pytest.raises(BadGGUF, match=r"split\.count must be an integer, got True") as e:
        read_local(p)
    one_line(e.value)


@pytest.mark.parametrize("name", ["m-00001-of-00000.gguf", "m-00000-of-00002.gguf", "m-00004-of-00003.gguf"])
def test_split_name_out_of_range(tmp_path: Path, name: str) -> None:
    """Issue 17: `-of-00000` raised IndexError; shard numbers run 1 to N of N (llama_split_path)."""
    (tmp_path / name).write_bytes(gguf_bytes())
    with pytest.raises(BadGGUF, match="must number its shard 1 to N of N") as e:
        read_local(tmp_path / name)
    one_line(e.value)


def test_missing_shards_error_is_short(tmp_path: Path) -> None:
    """Issue 17: a split named `-of-99999` printed a 2.3 MB error naming every missing shard."""
    first = tmp_path / "m-00001-of-99999.gguf"
    first.write_bytes(gguf_bytes())
    with pytest.raises(BadGGUF) as e:
        read_local(first)
    msg = one_line(e.value)
    assert "missing 99,998 of its 99,999 shards (m-00002-of-99999.gguf, " in msg
    assert msg.endswith("m-00004-of-99999.gguf and 99,995 more)") and len(msg) < 300


def test_directory_as_a_model_or_a_shard(tmp_path: Path) -> None:
    """Issue 17: a directory passed `stat` and failed at `open` with a traceback."""
    (tmp_path / "d.gguf").mkdir()
    with pytest.raises(BadGGUF, match=r"d\.gguf is a directory, not a GGUF file") as e:
        read_local(tmp_path / "d.gguf")
    one_line(e.value)
    first = write_split(tmp_path, [shard(0, 2, ["a"], 2), shard(1, 2, ["b"], 2)])
    second = tmp_path / "s-00002-of-00002.gguf"
    second.unlink()
    second.mkdir()
    with pytest.raises(BadGGUF, match=r"s-00002-of-00002\.gguf is a directory") as e:
        read_local(first)
    one_line(e.value)


def test_unreadable_file(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`open` failing after `stat` succeeded (permissions; the tests run as root, so it is faked)."""
    real_open = Path.open

    def deny(self: Path, *args: object, **kwargs: object) -> object:
        if self == model_path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(BadGGUF, match=r"cannot read .*tiny\.gguf: Permission denied") as e:
        read_local(model_path)
    one_line(e.value)
