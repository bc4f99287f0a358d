"""What llama.cpp's `--fit` (on by default) decides for the options a user left unset.

A step-by-step replay of `common_params_fit_impl` in the pinned build's `common/fit.cpp`, run on
moeplan's own per-device memory figures instead of llama.cpp's dry-run allocations: `measure`
stands for `common_get_device_memory_data` (what each device would hold for a context size and a
placement). The order is llama.cpp's:

1. measure the defaults (every layer on the GPUs, the trained context x KV streams); done if every
   device keeps its `--fit-target` margin free;
2. an automatic context (no -c) is lowered by linear interpolation towards `--fit-ctx` (default
   4096 per stream), rounded down to 256 x streams; on one device (or none) that ends it;
3. unless -ngl, -ts, -ot (also --cpu-moe / --n-cpu-moe) or -sm row was given (then it stops with
   "... already set by user, abort" and keeps the context it chose), it fills whole layers back to
   front, a MoE model's experts all on the CPU (false position on the layer count per device; the
   last device keeps the output layer);
4. for a MoE model whose dense weights then fit, it converts those layers to full ones front to
   back and tries one more partial layer (its up, then gate projections, or only its attention),
   overflowing to the next GPU or the CPU.

The result is the placement llama.cpp ends with, written as the flags that give it (-ngl, -ts, -ot),
and the lines llama.cpp logs on the way (`LOG_TRC`: shown with `-lv 4`).
"""

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import IntEnum

from moeplan.engines.llamacpp import CPU

MiB = 2**20
FIT_MIN_CTX = 4096  # -fitc / --fit-ctx default (`common/common.h` fit_params_min_ctx)
FIT_TARGET_MIB = 1024  # -fitt / --fit-target default (`common/common.h` fit_params_target)
CTX_ALIGN = 256  # "round down context for CUDA backend" (`common/fit.cpp`)
FULL_CONTEXT = 2**32 - 1  # -c 0 sets fit_params_min_ctx = UINT32_MAX (`common/arg.cpp`)
_UINT32 = 2**32


class LayerFraction(IntEnum):
    """`common_layer_fraction_t`: which tensors of a device's first partial layer overflow."""

    ATTN = 1  # everything but the attention: all FFN tensors overflow
    UP = 2  # attention + up stay
    GATE = 3  # attention + up + gate stay
    MOE = 4  # only the routed experts overflow, to the CPU


def _overflow_pattern(il: int, lf: LayerFraction) -> str:
    """`get_overflow_pattern` in `common/fit.cpp`."""
    tail = {
        LayerFraction.ATTN: r"\.ffn_(gate|up|gate_up|down).*",
        LayerFraction.UP: r"\.ffn_(gate|gate_up|down).*",
        LayerFraction.GATE: r"\.ffn_down.*",
        LayerFraction.MOE: r"\.ffn_(up|down|gate_up|gate)_(ch|)exps",
    }[lf]
    return rf"blk\.{il}" + tail


ALL_EXPERTS_ON_CPU = r"blk\.\d+\.ffn_(up|down|gate_up|gate)_(ch|)exps=" + CPU


@dataclass(frozen=True)
class Measured:
    """What `common_get_device_memory_data` reports: per GPU, llama.cpp's "self" (model + context +
    compute) and its model bytes; the host's self."""

    used: tuple[int, ...]
    model: tuple[int, ...]
    host_used: int


Measure = Callable[[int, str], Measured]  # (n_ctx, placement flags) -> memory


