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
from functools import cached_property
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from moeplan.arch.inventory import Role
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines.llamacpp import CPU, REPACK, MemoryPlan
from moeplan.memo import PER_MODEL, PER_MODEL_QUANT, by_identity
from moeplan.memory.kv import CacheConfig, kv_widths, row_bytes
from moeplan.memory.table import TensorLayout, TensorTable
from moeplan.quant.ggml import GGMLType

# The types ggml-cpu's tiled matmul takes (`ggml_tiled_supported`, ggml-cpu/tiled/tiled.cpp; x86
# builds with AVX or AVX2): K- and I-quants whose tensors are not in the repack buffer.
TILED_TYPES = np.array(
    [
        int(t)
        for t in (
            GGMLType.Q6_K,
            GGMLType.Q5_K,
            GGMLType.Q4_K,
            GGMLType.Q3_K,
            GGMLType.Q2_K,
            GGMLType.IQ4_XS,
            GGMLType.IQ2_XXS,
            GGMLType.IQ2_XS,
            GGMLType.IQ2_S,
            GGMLType.IQ3_XXS,
            GGMLType.IQ3_S,
            GGMLType.IQ1_S,
            GGMLType.IQ1_M,
        )
    ],
    dtype=np.int64,
)


def host_device(name: str) -> str:
    """CPU, CPU_REPACK and CPU_Mapped are all the host: one pool of DRAM bandwidth."""
    return CPU if name.startswith(CPU) else name


class ExpertLayer(NamedTuple):
    """The routed experts of one MoE layer on one device (a named tuple: every speed evaluation
    builds one per MoE layer and device)."""

    layer: int
    device: str
    n_expert: int
    n_used: int
    bytes_per_expert: float  # gate + up + down of one expert
    flops_per_expert: float  # per token that uses it
    # The part of those the CPU's tiled matmul can take (K- and I-quants not repacked): the only
    # experts its MUL_MAT_ID multiplies as a matrix; the rest run one token at a time (see
    # `batching.per_token_expert_bytes`).
    tiled_bytes_per_expert: float = 0.0
    tiled_flops_per_expert: float = 0.0


@dataclass
class DeviceWork:
    device: str  # CPU or a GPU backend name (CUDA0 ...)
    dense_bytes: float = 0.0  # weights read whatever the routing (non-expert tensors)
    dense_flops: float = 0.0
    output_flops: float = (
        0.0  # the output matmul (part of dense_flops): prefill runs it for the last token only
    )
    layers: int = 0  # decoder layers (attention or FFN) that run here
    layer_ops: float = 0.0  # their graph ops, in dense decoder layers (see `layer_ops`)
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


@dataclass(frozen=True, eq=False)
class _AttentionCosts:
    """Per decoder layer, what each cached token costs its attention: KV bytes read and FLOPs."""

    window: NDArray[np.int64]  # 0: the whole context; -1: linear attention (fixed-size state)
    kv_bytes: NDArray[np.float64]
    flops: NDArray[np.float64]

    @cached_property
    def windows(self) -> list[tuple[int, NDArray[np.bool_]]]:
        """Each window size with the attention layers that have it."""
        return [(w, self.window == w) for w in sorted(set(self.window.tolist()) - {-1})]


@by_identity(maxsize=PER_MODEL_QUANT)
def _attention_costs(spec: ModelSpec, cache: CacheConfig) -> _AttentionCosts:
    window, kv_bytes, flops = [], [], []
    for layer in spec.layers:
        a = layer.attn
        if a.kind is AttnKind.LINEAR:
            window.append(-1)
            kv_bytes.append(0)
            flops.append(0)
            continue
        window.append(a.window if a.sliding and not cache.swa_full else 0)
        if a.kind is AttnKind.MLA:
            flops.append(2 * a.n_head * (2 * a.kv_lora_rank + a.qk_rope_head_dim))  # absorbed MLA
        else:  # a layer without KV heads attends to nothing (deci's linear replacement)
            flops.append(2 * a.n_head * (a.head_dim_k + a.head_dim_v) if a.n_head_kv else 0)
        kw, vw = kv_widths(a)  # MLA caches K only
        kv_bytes.append(row_bytes(cache.type_k, kw) + (row_bytes(cache.type_v, vw) if vw else 0))
    return _AttentionCosts(
        np.array(window, dtype=np.int64),
        np.array(kv_bytes, dtype=np.float64),
        np.array(flops, dtype=np.float64),
    )


@by_identity(maxsize=PER_MODEL)
def _attention_rows(layout: TensorLayout, n_layer: int) -> NDArray[np.int64]:
    """Per decoder layer, the tensor that says where its attention (and KV cache) runs (-1: none)."""
    return layout.layer_rows(n_layer, "attn_q", "attn_qkv", "attn_q_a", "attn_norm")


