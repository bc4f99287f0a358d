"""What one decoded token costs each device: bytes read, FLOPs, and the hops between devices.

Per token (llama.cpp's decode graph, `src/models/*.cpp`), each device reads
- the weights of the layers it holds: attention, norms, router, shared experts, dense FFNs, the
  output layer (`token_embd` is a row lookup, not a read of the whole matrix; a tied output layer
  reads its copy of it where the output layer lives);
- of each MoE layer's routed experts only the k of E the router picked (so `k/E` of the stacks in
  expectation; which ones varies token to token: see `spread.py`);
- the KV cache of its attention layers, up to the current context (sliding-window layers at most
  their window).
FLOPs are 2 per weight read (a multiply-add) plus attention: 2·(d_k + d_v) per head per cached token.
A hop is a GPU<->CPU round trip: llama.cpp splits the graph where consecutive ops live on different
backends; with experts on the CPU each such MoE layer adds one (activations to the CPU, results back).
"""

from dataclasses import dataclass, field

import numpy as np

from moeplan.arch.inventory import Role
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines.llamacpp import CPU, MemoryPlan
from moeplan.memo import by_identity
from moeplan.memory.kv import CacheConfig, row_bytes
from moeplan.memory.table import TensorLayout


def host_device(name: str) -> str:
    """CPU, CPU_REPACK and CPU_Mapped are all the host: one pool of DRAM bandwidth."""
    return CPU if name.startswith(CPU) else name


@dataclass(frozen=True)
class ExpertLayer:
    """The routed experts of one MoE layer on one device."""

    layer: int
    device: str
    n_expert: int
    n_used: int
    bytes_per_expert: float  # gate + up + down of one expert
    flops_per_expert: float  # per token that uses it


@dataclass
class DeviceWork:
    device: str  # CPU or a GPU backend name (CUDA0 ...)
    dense_bytes: float = 0.0  # weights read whatever the routing (non-expert tensors)
    dense_flops: float = 0.0
    output_flops: float = (
        0.0  # the output matmul (part of dense_flops): prefill runs it for the last token only
    )
    layers: int = 0  # decoder layers (attention or FFN) that run here
    # per cached token: KV bytes read and attention FLOPs, keyed by the layer's window (0 = none)
    kv_bytes_per_ctx: dict[int, float] = field(default_factory=dict)
    attn_flops_per_ctx: dict[int, float] = field(default_factory=dict)
    experts: list[ExpertLayer] = field(default_factory=list)

    def expert_bytes(self, distinct: float | None = None) -> float:
        """Expected routed-expert bytes read for one step touching `distinct` experts per layer
        (default: k, one token)."""
        return sum(
            e.bytes_per_expert * (e.n_used if distinct is None else min(distinct, e.n_expert))
            for e in self.experts
        )

    def expert_flops(self) -> float:
        return sum(e.flops_per_expert * e.n_used for e in self.experts)

    def kv_bytes(self, fill: int) -> float:
        return sum(b * (min(fill, w) if w else fill) for w, b in self.kv_bytes_per_ctx.items())

    def attn_flops(self, fill: int) -> float:
        return sum(f * (min(fill, w) if w else fill) for w, f in self.attn_flops_per_ctx.items())

    def bytes_per_token(self, fill: int) -> float:
        return self.dense_bytes + self.expert_bytes() + self.kv_bytes(fill)

    def flops_per_token(self, fill: int) -> float:
        return self.dense_flops + self.expert_flops() + self.attn_flops(fill)


@dataclass(frozen=True)
class TokenWork:
    devices: dict[str, DeviceWork]
    hops: int  # GPU<->CPU round trips per token
    n_layer: int

    @property
    def gpu_devices(self) -> list[DeviceWork]:
        return [d for d in self.devices.values() if d.device != CPU]


@dataclass(frozen=True)
class _AttentionCost:
    """One attention layer's per-cached-token cost: KV bytes read and FLOPs, and its window."""

    window: int  # 0: the whole context
    kv_bytes: float
    flops: float


@by_identity(maxsize=256)
def _attention_costs(spec: ModelSpec, cache: CacheConfig) -> tuple[_AttentionCost | None, ...]:
    """Per decoder layer (None for linear-attention layers, whose recurrent state is fixed-size)."""
    out: list[_AttentionCost | None] = []
    for layer in spec.layers:
        a = layer.attn
        if a.kind is AttnKind.LINEAR:
            out.append(None)
            continue
        window = a.window if a.kind in (AttnKind.SWA, AttnKind.CHUNKED) and not cache.swa_full else 0
        if a.kind is AttnKind.MLA:
            kw, vw = (a.kv_lora_rank + a.qk_rope_head_dim) * a.n_head_kv, 0
            flops = 2 * a.n_head * (2 * a.kv_lora_rank + a.qk_rope_head_dim)  # absorbed MLA
        else:
            kw, vw = a.head_dim_k * a.n_head_kv, a.head_dim_v * a.n_head_kv
            flops = 2 * a.n_head * (a.head_dim_k + a.head_dim_v)
        kv = row_bytes(cache.type_k, kw) + (row_bytes(cache.type_v, vw) if vw else 0)
        out.append(_AttentionCost(window, float(kv), float(flops)))
    return tuple(out)