@dataclass(frozen=True)
class FitInput:
    """The model, devices and what the user set, as `common_params_fit_impl` sees them.
    `n_ctx`: -c as given (None: not given; 0: -c 0, the full trained context)."""

    n_layer: int  # hparams.n_layer: -ngl counts these plus the output layer
    n_expert: int  # 0: a dense model
    n_ctx_train: int
    gpus: tuple[str, ...]  # the model's devices in order (CUDA0, CUDA1 ...)
    free: tuple[int, ...]  # what each reports free (`ggml_backend_dev_memory`)
    margins: tuple[int, ...]  # --fit-target per GPU, bytes
    host_total: int  # the CPU device's total memory: the budget when there is no GPU
    host_margin: int
    n_ctx: int | None = None
    n_ctx_min: int = FIT_MIN_CTX  # --fit-ctx
    n_streams: int = 1  # KV streams: 1 when unified, else -np
    ngl: int | None = None  # -ngl as llama.cpp stores it (all: -2); None: auto (-1, the default)
    tensor_split_set: bool = False
    overrides_set: bool = False  # -ot, --cpu-moe, --n-cpu-moe
    row_split: bool = False


@dataclass
class FitOutcome:
    n_ctx: int
    flags: str  # the placement llama.cpp loads with (a command line that gives it)
    changed: bool  # llama.cpp changed the context or the placement
    ctx_set: bool = False  # -c N: the user's, which --fit keeps
    stopped: str | None = None  # why it stopped early ("... already set by user, abort")
    layers: list[tuple[str, int, int]] = field(default_factory=list)  # device, layers, partial ones
    log: list[str] = field(default_factory=list)


class _Abort(Exception):
    """`common_params_fit_exception`: llama.cpp keeps what it changed so far and loads with it."""


@dataclass(frozen=True)
class _Ngl:
    """`ngl_t`: layers of one device, the last `n_part` of them with their experts (or more, for
    the first) elsewhere."""

    n_layer: int = 0
    n_part: int = 0
    overflow: LayerFraction = LayerFraction.MOE

    @property
    def n_full(self) -> int:
        return self.n_layer - self.n_part


def _step(delta: int, room: int, span: int) -> int:
    """`step_size` of the false-position search: int64 arithmetic truncated toward zero, stored in
    a uint32 (a negative room wraps to a huge step), then clamped to [1, delta - 1]."""
    q = abs(delta * room) // abs(span) if span else 0
    q = q if (delta * room >= 0) == (span > 0) else -q
    return min(max(q % _UINT32, 1), delta - 1)


def _placement(ngl: list[_Ngl], bufts: list[str], n_layer: int) -> str:
    """`set_ngl_tensor_split_tbo`: -ngl the sum, -ts the layer counts, one -ot rule per partial layer."""
    nd = len(ngl)
    n_gpu = sum(n.n_layer for n in ngl)
    il0 = n_layer + 1 - n_gpu
    rules = []
    for id_, n in enumerate(ngl):
        il0 += n.n_full
        for il in range(il0, il0 + n.n_part):
            first = il == il0
            lf = n.overflow if first else LayerFraction.MOE
            rules.append(f"{_overflow_pattern(il, lf)}={bufts[id_] if first else CPU}")
        il0 += n.n_part
    flags = f"-ngl {n_gpu}"
    if nd > 1 and n_gpu:
        flags += " -ts " + ",".join(str(n.n_layer) for n in ngl)
    if rules:
        flags += " -ot " + shlex.quote(",".join(rules))
    return flags


def simulate_fit(inp: FitInput, measure: Measure) -> FitOutcome:
    """llama.cpp's --fit decisions for these inputs (`common_fit_params`)."""
    n_streams = max(1, inp.n_streams)
    n_ctx_auto = not inp.n_ctx
    n_ctx_min = FULL_CONTEXT if inp.n_ctx == 0 else inp.n_ctx_min
    n_ctx_max = min(inp.n_ctx_train * n_streams, FULL_CONTEXT)
    out = FitOutcome(n_ctx_max if n_ctx_auto else inp.n_ctx or 0, "", False, ctx_set=not n_ctx_auto)
    try:
        _fit(inp, measure, out, n_ctx_auto, n_ctx_max, min(n_ctx_min * n_streams, FULL_CONTEXT), n_streams)
        out.log.append("common_fit_params: successfully fit params to free device memory")
    except _Abort as e:
        out.stopped = str(e)
        out.log.append(f"common_fit_params: failed to fit params to free device memory: {e}")
    out.changed = out.changed or (n_ctx_auto and out.n_ctx != n_ctx_max)
    return out