# llama.cpp runs a decoder layer as ~31 graph nodes (Llama; 35 with Qwen3's q/k norms), each with
# a fixed cost on top of its work (a kernel launch, or a barrier of the CPU's threads). A MoE FFN
# adds 12 nodes (router, softmax, top-k, weights, the routed matmuls) plus 2 per expert used (a
# view and an add gather each expert's output), a shared expert ~6 more: read from the pinned
# build's "graph: nodes" with the expert count overridden (qwen3moe and mixtral: +2 per expert
# from k=2 to 8; qwen3moe minus qwen3 and mixtral minus llama: 12 + 2k).
DENSE_LAYER_NODES = 31
MOE_NODES, NODES_PER_EXPERT_USED, SHARED_EXPERT_NODES = 12, 2, 6


@by_identity(maxsize=PER_MODEL)
def layer_ops(spec: ModelSpec) -> NDArray[np.float64]:
    """Per decoder layer, its graph ops in units of a dense layer: the per-layer overhead scales
    with it (a layer routing 8 experts runs about twice the nodes of a dense one)."""
    n_expert, n_used = _routing(spec)
    shared = np.array([la.ffn.n_ff_shexp > 0 for la in spec.layers])
    moe = MOE_NODES + NODES_PER_EXPERT_USED * n_used + np.where(shared, SHARED_EXPERT_NODES, 0)
    return 1.0 + np.where(n_expert > 0, moe, 0) / DENSE_LAYER_NODES


@by_identity(maxsize=PER_MODEL)
def _routing(spec: ModelSpec) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Per decoder layer, experts and experts used per token (0 and 0 for a layer without routing)."""
    routed = [
        (la.ffn.n_expert, la.ffn.n_expert_used)
        if la.ffn.kind is FFNKind.MOE and la.ffn.n_expert > 0
        else (0, 0)
        for la in spec.layers
    ]
    counts = np.array(routed, dtype=np.int64).reshape(len(routed), 2)
    return counts[:, 0], counts[:, 1]


@dataclass(frozen=True, eq=False)
class _Columns:
    """What token work reads of one weights table, arranged once per table (the planner evaluates
    dozens of placements of each quantization). Weights are 0 where a tensor does not count."""

    dense: NDArray[np.float64]  # (3, tensors): bytes, matmul FLOPs, output FLOPs read whatever the routing
    expert: NDArray[np.int64]  # rows of routed-expert tensors in decoder layers
    expert_layer: NDArray[np.int64]
    expert_bytes: NDArray[np.float64]
    expert_elements: NDArray[np.float64]
    layered: NDArray[np.int64]  # rows of tensors in decoder layers
    layered_layer: NDArray[np.int64]


@by_identity(maxsize=PER_MODEL_QUANT)
def _columns(table: TensorTable) -> _Columns:
    in_layer = table.layer >= 0
    expert = in_layer & table.role_is(Role.EXPERT)
    dense = ~expert & ~table.role_is(Role.EMBED)
    matmul = np.where(dense & table.matrix, 2 * table.elements, 0.0)
    rows, layered = np.flatnonzero(expert), np.flatnonzero(in_layer)
    return _Columns(
        np.stack(
            [np.where(dense, table.nbytes, 0.0), matmul, np.where(table.role_is(Role.OUTPUT), matmul, 0.0)]
        ),
        rows,
        table.layer[rows],
        table.nbytes[rows],
        table.elements[rows],
        layered,
        table.layer[layered],
    )


def _per_slot(
    keys: NDArray[np.int64], loaded: NDArray[np.bool_], slots: int, weights: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Sums per (layer, device) slot; rows of tensors not loaded anywhere are dropped."""
    return np.bincount(np.where(loaded, keys, slots), weights=weights, minlength=slots + 1)[:slots].astype(
        np.float64
    )


def _device_index(mem: MemoryPlan, name: str) -> int:
    """The index of a device in `mem.assignment`, -1 when the plan has no such device."""
    return next((i for i, d in enumerate(mem.devices) if d.device == name), -1)


@by_identity(maxsize=PER_MODEL_QUANT)
def _works(mem: MemoryPlan) -> dict[CacheConfig, TokenWork]:
    """Token work already worked out for a memory plan (shared by every rig that reuses the plan)."""
    return {}


def token_work(spec: ModelSpec, mem: MemoryPlan, cache: CacheConfig) -> TokenWork:
    """Bytes and FLOPs per device for one token of `mem` (`spec` is the plan's own model)."""
    done = _works(mem)
    work = done.get(cache)
    if work is None:
        work = done[cache] = _token_work(spec, mem, cache)
    return work


