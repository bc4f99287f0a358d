"""Rules that turn a plan into notices a person can act on: id, severity, message. Each notice
speaks of the plan it is given and appears only where its condition holds:

- DISK_MMAP_SLOW: weights do not fit in RAM + VRAM and are read from disk (an error where even
  the cache and buffers, which cannot be paged out, do not fit).
- MOE_EXPERT_CPU_OFFLOAD: a MoE plan on a rig with GPUs keeps experts on the CPU.
- QUANT_BELOW_MOE_FLOOR / QUANT_BELOW_FLOOR: the policy went below the quality floor (nothing at or
  above it fits).
- MXFP4_NEEDS_BLACKWELL: the plan's weights hold MXFP4 and an NVIDIA GPU lacks native MXFP4.
- MULTI_GPU_REQUIRED: the plan's weights span several GPUs and the first alone cannot hold the
  model at this context.
- GPUS_FREE: the plan runs on the fewest GPUs of several that hold it as fast (-sm none for the
  first alone, else -dev), the others left free for replicas or other work.
- CONTEXT_REDUCED: the context was left to the policy and ends below the model's maximum (below the
  use's target when nothing fit there).
- KV_CACHE_DOMINATES: the cache (f16) is more than half the weights, so a q8_0 cache would help.
- MOE_LATENCY_VARIANCE: with the plan's own -np sequences in flight, the router's choices spread
  the per-token latency (experts offloaded or read from disk).
- DENSE_ALTERNATIVE: the MoE plan offloads, and the dense sibling runs entirely on the GPU.
- ROPE_SCALING: the context asked for is beyond the model's trained one, reached with rope scaling.
- OP_OFFLOAD_COPY: a GPU's compute buffer holds the copy of a CPU-resident weight that op offload
  makes for prompt batches (engines/gpu_backends.py); --no-op-offload frees it.
- GPU_MARGIN: all layers on the GPU would fit within llama.cpp's --fit-target margin, not outside it.
- CTX_CHECKPOINTS_REDUCED: llama-server's 32 context checkpoints per slot did not fit the host
  beside this plan, so the policy keeps fewer (`--ctx-checkpoints N`): an edited or branched
  conversation may then reprocess more of its prompt.
- PROMPT_CACHE_REDUCED: llama-server's prompt cache (`--cache-ram`, 8 GiB by default) did not fit
  the host beside this plan, so the policy gives it less (`--cache-ram N`, 0: none): a client
  switching back to another conversation may have its prompt reprocessed.
- COMPUTE_BUFFER_UNDERESTIMATED: the compute buffer was measured above moeplan's estimate for this
  model with the plan's sequences (the family's `compute_gap`, e.g. DeepSeek-V4 Pro, or Flash with
  several sequences).
"""

from dataclasses import dataclass

from moeplan.arch.registry import rules
from moeplan.arch.spec import ModelSpec
from moeplan.engines.llamacpp import CPU
from moeplan.hardware.spec import Rig
from moeplan.memory.checkpoints import DEFAULT_CTX_CHECKPOINTS
from moeplan.memory.prompt_cache import DEFAULT_CACHE_RAM_MIB
from moeplan.plan.llamacpp import ONE_GPU, GiB, PlanResult
from moeplan.plan.policy import QUALITY_FLOOR, RopeScaling
from moeplan.quant.ggml import GGMLType

INFO, WARN, ERROR = "info", "warning", "error"


@dataclass(frozen=True)
class Notice:
    id: str
    severity: str
    message: str


