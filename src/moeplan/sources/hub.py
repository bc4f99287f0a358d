"""Models on the Hugging Face Hub, read header-only: a few MB of a 400 GB repository.

Everything goes through `huggingface_hub`: its endpoint setting (`HF_ENDPOINT`), its token
(`HF_TOKEN` or `huggingface-cli login`) for gated repositories, its cache for small files
(`config.json`), its file listing with sizes (`model_info(files_metadata=True)`), and the resolve
URL it builds (`hf_hub_url`) fetched with its session and headers. Headers are read with HTTP
Range requests, bounded by a byte limit, and the bytes read are kept on disk (keyed by repository,
commit, file and etag) so the second call reads nothing.

References and file names are read by `hub_refs.py` (re-exported here).
"""

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from huggingface_hub import constants

from moeplan.errors import HubError, MoeplanError
from moeplan.sources.gguf_header import ByteSource, GGUFModel, HeaderBudget, env_count, read_model
from moeplan.sources.gguf_weights import arch_of
from moeplan.sources.hub_refs import HubRef as HubRef
from moeplan.sources.hub_refs import endpoint as endpoint
from moeplan.sources.hub_refs import parse_ref as parse_ref
from moeplan.sources.hub_refs import quant_label as quant_label
from moeplan.sources.hub_refs import split_parts as split_parts

# The Hub client (huggingface_hub's API, errors and HTTP session, httpx) is imported where a
# request is made: it costs ~0.3 s of start-up that planning catalog models never needs.
MAX_HEADER_BYTES = 64 * 1024 * 1024  # per file; real GGUF headers are < 16 MB, safetensors < 10 MB
FIRST_CHUNK = 64 * 1024  # first range read of a header; later reads double (gguf_header._Cursor)
TIMEOUT_S = 30.0
CACHE_MB_ENV = "MOEPLAN_HEADER_CACHE_MB"
CACHE_MB = 1024  # header bytes kept on disk, all repositories together; least recently used go first
FAILURE_TTL_ENV = "MOEPLAN_HUB_FAILURE_TTL_S"
FAILURE_TTL_S = 300  # how long a reference that failed answers with the same error without a fetch
TOKEN_HINT = "set HF_TOKEN=hf_... or run `huggingface-cli login`"


# ------------------------------------------------------------------------------------- errors


@contextlib.contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """huggingface_hub's and the network's exceptions as one-line errors a person can act on."""
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError:
        raise HubError(
            f"{what} is gated: accept its terms on the Hub, then {TOKEN_HINT} (HF_TOKEN must be allowed)"
        ) from None
    except RepositoryNotFoundError as e:
        status = e.response.status_code if e.response is not None else 404
        private = f" (if it is private or gated: {TOKEN_HINT})" if status == 401 else ""
        raise HubError(f"{what}: repository not found on {endpoint()}{private}") from None
    except RevisionNotFoundError:
        raise HubError(f"{what}: no such revision (branch, tag or commit)") from None
    except OfflineModeIsEnabled:
        raise HubError(f"{what}: HF_HUB_OFFLINE is set and the headers are not cached yet") from None
    except LocalEntryNotFoundError:
        raise HubError(
            f"cannot reach the Hugging Face Hub at {endpoint()} for {what}, and it is not cached: "
            "check the network, or set HF_ENDPOINT to a reachable mirror"
        ) from None
    except EntryNotFoundError:
        raise HubError(f"{what}: file not found in the repository") from None
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else 0
        if status in (401, 403):
            raise HubError(f"{what}: access denied ({status}): {TOKEN_HINT}") from None
        raise HubError(f"{what}: the Hub at {endpoint()} answered {status or 'an error'}") from None
    except httpx2.TransportError as e:
        raise HubError(
            f"cannot reach the Hugging Face Hub at {endpoint()} ({type(e).__name__}): "
            "check the network, or set HF_ENDPOINT to a reachable mirror"
        ) from None


# ------------------------------------------------------------------------------------ listing


