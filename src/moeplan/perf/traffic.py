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

import numpy as np
from numpy.typing import NDArray

from moeplan.arch.inventory import Role
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines.llamacpp import CPU, MemoryPlan
from moeplan.memo import by_identity
from moeplan.memory.kv import CacheConfig, kv_widths, row_bytes
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


@by_identity(maxsize=256)
def _attention_costs(spec: ModelSpec, cache: CacheConfig) -> _AttentionCosts:
    window, kv_bytes, flops = [], [], []
    for layer in spec.layers:
        a = layer.attn
        if a.kind is AttnKind.LINEAR:
            window.append(-1)
            kv_bytes.append(0)
            flops.append(0)
            continue
        window.append(a.window if a.kind in (AttnKind.SWA, AttnKind.CHUNKED) and not cache.swa_full else 0)
        if a.kind is AttnKind.MLA:
            flops.append(2 * a.n_head * (2 * a.kv_lora_rank + a.qk_rope_head_dim))  # absorbed MLA
        else:
            flops.append(2 * a.n_head * (a.head_dim_k + a.head_dim_v))
        kw, vw = kv_widths(a)  # MLA caches K only
        kv_bytes.append(row_bytes(cache.type_k, kw) + (row_bytes(cache.type_v, vw) if vw else 0))
    return _AttentionCosts(
        np.array(window, dtype=np.int64),
        np.array(kv_bytes, dtype=np.float64),
        np.array(flops, dtype=np.float64),
    )


@by_identity(maxsize=256)
def _attention_rows(layout: TensorLayout, n_layer: int) -> NDArray[np.int64]:
    """Per decoder layer, the tensor that says where its attention (and KV cache) runs (-1: none)."""
    return layout.layer_rows(n_layer, "attn_q", "attn_qkv", "attn_q_a", "attn_norm")


def token_work(spec: ModelSpec, mem: MemoryPlan, cache: CacheConfig) -> TokenWork:
    table = mem.table
    # The host's buffers (CPU, CPU_REPACK) are one device here (index 0); bin n: unloaded tensors.
    names = [host_device(d.device) for d in mem.devices]
    merged = sorted(set(names), key=names.index)
    n = len(merged)
    dev_of = np.array([merged.index(d) for d in names] + [n], dtype=np.int64)[mem.assignment]
    loaded = dev_of < n
    devices: dict[str, DeviceWork] = {}

    def dev(i: int) -> DeviceWork:
        name = merged[i]
        if name not in devices:
            devices[name] = DeviceWork(name)
        return devices[name]

    output_row = table.row("output_norm.weight")
    output_dev = int(dev_of[output_row]) if output_row >= 0 and loaded[output_row] else 0
    if spec.tied_embeddings:  # the output matmul reads the tied copy of token_embd
        embd = table.row("token_embd.weight")
        work = dev(output_dev)
        work.dense_bytes += float(table.nbytes[embd])
        work.dense_flops += 2 * float(table.elements[embd])
        work.output_flops += 2 * float(table.elements[embd])
    layered = loaded & (table.layer >= 0)
    expert = layered & table.role_is(Role.EXPERT)
    dense = loaded & ~expert & ~table.role_is(Role.EMBED)  # read whatever the routing
    matmul = np.where(dense & table.matrix, 2 * table.elements, 0.0)
    output = np.where(table.role_is(Role.OUTPUT), matmul, 0.0)
    dense_bytes = np.bincount(dev_of, weights=np.where(dense, table.nbytes, 0.0), minlength=n + 1)
    dense_flops = np.bincount(dev_of, weights=matmul, minlength=n + 1)
    output_flops = np.bincount(dev_of, weights=output, minlength=n + 1)
    for i in np.flatnonzero(dense_bytes[:n]).tolist():
        work = dev(i)
        work.dense_bytes += float(dense_bytes[i])
        work.dense_flops += float(dense_flops[i])
        work.output_flops += float(output_flops[i])
    # Keyed by (layer, device): key = layer * n + device.
    slots = spec.n_layer * n
    stack = table.layer[expert] * n + dev_of[expert]
    stack_bytes = np.bincount(stack, weights=table.nbytes[expert], minlength=slots)
    stack_elements = np.bincount(stack, weights=table.elements[expert], minlength=slots)
    for key in np.flatnonzero(stack_bytes).tolist():
        il, d = divmod(key, n)
        f = spec.layers[il].ffn
        if f.kind is FFNKind.MOE and f.n_expert:
            per_expert = (stack_bytes[key] / f.n_expert, 2 * stack_elements[key] / f.n_expert)
            dev(d).experts.append(ExpertLayer(il, merged[d], f.n_expert, f.n_expert_used, *per_expert))
    # Which devices hold part of each layer (a layer counts once on each of them).
    held = (
        np.bincount(table.layer[layered] * n + dev_of[layered], minlength=slots).reshape(spec.n_layer, n) > 0
    )
    for i, count in enumerate(held.sum(axis=0).tolist()):
        if count:
            dev(i).layers += count
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
