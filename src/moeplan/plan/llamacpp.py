"""Search the placements llama.cpp can express on one machine, for a model, quantization and context.

Strategies (each a llama.cpp command line): everything on the GPU(s); the experts of the first N
layers on the CPU (`--n-cpu-moe N`, the fewest that fit, since every expert layer kept on a GPU is
faster; `-ts` rebalanced so each GPU holds what it can); every expert on the CPU (`--cpu-moe`);
whole layers offloaded (`-ngl N`, the most that fit); CPU only; and, when RAM and VRAM together are
too small, weights mmap'd from disk. Every candidate's memory is computed by
`engines.llamacpp.plan_memory`, the same code that matches llama.cpp's own buffers.

Choosing a quantization: quality first, but no more than a quarter of the decode speed of the fastest
plan at the quality floor (Q4_K_M) is given up for it (SPEED_GUARD); below the floor only when
nothing at or above it fits.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from moeplan.arch.inventory import Inventory, Role, inventory
from moeplan.arch.spec import ModelSpec
from moeplan.engines.builds import PINNED_BUILD, at_build, output_first
from moeplan.engines.gpu_backends import Backend, usable_bytes, vendor_backend
from moeplan.engines.llamacpp import CPU, Frontend, MemoryPlan, parse_placement, plan_memory
from moeplan.hardware.spec import GPU, Node, Rig
from moeplan.memo import PER_MODEL_QUANT, by_identity
from moeplan.memory.kv import CacheConfig
from moeplan.memory.table import tensor_table
from moeplan.memory.weights import FileInventory, Weights, predict, released_quantized
from moeplan.perf.estimate import Speed
from moeplan.perf.estimate import speed as perf_speed
from moeplan.quant.recipe import FileType

GiB = 2**30
# The margin kept free on every GPU on top of what it allocates and loses to its runtime: llama.cpp's
# --fit-target default (`common/common.h fit_params_target = 1024` MiB per device).
FIT_TARGET = 1 * GiB
# Host RAM kept for the OS and other programs.
HOST_RESERVE_MIN = 4 * GiB
HOST_RESERVE_FRACTION = 0.05

QUANT_LADDER = (
    FileType.Q8_0,
    FileType.Q6_K,
    FileType.Q5_K_M,
    FileType.Q4_K_M,
    FileType.IQ4_XS,
    FileType.Q3_K_M,
    FileType.IQ3_M,
    FileType.IQ3_XXS,
    FileType.Q2_K,
    FileType.IQ2_M,
    FileType.IQ2_XXS,
    FileType.IQ1_M,
    FileType.IQ1_S,
)
QUALITY_FLOOR = FileType.Q4_K_M
# A higher quality must keep at least this fraction of the fastest plan's decode speed at the floor:
# one K-quant step (Q4_K_M -> Q5_K_M -> Q6_K) is worth at most a quarter of the speed, not half.
SPEED_GUARD = 0.75
CONTEXT_LADDER = (1 << 20, 524288, 262144, 131072, 65536, 32768, 16384, 8192, 4096)
BASE_CONTEXT = 8192
MIN_CONTEXT = 4096


@dataclass(frozen=True)
class Runtime:
    """The llama.cpp a plan is for: its build, the GPUs' backend (None: the vendor's default, e.g.
    CUDA for NVIDIA, Metal for Apple), --no-op-offload, and the free margin kept on every GPU."""

    build: int = PINNED_BUILD
    backend: Backend | None = None
    op_offload: bool = True
    fit_target_bytes: int = FIT_TARGET


@dataclass(frozen=True)
class DeviceSlot:
    name: str  # llama.cpp buffer type name: CPU, CUDA0, ROCm0, MTL0 ...
    capacity_bytes: int
    bandwidth_bytes_s: float
    node: Node | None = None  # on the CPU slot: the node whose devices the speed model rates
    runtime: Runtime = Runtime()  # on the CPU slot: the llama.cpp the plan is for
    free_bytes: int = 0  # on a GPU slot: what llama.cpp sees free (its default layer split)


@dataclass
class Candidate:
    quant: FileType
    strategy: str  # gpu | n_cpu_moe | cpu_moe | ngl | cpu | disk
    flags: str
    ctx: int
    memory: MemoryPlan
    fits: bool
    speed: Callable[[], Speed]  # the speed model (perf/), built on demand
    overflow: dict[str, int] = field(default_factory=dict)  # device -> bytes over capacity
    why_not: str = ""

    @cached_property
    def perf(self) -> Speed:
        return self.speed()

    @property
    def seconds_per_token(self) -> float:
        return self.perf.seconds_per_token

    @property
    def bound_by(self) -> str:
        return self.perf.bound_by

    @property
    def decode_tok_s(self) -> float:
        return 1.0 / self.seconds_per_token if self.seconds_per_token else 0.0


def gpu_backend(gpu: GPU, runtime: Runtime) -> Backend:
    """The backend a GPU runs under: RPC devices are always RPC; otherwise the one asked for, or the
    vendor's default."""
    if gpu.vendor == "RPC" or runtime.backend is None:
        return vendor_backend(gpu.vendor)
    return runtime.backend


