"""The rig grammar: reads what people write ("2x RTX 3090 + 128GB DDR4-3200 quad-channel",
"Mac Studio M3 Ultra 512GB", "2 nodes x 8x H200, 400Gb IB") into a `Rig`, filling what was left out
with stated defaults.

    rig     := [N "nodes" "x"] clause {SEP clause}          SEP := "+" | "," | ";" | "with" | "and"
    clause  := gpus | ram | cpu | pcie | disk | link | network
    gpus    := [N "x"] GPU-NAME [SIZE] | GPU-NAME "x" N      (the catalog decides what a name is)
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
"""

import re
from dataclasses import dataclass, field, replace

from moeplan.errors import UnknownHardware
from moeplan.hardware.catalog import GIB, gpu_link, lookup_gpu, soc_cpu_cores
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
NODES_PREFIX = re.compile(r"^\s*(\d+)\s*(?:nodes?|servers?|machines?|hosts?)\s*(?:x|×|\*|of)?\s*", re.I)
COUNT_PREFIX = re.compile(r"^(\d{1,3})\s*[x×*]\s+(.+)$", re.I)
COUNT_SUFFIX = re.compile(r"^(.+?)\s+[x×*]\s*(\d{1,3})$", re.I)
SIZE_SUFFIX = re.compile(
    r"^(.*?\S)[\s-]*(\d+(?:\.\d+)?)\s*(gb|gib|g|tb)(?:\s+(?:unified|ram|memory))*$", re.I
)
# RTX 3090 / A6000 NVLink bridge: 112.5 GB/s both directions (NVIDIA RTX A6000 datasheet).
NVLINK_BRIDGE_BYTES_S = 56.25 * GB


@dataclass
class _Reading:
    """What the clauses said, accumulated while reading."""

    gpus: list[tuple[GPU, int, float | None]] = field(default_factory=list)  # gpu, count, stated GB
    host: HostSpec = field(default_factory=HostSpec)
    nvlink: bool | None = None  # True: "NVLink" stated; False: "PCIe only"
    network: str = ""
    network_bytes_s: float = 0.0


def tokens(clause: str) -> list[str]:
    """'128GB DDR4-3200 quad-channel' -> ['128', 'gb', 'ddr', '4', '-', '3200', 'quad', '-', 'channel']."""
    return re.findall(r"\d+(?:\.\d+)?|[a-z]+|[^\sa-z0-9]", clause.lower())


def _number(tok: str) -> float | None:
    return float(tok) if re.fullmatch(r"\d+(?:\.\d+)?", tok) else None


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
            ram_gb, i, saw_ram = size[0], i + size[1], True
        elif t in ("ddr", "lpddr") and _number(nxt) is not None:
            ram_type, i, saw_ram = f"{t.upper()}{int(float(nxt))}", i + 2, True
            if i < len(toks) and toks[i] == "x":
                ram_type, i = ram_type + "X", i + 1
            if ram_type not in DEFAULT_MTS:
                raise UnknownHardware(f"unknown RAM type '{ram_type}' (known: {', '.join(DEFAULT_MTS)})")
            if i + 1 < len(toks) and toks[i] == "-" and (_number(toks[i + 1]) or 0) >= 800:
                mts, i = int(float(toks[i + 1])), i + 2
        elif (n := _number(t)) is not None and n >= 800 and nxt in ("mt", "mts", "mhz"):
            mts, i = int(n), i + 2
            if toks[i : i + 2] == ["/", "s"]:
                i += 2
        elif t in CHANNEL_WORDS or _number(t) is not None:
            count = CHANNEL_WORDS.get(t) or int(_number(t) or 0)
            j = i + 1 + (nxt == "-")
            if j < len(toks) and toks[j] in ("channel", "channels", "ch"):
                channels, i = count, j + 1
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
        return replace(host, cpu_cores=int(float(rest[0])))
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
        lanes, rest = int(float(rest[1])), []
    if rest:
        return None
    return replace(host, pcie_gen=int(gen), pcie_lanes=lanes)


def read_disk(toks: list[str], host: HostSpec) -> HostSpec | None:
    """'NVMe', 'NVMe 7GB/s', 'SATA SSD', 'HDD'."""
    kinds = [t for t in toks if t in (*DISK_GB_S, "disk", "drive")]
    if not kinds:
        return None
    kind = next((k for k in ("hdd", "sata", "nvme", "ssd") if k in toks), "nvme")
    speed = host.disk_gb_s
    for i, t in enumerate(toks):
        n = _number(t)
        if n is not None and toks[i + 1 : i + 4] == ["gb", "/", "s"]:
            speed = n
    return replace(host, disk_kind=kind, disk_gb_s=speed)


