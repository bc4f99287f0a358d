"""What llama.cpp's own --fit makes of a command on a rig: `engines.fit.simulate_fit` measured with
the planner's per-device memory (`_evaluate`, the code that matches llama.cpp's buffers), so that
`explain` can say what a command that leaves -c / -ngl / -ot / -ts to llama.cpp gets, and `plan`
can set a bare `llama-server -m FILE` beside its own flags."""

from dataclasses import dataclass

from moeplan.arch.inventory import inventory
from moeplan.arch.spec import ModelSpec
from moeplan.engines import builds
from moeplan.engines.fit import FitInput, FitOutcome, Measured, simulate_fit
from moeplan.engines.llamacpp import CPU, Frontend, parse_placement
from moeplan.errors import MoeplanError
from moeplan.hardware.spec import Rig
from moeplan.memory.kv import CacheConfig
from moeplan.memory.weights import FileInventory, Weights
from moeplan.plan.llamacpp import Candidate, Runtime, _evaluate, _weights, device_slots
from moeplan.quant.recipe import FileType

SERVER_SLOTS = 4  # llama-server's automatic -np: 4 slots sharing one unified KV buffer


@dataclass(frozen=True)
class UserSet:
    """What the command fixed that --fit must leave alone (`common_params_fit_impl` aborts on
    -ngl, -ts, -ot / --cpu-moe / --n-cpu-moe and -sm row). `flags`: the placement words as written."""

    flags: str = ""
    n_ctx: int | None = None  # -c: None not given, 0 the trained context
    ngl: int | None = None  # -ngl as llama.cpp stores it: all = -2, auto = None
    n_ctx_min: int = 4096  # -fitc
    margin_mib: tuple[int, ...] = ()  # -fitt, one value per GPU (one value: every GPU)


def server_cache(build: int) -> CacheConfig:
    """llama-server's defaults (`common/common.h`): 4 slots on one unified KV buffer, -ub 512,
    -b 2048, f16 K and V, flash attention auto (on where supported) in builds since #15434."""
    return CacheConfig(n_ctx=0, n_seq=SERVER_SLOTS, unified=True, flash_attn=builds.default_flash_attn(build))


def fit_command(
    spec: ModelSpec,
    rig: Rig,
    quant: FileType,
    cache: CacheConfig,
    user: UserSet = UserSet(),
    weights: Weights | None = None,
    runtime: Runtime | None = None,
    frontend: Frontend | None = None,
    file: FileInventory | None = None,
) -> tuple[FitOutcome, Candidate]:
    """llama.cpp's --fit on this command, and the plan it then loads (context and placement).
    `frontend`: the program (default llama-server, whose slots bound the outputs); `file`: a real
    GGUF's tensors (any architecture, also one moeplan has no family for)."""
    runtime = runtime or Runtime()
    inv = file or inventory(spec, mtp=False)
    w = weights or (file.weights if file is not None else _weights(inv, quant))
    cpu, gpus = device_slots(rig, runtime)
    fe = frontend or Frontend("llama-server", n_outputs_max=cache.n_seq)
    cache, fe = builds.at_build(runtime.build, cache, fe)
    p = parse_placement(user.flags)
    fit_gpus = gpus[:1] if p.split_mode == "none" else gpus
    held = dict(runtime.reserved)
    if user.margin_mib and len(user.margin_mib) not in (1, len(fit_gpus)):
        raise MoeplanError(
            f"-fitt gives {len(user.margin_mib)} margins for {len(fit_gpus)} GPUs: "
            "give one value or one per GPU"
        )
    mib = user.margin_mib * len(fit_gpus) if len(user.margin_mib) == 1 else user.margin_mib
    own = [m * 2**20 for m in mib] if mib else [runtime.fit_target_bytes] * len(fit_gpus)
    margins = tuple(m + held.get(g.name, 0) for m, g in zip(own, fit_gpus, strict=True))

    def evaluate(n_ctx: int, flags: str) -> Candidate:
        both = f"{user.flags} {flags}".strip()
        return _evaluate(inv, w, quant, "given", both, n_ctx, cache, cpu, gpus, fe)

    def measure(n_ctx: int, flags: str) -> Measured:
        mem = evaluate(n_ctx, flags).memory
        on = [mem.device(g.name) for g in fit_gpus]
        host = sum(d.llamacpp_bytes for d in mem.devices if d.device.startswith(CPU))
        return Measured(tuple(d.llamacpp_bytes for d in on), tuple(d.weights_bytes for d in on), host)

    inp = FitInput(
        n_layer=inv.block_count,
        n_expert=moe.n_expert if (moe := spec.moe_ffn) is not None else 0,
        n_ctx_train=spec.context_length,
        gpus=tuple(g.name for g in fit_gpus),
        free=tuple(g.free_bytes for g in fit_gpus),
        margins=margins,
        host_total=rig.node.host.ram_bytes,
        host_margin=user.margin_mib[0] * 2**20 if user.margin_mib else runtime.fit_target_bytes,
        n_ctx=user.n_ctx,
        n_ctx_min=user.n_ctx_min,
        n_streams=1 if cache.unified else cache.n_seq,
        ngl=user.ngl,
        tensor_split_set=bool(p.tensor_split),
        overrides_set=bool(p.overrides),
        row_split=p.split_mode == "row",
    )
    out = simulate_fit(inp, measure)
    return out, evaluate(out.n_ctx, out.flags)


def fit_summary(out: FitOutcome, trained: int) -> str:
    """One line on what --fit chose: the context (against the trained one x KV streams) and where
    the layers went."""
    said = (
        "as given"
        if out.ctx_set
        else "the trained context"
        if out.n_ctx == trained
        else f"lowered from {trained:,}"
    )
    if not out.layers:
        place = "the placement as written" if out.stopped else "every layer on the GPUs"
    else:
        place = ", ".join(
            f"{dev} {n_layer} layers" + (f" ({n_part} with experts elsewhere)" if n_part else "")
            for dev, n_layer, n_part in out.layers
        )
    stop = f" (it stops: {out.stopped})" if out.stopped else ""
    return f"llama.cpp --fit: -c {out.n_ctx:,} ({said}), {place}{stop}"
