"""The calibrated constants of the speed model, in one place.

Each constant is an efficiency or a rate that datasheets do not give. They were fitted by
`benchmarks/calibrate.py` on the llama.cpp measurements of `shared/data/perf_points.json`
(published, with sources; copied into `tests/data/perf_points.json`) and on `llama-bench` runs on the
development machine; that script writes every point's error to `benchmarks/perf_calibration.json`
and `benchmarks/PERF_CALIBRATION.md`. Change a value here only by re-running the fit.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Calibration:
    # Decode (one token at a time): matrix-vector products stream weights once per token.
    gpu_bandwidth_eff: float = 0.775  # share of a GPU's peak memory bandwidth reached by decode kernels
    # Fixed costs per token are per graph node; they are counted in dense decoder layers (a MoE
    # layer counts more: `traffic.layer_ops`).
    gpu_layer_overhead_s: float = 30e-6  # kernel launches and syncs per dense layer per token on a GPU
    cpu_bandwidth_eff: float = 0.63  # share of peak DRAM bandwidth the CPU backend streams at
    cpu_core_bandwidth: float = 12.5e9  # bytes/s one thread can stream (caps decode with few threads)
    # bytes/s one thread's dot-product kernels get through on weights already in cache (a routed
    # token's pass over an expert the step has streamed). The published points have no such pass,
    # so the fit cannot separate it from the streaming rate: taken equal to it; validation/speed.py
    # measures this host's ratio on a MoE probe.
    cpu_core_gemv_bandwidth: float = 12.5e9
    cpu_layer_overhead_s: float = 35.1e-6  # per dense layer per token on the CPU backend ...
    cpu_thread_sync_s: float = 1.73e-6  # ... plus this per thread: ggml's barriers wait on every thread
    hop_s: float = 40e-6  # one GPU<->CPU round trip (copy + sync) for a layer whose experts sit on the CPU
    # Prefill (a micro-batch at a time): matrix-matrix products, compute-bound.
    gpu_flops_eff: float = 0.608  # share of a GPU's FP16 tensor peak reached by large quantized matmuls
    gpu_rows_half: float = 62.9  # rows per weight matrix at which a GPU matmul reaches half that share
    gpu_stream_eff: float = 0.91  # share of peak bandwidth when a micro-batch streams whole expert stacks
    cpu_core_flops: float = 114e9  # FLOP/s per thread for quantized matmuls (AVX2/AVX-512 class cores)
    cpu_thread_scaling: float = 25.6  # rate = n*core/(1+n/S): Amdahl-like loss as threads contend
    pcie_eff: float = 0.75  # share of PCIe bandwidth reached copying CPU weights for op offload
    disk_eff: float = 0.6  # share of sequential disk bandwidth reached by random expert page-ins


CALIBRATION = Calibration()

# llama.cpp's CUDA backend runs a matmul whose weights live in host memory on the GPU (copying the
# weights over PCIe) once the batch has at least this many tokens (GGML_OP_OFFLOAD_MIN_BATCH,
# ggml/src/ggml-cuda/ggml-cuda.cu; `--no-op-offload` disables it).
OP_OFFLOAD_MIN_BATCH = 32
