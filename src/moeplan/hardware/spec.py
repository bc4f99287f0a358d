"""The hardware vocabulary shared by the catalog, the rig parser, detection and the planner."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GPU:
    """One accelerator model (not an instance)."""

    name: str  # canonical display name, e.g. "GeForce RTX 4090"
    vendor: str  # NVIDIA, AMD, Intel, Apple
    memory_bytes: int
    bandwidth_bytes_s: float
    fp16_tflops: float | None  # dense FP16/BF16 tensor throughput, if known
    architecture: str = ""  # e.g. Ada Lovelace, Hopper, Blackwell, RDNA 3, CDNA 3, Apple M3
    fp8: bool = False  # native FP8 matmul
    mxfp4: bool = False  # native MXFP4 / NVFP4 (Blackwell)
    unified_memory: bool = False  # shares system RAM (Apple, Strix Halo, DGX Spark, GB10)
    source: str = ""  # where these figures come from


@dataclass(frozen=True)
class Host:
    ram_bytes: int
    ram_bandwidth_bytes_s: float
    ram_description: str  # its kind, e.g. "DDR5-6000 2-channel" (size and bandwidth are fields of their own)
    cpu_cores: int
    pcie_bytes_s: float  # host <-> each GPU, one direction
    disk_read_bytes_s: float  # sequential NVMe read, for mmap-from-disk plans


@dataclass(frozen=True)
class Node:
    gpus: tuple[GPU, ...]  # one entry per physical GPU
    host: Host
    gpu_link: str = "pcie"  # pcie | nvlink | unified
    gpu_link_bytes_s: float = 0.0  # GPU <-> GPU, one direction


@dataclass(frozen=True)
class Rig:
    nodes: tuple[Node, ...]
    text: str = ""  # what the user wrote
    network: str = ""  # between nodes, e.g. "400Gb InfiniBand"
    network_bytes_s: float = 0.0
    assumptions: tuple[str, ...] = field(default=())  # defaults moeplan filled in, said out loud

    @property
    def node(self) -> Node:
        return self.nodes[0]

    @property
    def gpu_count(self) -> int:
        return sum(len(n.gpus) for n in self.nodes)
