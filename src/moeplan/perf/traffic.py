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

from moeplan.arch.inventory import Role
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines.llamacpp import CPU, MemoryPlan
from moeplan.memory.kv import CacheConfig, row_bytes
from moeplan.memory.weights import Weights


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


def token_work(spec: ModelSpec, w: Weights, mem: MemoryPlan, cache: CacheConfig) -> TokenWork:
    where = {name: host_device(d.device) for d in mem.devices for name in d.tensors}
    devices: dict[str, DeviceWork] = {}

    def dev(name: str) -> DeviceWork:
        if name not in devices:
            devices[name] = DeviceWork(name)
        return devices[name]

    layer_dev: dict[int, set[str]] = {}
    expert_stacks: dict[tuple[int, str], list[float]] = {}  # (layer, device) -> [bytes, elements]
    output_dev = where.get("output_norm.weight", CPU)
    for t in w.tensors:
        s = t.spec
        d = where.get(s.name)
        if d is None:
            continue  # not loaded (MTP layers)
        if s.layer is not None:
            layer_dev.setdefault(s.layer, set()).add(d)
        if s.role is Role.EMBED:
            if spec.tied_embeddings and s.name == "token_embd.weight":
                dev(output_dev).dense_bytes += t.nbytes  # the output matmul reads the tied copy
                dev(output_dev).dense_flops += 2 * s.n_elements
                dev(output_dev).output_flops += 2 * s.n_elements
            continue
        if s.role is Role.EXPERT and s.layer is not None:
            acc = expert_stacks.setdefault((s.layer, d), [0.0, 0.0])
            acc[0] += t.nbytes
            acc[1] += s.n_elements
            continue
        work = dev(d)
        work.dense_bytes += t.nbytes
        if len(s.shape) >= 2:
            work.dense_flops += 2 * s.n_elements
            if s.role is Role.OUTPUT:
                work.output_flops += 2 * s.n_elements
    for (il, d), (nbytes, elements) in expert_stacks.items():
        f = spec.layers[il].ffn
        if f.kind is FFNKind.MOE and f.n_expert:
            dev(d).experts.append(
                ExpertLayer(
                    il, d, f.n_expert, f.n_expert_used, nbytes / f.n_expert, 2 * elements / f.n_expert
                )
            )
    for il, layer in enumerate(spec.layers):
        a = layer.attn
        # attention runs with the layer's KV cache; the attention weights say where
        attn_name = next(
            (
                n
                for n in (
                    f"blk.{il}.attn_q.weight",
                    f"blk.{il}.attn_qkv.weight",
                    f"blk.{il}.attn_q_a.weight",
                    f"blk.{il}.attn_norm.weight",
                )
                if n in where
            ),
            None,
        )
        d = where[attn_name] if attn_name else next(iter(layer_dev.get(il, {CPU})))
        for name in layer_dev.get(il, set()):
            dev(name).layers += 1
        if a.kind is AttnKind.LINEAR:
            continue  # recurrent state: fixed size, read and written once per token
        window = a.window if a.kind in (AttnKind.SWA, AttnKind.CHUNKED) and not cache.swa_full else 0
        if a.kind is AttnKind.MLA:
            kw, vw = (a.kv_lora_rank + a.qk_rope_head_dim) * a.n_head_kv, 0
            flops = 2 * a.n_head * (2 * a.kv_lora_rank + a.qk_rope_head_dim)  # absorbed MLA
        else:
            kw, vw = a.head_dim_k * a.n_head_kv, a.head_dim_v * a.n_head_kv
            flops = 2 * a.n_head * (a.head_dim_k + a.head_dim_v)
        kv = row_bytes(cache.type_k, kw) + (row_bytes(cache.type_v, vw) if vw else 0)
        work = dev(d)
        work.kv_bytes_per_ctx[window] = work.kv_bytes_per_ctx.get(window, 0.0) + kv
        work.attn_flops_per_ctx[window] = work.attn_flops_per_ctx.get(window, 0.0) + flops
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