def notices(
    spec: ModelSpec,
    rig: Rig,
    result: PlanResult,
    dense_sibling_fits: str | None = None,
    rope: RopeScaling | None = None,
) -> list[Notice]:
    c = result.chosen
    out: list[Notice] = []
    if rope is not None:
        out.append(
            Notice(
                "ROPE_SCALING",
                WARN,
                f"context {c.ctx:,} is beyond the model's maximum of {spec.context_length:,} tokens: "
                f"planned with {rope.method} rope scaling ({rope.flags}), as the model card documents up "
                f"to {rope.max_context:,}; static scaling applies to every prompt and may lower quality on "
                "short ones: use it only when long prompts need it",
            )
        )
    gpu_devices = [d for d in c.memory.devices if not d.device.startswith("CPU")]
    used_gpus = [d for d in gpu_devices if d.weights_bytes]
    cpu_weights = sum(d.weights_bytes for d in c.memory.devices if d.device.startswith("CPU"))
    if gap := rules(spec.arch).compute_gap(spec, c.cache.n_seq):
        out.append(Notice("COMPUTE_BUFFER_UNDERESTIMATED", WARN, gap))
    if result.disk and c.fits:
        what = "experts are" if spec.is_moe else "weights are"
        out.append(
            Notice(
                "DISK_MMAP_SLOW",
                WARN,
                f"the model does not fit in RAM + VRAM; {what} read from disk on demand "
                f"(about {c.decode_tok_s:.1f} tokens/s): add RAM, or pick a smaller quantization",
            )
        )
    elif result.disk:
        over = ", ".join(f"{d} by {b / GiB:,.1f} GiB" for d, b in c.overflow.items())
        # What cannot be read back from the file: a GPU's weights (on Metal the mapped span of the
        # file, engines/gpu_backends.py), the KV cache and buffers. A shorter context helps only where
        # the cache is at least the overflow.
        held = {d.device: d.kv_bytes + d.state_bytes for d in c.memory.devices}
        ctx_helps = all(held.get(d, 0) >= b for d, b in c.overflow.items())
        what, fix = (
            ("the KV cache and buffers", "lower --ctx, or add memory")
            if ctx_helps
            else ("the weights a GPU holds and the buffers", "pick a smaller quantization, or add memory")
        )
        out.append(
            Notice(
                "DISK_MMAP_SLOW",
                ERROR,
                f"does not fit even reading weights from disk: what cannot be read back from the file "
                f"({what}) overflows {over} at {c.ctx:,} tokens: {fix}",
            )
        )
    if spec.is_moe and c.strategy in ("n_cpu_moe", "cpu_moe", "disk") and rig.node.gpus:
        n = "all" if c.strategy != "n_cpu_moe" else c.flags.split("--n-cpu-moe ")[1].split()[0]
        out.append(
            Notice(
                "MOE_EXPERT_CPU_OFFLOAD",
                INFO,
                f"experts of {n} layers run on the CPU ({cpu_weights / GiB:.1f} GiB of weights in RAM); "
                f"attention, shared experts and the rest stay on the GPU; decode is bound by "
                f"{c.bound_by}",
            )
        )
    if result.below_floor:
        out.append(
            Notice(
                "QUANT_BELOW_MOE_FLOOR" if spec.is_moe else "QUANT_BELOW_FLOOR",
                WARN,
                f"only {c.quant.name} fits, below {QUALITY_FLOOR.name}: expect noticeably worse answers; "
                f"more RAM or VRAM allows {QUALITY_FLOOR.name}",
            )
        )
    wants_mxfp4 = bool((c.memory.table.types == GGMLType.MXFP4).any())  # the plan's weights hold MXFP4
    # Native FP4 is a CUDA path (BLACKWELL_MMA_AVAILABLE, ggml-cuda/common.cuh, used by mmq.cuh's
    # prompt matmuls); Metal and ROCm dequantize MXFP4 like any block type, with no Blackwell to buy.
    if wants_mxfp4 and any(g.vendor == "NVIDIA" and not g.mxfp4 for g in rig.node.gpus):
        out.append(
            Notice(
                "MXFP4_NEEDS_BLACKWELL",
                INFO,
                "MXFP4 weights run natively only on Blackwell GPUs (RTX 50xx, RTX PRO 6000, B200); "
                "here they are dequantized on the fly: correct, but slower than the bytes suggest",
            )
        )
    main = next((d for d in gpu_devices if d.offload_copy_bytes), None)
    if main is not None and c.fits:
        out.append(
            Notice(
                "OP_OFFLOAD_COPY",
                INFO,
                f"for prompt batches of 32+ tokens llama.cpp copies each CPU-resident weight it multiplies "
                f"into {main.device}'s compute buffer (op offload): {main.offload_copy_bytes / GiB:.2f} GiB "
                f"of it is counted; --no-op-offload frees that and processes prompts on the CPU instead",
            )
        )
    near = [
        a
        for a in result.alternatives
        if a.strategy == "gpu"
        and a.quant is c.quant
        and not a.fits
        and a.overflow
        and all(d != "CPU" and b <= result.margin_bytes for d, b in a.overflow.items())
    ]
    if near and c.strategy != "gpu":
        used = max(near[0].overflow.values())
        keep = (result.margin_bytes - used) // 2**20
        out.append(
            Notice(
                "GPU_MARGIN",
                INFO,
                f"all layers on the GPU at {c.quant.name} would use {used / GiB:.2f} GiB of the "
                f"{result.margin_bytes / GiB:.1f} GiB kept free (llama.cpp's --fit-target): with "
                f"--fit-target {keep} it runs entirely on the GPU ({near[0].flags}, context "
                f"{near[0].ctx:,}), or a smaller -ub shrinks the compute buffer",
            )
        )
    if len(used_gpus) > 1 and not result.single_gpu_fits:
        out.append(
            Notice(
                "MULTI_GPU_REQUIRED",
                INFO,
                f"the model is split over {len(used_gpus)} GPUs by layers ({c.flags}); "
                "each token passes through them in turn",
            )
        )
    if result.spare_gpus:
        out.append(Notice("GPUS_FREE", INFO, _gpus_free(rig, result)))
    if result.cache_ram is not None:
        size = "no prompt cache" if not result.cache_ram else f"a cache of at most {result.cache_ram:,} MiB"
        out.append(
            Notice(
                "PROMPT_CACHE_REDUCED",
                WARN,
                f"--cache-ram {result.cache_ram}: llama-server keeps idle conversations' KV/state in RAM "
                f"up to {DEFAULT_CACHE_RAM_MIB:,} MiB by default, which this host cannot hold beside the "
                f"plan; with {size}, a client switching between conversations has its prompt "
                "reprocessed instead of restored",
            )
        )
    if result.ctx_checkpoints is not None:
        kept = c.memory.device(CPU).checkpoint_bytes
        out.append(
            Notice(
                "CTX_CHECKPOINTS_REDUCED",
                WARN,
                f"--ctx-checkpoints {result.ctx_checkpoints}: llama-server keeps {DEFAULT_CTX_CHECKPOINTS} "
                "context checkpoints per slot in RAM by default (the SWA cache or recurrent state at "
                f"each, {kept / GiB:.1f} GiB "
                "at this count), which this host cannot hold beside the plan; with fewer, an edited or "
                "branched conversation may reprocess more of its prompt",
            )
        )
    if result.ctx_requested is None and spec.context_length and c.ctx < spec.context_length:
        short = c.ctx < result.ctx_target
        out.append(
            Notice(
                "CONTEXT_REDUCED",
                WARN if short else INFO,
                f"context set to {c.ctx:,} tokens, "
                + (
                    f"below the {result.ctx_target:,} the policy aims for: nothing fits there"
                    if short
                    else "the largest step of the context ladder (powers of two) that fits with this "
                    "placement"
                )
                + f" (the model supports {spec.context_length:,}); ask for more with --ctx",
            )
        )
    kv = sum(d.kv_bytes + d.state_bytes for d in c.memory.devices)
    weights = sum(d.weights_bytes for d in c.memory.devices)
    if kv > 0.5 * weights and c.cache.type_k == GGMLType.F16 and c.cache.type_v == GGMLType.F16:
        out.append(
            Notice(
                "KV_CACHE_DOMINATES",
                INFO,
                f"the KV cache ({kv / GiB:.1f} GiB) is more than half the weights: a q8_0 cache "
                "(-ctk q8_0 -ctv q8_0) halves it",
            )
        )
    if spec.is_moe and c.strategy in ("n_cpu_moe", "disk"):
        # Routing changes per-token work only where a token's experts may or may not need a slow read
        # (disk), or where batched tokens share experts by chance; quote the simulated spread for the
        # plan's own sequences in flight (-np).
        batch = c.cache.n_seq
        s = c.perf.spread(batch)
        if s.simulated and s.p99_s > 1.05 * s.p50_s:
            who = "one sequence" if batch == 1 else f"{batch} sequences in flight (-np {batch})"
            out.append(
                Notice(
                    "MOE_LATENCY_VARIANCE",
                    INFO,
                    f"with {who}, per-token latency varies with the experts the router picks: p50 "
                    f"{1e3 * s.p50_s:.0f} ms, p95 {1e3 * s.p95_s:.0f} ms, p99 {1e3 * s.p99_s:.0f} ms "
                    f"({s.routing})",
                )
            )
    if dense_sibling_fits and c.strategy != "gpu":
        out.append(
            Notice(
                "DENSE_ALTERNATIVE",
                INFO,
                f"the dense {dense_sibling_fits} fits entirely on the GPU and avoids expert offload",
            )
        )
    return out


def _gpus_free(rig: Rig, result: PlanResult) -> str:
    """GPUS_FREE's message: how many GPUs the plan runs on and which stay free, with the command for
    a replica where the free GPUs hold one (`PlanResult.replica_gpus`)."""
    c, spare, twins = result.chosen, result.spare_gpus, result.replica_gpus
    used = [d.device for d in c.memory.devices if not d.device.startswith(CPU) and d.total_bytes]
    n = len(rig.node.gpus)
    use = (
        f"e.g. for another replica: the same command with -dev {','.join(twins)} --port 8081"
        if twins
        else "e.g. for other work"
    )
    held = "one GPU holds" if len(used) == 1 else f"{len(used)} of {n} GPUs hold"
    how = "-sm none" if c.flags == ONE_GPU else f"-dev {','.join(used)}"
    others = f"the other {len(spare)} GPUs are" if len(spare) > 1 else "the other GPU is"
    return (
        f"{held} the model at {c.ctx:,} tokens, so it runs on {', '.join(used)} alone ({how}), at least "
        f"as fast as split by layers over {'both' if n == 2 else f'all {n}'}; {others} free, {use}"
    )