@dataclass(frozen=True)
class HubFile:
    path: str
    size: int
    etag: str  # LFS sha256, else the git blob id


@dataclass(frozen=True)
class RepoListing:
    repo: str
    revision: str | None
    commit: str
    files: tuple[HubFile, ...]
    base_models: tuple[str, ...] = ()

    def file(self, path: str) -> HubFile | None:
        return next((f for f in self.files if f.path == path), None)


def list_repo(repo: str, revision: str | None = None) -> RepoListing:
    """Every file of a repository with its size (one `model_info` call)."""
    from huggingface_hub import HfApi

    with hub_errors(repo):
        info = HfApi(endpoint=endpoint()).model_info(repo, revision=revision, files_metadata=True)
    files = []
    for s in info.siblings or []:
        if s.size is None:
            continue
        etag = s.lfs.sha256 if s.lfs else (s.blob_id or "")
        files.append(HubFile(s.rfilename, s.size, etag))
    base: Any = getattr(info.card_data, "base_model", None) if info.card_data else None
    bases = tuple(b for b in ([base] if isinstance(base, str) else base or []) if isinstance(b, str))
    return RepoListing(repo, revision, info.sha or revision or "main", tuple(files), bases)


def download_small(listing: RepoListing, path: str) -> Path:
    """A small file (config.json, an index) through huggingface_hub's own cache."""
    from huggingface_hub import hf_hub_download

    with hub_errors(f"{listing.repo}/{path}"):
        return Path(
            hf_hub_download(
                listing.repo,
                path,
                revision=listing.commit,
                endpoint=endpoint(),
                cache_dir=constants.HF_HUB_CACHE,
            )
        )