def backend_name(gpu: GPU, index: int, runtime: Runtime = Runtime()) -> str:
    return f"{gpu_backend(gpu, runtime).device_prefix}{index}"


def device_slots(rig: Rig, runtime: Runtime = Runtime()) -> tuple[DeviceSlot, list[DeviceSlot]]:
    """Capacities llama.cpp may use on the first node: the host, and each GPU's memory as its backend
    reports it (Metal: the working set) less the margin. What the runtime itself takes is part of the
    plan's per-device figures (`DeviceMemory.runtime_bytes`), not of the capacity."""
    node = rig.node
    host = node.host
    gpus = []
    unified_used = 0
    for i, g in enumerate(node.gpus):
        b = gpu_backend(g, runtime)
        usable = usable_bytes(b, g.memory_bytes)
        cap = usable - runtime.fit_target_bytes
        unified_used += usable if g.unified_memory else 0
        free = usable - b.runtime_bytes
        gpus.append(
            DeviceSlot(backend_name(g, i, runtime), max(cap, 0), g.bandwidth_bytes_s, free_bytes=free)
        )
    reserve = max(HOST_RESERVE_MIN, int(HOST_RESERVE_FRACTION * host.ram_bytes))
    cpu_cap = max(host.ram_bytes - reserve - unified_used, 0)
    cpu = DeviceSlot(CPU, cpu_cap, host.ram_bandwidth_bytes_s, node, runtime)
    return cpu, gpus


@by_identity(maxsize=PER_MODEL_QUANT)
def _memory_plans(
    w: Weights,
) -> dict[tuple[str, CacheConfig, tuple[str, ...], Frontend, tuple[int, ...], bool, bool], MemoryPlan]:
    """The memory plans worked out for these weights (one inventory's), by flags, cache and GPU names:
    a plan depends on no GPU's size (but for the default split of several GPUs without -ts), so every
    rig with as many GPUs reuses it."""
    return {}


