"""Speed of a distributed vLLM / SGLang layout: decode step time per GPU from bytes moved and FLOPs,
the communication each parallelism adds, and serving throughput at a batch.

Per decode step of one pipeline stage (each attention replica runs `batch` sequences):
- weights read per GPU: the non-expert weights this GPU holds (embedding lookups excluded) + its
  expert weights × the expected fraction of experts the step touches, 1 − (1 − k/E)^T for T tokens
  routed through the MoE group (T = batch × attention replicas);
- KV read per GPU: batch × KV bytes per token on this GPU × the average context;
- memory time = bytes / (HBM bandwidth × MEM_EFF); compute time = FLOPs / (peak × COMPUTE_EFF), with
  FP8 peak = 2 × BF16 peak where the weights are FP8 and the GPU has FP8 tensor cores;
- step = max(memory, compute) + a fixed kernel-launch cost per layer (LAYER_US, MOE_LAYER_US) +
  communication: TP all-reduce 2 per layer of 2·(TP−1)/TP · hidden · tokens · 2 bytes over the link
  (NVLink / PCIe inside a node, the network across nodes) + latency; EP all-to-all (dispatch + combine)
  of tokens · k · hidden · 2 bytes · (EP−1)/EP per MoE layer; PP hands hidden states to the next stage.
- Prefill is compute-bound: 2 · active params · prompt tokens at PREFILL_EFF of the peak of all GPUs.
Serving throughput at ISL/OSL = 1 / (step/concurrent + prefill time per request / OSL).

The efficiencies are calibrated on the datacenter points of `shared/data/perf_points.json` (see
docs/distributed-calibration.md); they are not independent of those points.
"""

from dataclasses import dataclass

from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines.sharding import Sharding, StageWeights, kv_values_per_token
from moeplan.hardware.spec import GPU, Rig

MEM_EFF = 0.75
COMPUTE_EFF = 0.35
PREFILL_EFF = 0.55
LAYER_US = 25.0  # launch + small kernels per decoder layer (CUDA graphs on)
MOE_LAYER_US = 55.0  # router top-k, fused-MoE launch, token permutation per MoE layer
LINK_LATENCY_S = {"nvlink": 8e-6, "pcie": 20e-6, "network": 30e-6, "unified": 5e-6}


@dataclass(frozen=True)
class StepTime:
    memory_s: float
    compute_s: float
    overhead_s: float
    comm_s: float

    @property
    def total_s(self) -> float:
        return max(self.memory_s, self.compute_s) + self.overhead_s + self.comm_s

    @property
    def bound(self) -> str:
        parts = {"HBM bandwidth": self.memory_s, "compute": self.compute_s, "communication": self.comm_s}
        return max(parts, key=lambda k: parts[k])


def link(rig: Rig, group: int) -> tuple[str, float]:
    """The slowest link a group of `group` consecutive GPUs talks over, and its bytes/s per GPU."""
    node = rig.node
    per_node = len(node.gpus)
    if group > per_node and len(rig.nodes) > 1:
        bw = rig.network_bytes_s / max(1, per_node) if rig.network_bytes_s else 12.5e9 / per_node
        return "network", bw
    if group <= 1:
        return node.gpu_link, float("inf")
    return node.gpu_link, node.gpu_link_bytes_s or node.host.pcie_bytes_s


def peak_flops(gpu: GPU, fp8_weights: bool) -> float:
    base = (gpu.fp16_tflops or 100.0) * 1e12
    return base * 2 if fp8_weights and gpu.fp8 else base


def expert_fraction(spec: ModelSpec, tokens: float) -> float:
    f = spec.moe_ffn
    if f is None or not f.n_expert:
        return 0.0
    return float(1 - (1 - f.n_expert_used / f.n_expert) ** max(tokens, 1.0))