def _fit(
    inp: FitInput,
    measure: Measure,
    out: FitOutcome,
    n_ctx_auto: bool,
    n_ctx_max: int,
    n_ctx_min_total: int,
    n_streams: int,
) -> None:
    log = out.log.append
    nd = len(inp.gpus)
    moe = inp.n_expert > 0
    full = measure(out.n_ctx, "")
    margins: tuple[int, ...] = inp.margins if nd else (inp.host_margin,)
    # step 1: do the defaults fit?
    if nd == 0:
        used, free = full.host_used, inp.host_total
        log(f"projected to use {used // MiB} MiB of host memory vs. {free // MiB} MiB of total host memory")
        if free - used >= margins[0]:
            room = (free - used) // MiB
            log(f"will leave {room} >= {margins[0] // MiB} MiB of system memory, no changes needed")
            return
    else:
        used, free = sum(full.used), sum(inp.free)
        log(
            f"projected to use {used // MiB} MiB of device memory vs. {free // MiB} MiB of free device memory"
        )
        left = [f - u for f, u in zip(inp.free, full.used, strict=True)]
        if nd == 1 and left[0] >= margins[0]:
            room = left[0] // MiB
            log(f"will leave {room} >= {margins[0] // MiB} MiB of free device memory, no changes needed")
            return
        if nd > 1 and all(f >= m for f, m in zip(left, margins, strict=True)):
            log("targets for free memory can be met on all devices, no changes needed")
            return
    # step 2: lower an automatic context
    surplus = free - used - sum(margins)
    if surplus < 0:
        if nd <= 1:
            log(
                f"cannot meet free memory target of {margins[0] // MiB} MiB, need to reduce device memory "
                f"by {-surplus // MiB} MiB"
            )
        else:
            log(
                f"cannot meet free memory targets on all devices, need to use {-surplus // MiB} MiB "
                "less in total"
            )
        if not n_ctx_auto:
            log(f"context size set by user to {out.n_ctx} -> no change")
        elif n_ctx_max <= n_ctx_min_total:
            if n_ctx_min_total == FULL_CONTEXT:
                log(f"user has requested full context size of {n_ctx_max} -> no change")
            else:
                log(
                    f"default model context size is {n_ctx_max} which is <= the min. context size of "
                    f"{n_ctx_min_total} -> no change"
                )
        else:
            target = free - sum(margins)
            if nd > 1:  # whole layers / tensors waste about half of one per device
                on_gpus = inp.n_layer if inp.ngl is None or inp.ngl < 0 else min(inp.ngl, inp.n_layer)
                per_layer = sum(full.model) // max(on_gpus, 1)
                target -= (nd + 1) * per_layer // (6 if moe else 2)
            at_min = measure(n_ctx_min_total, "")
            used_min = at_min.host_used if nd == 0 else sum(at_min.used)
            out.n_ctx = n_ctx_min_total
            if target > used_min:
                span = n_ctx_max - n_ctx_min_total  # linear between the two measured contexts
                n_ctx = n_ctx_min_total + span * (target - used_min) // (used - used_min)
                align = CTX_ALIGN * n_streams
                out.n_ctx = max(n_ctx - n_ctx % align, n_ctx_min_total)
                per_ctx = (used - used_min) // (n_ctx_max - n_ctx_min_total)
                log(
                    f"context size reduced from {n_ctx_max} to {out.n_ctx} -> need "
                    f"{(n_ctx_max - out.n_ctx) * per_ctx // MiB} MiB less memory in total"
                )
                if nd <= 1:
                    log("entire model can be fit by reducing context")
                    return
                log("entire model should be fit across devices by reducing context")
            else:
                log(
                    f"context size reduced from {n_ctx_max} to {out.n_ctx} -> need "
                    f"{(used - used_min) // MiB} MiB less memory in total"
                )
    if nd == 0:
        raise _Abort("was unable to fit model into system memory by reducing context, abort")
    if inp.ngl is not None:
        raise _Abort(f"n_gpu_layers already set by user to {inp.ngl}, abort")
    if nd > 1 and inp.tensor_split_set:
        raise _Abort("model_params::tensor_split already set by user, abort")
    if nd > 1 and inp.row_split:
        raise _Abort("changing weight allocation for LLAMA_SPLIT_MODE_ROW not implemented, abort")
    if inp.overrides_set:
        raise _Abort("model_params::tensor_buft_overrides already set by user, abort")
    out.changed = True
    _fill_layers(inp, measure, out, moe)