def load_json(listing: RepoListing, path: str) -> dict[str, Any]:
    try:
        data = json.loads(download_small(listing, path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HubError(f"{listing.repo}/{path} is not readable JSON: {e}") from None
    if not isinstance(data, dict):
        raise HubError(f"{listing.repo}/{path} is not a JSON object")
    return data


# ------------------------------------------------------------------------ range reads + cache


@dataclass
class FetchStats:
    """Bytes and requests that went over the network (a cached read counts nothing)."""

    bytes: int = 0
    requests: int = 0


def _cache_root() -> Path:
    return Path(constants.HF_HOME) / "moeplan" / "headers"


def _safe(part: str) -> str:
    """A file-name-safe form of one path component (no separators, no leading dots)."""
    return re.sub(r"^\.+", "_", re.sub(r"[^A-Za-z0-9_.=-]", "_", part))


class RangeFile:
    """A `ByteSource` over one Hub file: HTTP Range reads of its resolve URL, bounded by `limit`.

    The prefix read so far lives on disk, not in memory (headers are read front to back, so a
    prefix is all there is to keep): in the header cache when it can be written — a copy extended
    by appends and moved into place, so another process reading the same file sees a shorter
    prefix at worst, never a torn one — else in a temporary file. Use it as a context manager."""

    first_chunk = FIRST_CHUNK

    def __init__(
        self,
        repo: str,
        commit: str,
        f: HubFile,
        stats: FetchStats,
        limit: int = MAX_HEADER_BYTES,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self.repo, self.commit, self.file, self.stats, self.limit = repo, commit, f, stats, limit
        self.on_bytes = on_bytes
        key = [_safe(p) for p in f.path.split("/")]
        self.cache = _cache_root().joinpath(
            _safe(repo.replace("/", "--")), _safe(commit), *key[:-1], f"{key[-1]}.{_safe(f.etag)[:64]}.head"
        )
        try:
            self.stored = self.cache.stat().st_size
            os.utime(self.cache)  # recently used: the cache evicts the least recently used first
        except OSError:
            self.stored = 0
        self._copy: IO[bytes] | None = None  # this reader's own copy, once it has fetched anything
        self._tmp: Path | None = None  # the copy's path until it replaces the cache entry

    def __enter__(self) -> "RangeFile":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._copy is not None:
            self._copy.close()
            self._copy = None

    @property
    def size(self) -> int:
        return self.file.size

    def read(self, offset: int, n: int) -> bytes:
        end = min(offset + n, self.size)
        if end > self.limit:
            raise HubError(
                f"{self.repo}/{self.file.path}: header larger than the {self.limit:,}-byte limit "
                "(not a model file, or a damaged one)"
            )
        if end > self.stored:
            self._extend(end)
        if self._copy is not None:
            self._copy.seek(offset)
            return self._copy.read(end - offset)
        try:
            with self.cache.open("rb") as fh:
                fh.seek(offset)
                return fh.read(end - offset)
        except OSError as e:
            raise HubError(f"cannot read the header cache {self.cache}: {e.strerror}") from None

    def _open_copy(self) -> IO[bytes]:
        """A writable copy of the stored prefix: beside the cache entry, else a temporary file."""
        tmp = self.cache.with_name(f"{self.cache.name}.{os.getpid()}-{id(self)}.part")
        try:
            self.cache.parent.mkdir(parents=True, exist_ok=True)
            copy: IO[bytes] = tmp.open("w+b")
            self._tmp = tmp
        except OSError:  # a read-only cache only costs the next call its reads
            copy = tempfile.TemporaryFile()  # noqa: SIM115 (open until __exit__, like the one above)
        if self.stored:
            try:
                with self.cache.open("rb") as fh:
                    shutil.copyfileobj(fh, copy)
            except OSError:
                copy.truncate(0)
            self.stored = copy.tell()
        return copy

    def _extend(self, end: int) -> None:
        if self._copy is None:
            self._copy = self._open_copy()
        self._copy.seek(self.stored)
        self._fetch_into(self._copy, self.stored, end)
        self._copy.flush()
        self.stored = end
        if self._tmp is not None:
            # the first time, the copy becomes the cache entry; later appends extend it in place
            with contextlib.suppress(OSError):
                self._tmp.replace(self.cache)
            self._tmp = None

    def _fetch_into(self, out: IO[bytes], start: int, end: int) -> None:
        from huggingface_hub import get_session, hf_hub_url, hf_raise_for_status
        from huggingface_hub.utils._headers import build_hf_headers

        url = hf_hub_url(self.repo, self.file.path, revision=self.commit, endpoint=endpoint())
        headers = build_hf_headers()
        headers["Range"] = f"bytes={start}-{end - 1}"
        headers["Accept-Encoding"] = "identity"
        got = 0
        with (
            hub_errors(f"{self.repo}/{self.file.path}"),
            # The endpoint may redirect to its CDN (LFS files); the host is the endpoint's choice,
            # never the user's, and httpx drops the token on a cross-origin redirect.
            get_session().stream("GET", url, headers=headers, timeout=TIMEOUT_S, follow_redirects=True) as r,
        ):
            if r.status_code >= 400:
                r.read()
                hf_raise_for_status(r)
            if r.status_code != 206 and start != 0:
                raise HubError(f"{endpoint()} ignored the Range request for {self.file.path}")
            for chunk in r.iter_bytes():
                part = chunk[: end - start - got]
                out.write(part)
                got += len(part)
                if got >= end - start:
                    break
        if got < end - start:
            raise HubError(f"{self.repo}/{self.file.path}: the Hub sent {got} of {end - start} bytes")
        self.stats.bytes += got
        self.stats.requests += 1
        if self.on_bytes:
            self.on_bytes(got)


def trim_cache(root: Path | None = None) -> int:
    """Delete the least recently used header files until the cache holds at most
    MOEPLAN_HEADER_CACHE_MB (default 1024); returns the bytes it holds then."""
    limit = env_count(CACHE_MB_ENV, CACHE_MB * 2**20, 2**20)
    entries = []
    for path in (root or _cache_root()).rglob("*"):
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        with contextlib.suppress(OSError):
            path.unlink()
            total -= size
    return total


@contextlib.contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar of bytes fetched, on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        DownloadColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda n: bar.advance(task, n)


# ----------------------------------------------------------------------------- failures

R = TypeVar("R")


class _Failures:
    """References that failed lately, with their error: asked again within
    MOEPLAN_HUB_FAILURE_TTL_S seconds (default 300; 0 turns it off), they fail the same way at no
    cost, so a hostile or broken file is not fetched and parsed again for every web request. The
    key holds what could make the next try succeed: the endpoint, the token, the header budget."""

    MAX_ENTRIES = 1024

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[object, ...], tuple[float, type[MoeplanError], str]] = OrderedDict()
        self._lock = threading.Lock()

    def answer(self, ref: HubRef, limit: int, read: Callable[[], R]) -> R:
        """`read()`, unless reading `ref` within `limit` failed within the TTL: then that failure."""
        ttl = env_count(FAILURE_TTL_ENV, FAILURE_TTL_S, minimum=0)
        key = (endpoint(), str(ref), HeaderBudget.from_env(limit), _token_id())
        now = time.monotonic()
        with self._lock:
            hit = self._seen.get(key)
            if hit is not None and hit[0] <= now:
                del self._seen[key]
                hit = None
        if hit is not None:
            raise hit[1](hit[2])
        try:
            return read()
        except MoeplanError as e:
            if ttl:
                with self._lock:
                    self._seen[key] = (now + ttl, type(e), str(e))
                    self._seen.move_to_end(key)
                    while len(self._seen) > self.MAX_ENTRIES:
                        self._seen.popitem(last=False)
            raise

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


def _token_id() -> str:
    """A fingerprint of the Hub token in use (a new token may open a gated repository)."""
    from huggingface_hub import get_token

    token = get_token() or ""
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else ""


_failures = _Failures()
forget_failures = _failures.clear


# ------------------------------------------------------------------------------------- GGUF


@dataclass(frozen=True)
class GGUFGroup:
    """One model file of a GGUF repository: a single file or all shards of a split one."""

    quant: str  # the label in the file name, e.g. Q4_K_M, UD-Q4_K_XL; '' when none
    files: tuple[HubFile, ...]
    expected_shards: int

    @property
    def name(self) -> str:
        return self.files[0].path

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def complete(self) -> bool:
        return len(self.files) == self.expected_shards


def gguf_groups(listing: RepoListing) -> list[GGUFGroup]:
    """The GGUF model files of a repository, split files grouped, projector files (mmproj) left out."""
    groups: dict[str, list[HubFile]] = {}
    counts: dict[str, int] = {}
    for f in listing.files:
        base = f.path.rsplit("/", 1)[-1]
        if not base.lower().endswith(".gguf") or base.lower().startswith("mmproj"):
            continue
        key, shards = split_parts(f.path)
        groups.setdefault(key, []).append(f)
        counts[key] = shards
    return sorted(
        (
            GGUFGroup(quant_label(k), tuple(sorted(fs, key=lambda f: f.path)), counts[k])
            for k, fs in groups.items()
        ),
        key=lambda g: g.name,
    )


def choose_gguf(listing: RepoListing, target: str) -> GGUFGroup:
    """The file(s) of `target`: a file path (or base name), else a quant label, case-insensitive."""
    groups = gguf_groups(listing)
    t = target.lower()
    by_file = [
        g
        for g in groups
        if any(f.path.lower() == t or f.path.rsplit("/", 1)[-1].lower() == t for f in g.files)
    ]
    exact = by_file or [g for g in groups if g.quant.lower() == t]
    found = exact or [g for g in groups if t in g.name.lower()]
    if not found:
        quants = sorted({g.quant or g.name for g in groups})
        there = f"quants there: {', '.join(quants)}" if quants else "it has no GGUF files"
        raise HubError(f"{listing.repo}: no GGUF file of '{target}'; {there}")
    if len(found) > 1:
        raise HubError(
            f"{listing.repo}: '{target}' matches {len(found)} files ({', '.join(g.name for g in found)}); "
            "give the file name"
        )
    g = found[0]
    if not g.complete:
        raise HubError(f"{listing.repo}: {g.name} has {len(g.files)} of its {g.expected_shards} shards")
    return g


@dataclass(frozen=True)
class HubGGUF:
    listing: RepoListing
    group: GGUFGroup
    model: GGUFModel
    fetched: FetchStats = field(compare=False)


def read_gguf(ref: HubRef, limit: int = MAX_HEADER_BYTES) -> HubGGUF:
    """The headers of every shard of the GGUF that `ref` names, by range reads (a failure is
    remembered for a while: `_Failures`)."""
    return _failures.answer(ref, limit, lambda: _read_gguf(ref, limit))


def _read_gguf(ref: HubRef, limit: int) -> HubGGUF:
    if not ref.target:
        raise HubError(f"{ref}: name a quant or a file, e.g. {ref}:Q4_K_M (see `moeplan hub ls {ref.repo}`)")
    listing = list_repo(ref.repo, ref.revision)
    group = choose_gguf(listing, ref.target)
    stats = FetchStats()
    budget = HeaderBudget.from_env(limit)
    with (
        _progress(f"GGUF headers of {ref.repo} ({len(group.files)} file(s))", len(group.files)) as tick,
        contextlib.ExitStack() as files,
    ):
        shards = [
            (
                f.path,
                files.enter_context(RangeFile(ref.repo, listing.commit, f, stats, budget.header_bytes, tick)),
            )
            for f in group.files
        ]
        try:
            model = read_model(shards, budget)
        finally:
            if stats.bytes:
                trim_cache()
    arch_of(model)  # llama_model_loader requires it and every use needs it: fail here, remembered
    return HubGGUF(listing, group, model, stats)


# ------------------------------------------------------------------------------- safetensors

# Bits per element of each safetensors dtype (the `Dtype` enum of the safetensors crate).
SAFETENSORS_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E4M3": 8,
    "F8_E5M2": 8,
    "F8_E8M0": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "I64": 64,
    "U64": 64,
    "F64": 64,
}
_SCALE = re.compile(r"(_scale(_inv)?|_scales|\.scales?|_zero_point|\.qzeros|_shape|\.g_idx)$")


@dataclass(frozen=True)
class SafetensorsTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def is_scale(self) -> bool:
        """Quantization side tensors: FP8 block scales, INT4 group scales and zero points."""
        return bool(_SCALE.search(self.name.removesuffix(".weight")))


@dataclass(frozen=True)
class SafetensorsHeader:
    source: str
    tensors: tuple[SafetensorsTensor, ...]
    metadata: dict[str, str]
    header_bytes: int  # 8 + the JSON length
    file_size: int


def read_safetensors_header(src: ByteSource, name: str, limit: int = MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Parse a safetensors header from a ByteSource: 8-byte little-endian length, then JSON."""
    if src.size < 8:
        raise HubError(f"{name}: too small for a safetensors file")
    (n,) = struct.unpack("<Q", src.read(0, 8))
    if 8 + n > limit:
        raise HubError(f"{name}: safetensors header of {n:,} bytes exceeds the {limit:,}-byte limit")
    if 8 + n > src.size:
        raise HubError(f"{name}: truncated safetensors header")
    try:
        raw = json.loads(src.read(8, n))
    except ValueError:
        raise HubError(f"{name}: safetensors header is not JSON") from None
    if not isinstance(raw, dict):
        raise HubError(f"{name}: safetensors header is not a JSON object")
    meta = raw.pop("__metadata__", None) or {}
    data_size = src.size - 8 - n
    tensors = []
    for tname, info in raw.items():
        try:
            dtype, shape, (begin, end) = (
                str(info["dtype"]),
                tuple(int(d) for d in info["shape"]),
                info["data_offsets"],
            )
        except (KeyError, TypeError, ValueError):
            raise HubError(f"{name}: tensor '{tname}' has a malformed entry") from None
        if dtype not in SAFETENSORS_BITS:
            raise HubError(f"{name}: tensor '{tname}' has unknown dtype {dtype}")
        t = SafetensorsTensor(tname, dtype, shape, int(end) - int(begin))
        if not 0 <= begin <= end <= data_size or t.nbytes * 8 != t.n_elements * SAFETENSORS_BITS[dtype]:
            raise HubError(f"{name}: tensor '{tname}' has offsets that do not match its shape and dtype")
        tensors.append(t)
    return SafetensorsHeader(name, tuple(tensors), {str(k): str(v) for k, v in meta.items()}, 8 + n, src.size)


@dataclass(frozen=True)
class HubSafetensors:
    listing: RepoListing
    config: dict[str, Any]
    headers: tuple[SafetensorsHeader, ...]
    fetched: FetchStats = field(compare=False)

    @property
    def tensors(self) -> tuple[SafetensorsTensor, ...]:
        return tuple(t for h in self.headers for t in h.tensors)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def file_bytes(self) -> int:
        return sum(h.file_size for h in self.headers)

    def bytes_by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.dtype] = out.get(t.dtype, 0) + t.nbytes
        return dict(sorted(out.items()))

    def elements_by_dtype(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.dtype] = out.get(t.dtype, 0) + t.n_elements
        return dict(sorted(out.items()))

    @property
    def scale_tensors(self) -> int:
        return sum(1 for t in self.tensors if t.is_scale)

    @property
    def release_format(self) -> str:
        """The weight format as config.json's `quantization_config` says (else the stored dtype)."""
        q = self.config.get("quantization_config") or {}
        method = str(q.get("quant_method", "")).lower()
        if method in ("fp8", "mxfp4"):
            return method
        if method in ("awq", "gptq", "compressed-tensors", "bitsandbytes"):
            return "int4" if "4" in json.dumps(q) else method
        by = self.bytes_by_dtype()
        return max(by, key=lambda k: by[k]).lower() if by else "unknown"


def safetensors_files(listing: RepoListing) -> list[HubFile]:
    """The weight files: those the index names, else every top-level *.safetensors."""
    if listing.file("model.safetensors.index.json"):
        index = load_json(listing, "model.safetensors.index.json")
        names = sorted(set((index.get("weight_map") or {}).values()))
        found = [listing.file(str(n)) for n in names]
        missing = [n for n, f in zip(names, found, strict=True) if f is None]
        if missing:
            raise HubError(f"{listing.repo}: the index names missing files: {', '.join(missing[:3])}")
        return [f for f in found if f is not None]
    return sorted(
        (f for f in listing.files if "/" not in f.path and f.path.endswith(".safetensors")),
        key=lambda f: f.path,
    )


def read_safetensors(ref: HubRef, limit: int = MAX_HEADER_BYTES) -> HubSafetensors:
    """config.json and every shard's safetensors header of a repository (a failure is remembered
    for a while: `_Failures`)."""
    return _failures.answer(ref, limit, lambda: _read_safetensors(ref, limit))


def _read_safetensors(ref: HubRef, limit: int) -> HubSafetensors:
    listing = list_repo(ref.repo, ref.revision)
    files = safetensors_files(listing)
    if not files:
        ggufs = gguf_groups(listing)
        if ggufs:
            quants = ", ".join(sorted({g.quant or g.name for g in ggufs}))
            raise HubError(
                f"{ref.repo} is a GGUF repository: name a quant, e.g. "
                f"hf://{ref.repo}:{ggufs[0].quant or ggufs[0].name} ({quants})"
            )
        raise HubError(f"{ref.repo}: no safetensors or GGUF files in the repository")
    if not listing.file("config.json"):
        raise HubError(f"{ref.repo}: no config.json beside the safetensors files")
    config = load_json(listing, "config.json")
    stats = FetchStats()
    headers = []
    with _progress(f"safetensors headers of {ref.repo} ({len(files)} file(s))", len(files)) as tick:
        try:
            for f in files:
                with RangeFile(ref.repo, listing.commit, f, stats, limit, tick) as src:
                    headers.append(read_safetensors_header(src, f.path, limit))
        finally:
            if stats.bytes:
                trim_cache()
    return HubSafetensors(listing, config, tuple(headers), stats)


def is_gguf_ref(ref: HubRef) -> bool:
    return ref.target is not None