def read_network(toks: list[str]) -> tuple[str, float] | None:
    """'400Gb IB' -> ('400 Gb/s InfiniBand', 50e9 bytes/s); '100GbE'; '8x 400Gb IB'; 'NDR'."""
    if not any(t in NETWORK_WORDS or t in IB_RATES for t in toks):
        return None
    nics, gbit, kind, i = 1, 0.0, "Ethernet", 0
    while i < len(toks):
        t, n = toks[i], _number(toks[i])
        if n is not None and toks[i + 1 : i + 2] == ["x"]:
            nics, i = int(n), i + 2
        elif n is not None and toks[i + 1 : i + 2] and toks[i + 1] in ("gb", "g", "gbit", "gbps", "gbe"):
            gbit, i = n, i + 2
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


def read_gpus(clause: str) -> tuple[GPU, int, float | None]:
    """'2x RTX 3090', 'RTX 5090 x2', 'RTX 5080 16GB', 'Mac Studio M3 Ultra 512GB': the GPU, its
    count, and a stated memory size (for unified chips: the machine's RAM)."""
    text, count = clause.strip(), 1
    if re.fullmatch(r"\d{1,3}\s*[x×*]", text):
        raise UnknownHardware(f"'{text}' is a count with no GPU")
    if m := COUNT_PREFIX.match(text):
        count, text = int(m.group(1)), m.group(2).strip()
    elif m := COUNT_SUFFIX.match(text):
        text, count = m.group(1).strip(), int(m.group(2))
    text = BOX_PREFIX.sub("", text)
    stated: float | None = None
    if m := SIZE_SUFFIX.match(text):
        terabytes = m.group(3).lower() == "tb"
        stated = float(m.group(2)) * (1024 if terabytes else 1)
        gpu = lookup_gpu(m.group(1) if terabytes else text)
    else:
        gpu = lookup_gpu(text)
    if count < 1:
        raise UnknownHardware(f"'{clause.strip()}': a GPU count must be at least 1")
    return gpu, count, stated


def read_clause(clause: str, reading: _Reading) -> None:
    toks = tokens(clause)
    if not toks:
        return
    if toks in (["nvlink"], ["nvswitch"]):
        reading.nvlink = True
        return
    if toks in (["pcie", "only"], ["no", "nvlink"]):
        reading.nvlink = False
        return
    for reader in (read_pcie, read_disk, read_ram, read_cpu_cores):
        host = reader(toks, reading.host)
        if host is not None:
            reading.host = host
            return
    network = read_network(toks)
    if network is not None:
        reading.network, reading.network_bytes_s = network
        return
    try:
        reading.gpus.append(read_gpus(clause))
    except UnknownHardware:
        if toks[0] in CPU_WORDS:
            reading.host = replace(reading.host, cpu_name=clause.strip())
            return
        raise


def _is_server_gpu(gpu: GPU) -> bool:
    """Parts that live in servers: SXM/OAM modules (they have a node fabric) and datacenter PCIe
    cards (H100 PCIe/NVL, A100 PCIe, L40S)."""
    return gpu_link(gpu) is not None or re.search(r"\b(H100|H200|A100|L40S?|H20)\b", gpu.name) is not None


def _discrete_node(reading: _Reading, said: list[str]) -> Node:
    gpus = [g for g, n, _ in reading.gpus for _ in range(n)]
    for g, _, stated in reading.gpus:
        if stated is not None and abs(stated - g.memory_bytes / GIB) >= 0.5:
            raise UnknownHardware(f"{g.name} has {g.memory_bytes / GIB:g} GB, not {stated:g} GB")
    server = any(_is_server_gpu(g) for g in gpus)
    defaults: Defaults = DESKTOP
    if server:
        defaults = SERVER_AMPERE if all(g.architecture == "Ampere" for g in gpus) else SERVER
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
    gpu, count, stated = reading.gpus[0]
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
    original, said = text, []
    if (preset := preset_text(text)) is not None:
        text = preset
        said.append(f"preset '{original.strip()}' is '{preset}'.")
    if not text.strip():
        raise UnknownHardware(f"empty rig: {example}")
    n_nodes = 1
    if m := NODES_PREFIX.match(text):
        n_nodes, text = int(m.group(1)), text[m.end() :]
    try:
        return _build(text, original.strip(), n_nodes, said)
    except UnknownHardware as e:
        raise UnknownHardware(f"rig '{original.strip()}': {e}; {example}") from None


def _build(text: str, original: str, n_nodes: int, said: list[str]) -> Rig:
    reading = _Reading()
    for clause in SEPARATOR.split(text):
        read_clause(clause, reading)
    if any(g.unified_memory for g, _, _ in reading.gpus):
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
