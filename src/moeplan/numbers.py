"""The numbers people type, read one way everywhere: CLI options, the rig grammar and the web's
query parameters all parse through here, so `128k` means the same thing in each and a bad number
is the same one-line error.

Why not `int(text)`: Python's `int()` accepts what no person means as a number here — Unicode
digits (`int("٣") == 3`; `"²".isdigit()` is True yet `int("²")` raises), `1_000`, surrounding
spaces, and 4,300-digit strings that take real time to convert. Only ASCII digits are read, each
value has a named range (`Range`), and anything else is a `BadNumber` naming the field, the range
and an example.
"""

import re
from dataclasses import dataclass

from moeplan.errors import MoeplanError

# Long enough for every value in range with a suffix and decimals, short enough that nothing slow is
# ever converted.
MAX_CHARS = 24
_DIGITS = r"[0-9]+(?:\.[0-9]+)?"
_SUFFIXES = "[kKmM]"
_NUMBER = re.compile(f"({_DIGITS})({_SUFFIXES}?)", re.ASCII)
# Context sizes are counted in powers of two where people write them with a suffix: model cards'
# "128K" is 131,072 tokens (Llama 3.1's max_position_embeddings), "1M" 1,048,576.
_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20}


class BadNumber(MoeplanError):
    """A number that is not one, or outside the range of the field it was given for."""


def _shown(value: float) -> str:
    """16777216 -> '16,777,216'; 0.01 -> '0.01' (never '1.67772e+07')."""
    return f"{int(value):,}" if value == int(value) else f"{value:,.6g}"


@dataclass(frozen=True)
class Range:
    """The values one field accepts: `what` names it in errors ("--ctx", "RAM size")."""

    what: str
    low: float
    high: float
    unit: str = ""  # said after the range: "tokens", "GB"
    suffixes: bool = False  # k = 1,024 and M = 1,048,576 accepted ("128k")
    zero: str = ""  # when set, 0 is also accepted and means this ("the model's own context")

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        text = f"from {_shown(self.low)} to {_shown(self.high)}{unit}"
        if self.zero:
            text += f", or 0 for {self.zero}"
        if self.suffixes:
            text += " (k = 1,024: 32k, 128k, 1M)"
        return text

    def check(self, value: float, typed: str = "") -> float:
        """`value` if this field accepts it, else BadNumber (quoting `typed`, what was written)."""
        if value == 0 and self.zero:
            return value
        if not self.low <= value <= self.high:
            raise BadNumber(f"{self.what} must be {self.describe()}, not {typed.strip() or _shown(value)}")
        return value


def _read(text: str, field: Range, noun: str) -> float:
    raw = text.strip()
    m = _NUMBER.fullmatch(raw) if len(raw) <= MAX_CHARS else None
    if m is None or (m.group(2) and not field.suffixes):
        shown = raw if len(raw) <= MAX_CHARS else raw[:MAX_CHARS] + "…"
        raise BadNumber(f"{field.what} must be {noun} {field.describe()}, not '{shown}'")
    return float(m.group(1)) * _SUFFIX[m.group(2).lower()]


def pattern(field: Range) -> str:
    """What `parse_int` / `parse_float` read for `field`, as a JSON Schema `pattern` (ECMA-262, valid
    in Python too): the JSON API declares it for its number parameters, with no surrounding spaces
    (which the forms trim), so the document says exactly what a request may hold."""
    return f"^{_DIGITS}{_SUFFIXES + '?' if field.suffixes else ''}$"


def parse_int(text: str, field: Range) -> int:
    """A whole number in `field`'s range from what a person typed ("32768", "128k")."""
    value = _read(text, field, "a whole number")
    if value != int(value):
        raise BadNumber(f"{field.what} must be a whole number {field.describe()}, not '{text.strip()}'")
    return int(field.check(value, text))


def parse_float(text: str, field: Range) -> float:
    """A decimal number in `field`'s range ("0.5", "96")."""
    return field.check(_read(text, field, "a number"), text)


def optional_int(text: str | None, field: Range) -> int | None:
    """`parse_int`, with None or an empty form field meaning "not given"."""
    return None if text is None or not text.strip() else parse_int(text, field)


def optional_float(text: str | None, field: Range) -> float | None:
    return None if text is None or not text.strip() else parse_float(text, field)


# ----------------------------------------------------------------------------- the fields
# One table of ranges, so the CLI, the web and the rig grammar refuse the same values.

# 256 tokens: below that not even a system prompt fits (the web's floor since its first version);
# 16M: beyond every catalog model's context (Llama 4 Scout: 10M).
CONTEXT = Range("context", 256, 1 << 24, "tokens", suffixes=True)
# `memory --ctx 0` is llama.cpp's `-c 0`: the model's trained context (llama-context.cpp:
# `cparams.n_ctx = params.n_ctx == 0 ? hparams.n_ctx_train : params.n_ctx`).
CONTEXT_OR_MODEL = Range("context", 256, 1 << 24, "tokens", suffixes=True, zero="the model's own")
SEQUENCES = Range("parallel sequences (-np)", 1, 256)
UBATCH = Range("micro-batch (-ub)", 1, 1 << 16, "tokens", suffixes=True)
CPU_MOE_LAYERS = Range("--n-cpu-moe", 0, 4096, "layers")
GPU_COUNT = Range("GPU count", 1, 72)  # 72: an NVL72 rack is one NVLink domain
GPUS_OR_CPU = Range("--gpus", 0, 72)
NODES = Range("node count", 1, 1024)
PORT = Range("port", 1, 65535)
RAM_GB = Range("RAM size", 1, 65536, "GB")  # 64 TB: beyond the largest single-system images
CHANNELS = Range("memory channels", 1, 24)  # 24: two 12-channel EPYC sockets
RAM_MTS = Range("RAM speed", 800, 20000, "MT/s")
CPU_CORES = Range("CPU cores", 1, 2048)
PCIE_LANES = Range("PCIe lanes", 1, 16)
DISK_GB_S = Range("disk speed", 0.01, 100, "GB/s")
NETWORK_GBIT = Range("network speed", 1, 10000, "Gb/s")
NICS = Range("network links", 1, 64)
MODEL_GB = Range("size", 0, 1e7, "GB")
# llama-server's --cache-ram (common/arg.cpp: an int32 of MiB); -1, no limit, is read apart (cache_ram)
CACHE_RAM = Range("--cache-ram", 0, (1 << 31) - 1, "MiB", zero="no prompt cache")
NO_CACHE_LIMIT = -1
# llama.cpp's --fit-target (common/arg.cpp: MiB kept free on each device, read with std::stoull);
# 16 TiB: beyond any device's memory.
FIT_TARGET = Range("--fit-target", 0, 1 << 24, "MiB")


def check_cache_ram(mib: int) -> int:
    """`mib` as llama-server reads --cache-ram; a negative size other than -1 is a mistake (the
    server would take it as no limit)."""
    if mib < NO_CACHE_LIMIT:
        raise BadNumber(f"--cache-ram {mib}: give MiB (0: no prompt cache) or -1 (no limit)")
    if mib != NO_CACHE_LIMIT:
        CACHE_RAM.check(mib)
    return mib


def cache_ram(text: str | None) -> int | None:
    """--cache-ram as a person types it: MiB, 0 or -1; None or empty: not given."""
    if text is not None and text.strip().startswith("-"):
        return check_cache_ram(-parse_int(text.strip()[1:], CACHE_RAM))
    return optional_int(text, CACHE_RAM)