def _fill_layers(inp: FitInput, measure: Measure, out: FitOutcome, moe: bool) -> None:
    """Steps 3 and 4 of `common_params_fit_impl`: layers per device and the overflow rules."""
    log = out.log.append
    nd, n_layer, gpus = len(inp.gpus), inp.n_layer, inp.gpus
    targets = [f - m for f, m in zip(inp.free, inp.margins, strict=True)]

    def mem_for(ngl: list[_Ngl], bufts: list[str]) -> list[int]:
        return list(measure(out.n_ctx, _placement(ngl, bufts, n_layer)).used)

    surplus_cpu_moe = 0
    if moe:
        dense = measure(out.n_ctx, f"-ot {shlex.quote(ALL_EXPERTS_ON_CPU)}")
        surplus_cpu_moe = sum(targets) - sum(dense.used)
        state = "a total surplus" if surplus_cpu_moe > 0 else "still a total deficit"
        log(f"with only dense weights in device memory there is {state} of {abs(surplus_cpu_moe) // MiB} MiB")
    bufts = [CPU] * nd
    ngl = [_Ngl() for _ in range(nd)]
    mem = mem_for(ngl, bufts)
    log(f"filling {'dense-only' if moe else 'dense'} layers back-to-front:")
    for id_ in reversed(range(nd)):
        unassigned = n_layer + 1 - sum(n.n_layer for n in ngl[id_ + 1 :])
        last = id_ == nd - 1
        high = list(ngl)
        high[id_] = replace(high[id_], n_layer=unassigned, n_part=(unassigned - last if moe else 0))
        if high[id_].n_layer > 0:
            mem_high = mem_for(high, bufts)
            if mem_high[id_] > targets[id_]:
                delta = high[id_].n_layer - ngl[id_].n_layer
                while delta > 1:
                    step = _step(delta, targets[id_] - mem[id_], mem_high[id_] - mem[id_])
                    test = list(ngl)
                    t = test[id_]
                    part = (step - 1 if last and t.n_part == 0 else step) if moe else 0
                    test[id_] = replace(t, n_layer=t.n_layer + step, n_part=t.n_part + part)
                    mem_test = mem_for(test, bufts)
                    if mem_test[id_] <= targets[id_]:
                        ngl, mem = test, mem_test
                    else:
                        high, mem_high = test, mem_test
                    delta = high[id_].n_layer - ngl[id_].n_layer
            else:
                ngl, mem = high, mem_high
        log(f"  - {gpus[id_]}: {ngl[id_].n_layer:2d} layers, {mem[id_] // MiB:6d} MiB used")
    if not moe or surplus_cpu_moe <= 0:
        out.flags = _placement(ngl, bufts, n_layer)
        out.layers = [(g, n.n_layer, n.n_part) for g, n in zip(gpus, ngl, strict=True)]
        return
    dense_start = nd
    for id_ in reversed(range(nd)):
        if ngl[id_].n_layer == 0:
            break
        dense_start = id_
    log("converting dense-only layers to full layers and filling them front-to-back with overflow")
    id_ = 0
    while id_ <= dense_start < nd:
        high = list(ngl)
        for jd in range(dense_start, nd):
            move = high[jd].n_layer - (jd == nd - 1)
            high[id_] = replace(high[id_], n_layer=high[id_].n_layer + move)
            high[jd] = replace(high[jd], n_layer=high[jd].n_layer - move, n_part=0)
        start_high = nd - 1
        mem_high = mem_for(high, bufts)
        if mem_high[id_] > targets[id_]:
            delta = high[id_].n_full - ngl[id_].n_full
            while delta > 1:
                step = _step(delta, targets[id_] - mem[id_], mem_high[id_] - mem[id_])
                test, start_test, moved = list(ngl), dense_start, 0
                while start_test < nd:
                    k = min(step - moved, test[start_test].n_part)
                    s = test[start_test]
                    test[start_test] = replace(s, n_layer=s.n_layer - k, n_part=s.n_part - k)
                    test[id_] = replace(test[id_], n_layer=test[id_].n_layer + k)
                    moved += k
                    if test[start_test].n_part > 0:
                        break
                    start_test += 1
                mem_test = mem_for(test, bufts)
                if mem_test[id_] <= targets[id_]:
                    ngl, mem, dense_start = test, mem_test, start_test
                else:
                    high, mem_high, start_high = test, mem_test, start_test
                delta = high[id_].n_full - ngl[id_].n_full
        else:
            ngl, mem, dense_start = high, mem_high, start_high
        ngl, bufts, mem, dense_start = _one_more_layer(
            inp, mem_for, targets, ngl, bufts, mem, dense_start, id_
        )
        t = ngl[id_]
        log(
            f"  - {gpus[id_]}: {t.n_layer:2d} layers ({t.n_part:2d} overflowing), "
            f"{mem[id_] // MiB:6d} MiB used"
        )
        id_ += 1
    out.flags = _placement(ngl, bufts, n_layer)
    out.layers = [(g, n.n_layer, n.n_part) for g, n in zip(gpus, ngl, strict=True)]