@by_identity(maxsize=256)
def _attention_rows(layout: TensorLayout, n_layer: int) -> tuple[int, ...]:
    """Per decoder layer, the tensor that says where its attention (and KV cache) runs."""
    kinds = ("attn_q", "attn_qkv", "attn_q_a", "attn_norm")
    return tuple(layout.row(*(f"blk.{il}.{k}.weight" for k in kinds)) for il in range(n_layer))


def token_work(spec: ModelSpec, mem: MemoryPlan, cache: CacheConfig) -> TokenWork:
    table = mem.table
    # The host's buffers (CPU, CPU_REPACK) are one device here; bin n holds the unloaded tensors.
    names = [host_device(d.device) for d in mem.devices]
    merged = sorted(set(names), key=names.index)
    n = len(merged)
    dev_of = np.array([merged.index(d) for d in names] + [n], dtype=np.int64)[mem.assignment]
    loaded = dev_of < n
    devices: dict[str, DeviceWork] = {}

    def dev(name: str) -> DeviceWork:
        if name not in devices:
            devices[name] = DeviceWork(name)
        return devices[name]

    layered = loaded & (table.layer >= 0)
    layer_dev: dict[int, set[str]] = {}
    for key in np.unique(table.layer[layered] * n + dev_of[layered]).tolist():
        layer_dev.setdefault(key // n, set()).add(merged[key % n])
    output_row = table.row("output_norm.weight")
    output_dev = merged[dev_of[output_row]] if output_row >= 0 and loaded[output_row] else CPU
    if spec.tied_embeddings:  # the output matmul reads the tied copy of token_embd
        embd = table.row("token_embd.weight")
        work = dev(output_dev)
        work.dense_bytes += float(table.nbytes[embd])
        work.dense_flops += 2 * float(table.elements[embd])
        work.output_flops += 2 * float(table.elements[embd])
    expert = layered & table.role_is(Role.EXPERT)
    dense = loaded & ~expert & ~table.role_is(Role.EMBED)  # read whatever the routing
    matmul = np.where(dense & table.matrix, 2 * table.elements, 0.0)
    output = np.where(table.role_is(Role.OUTPUT), matmul, 0.0)
    dense_bytes = np.bincount(dev_of, weights=np.where(dense, table.nbytes, 0.0), minlength=n + 1)
    dense_flops = np.bincount(dev_of, weights=matmul, minlength=n + 1)
    output_flops = np.bincount(dev_of, weights=output, minlength=n + 1)
    for i in np.unique(dev_of[dense]).tolist():
        work = dev(merged[i])
        work.dense_bytes += float(dense_bytes[i])
        work.dense_flops += float(dense_flops[i])
        work.output_flops += float(output_flops[i])
    stacks, which = np.unique(table.layer[expert] * n + dev_of[expert], return_inverse=True)
    stack_bytes = np.bincount(which, weights=table.nbytes[expert], minlength=len(stacks)).tolist()
    stack_elements = np.bincount(which, weights=table.elements[expert], minlength=len(stacks)).tolist()
    for key, nbytes, elements in zip(stacks.tolist(), stack_bytes, stack_elements, strict=True):
        il, d = key // n, merged[key % n]
        f = spec.layers[il].ffn
        if f.kind is FFNKind.MOE and f.n_expert:
            per_expert = (nbytes / f.n_expert, 2 * elements / f.n_expert)
            dev(d).experts.append(ExpertLayer(il, d, f.n_expert, f.n_expert_used, *per_expert))
    costs = _attention_costs(spec, cache)
    attn_rows = _attention_rows(table.layout, spec.n_layer)
    for il in range(spec.n_layer):
        for name in layer_dev.get(il, set()):
            dev(name).layers += 1
        cost = costs[il]
        if cost is None:
            continue  # recurrent state: fixed size, read and written once per token
        r = attn_rows[il]
        d = merged[dev_of[r]] if r >= 0 and loaded[r] else next(iter(layer_dev.get(il, {CPU})))
        work = dev(d)
        work.kv_bytes_per_ctx[cost.window] = work.kv_bytes_per_ctx.get(cost.window, 0.0) + cost.kv_bytes
        work.attn_flops_per_ctx[cost.window] = work.attn_flops_per_ctx.get(cost.window, 0.0) + cost.flops
    gpu_used = any(name != CPU for name in devices)
    hops = 0
    if gpu_used:
        for il in range(spec.n_layer):
            ds = layer_dev.get(il, set())
            if CPU in ds and len(ds) > 1:
                hops += 1  # a layer split between a GPU and the CPU: there and back
        cpu_layers = [il for il, ds in layer_dev.items() if ds == {CPU}]
        if cpu_layers:
            hops += 1  # whole layers on the CPU: one crossing into the GPU part and back
    return TokenWork(devices, hops, spec.n_layer)