def _token_work(spec: ModelSpec, mem: MemoryPlan, cache: CacheConfig) -> TokenWork:
    table = mem.table
    cols = _columns(table)
    # The host's buffers (CPU, CPU_REPACK) are one device here (index 0); bin n: unloaded tensors.
    names = [host_device(d.device) for d in mem.devices]
    merged = sorted(set(names), key=names.index)
    n = len(merged)
    dev_of = np.array([merged.index(d) for d in names] + [n], dtype=np.int64)[mem.assignment]
    devices: dict[str, DeviceWork] = {}

    def dev(i: int) -> DeviceWork:
        name = merged[i]
        if name not in devices:
            devices[name] = DeviceWork(name)
        return devices[name]

    if spec.tied_embeddings:  # the output matmul reads the tied copy of token_embd
        embd = table.row("token_embd.weight")
        work = dev(merged.index(host_device(mem.output_device)))
        work.dense_bytes += float(table.nbytes[embd])
        work.dense_flops += 2 * float(table.elements[embd])
        work.output_flops += 2 * float(table.elements[embd])
    dense_bytes, dense_flops, output_flops = (
        np.bincount(dev_of, weights=w, minlength=n + 1).tolist() for w in cols.dense
    )
    for i in range(n):
        if dense_bytes[i]:
            work = dev(i)
            work.dense_bytes += dense_bytes[i]
            work.dense_flops += dense_flops[i]
            work.output_flops += output_flops[i]
    # Keyed by (layer, device): key = layer * n + device.
    slots = spec.n_layer * n
    dev_e = dev_of[cols.expert]
    stack, on = cols.expert_layer * n + dev_e, dev_e < n
    stack_bytes = _per_slot(stack, on, slots, cols.expert_bytes)
    stack_elements = _per_slot(stack, on, slots, cols.expert_elements)
    repacked = mem.assignment[cols.expert] == _device_index(mem, REPACK)
    tiled = on & ~repacked & np.isin(table.types[cols.expert], TILED_TYPES)
    tiled_bytes = _per_slot(stack, tiled, slots, cols.expert_bytes)
    tiled_elements = _per_slot(stack, tiled, slots, cols.expert_elements)
    keys = np.flatnonzero(stack_bytes)
    n_expert, n_used = _routing(spec)
    keys = keys[n_expert[keys // n] > 0]  # expert tensors of a non-MoE layer are not routed
    layer_of = keys // n
    per_expert = [
        (a[keys] * scale / n_expert[layer_of]).tolist()
        for a, scale in ((stack_bytes, 1), (stack_elements, 2), (tiled_bytes, 1), (tiled_elements, 2))
    ]
    for key, il, b, fl, tb, tf in zip(keys.tolist(), layer_of.tolist(), *per_expert, strict=True):
        d = key % n
        dev(d).experts.append(ExpertLayer(il, merged[d], int(n_expert[il]), int(n_used[il]), b, fl, tb, tf))
    # Which devices hold part of each layer (a layer counts once on each of them).
    dev_l = dev_of[cols.layered]
    held = _per_slot(cols.layered_layer * n + dev_l, dev_l < n, slots).reshape(spec.n_layer, n) > 0
    ops = layer_ops(spec) @ held
    for i, count in enumerate(held.sum(axis=0).tolist()):
        if count:
            dev(i).layers += count
            dev(i).layer_ops += float(ops[i])
    loaded = dev_of < n
    # Attention runs with the layer's KV cache; the attention weights say where (else any part).
    rows = _attention_rows(table.layout, spec.n_layer)
    attn_dev = np.where((rows >= 0) & loaded[rows], dev_of[rows], held.argmax(axis=1))
    costs = _attention_costs(spec, cache)
    for window, sel in costs.windows:
        kv = np.bincount(attn_dev[sel], weights=costs.kv_bytes[sel], minlength=n)
        flops = np.bincount(attn_dev[sel], weights=costs.flops[sel], minlength=n)
        for i in np.flatnonzero(np.bincount(attn_dev[sel], minlength=n)).tolist():
            work = dev(i)
            work.kv_bytes_per_ctx[window] = work.kv_bytes_per_ctx.get(window, 0.0) + float(kv[i])
            work.attn_flops_per_ctx[window] = work.attn_flops_per_ctx.get(window, 0.0) + float(flops[i])
    hops = 0
    if any(name != CPU for name in devices):
        parts, on_cpu = held.sum(axis=1), held[:, 0]
        hops = int(np.sum(on_cpu & (parts > 1)))  # a layer split between a GPU and the CPU: there and back
        if np.any(on_cpu & (parts == 1)):
            hops += 1  # whole layers on the CPU: one crossing into the GPU part and back
    return TokenWork(devices, hops, spec.n_layer)