def _evaluate(
    inv: Inventory,
    w: Weights,
    quant: FileType,
    strategy: str,
    flags: str,
    ctx: int,
    cache: CacheConfig,
    cpu: DeviceSlot,
    gpus: list[DeviceSlot],
    frontend: Frontend,
) -> Candidate:
    cfg = CacheConfig(**{**cache.__dict__, "n_ctx": ctx})
    names = tuple(g.name for g in gpus) if strategy != "cpu" else ()
    # the GPUs' free memory matters only to llama.cpp's default split: several GPUs and no -ts
    split_by_free = strategy != "cpu" and len(gpus) > 1 and not parse_placement(flags).tensor_split
    free = tuple(g.free_bytes for g in gpus) if split_by_free else ()
    rt = cpu.runtime
    plans = _memory_plans(w)
    key = (flags, cfg, names, frontend, free, rt.op_offload, output_first(rt.build))
    mem = plans.get(key)
    if mem is None:
        mem = plans[key] = plan_memory(
            inv,
            w,
            cfg,
            parse_placement(flags),
            names,
            frontend,
            op_offload=rt.op_offload,
            free=free,
            output_first=output_first(rt.build),
        )
    slots = {s.name: s for s in [cpu, *gpus]}
    overflow = {}
    host_total = sum(d.total_bytes for d in mem.devices if d.device.startswith("CPU"))
    if host_total > cpu.capacity_bytes:
        overflow[CPU] = host_total - cpu.capacity_bytes
    for d in mem.devices:
        s = slots.get(d.device)
        if s is not None and s.name != CPU and d.total_bytes > s.capacity_bytes:
            overflow[d.device] = d.total_bytes - s.capacity_bytes
    node = cpu.node
    if node is None:
        raise ValueError("the CPU device slot carries no node (use device_slots)")
    return Candidate(
        quant,
        strategy,
        flags,
        ctx,
        mem,
        not overflow,
        lambda: perf_speed(inv.spec, mem, cfg, node),
        overflow,
    )


def _split_flags(layer_bytes: list[int], gpus: list[DeviceSlot]) -> str:
    """-ts giving each GPU a contiguous run of layers in proportion to its capacity (layer counts;
    the last slot is the output layer, which llama.cpp puts on the last GPU)."""
    if len(gpus) < 2:
        return ""
    total_cap = sum(g.capacity_bytes for g in gpus)
    total = sum(layer_bytes)
    counts = [0] * len(gpus)
    k, acc, target = 0, 0, total * gpus[0].capacity_bytes / total_cap
    for b in layer_bytes:
        if acc + b / 2 > target and k < len(gpus) - 1:
            k += 1
            target += total * gpus[k].capacity_bytes / total_cap
        counts[k] += 1
        acc += b
    counts[-1] += 1  # the output layer
    return " -ts " + ",".join(str(c) for c in counts)


def _layer_gpu_bytes(w: Weights, n_layer_all: int, n_cpu_moe: int) -> list[int]:
    """Bytes of each layer's tensors on the GPUs when the experts of the first `n_cpu_moe` stay on the CPU."""
    table = tensor_table(w)
    return table.bytes_by_layer(~(table.role_is(Role.EXPERT) & (table.layer < n_cpu_moe)), n_layer_all)


@by_identity(maxsize=PER_MODEL_QUANT)
def _weights(inv: Inventory, quant: FileType) -> Weights:
    return predict(inv, quant)


