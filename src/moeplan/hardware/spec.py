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
    # llama.cpp's number of each GPU (the 1 of CUDA1) where a command uses some of the machine's
    # (-dev CUDA1, -sm none -mg 3): a backend numbers the devices it finds, not the ones used.
    # Empty: all of them, 0, 1, ...
    device_numbers: tuple[int, ...] = ()

    def device_number(self, i: int) -> int:
        """The llama.cpp number of `gpus[i]`."""
        return self.device_numbers[i] if self.device_numbers else i

    def gpu_numbered(self, number: int) -> "GPU | None":
        """The GPU llama.cpp numbers `number`, if the node uses it."""
        numbers = self.device_numbers or range(len(self.gpus))
        return self.gpus[numbers.index(number)] if number in numbers else None


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
