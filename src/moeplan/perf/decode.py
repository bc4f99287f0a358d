"""Decode: the time of one step that produces one token for each of `batch` sequences.

Each device works in turn (llama.cpp runs the layers in order; devices do not overlap within one
token), so step time = Σ_devices max(bytes / bandwidth, FLOPs / compute) + per-layer launch cost,
plus one hop latency per GPU<->CPU round trip, plus the NVMe reads of experts that are not in the
page cache (disk-mmap plans).

With `batch` sequences in flight, the dense weights are read once per step, KV and FLOPs scale with
the batch, and a MoE layer reads the distinct experts its tokens picked: in expectation
E·(1 − (1 − k/E)^B) under uniform routing (`batching.distinct_experts`). On the CPU each routed
token also costs one dot-product pass over its expert (`device_time`).
"""

from dataclasses import dataclass

from moeplan.engines.llamacpp import CPU
from moeplan.perf.batching import distinct_experts, per_token_part
from moeplan.perf.calibration import CALIBRATION, Calibration
from moeplan.perf.devices import Rates
from moeplan.perf.traffic import DeviceWork, TokenWork


@dataclass(frozen=True)
class Disk:
    """Experts mmap'd from a file larger than the page cache can hold."""

    miss_fraction: float  # share of the CPU's expert bytes not resident in RAM
    bytes_s: float  # effective random-read bandwidth


@dataclass(frozen=True)
class StepTime:
    seconds: float
    bound_by: str
    by_device: dict[str, float]  # device time, seconds
    hops_s: float
    disk_s: float


def device_time(
    work: DeviceWork,
    r: Rates,
    fill: int,
    batch: int = 1,
    expert_bytes: float | None = None,
    sequences: int | None = None,
) -> tuple[float, str]:
    """Seconds this device spends on one step of `batch` tokens, and whether bandwidth or compute
    bounds it. `sequences`: whose KV caches the step reads (default one per token; a speculative
    verification step runs several tokens of one sequence over one cache).

    The weights (and each distinct expert) are read once a step. Several tokens make the dense
    matmuls matrix-matrix products at the matmul rate, overlapping the reads (llamafile sgemm from
    2 rows, `llamafile_sgemm`'s n < 2 test; cuBLAS/MMQ on a GPU). The CPU's routed experts are not:
    below the tiled matmul's row floor each routed token is one more dot-product pass over its
    expert, run after the pass that streamed it and from cache (`batching.per_token_part`)."""
    distinct = [distinct_experts(e.n_expert, e.n_used, batch) for e in work.experts]
    if expert_bytes is None:
        expert_bytes = sum(e.bytes_per_expert * d for e, d in zip(work.experts, distinct, strict=True))
    nbytes = (
        work.dense_bytes + expert_bytes + (batch if sequences is None else sequences) * work.kv_bytes(fill)
    )
    flops = batch * work.flops_per_token(fill)
    passes = 0.0
    if batch > 1 and not r.is_gpu:
        for e, d in zip(work.experts, distinct, strict=True):
            pt_bytes, pt_flops = per_token_part(e, batch * e.n_used / d)
            passes += (batch * e.n_used - d) * pt_bytes / r.cached_gemv_bandwidth
            flops -= batch * e.n_used * pt_flops
    t_mem = nbytes / r.bandwidth
    t_flop = flops / (r.decode_flops if batch == 1 else r.flops)  # several tokens per weight: a matmul
    t = max(t_mem, t_flop) + passes + work.layer_ops * r.layer_overhead_s
    kind = "bandwidth" if t_mem >= t_flop + passes else "compute"
    return t, kind


def step_time(
    work: TokenWork,
    rates: dict[str, Rates],
    fill: int,
    batch: int = 1,
    disk: Disk | None = None,
    cal: Calibration = CALIBRATION,
    sequences: int | None = None,
) -> StepTime:
    by_device: dict[str, float] = {}
    bound: dict[str, float] = {}
    for name, dw in work.devices.items():
        r = rates.get(name) or rates[CPU]
        t, kind = device_time(dw, r, fill, batch, sequences=sequences)
        by_device[name] = by_device.get(name, 0.0) + t
        label = r.label if kind == "bandwidth" else f"{r.name} compute"
        if name == CPU and dw.experts and work.gpu_devices and kind == "bandwidth":
            label = "RAM bandwidth: experts on CPU"
        bound[label] = bound.get(label, 0.0) + t
    hops_s = work.hops * cal.hop_s
    disk_s = 0.0
    if disk is not None and disk.miss_fraction > 0 and CPU in work.devices:
        cpu = work.devices[CPU]
        missed = (
            sum(e.bytes_per_expert * distinct_experts(e.n_expert, e.n_used, batch) for e in cpu.experts)
            * disk.miss_fraction
        )
        disk_s = missed / disk.bytes_s
        bound["disk reads (mmap)"] = disk_s
    if hops_s:
        bound["GPU<->CPU hops"] = hops_s
    total = sum(by_device.values()) + hops_s + disk_s
    label = max(bound, key=lambda k: bound[k]) if bound else "compute"
    return StepTime(total, label, by_device, hops_s, disk_s)
