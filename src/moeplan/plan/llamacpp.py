"""Search the placements llama.cpp can express on one machine, for a model, quantization and context.

Strategies (each a llama.cpp command line): everything on the GPU(s); the experts of the first N
layers on the CPU (`--n-cpu-moe N`, the fewest that fit, since every expert layer kept on a GPU is
faster; `-ts` rebalanced so each GPU holds what it can); every expert on the CPU (`--cpu-moe`);
whole layers offloaded (`-ngl N`, the most that fit); CPU only; and, when RAM and VRAM together are
too small, weights mmap'd from disk. Every candidate's memory is computed by
`engines.llamacpp.plan_memory`, the same code that matches llama.cpp's own buffers.

Which context, quantization and levers (KV cache type, -ub, -np) win is the policy stated in
`plan/policy.py`; this module carries it out.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from moeplan.arch.inventory import Inventory, Role, inventory
from moeplan.arch.spec import ModelSpec
from moeplan.engines.builds import PINNED_BUILD, at_build, cuda_row_split, output_first
from moeplan.engines.gpu_backends import Backend, vendor_backend
from moeplan.engines.llamacpp import CPU, DeviceMemory, Frontend, MemoryPlan, parse_placement, plan_memory
from moeplan.hardware.spec import GPU, Node, Rig
from moeplan.memo import PER_MODEL_QUANT, by_identity
from moeplan.memory.kv import CacheConfig, cache_type
from moeplan.memory.table import tensor_table
from moeplan.memory.weights import FileInventory, Weights, predict, released_quantized
from moeplan.perf.estimate import Speed
from moeplan.perf.estimate import speed as perf_speed
from moeplan.plan.policy import (
    CONTEXT_LADDER,
    DEFAULT_USE,
    MIN_CONTEXT,
    QUALITY_FLOOR,
    SPEED_GUARD,
    UBATCH_OFFLOAD,
    Use,
    cache_type_for,
    target_context,
)
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


@dataclass(frozen=True)
class Runtime:
    """The llama.cpp a plan is for: its build, the GPUs' backend (None: the vendor's default, e.g.
    CUDA for NVIDIA, Metal for Apple), --no-op-offload, and the free margin kept on every GPU."""

    build: int = PINNED_BUILD
    backend: Backend | None = None
    op_offload: bool = True
    fit_target_bytes: int = FIT_TARGET
    # bytes something else loaded beside the model holds on a device, by slot name: the vision
    # projector, which llama-server adds to that device's fit target (server-context.cpp, mtmd)
    reserved: tuple[tuple[str, int], ...] = ()


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
    cache: CacheConfig  # the -c, -np, -ub and KV cache types of the command
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
    """Capacities llama.cpp may use on the first node: the host, and each GPU's memory (a unified
    machine's: the share its OS lets the GPU use, as the rig holds it) less the margin. What the
    runtime itself takes is part of the plan's per-device figures (`DeviceMemory.runtime_bytes`),
    not of the capacity."""
    node = rig.node
    host = node.host
    gpus = []
    unified_used = 0
    held = dict(runtime.reserved)
    for i, g in enumerate(node.gpus):
        b = gpu_backend(g, runtime)
        name = backend_name(g, node.device_number(i), runtime)
        cap = g.memory_bytes - runtime.fit_target_bytes - held.get(name, 0)
        unified_used += g.memory_bytes if g.unified_memory else 0
        free = g.memory_bytes - b.runtime_bytes
        gpus.append(DeviceSlot(name, max(cap, 0), g.bandwidth_bytes_s, free_bytes=free))
    reserve = max(HOST_RESERVE_MIN, int(HOST_RESERVE_FRACTION * host.ram_bytes))
    cpu_cap = max(host.ram_bytes - reserve - unified_used - held.get(CPU, 0), 0)
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


def memory_options(strategy: str, flags: str, cpu: DeviceSlot, gpus: list[DeviceSlot]) -> dict[str, Any]:
    """`plan_memory`'s runtime arguments for a placement: op offload and the output-layer rule of
    the plan's build (`cpu.runtime`), and the GPUs' free memory where llama.cpp's default split
    uses it (several GPUs and no -ts)."""
    rt = cpu.runtime
    split_by_free = strategy != "cpu" and len(gpus) > 1 and not parse_placement(flags).tensor_split
    return {
        "op_offload": rt.op_offload,
        "free": tuple(g.free_bytes for g in gpus) if split_by_free else (),
        "output_first": output_first(rt.build),
        "cuda_row_split": cuda_row_split(rt.build),
    }


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
    options = memory_options(strategy, flags, cpu, gpus)
    plans = _memory_plans(w)
    key = (flags, cfg, names, frontend, *options.values())
    mem = plans.get(key)
    if mem is None:
        mem = plans[key] = plan_memory(inv, w, cfg, parse_placement(flags), names, frontend, **options)
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
        cfg,
        mem,
        not overflow,
        lambda: perf_speed(inv.spec, mem, cfg, node),
        overflow,
    )


# llama.cpp's "-sm none: use one GPU only" (common/arg.cpp), the main GPU (-mg, default 0): the model
# loader keeps that device alone (llama_model_load_from_file_impl, src/llama.cpp).
ONE_GPU = "-ngl 99 -sm none"


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


def _on_gpus(w: Weights, n_layer_all: int, subset: list[DeviceSlot], gpus: list[DeviceSlot]) -> str:
    """Flags running every layer on `subset` of the machine's GPUs: the first GPU alone is -sm none
    (llama.cpp keeps the main GPU, -mg 0, alone); any other subset is named by -dev, in llama.cpp's
    device order, with -ts over its members (-ts counts positions in -dev's list,
    `llama_model::load_tensors`)."""
    if subset == gpus[:1]:
        return ONE_GPU
    names = ",".join(g.name for g in subset)
    return f"-ngl 99 -dev {names}" + _split_flags(_layer_gpu_bytes(w, n_layer_all, 0), subset)


def _fewest_gpus(
    inv: Inventory, c: Candidate, cpu: DeviceSlot, gpus: list[DeviceSlot], frontend: Frontend
) -> Candidate:
    """Policy (plan/policy.py, point 4): a plan entirely on several GPUs, on the fewest that hold it
    at its context and cache and decode no slower. llama.cpp's layer split runs one token's layers
    device after device (perf/decode.py sums the devices' times, with no cost per GPU crossed), so
    GPUs of one kind add memory, not speed, while a faster GPU does add speed: the GPUs are taken
    fastest first (then one holding the vision projector, then largest, then in llama.cpp's order),
    and each subset is rated by the speed model against all of them (beyond rounding: the same
    per-layer times summed in another order). Plans that keep weights on the CPU use every GPU for
    what they hold; rigs with RPC devices (named RPC0[host:port] after their server, ggml-rpc.cpp)
    are left as they are."""
    if c.strategy != "gpu" or not c.fits or len(gpus) < 2 or any(g.name.startswith("RPC") for g in gpus):
        return c
    w = _weights(inv, c.quant)
    # what the GPUs hold whatever their number: the weights, cache and state (the layers move, not shrink)
    gpu_rows = [d for d in c.memory.devices if not d.device.startswith(CPU)]
    held = sum(d.weights_bytes + d.kv_bytes + d.state_bytes for d in gpu_rows)
    busy = _busy(cpu.runtime)  # a GPU the projector occupies anyway goes first among its peers
    order = sorted(
        range(len(gpus)),
        key=lambda i: (-gpus[i].bandwidth_bytes_s, gpus[i].name not in busy, -gpus[i].capacity_bytes, i),
    )
    for k in range(1, len(gpus)):
        subset = [gpus[i] for i in sorted(order[:k])]
        if sum(g.capacity_bytes for g in subset) < held:
            continue
        flags = _on_gpus(w, inv.block_count, subset, gpus)
        fewer = _evaluate(inv, w, c.quant, "gpu", flags, c.ctx, c.cache, cpu, gpus, frontend)
        if fewer.fits and fewer.seconds_per_token <= c.seconds_per_token * (1 + 1e-9):
            return fewer
    return c


def _spare_gpus(flags: str, gpus: list[DeviceSlot], runtime: Runtime) -> tuple[str, ...]:
    """The GPUs a plan's flags leave free: those -dev does not list, or all but the main with -sm
    none, less any that holds something loaded beside the model (the vision projector goes to the
    first GPU whatever -dev says: `clip_init`, tools/mtmd/clip.cpp)."""
    names = tuple(g.name for g in gpus)
    used, busy = _used(flags, names), _busy(runtime)
    return tuple(n for n in names if n not in used and n not in busy)


def _used(flags: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """The GPUs that hold the model under these flags: -dev's, the main alone with -sm none, else all."""
    p = parse_placement(flags)
    return p.devices if p.devices is not None else names[:1] if p.split_mode == "none" else names


def _replica_gpus(
    flags: str, gpus: list[DeviceSlot], spare: tuple[str, ...], runtime: Runtime
) -> tuple[str, ...]:
    """Spare GPUs that hold a second llama-server with the same flags but for -dev: one like each
    GPU of the plan (the same capacity, bandwidth and free memory place the same bytes), in
    llama.cpp's order; none where something is loaded beside the model, as the vision projector
    (a second one would go to the first GPU again)."""
    if _busy(runtime):
        return ()
    slot = {g.name: g for g in gpus}
    kind = {name: (g.capacity_bytes, g.bandwidth_bytes_s, g.free_bytes) for name, g in slot.items()}
    pool, twins = list(spare), []
    for name in _used(flags, tuple(slot)):
        twin = next((s for s in pool if kind[s] == kind[name]), None)
        if twin is None:
            return ()
        pool.remove(twin)
        twins.append(twin)
    return tuple(sorted(twins, key=spare.index))


def _busy(runtime: Runtime) -> set[str]:
    """The GPUs holding something loaded beside the model (`Runtime.reserved`)."""
    return {name for name, held in runtime.reserved if held and name != CPU}


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


@dataclass(frozen=True)
class TradeCell:
    """One cell of the trade table: the fastest plan of a quantization at a context (None: none fits)."""

    quant: FileType
    ctx: int
    plan: Candidate | None


@dataclass
class PlanResult:
    chosen: Candidate
    alternatives: list[Candidate]
    ctx_requested: int | None
    quant_requested: FileType | None
    below_floor: bool
    disk: bool
    ctx_target: int  # the context the policy aimed for (the use's, or the one asked for)
    single_gpu_fits: bool  # the chosen context fits entirely on the first GPU alone
    trade: list[TradeCell] = field(default_factory=list)
    spare_gpus: tuple[str, ...] = ()  # GPUs the plan leaves free (fewest GPUs; plan/policy.py, point 4)
    replica_gpus: tuple[str, ...] = ()  # spare GPUs that hold a second copy of the plan (-dev)
    margin_bytes: int = FIT_TARGET  # kept free on every GPU (the plan's Runtime.fit_target_bytes)
    ctx_checkpoints: int | None = None  # --ctx-checkpoints the policy set (None: llama-server's default)
    cache_ram: int | None = None  # --cache-ram MiB the policy set (None: llama-server's default)


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
    """Nothing fits: keep what fits in RAM as page cache and read the rest of the experts from disk.
    Only mapped weights can be read back from disk: when the host's KV cache, state and compute
    buffers alone exceed its RAM, nothing runs (the candidate does not fit, by those bytes)."""
    w = _weights(inv, quant)
    strategy, flags = ("cpu_moe", "-ngl 99 --cpu-moe") if spec.is_moe and gpus else ("cpu", "-ngl 0")
    c = _evaluate(inv, w, quant, "disk", flags, ctx, cache, cpu, gpus if strategy != "cpu" else [], frontend)
    host = [d for d in c.memory.devices if d.device.startswith("CPU")]
    total_cpu = sum(d.weights_bytes for d in host) or 1
    pinned = sum(d.total_bytes - d.weights_bytes for d in host)  # cannot be paged out to the file
    overflow = {k: v for k, v in c.overflow.items() if k != CPU}
    if pinned > cpu.capacity_bytes:
        overflow[CPU] = pinned - cpu.capacity_bytes
    miss = min(1.0, c.overflow.get(CPU, 0) / total_cpu)  # share of the CPU's weights not in the page cache
    cfg = CacheConfig(**{**cache.__dict__, "n_ctx": ctx})
    return Candidate(
        quant,
        "disk",
        flags,
        ctx,
        cfg,
        c.memory,
        not overflow,
        lambda: perf_speed(spec, c.memory, cfg, rig.node, disk_miss_fraction=miss),
        overflow or c.overflow,
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
    use: Use = DEFAULT_USE,
    kv_auto: bool = False,
    ub_auto: bool = False,
    runtime: Runtime = Runtime(),
) -> PlanResult:
    """The best llama.cpp plan for `spec` on the first node of `rig` by the policy of
    plan/policy.py, and (unless `alternatives` is False: the checker needs only the winner) the
    alternatives, each with the reason it lost, and the trade table of quantization x context.
    `ctx`: plan exactly this context; None: the use's target, grown to the most that fits.
    `kv_auto`, `ub_auto`: the KV cache type and -ub are the policy's levers, not `cache`'s.
    `file`: a real GGUF's tensors, planned as they are (at `quant`, the file's type).
    `frontend`: llama-server by default; its prompt cache and context checkpoints, left to the
    tool's defaults, are levers too (`_lower_host_terms`)."""
    cache = cache or CacheConfig(n_ctx=0)
    frontend = frontend or Frontend("llama-server", n_outputs_max=cache.n_seq)

    def run(fe: Frontend) -> PlanResult:
        return _plan(
            spec, rig, ctx, quant, cache, fe, mtp, alternatives, file, use, kv_auto, ub_auto, runtime
        )

    result = run(frontend)
    host = result.chosen.memory.device(CPU)
    free = [lever for lever in HOST_LEVERS if lever.given(frontend) is None and lever.held(host) > 0]
    if _standing(result) == (False, False) or not free:
        return result
    kept, fe = _lower_host_terms(result, run, frontend, rig, runtime, file or inventory(spec, mtp=mtp), free)
    return replace(
        kept,
        cache_ram=_lowered(PROMPT_CACHE, fe, frontend),
        ctx_checkpoints=_lowered(CHECKPOINTS, fe, frontend),
    )


@dataclass(frozen=True)
class HostLever:
    """A llama-server setting whose host memory the policy may lower (plan/policy.py, levers)."""

    given: Callable[[Frontend], int | None]  # the setting as asked (None: the tool's default)
    default: Callable[[Frontend], int]  # the tool's default, the most the policy keeps
    held: Callable[[DeviceMemory], int]  # the host bytes it holds
    at: Callable[[Frontend, int], Frontend]  # the front end with the setting at a value
    step: int  # the policy moves it in these steps


CHECKPOINTS = HostLever(
    lambda fe: fe.ctx_checkpoints,
    lambda fe: fe.n_ctx_checkpoints,
    lambda d: d.checkpoint_bytes,
    lambda fe, n: replace(fe, ctx_checkpoints=n),
    1,
)
PROMPT_CACHE = HostLever(
    lambda fe: fe.cache_ram,
    lambda fe: fe.cache_ram_mib,
    lambda d: d.prompt_cache_bytes,
    lambda fe, n: replace(fe, cache_ram=n),
    256,  # --cache-ram in 256 MiB steps
)
# In the order they are kept: the checkpoints serve the live conversation's edits and branches, the
# prompt cache other conversations (a switch back reprocesses a prompt), so the cache gives way first.
HOST_LEVERS = (CHECKPOINTS, PROMPT_CACHE)


def _lowered(lever: HostLever, fe: Frontend, asked: Frontend) -> int | None:
    """The lever's value where the policy set it below the tool's default, else None: the user's
    own setting is not the policy's, and one kept at the default needs no flag and no notice."""
    value = lever.given(fe)
    if lever.given(asked) is not None or value is None or value >= lever.default(asked):
        return None
    return value


def _standing(r: PlanResult) -> tuple[bool, bool]:
    """How a plan stands by the policy's order, (False, False) best: fits without disk, at the floor."""
    return (r.disk or not r.chosen.fits, r.below_floor)


def _lower_host_terms(
    result: PlanResult,
    run: Callable[[Frontend], PlanResult],
    frontend: Frontend,
    rig: Rig,
    runtime: Runtime,
    inv: Inventory,
    levers: list[HostLever],
) -> tuple[PlanResult, Frontend]:
    """Policy (plan/policy.py, levers): where what llama-server holds in host memory (its context
    checkpoints, its prompt cache) keeps the plan off the GPU budget or below the floor, plan
    without it, then give each lever in turn the most (up to its default) that the chosen plan
    still holds beside the ones before, so the command sets them. Returns the plan and its front
    end (unchanged where dropping them does not help)."""
    bare = frontend
    for lever in levers:
        bare = lever.at(bare, 0)
    without = run(bare)
    if _standing(without) >= _standing(result):
        return result, frontend
    c = without.chosen
    cpu, gpus = device_slots(rig, runtime)
    w = _weights(inv, c.quant)

    def fits(f: Frontend) -> bool:
        at = at_build(runtime.build, c.cache, f)[1]
        return _evaluate(inv, w, c.quant, c.strategy, c.flags, c.ctx, c.cache, cpu, gpus, at).fits

    fe = bare
    for lever in levers:
        fe = _most_held(lever, fe, frontend, fits)
    if fe == bare:
        return without, bare
    kept = run(fe)
    if _standing(kept) > _standing(without):  # the context grew into what they needed
        return without, bare
    return kept, fe


def _most_held(lever: HostLever, fe: Frontend, asked: Frontend, fits: Callable[[Frontend], bool]) -> Frontend:
    """`fe` with the lever at the most (up to its default in `asked`, by its steps) that still fits."""
    most = lever.default(asked) // lever.step
    first_short = _smallest(1, most, lambda k: not fits(lever.at(fe, k * lever.step)))  # 0 fits
    return lever.at(fe, (most if first_short is None else first_short - 1) * lever.step)


def _plan(
    spec: ModelSpec,
    rig: Rig,
    ctx: int | None,
    quant: FileType | None,
    cache: CacheConfig,
    frontend: Frontend,
    mtp: bool | None,
    alternatives: bool,
    file: FileInventory | None,
    use: Use,
    kv_auto: bool,
    ub_auto: bool,
    runtime: Runtime,
) -> PlanResult:
    """`plan` for one front end."""
    cache, frontend = at_build(runtime.build, cache, frontend)
    cpu, gpus = device_slots(rig, runtime)
    inv = file or inventory(spec, mtp=mtp)
    model_ctx = spec.context_length or DEFAULT_USE.ctx
    base_ctx = target = ctx or target_context(model_ctx, use)
    quants: tuple[FileType, ...] = (quant,) if quant else _ladder(inv)
    per_quant = _search(spec, inv, quants, base_ctx, _cache_at(cache, base_ctx, kv_auto), cpu, gpus, frontend)
    if ctx is None and not any(c.fits for cs in per_quant.values() for c in cs) and base_ctx > MIN_CONTEXT:
        base_ctx = MIN_CONTEXT
        per_quant = _search(
            spec, inv, quants, base_ctx, _cache_at(cache, base_ctx, kv_auto), cpu, gpus, frontend
        )
    quants = tuple(per_quant)
    best = {q: _fastest(cs) for q, cs in per_quant.items()}
    chosen, below, disk = _choose(best, quants, quant)
    if chosen is None:
        q = quant or QUALITY_FLOOR
        c_disk = _cache_at(cache, base_ctx, kv_auto)
        chosen, disk = _disk_plan(spec, inv, q, base_ctx, c_disk, cpu, gpus, frontend, rig), True
    else:
        chosen = _raise_ubatch(inv, chosen, cpu, gpus, frontend) if ub_auto else chosen
        if ctx is None:
            chosen = _grow_context(inv, chosen, model_ctx, kv_auto, cpu, gpus, frontend)
    placed = chosen.flags  # on all the GPUs, before moving to the fewest
    chosen = _fewest_gpus(inv, chosen, cpu, gpus, frontend)
    losers = [
        c
        for cs in per_quant.values()
        for c in cs
        if alternatives and (c.quant, c.flags) not in ((chosen.quant, chosen.flags), (chosen.quant, placed))
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
    table = (
        _trade(
            spec,
            inv,
            quants if quant else _trade_quants(quants, chosen),
            chosen,
            model_ctx,
            cache,
            kv_auto,
            cpu,
            gpus,
            frontend,
            {(q, base_ctx): cs for q, cs in per_quant.items()},
        )
        if alternatives
        else []
    )
    single = _single_gpu_fits(inv, chosen, cpu, gpus, frontend)
    spare = _spare_gpus(chosen.flags, gpus, runtime) if chosen.strategy == "gpu" else ()
    replica = _replica_gpus(chosen.flags, gpus, spare, runtime)
    return PlanResult(
        chosen,
        losers,
        ctx,
        quant,
        below,
        disk,
        target,
        single,
        table,
        spare,
        replica,
        runtime.fit_target_bytes,
    )


def _single_gpu_fits(
    inv: Inventory, c: Candidate, cpu: DeviceSlot, gpus: list[DeviceSlot], frontend: Frontend
) -> bool:
    """Whether, on a rig with several GPUs, the first alone holds every layer at the chosen context
    and cache (then the plan uses the others by choice, not because it must)."""
    if len(gpus) < 2:
        return False
    w = _weights(inv, c.quant)
    return _evaluate(inv, w, c.quant, "gpu", "-ngl 99", c.ctx, c.cache, cpu, gpus[:1], frontend).fits


def _cache_at(cache: CacheConfig, ctx: int, kv_auto: bool) -> CacheConfig:
    """`cache` at this context, with the policy's KV cache type for it when `kv_auto`."""
    if not kv_auto:
        return CacheConfig(**{**cache.__dict__, "n_ctx": ctx})
    t = cache_type(cache_type_for(ctx))
    return CacheConfig(**{**cache.__dict__, "n_ctx": ctx, "type_k": t, "type_v": t})


def _fastest(cs: list[Candidate]) -> Candidate | None:
    return min((c for c in cs if c.fits), key=lambda c: c.seconds_per_token, default=None)


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
    """Quality at or above the floor, then speed (plan/policy.py, point 2)."""
    if fixed is not None:
        return best[fixed], False, False
    at_or_above = [c for q in quants if _rank(q) <= _rank(QUALITY_FLOOR) and (c := best[q]) is not None]
    if at_or_above:
        fastest = min(at_or_above, key=lambda c: c.seconds_per_token)
        for c in at_or_above:  # ordered best quality first
            keeps_place = c.strategy == "gpu" or fastest.strategy != "gpu"
            if keeps_place and c.seconds_per_token <= fastest.seconds_per_token / SPEED_GUARD:
                return c, False, False
    below = [c for q in quants if _rank(q) > _rank(QUALITY_FLOOR) and (c := best[q]) is not None]
    if below:
        return below[0], True, False
    return None, False, True


def _raise_ubatch(
    inv: Inventory, c: Candidate, cpu: DeviceSlot, gpus: list[DeviceSlot], frontend: Frontend
) -> Candidate:
    """The -ub lever (plan/policy.py): a larger micro-batch where weights sit in host memory and a
    discrete GPU multiplies them (op offload), if it fits with the same flags and speeds up prefill."""
    host_weights = any(d.weights_bytes for d in c.memory.devices if d.device.startswith("CPU"))
    unified = cpu.node is not None and any(g.unified_memory for g in cpu.node.gpus)
    if c.strategy in ("gpu", "cpu") or not host_weights or unified or c.cache.n_ubatch >= UBATCH_OFFLOAD:
        return c  # nothing copied per micro-batch (unified memory: the GPU reads host weights in place)
    cache = CacheConfig(**{**c.cache.__dict__, "n_ubatch": min(UBATCH_OFFLOAD, c.cache.n_batch)})
    w = _weights(inv, c.quant)
    bigger = _evaluate(inv, w, c.quant, c.strategy, c.flags, c.ctx, cache, cpu, gpus, frontend)
    if not bigger.fits or bigger.perf.prefill().seconds >= c.perf.prefill().seconds:
        return c
    return bigger


def _grow_context(
    inv: Inventory,
    c: Candidate,
    model_ctx: int,
    kv_auto: bool,
    cpu: DeviceSlot,
    gpus: list[DeviceSlot],
    frontend: Frontend,
) -> Candidate:
    """The largest context on the ladder that still fits with the same flags (so it costs no speed),
    with the policy's KV cache type for each context when `kv_auto`."""
    w = _weights(inv, c.quant)
    ladder = sorted({min(model_ctx, x) for x in CONTEXT_LADDER if min(model_ctx, x) > c.ctx}, reverse=True)
    tried: dict[int, Candidate] = {}

    def fits(i: int) -> bool:  # fitting is monotone along the ladder (largest context first)
        if i not in tried:
            devices = gpus if c.strategy != "cpu" else []
            cache = _cache_at(c.cache, ladder[i], kv_auto)
            tried[i] = _evaluate(
                inv, w, c.quant, c.strategy, c.flags, ladder[i], cache, cpu, devices, frontend
            )
        return tried[i].fits

    i = _smallest(0, len(ladder) - 1, fits) if ladder else None
    return tried[i] if i is not None else c


# Contexts of the trade table (plan/policy.py: "why not Q5_K_M?"), besides the model's maximum and
# the chosen plan's own.
TRADE_CONTEXTS = (8192, 32768, 131072)


def _trade_quants(searched: tuple[FileType, ...], chosen: Candidate) -> tuple[FileType, ...]:
    """The rows of the trade table: every quantization from the best down to the floor, and the
    chosen one where it lies below."""
    top = tuple(q for q in searched if _rank(q) <= _rank(QUALITY_FLOOR))
    return top if chosen.quant in top else (*top, chosen.quant)


def _trade(
    spec: ModelSpec,
    inv: Inventory,
    quants: tuple[FileType, ...],
    chosen: Candidate,
    model_ctx: int,
    cache: CacheConfig,
    kv_auto: bool,
    cpu: DeviceSlot,
    gpus: list[DeviceSlot],
    frontend: Frontend,
    searched: dict[tuple[FileType, int], list[Candidate]],
) -> list[TradeCell]:
    """The fastest fitting plan of each quantization at each context of the table (`searched`: the
    candidates the search already holds, by quantization and context)."""
    contexts = sorted({min(model_ctx, x) for x in (*TRADE_CONTEXTS, model_ctx, chosen.ctx)})
    out = []
    for q in quants:
        for n in contexts:
            if (q, n) == (chosen.quant, chosen.ctx):
                out.append(TradeCell(q, n, chosen))
                continue
            found = searched.get((q, n))
            if found is None:
                found = best_for_quant(spec, inv, q, n, _cache_at(cache, n, kv_auto), cpu, gpus, frontend)
            out.append(TradeCell(q, n, _fastest(found)))
    return out


def _why_not(c: Candidate, chosen: Candidate) -> str:
    if not c.fits:
        over = ", ".join(f"{d} needs {b / GiB:.1f} GiB more" for d, b in c.overflow.items())
        return f"does not fit: {over}"
    if _rank(c.quant) > _rank(chosen.quant):
        return f"lower quality ({c.quant.name} vs {chosen.quant.name})"
    slower = c.seconds_per_token / chosen.seconds_per_token
    if _rank(c.quant) < _rank(chosen.quant) and chosen.strategy == "gpu" and c.strategy != "gpu":
        return (
            f"higher quality, but weights move off the GPU ({c.strategy}): {slower:.1f}x the time per token"
        )
    if c.seconds_per_token > chosen.seconds_per_token:
        return f"slower: {slower:.1f}x the time per token"
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
    frontend: Frontend | None = None,
) -> Candidate:
    """Memory, fit and speed of exactly these placement flags (a command someone already runs).
    `weights`: the real file's typed tensors when known, else the stock recipe's prediction;
    `frontend`: default llama-server with one output per slot."""
    inv = inventory(spec, mtp=False)
    w = weights or _weights(inv, quant)
    cpu, gpus = device_slots(rig, runtime)
    fe = frontend or Frontend("llama-server", n_outputs_max=cache.n_seq)
    cache, frontend = at_build(runtime.build, cache, fe)
    strategy = "cpu" if not gpus or parse_placement(flags).n_gpu_layers == 0 else "given"
    return _evaluate(inv, w, quant, strategy, flags, cache.n_ctx, cache, cpu, gpus, frontend)