def best_for_quant(
    spec: ModelSpec,
    inv: Inventory,
    quant: FileType,
    ctx: int,
    cache: CacheConfig,
    cpu: DeviceSlot,
    gpus: list[DeviceSlot],
    frontend: Frontend,
) -> list[Candidate]:
    """The fastest fitting candidate of each strategy for this quantization (or the least-bad one)."""
    w = _weights(inv, quant)
    n_all = inv.block_count
    seen: dict[str, Candidate] = {}

    def ev(strategy: str, flags: str) -> Candidate:
        if flags not in seen:
            seen[flags] = _evaluate(inv, w, quant, strategy, flags, ctx, cache, cpu, gpus, frontend)
        return seen[flags]

    out = [ev("cpu", "-ngl 0")]
    table = tensor_table(w)
    loaded = float(table.nbytes[~table.role_is(Role.MTP)].sum())
    if not gpus or loaded > cpu.capacity_bytes + sum(g.capacity_bytes for g in gpus):
        return out  # no placement can help when the weights alone exceed RAM + VRAM
    full = ev("gpu", "-ngl 99" + _split_flags(_layer_gpu_bytes(w, n_all, 0), gpus))
    out.append(full)
    if full.fits:
        return out
    gpu_over = sum(b for d, b in full.overflow.items() if d != CPU)
    if spec.is_moe:
        all_cpu = ev("cpu_moe", "-ngl 99 --cpu-moe" + _split_flags(_layer_gpu_bytes(w, n_all, n_all), gpus))
        out.append(all_cpu)

        def n_cpu_moe(n: int) -> Candidate:
            flags = f"-ngl 99 --n-cpu-moe {n}" + _split_flags(_layer_gpu_bytes(w, n_all, n), gpus)
            return ev("n_cpu_moe", flags)

        # GPU use falls and host use rises with N: the smallest N that fits the GPUs is the best, and
        # if the host cannot take that N's experts, no N works. The first guess moves just enough
        # expert bytes off the GPUs; exact evaluations around it settle N.
        guess = _first_reaching(_expert_bytes_by_layer(w, spec.n_layer), gpu_over)
        n = _smallest(0, spec.n_layer, lambda k: _gpus_fit(n_cpu_moe(k)), guess)
        if n is not None and 0 < n < spec.n_layer:
            out.append(n_cpu_moe(n))
        if any(c.fits for c in out[-2:]):
            return out  # keeping attention on the GPU beats offloading whole layers
    # Whole layers: GPU use rises with -ngl; the most layers that fit the GPUs, if the host takes the rest.
    guess = _first_reaching(_layer_gpu_bytes(w, n_all, 0), gpu_over)
    top = _smallest(0, n_all + 1, lambda k: _gpus_fit(ev("ngl", f"-ngl {n_all + 1 - k}")), guess)
    best_ngl = ev("ngl", f"-ngl {n_all + 1 - top}") if top is not None and 0 < top <= n_all else None
    if best_ngl is not None and best_ngl.memory.devices:
        out.append(best_ngl)
    return out


def _expert_bytes_by_layer(w: Weights, n_layer: int) -> list[int]:
    table = tensor_table(w)
    return table.bytes_by_layer(table.role_is(Role.EXPERT), n_layer)


def _first_reaching(per_layer: list[int], target: int) -> int:
    """How many leading layers it takes for their bytes to reach `target`."""
    acc = 0
    for i, b in enumerate(per_layer):
        if acc >= target:
            return i
        acc += b
    return len(per_layer)


def _gpus_fit(c: Candidate) -> bool:
    return not any(d != CPU for d in c.overflow)


