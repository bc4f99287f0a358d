"""Prefill: a prompt of P tokens runs as micro-batches of `n_ubatch` tokens (`-ub`, default 512).

A micro-batch multiplies every weight by u tokens at once, so it is compute-bound: each device
spends max(FLOPs / compute, weight bytes / bandwidth). Only the last prompt token needs logits
(llama-bench, llama-server), so the output matmul runs once. A MoE layer's weights read per
micro-batch are its distinct experts for u tokens.

With a GPU present, llama.cpp's CUDA backend runs a matmul whose weights sit in host memory on the
GPU once the batch reaches 32 tokens (op offload, `GGML_OP_OFFLOAD_MIN_BATCH`): the used experts
(or whole CPU layers) are copied over PCIe for every micro-batch and multiplied on the GPU. So
expert-offload prefill is bound by PCIe, not by the CPU. Unified-memory GPUs read RAM in place.
"""

from dataclasses import dataclass

from moeplan.engines.llamacpp import CPU
from moeplan.perf.batching import distinct_experts, per_token_part
from moeplan.perf.calibration import OP_OFFLOAD_MIN_BATCH
from moeplan.perf.devices import Rates
from moeplan.perf.traffic import DeviceWork, TokenWork


@dataclass(frozen=True)
class PrefillTime:
    seconds: float
    tokens: int
    bound_by: str

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def _weights(dw: DeviceWork, u: int, r: Rates) -> tuple[float, float]:
    """Weight bytes read, and seconds of matmul on `r`, for a micro-batch of u tokens (no attention,
    no output). Dense matrices see u rows; an expert sees the tokens routed to it, u·k / distinct
    (on the CPU partly one token at a time: `batching.per_token_part`)."""
    nbytes = dw.dense_bytes
    seconds = u * (dw.dense_flops - dw.output_flops) / r.matmul_flops(u)
    for e in dw.experts:
        distinct = distinct_experts(e.n_expert, e.n_used, u)
        rows = u * e.n_used / distinct
        nbytes += e.bytes_per_expert * distinct
        pt_bytes, pt_flops = (0.0, 0.0) if r.is_gpu else per_token_part(e, rows)
        seconds += u * (e.flops_per_expert - pt_flops) * e.n_used / r.matmul_flops(rows)
        if pt_bytes:
            # one dot-product pass per routed token; the first reads DRAM (counted in nbytes), the
            # others find the expert in cache
            gemv = max(pt_bytes / r.cached_gemv_bandwidth, pt_flops / r.flops)
            seconds += u * e.n_used * gemv
    return nbytes, seconds


def prefill_time(
    work: TokenWork,
    rates: dict[str, Rates],
    prompt_tokens: int,
    n_ubatch: int = 512,
    host_link_bytes_s: float = float("inf"),
    depth: int = 0,
) -> PrefillTime:
    """Seconds to process `prompt_tokens` starting with `depth` tokens already in the cache."""
    gpus = [r for name, r in rates.items() if name != CPU and name in work.devices]
    main_gpu = gpus[0] if gpus else None
    total = 0.0
    bound: dict[str, float] = {}
    done = 0
    while done < prompt_tokens:
        u = min(n_ubatch, prompt_tokens - done)
        ctx = depth + done + u / 2  # mean context the micro-batch's tokens attend to
        for name, dw in work.devices.items():
            r = rates.get(name) or rates[CPU]
            attn = u * dw.attn_flops(int(ctx))
            if (
                name == CPU
                and main_gpu is not None
                and u >= OP_OFFLOAD_MIN_BATCH
                and (dw.experts or dw.dense_bytes)
            ):
                # op offload: copy the CPU weights to the GPU and multiply there; attention stays
                nbytes, gpu = _weights(dw, u, main_gpu)
                copy = nbytes / host_link_bytes_s
                cpu_attn = attn / r.flops
                bound["PCIe: expert weights copied to the GPU"] = (
                    bound.get("PCIe: expert weights copied to the GPU", 0.0) + copy
                )
                bound[f"{main_gpu.name} compute"] = bound.get(f"{main_gpu.name} compute", 0.0) + gpu
                total += copy + gpu + cpu_attn
                continue
            nbytes, t_flop = _weights(dw, u, r)
            t_flop += attn / r.flops
            t_mem = nbytes / r.stream_bandwidth
            label = f"{r.name} compute" if t_flop >= t_mem else r.label
            bound[label] = bound.get(label, 0.0) + max(t_flop, t_mem)
            total += max(t_flop, t_mem) + dw.layer_ops * r.layer_overhead_s
        done += u
    for name, dw in work.devices.items():  # the last token's logits
        r = rates.get(name) or rates[CPU]
        total += dw.output_flops / r.flops
    label = max(bound, key=lambda k: bound[k]) if bound else "compute"
    return PrefillTime(total, prompt_tokens, label)