def decode_step(
    spec: ModelSpec,
    rig: Rig,
    sh: Sharding,
    w: StageWeights,
    batch: int,
    avg_ctx: int,
    kv_bytes: float,
    fp8_weights: bool,
) -> StepTime:
    """One decode step of one stage at `batch` sequences per attention replica."""
    gpu = rig.node.gpus[0]
    layers = [spec.layers[i] for i in w.layers]
    tokens = batch * sh.attn_dp
    frac = expert_fraction(spec, tokens)
    weight_read = (w.other_bytes - w.embed_bytes) + w.expert_bytes * frac
    kv_read = 0.0
    attn_flops = 0.0
    for la in layers:
        a = la.attn
        if a.kind is AttnKind.LINEAR or not a.n_head_kv:  # no cache to read (deci's blocks without attention)
            continue
        ctx = min(avg_ctx, a.window) if a.sliding else avg_ctx
        kv_read += batch * kv_values_per_token(a, sh) * kv_bytes * ctx
        head = a.kv_lora_rank + a.qk_rope_head_dim if a.kind is AttnKind.MLA else a.head_dim_k
        attn_flops += 4 * batch * ctx * (a.n_head / sh.attn_tp) * head
    memory_s = (weight_read + kv_read) / (gpu.bandwidth_bytes_s * MEM_EFF)
    # FLOPs: this GPU's share of the non-expert matmuls for its replica's tokens, its share of the
    # routed experts' work for all tokens of the MoE group.
    f = spec.moe_ffn
    moe_flops = 0.0
    if f is not None and w.expert_params:
        active_share = f.n_expert_used / f.n_expert
        moe_flops = 2 * w.expert_params * active_share * tokens
    flops = 2 * w.other_params * batch + moe_flops + attn_flops
    compute_s = flops / (peak_flops(gpu, fp8_weights) * COMPUTE_EFF)
    n_moe = sum(1 for la in layers if la.ffn.kind is FFNKind.MOE)
    overhead_s = (len(layers) * LAYER_US + n_moe * MOE_LAYER_US) * 1e-6
    comm_s = 0.0
    e = spec.n_embd
    if sh.attn_tp > 1:
        kind, bw = link(rig, sh.attn_tp)
        per = 2 * (sh.attn_tp - 1) / sh.attn_tp * e * batch * 2 / bw + LINK_LATENCY_S.get(kind, 2e-5)
        comm_s += 2 * len(layers) * per
    if f is not None and sh.moe_ep > 1:
        kind, bw = link(rig, sh.gpus)
        per = 2 * (tokens / sh.gpus) * f.n_expert_used * e * 2 * (sh.moe_ep - 1) / sh.moe_ep / bw
        comm_s += n_moe * (per + 2 * LINK_LATENCY_S.get(kind, 2e-5))
    elif f is not None and sh.attn_dp > 1:
        # MoE TP over all DP ranks: gather tokens in, reduce-scatter out
        kind, bw = link(rig, sh.gpus)
        per = 2 * (sh.gpus - 1) / sh.gpus * e * tokens * 2 / bw + 2 * LINK_LATENCY_S.get(kind, 2e-5)
        comm_s += n_moe * per
    if sh.pp > 1:
        kind, bw = link(rig, sh.gpus * 2 if sh.gpus * 2 > len(rig.node.gpus) else 2)
        comm_s += e * batch * 2 / bw + LINK_LATENCY_S.get(kind, 2e-5)
    return StepTime(memory_s, compute_s, overhead_s, comm_s)


def active_params(spec: ModelSpec) -> float:
    """Parameters multiplied per token (routed experts at k of E), for prefill FLOPs."""
    from moeplan.arch.inventory import Role, inventory

    total = 0.0
    for t in inventory(spec, checkpoint=True).tensors:
        if t.role in (Role.MTP, Role.EMBED):
            continue
        if t.role is Role.EXPERT and t.layer is not None:
            f = spec.layers[t.layer].ffn
            total += t.n_elements * f.n_expert_used / f.n_expert
        else:
            total += t.n_elements
    return total


@dataclass(frozen=True)
class Throughput:
    batch: int  # sequences per attention replica (all micro-batches)
    concurrent: int  # sequences in flight on the whole layout
    step_s: float  # one decode step of one stage
    decode_tok_s: float  # aggregate decode tokens/s, prefill excluded
    output_tok_s: float  # aggregate output tokens/s with prefill of `isl` tokens per request
    per_seq_tok_s: float  # tokens/s each sequence sees
    bound: str


def serving_throughput(
    spec: ModelSpec,
    rig: Rig,
    sh: Sharding,
    stages: list[StageWeights],
    batch: int,
    isl: int,
    osl: int,
    kv_bytes: float,
    fp8_weights: bool,
    replicas: int,
) -> Throughput:
    """Throughput of `replicas` independent copies of a layout (vLLM DP without EP, SGLang --dp),
    each with `sh.attn_dp` attention replicas of `batch` sequences."""
    avg_ctx = isl + osl // 2
    # pipeline: `pp` micro-batches in flight, each batch/pp sequences; the slowest stage sets the pace
    micro = max(1, batch // sh.pp)
    steps = [decode_step(spec, rig, sh, w, micro, avg_ctx, kv_bytes, fp8_weights) for w in stages]
    worst = max(steps, key=lambda s: s.total_s)
    per_step_tokens = micro * sh.attn_dp * replicas
    stage_time = worst.total_s
    decode_tok_s = per_step_tokens / stage_time  # one micro-batch leaves the last stage per stage time
    gpus = sh.gpus * sh.pp * replicas
    gpu = rig.node.gpus[0]
    prefill_s_per_req = 2 * active_params(spec) * isl / (gpus * peak_flops(gpu, fp8_weights) * PREFILL_EFF)
    per_token = 1 / decode_tok_s + prefill_s_per_req / max(1, osl)
    concurrent = batch * sh.attn_dp * replicas
    per_seq = 1 / (stage_time * sh.pp)
    return Throughput(batch, concurrent, stage_time, decode_tok_s, 1 / per_token, per_seq, worst.bound)