def _smallest(lo: int, hi: int, ok: Callable[[int], bool], guess: int | None = None) -> int | None:
    """The smallest k in [lo, hi] with ok(k), for a predicate that stays true once true. A good
    `guess` settles it in two or three calls; the search stays exact whatever the guess."""
    if guess is not None and lo <= guess <= hi:
        if ok(guess):
            if guess == lo or not ok(guess - 1):
                return guess
            hi = guess - 1
        else:
            lo = guess + 1
            if lo > hi or not ok(hi):
                return None
    elif not ok(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass
class PlanResult:
    chosen: Candidate
    alternatives: list[Candidate]
    ctx_requested: int | None
    quant_requested: FileType | None
    below_floor: bool
    disk: bool
    margin_bytes: int = FIT_TARGET  # kept free on every GPU (the plan's Runtime.fit_target_bytes)


def _disk_plan(
    spec: ModelSpec,
    inv: Inventory,
    quant: FileType,
    ctx: int,
    cache: CacheConfig,
    cpu: DeviceSlot,
    gpus: list[DeviceSlot],
    frontend: Frontend,
    rig: Rig,
) -> Candidate:
    """Nothing fits: keep what fits in RAM as page cache and read the rest of the experts from disk."""
    w = _weights(inv, quant)
    strategy, flags = ("cpu_moe", "-ngl 99 --cpu-moe") if spec.is_moe and gpus else ("cpu", "-ngl 0")
    c = _evaluate(inv, w, quant, "disk", flags, ctx, cache, cpu, gpus if strategy != "cpu" else [], frontend)
    missing = c.overflow.get(CPU, 0)
    total_cpu = sum(d.weights_bytes for d in c.memory.devices if d.device.startswith("CPU")) or 1
    miss = missing / total_cpu  # the share of the CPU's weights (hence expert reads) not in the page cache
    cfg = CacheConfig(**{**cache.__dict__, "n_ctx": ctx})
    gpu_over = {k: v for k, v in c.overflow.items() if k != CPU}
    return Candidate(
        quant,
        "disk",
        flags,
        ctx,
        c.memory,
        not gpu_over,
        lambda: perf_speed(spec, c.memory, cfg, rig.node, disk_miss_fraction=miss),
        c.overflow,
    )


def plan(
    spec: ModelSpec,
    rig: Rig,
    *,
    ctx: int | None = None,
    quant: FileType | None = None,
    cache: CacheConfig | None = None,
    frontend: Frontend | None = None,
    mtp: bool | None = False,
    alternatives: bool = True,
    file: FileInventory | None = None,
    runtime: Runtime = Runtime(),
) -> PlanResult:
    """The best llama.cpp plan for `spec` on the first node of `rig`, and (unless `alternatives` is
    False: the checker needs only the winner) the alternatives, each with the reason it lost.
    `file`: a real GGUF's tensors, planned as they are (at `quant`, the file's type)."""
    cache = cache or CacheConfig(n_ctx=0)
    frontend = frontend or Frontend("llama-server", n_outputs_max=cache.n_seq)
    cache, frontend = at_build(runtime.build, cache, frontend)
    cpu, gpus = device_slots(rig, runtime)
    inv = file or inventory(spec, mtp=mtp)
    model_ctx = spec.context_length or BASE_CONTEXT
    base_ctx = ctx or min(model_ctx, BASE_CONTEXT)
    quants: tuple[FileType, ...] = (quant,) if quant else _ladder(inv)
    per_quant = _search(spec, inv, quants, base_ctx, cache, cpu, gpus, frontend)
    if ctx is None and not any(c.fits for cs in per_quant.values() for c in cs) and base_ctx > MIN_CONTEXT:
        base_ctx = MIN_CONTEXT
        per_quant = _search(spec, inv, quants, base_ctx, cache, cpu, gpus, frontend)
    quants = tuple(per_quant)
    best = {
        q: min((c for c in cs if c.fits), key=lambda c: c.seconds_per_token, default=None)
        for q, cs in per_quant.items()
    }
    chosen, below, disk = _choose(best, quants, quant)
    if chosen is None:
        q = quant or QUALITY_FLOOR
        chosen, disk = _disk_plan(spec, inv, q, base_ctx, cache, cpu, gpus, frontend, rig), True
    elif ctx is None:
        chosen = _grow_context(spec, inv, chosen, model_ctx, cache, cpu, gpus, frontend)
    losers = [
        c
        for cs in per_quant.values()
        for c in cs
        if alternatives and (c.quant, c.flags) != (chosen.quant, chosen.flags)
    ]
    for c in losers:
        c.why_not = _why_not(c, chosen)
    # Fitting alternatives by speed; the others by how far they are from fitting (their speed is
    # hypothetical and only worked out if someone shows it).
    losers.sort(
        key=lambda c: (
            not c.fits,
            c.quant is not chosen.quant,
            _rank(c.quant),
            c.seconds_per_token if c.fits else sum(c.overflow.values()),
        )
    )
    return PlanResult(chosen, losers, ctx, quant, below, disk, runtime.fit_target_bytes)


def _search(
    spec: ModelSpec,
    inv: Inventory,
    quants: tuple[FileType, ...],
    ctx: int,
    cache: CacheConfig,
    cpu: DeviceSlot,
    gpus: list[DeviceSlot],
    frontend: Frontend,
) -> dict[FileType, list[Candidate]]:
    """Candidates per quantization, best quality first; stops below the quality floor once
    something at or above it fits (lower qualities would not be chosen)."""
    out: dict[FileType, list[Candidate]] = {}
    for q in quants:
        if _rank(q) > _rank(QUALITY_FLOOR) and any(c.fits for cs in out.values() for c in cs):
            break
        out[q] = best_for_quant(spec, inv, q, ctx, cache, cpu, gpus, frontend)
    return out


def _choose(
    best: dict[FileType, Candidate | None], quants: tuple[FileType, ...], fixed: FileType | None
) -> tuple[Candidate | None, bool, bool]:
    if fixed is not None:
        return best[fixed], False, False
    at_or_above = [best[q] for q in quants if _rank(q) <= _rank(QUALITY_FLOOR) and best[q] is not None]
    if at_or_above:
        fastest = min(c.seconds_per_token for c in at_or_above if c is not None)
        for c in at_or_above:  # ordered best quality first
            if c is not None and c.seconds_per_token <= fastest / SPEED_GUARD:
                return c, False, False
    below = [best[q] for q in quants if _rank(q) > _rank(QUALITY_FLOOR) and best[q] is not None]
    if below:
        return below[0], True, False
    return None, False, True


def _grow_context(
    spec: ModelSpec,
    inv: Inventory,
    c: Candidate,
    model_ctx: int,
    cache: CacheConfig,
    cpu: DeviceSlot,
    gpus: list[DeviceSlot],
    frontend: Frontend,
) -> Candidate:
    """The largest context on the ladder that still fits with the same flags (so it costs no speed)."""
    w = _weights(inv, c.quant)
    ladder = sorted({min(model_ctx, x) for x in CONTEXT_LADDER if min(model_ctx, x) > c.ctx}, reverse=True)
    tried: dict[int, Candidate] = {}

    def fits(i: int) -> bool:  # fitting is monotone along the ladder (largest context first)
        if i not in tried:
            devices = gpus if c.strategy != "cpu" else []
            tried[i] = _evaluate(
                inv, w, c.quant, c.strategy, c.flags, ladder[i], cache, cpu, devices, frontend
            )
        return tried[i].fits

    i = _smallest(0, len(ladder) - 1, fits) if ladder else None
    return tried[i] if i is not None else c


def _why_not(c: Candidate, chosen: Candidate) -> str:
    if not c.fits:
        over = ", ".join(f"{d} needs {b / GiB:.1f} GiB more" for d, b in c.overflow.items())
        return f"does not fit: {over}"
    if _rank(c.quant) > _rank(chosen.quant):
        return f"lower quality ({c.quant.name} vs {chosen.quant.name})"
    if c.seconds_per_token > chosen.seconds_per_token:
        return f"slower: {c.seconds_per_token / chosen.seconds_per_token:.1f}x the time per token"
    return "more speed, less quality than the chosen balance"


def _ladder(inv: Inventory) -> tuple[FileType, ...]:
    """Quantizations to try, best first. Experts released in MXFP4 (gpt-oss) lose nothing in
    MXFP4_MOE, and gain nothing from wider types, so it replaces the ones above the floor."""
    if released_quantized(inv):
        return (FileType.MXFP4_MOE, *QUANT_LADDER[QUANT_LADDER.index(QUALITY_FLOOR) :])
    return QUANT_LADDER


def _rank(q: FileType) -> int:
    if q is FileType.MXFP4_MOE:
        return 0  # the released precision of the experts it applies to
    return QUANT_LADDER.index(q) if q in QUANT_LADDER else len(QUANT_LADDER)


def evaluate_command(
    spec: ModelSpec,
    rig: Rig,
    quant: FileType,
    flags: str,
    cache: CacheConfig,
    weights: Weights | None = None,
    runtime: Runtime = Runtime(),
) -> Candidate:
    """Memory, fit and speed of exactly these placement flags (a command someone already runs).
    `weights`: the real file's typed tensors when known, else the stock recipe's prediction."""
    inv = inventory(spec, mtp=False)
    w = weights or _weights(inv, quant)
    cpu, gpus = device_slots(rig, runtime)
    cache, frontend = at_build(runtime.build, cache, Frontend("llama-server", n_outputs_max=cache.n_seq))
    strategy = "cpu" if not gpus or parse_placement(flags).n_gpu_layers == 0 else "given"
    return _evaluate(inv, w, quant, strategy, flags, cache.n_ctx, cache, cpu, gpus, frontend)