def _one_more_layer(
    inp: FitInput,
    mem_for: Callable[[list[_Ngl], list[str]], list[int]],
    targets: list[int],
    ngl: list[_Ngl],
    bufts: list[str],
    mem: list[int],
    dense_start: int,
    id_: int,
) -> tuple[list[_Ngl], list[str], list[int], int]:
    """ "try to fit at least part of one more layer": its attention and up projection (then the gate
    too), else its attention only, the rest overflowing to the next GPU (the last one: the CPU)."""
    nd = len(ngl)
    if ngl[dense_start].n_layer <= (0 if id_ < nd - 1 else 1):
        return ngl, bufts, mem, dense_start
    test, start_test = list(ngl), dense_start
    s = test[start_test]
    test[start_test] = replace(s, n_layer=s.n_layer - 1, n_part=s.n_part - 1)
    t = test[id_]
    test[id_] = replace(t, n_layer=t.n_layer + 1, n_part=t.n_part + 1, overflow=LayerFraction.UP)
    if test[start_test].n_part == 0:
        start_test += 1
    bufts_test = list(bufts)
    if id_ < nd - 1:
        bufts_test[id_] = inp.gpus[id_ + 1]

    def fits(m: list[int]) -> bool:
        return m[id_] < targets[id_] and (id_ + 1 == nd or m[id_ + 1] < targets[id_ + 1])

    mem_test = mem_for(test, bufts_test)
    if fits(mem_test):
        ngl, bufts, mem, dense_start = list(test), bufts_test, mem_test, start_test
        test[id_] = replace(test[id_], overflow=LayerFraction.GATE)
        mem_test = mem_for(test, bufts_test)
        if fits(mem_test):
            ngl, mem = test, mem_test
        return ngl, bufts, mem, dense_start
    test[id_] = replace(test[id_], overflow=LayerFraction.ATTN)
    mem_test = mem_for(test, bufts_test)
    if fits(mem_test):
        return test, bufts_test, mem_test, start_test
    return ngl, bufts, mem, dense_start
