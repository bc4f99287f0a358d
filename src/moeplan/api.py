"""The operations every face offers (CLI now, web later), composed from the core so that no face
re-derives a number."""

import re
import shlex
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from pydantic import BaseModel

from moeplan.arch.inventory import Role, inventory, mtp_default, mtp_supported
from moeplan.arch.spec import ModelSpec
from moeplan.engines import builds
from moeplan.engines.fit import FIT_MIN_CTX
from moeplan.engines.gpu_backends import backend as named_backend
from moeplan.engines.gpu_backends import split_backend
from moeplan.engines.llamacpp import (
    CPU,
    DeviceMemory,
    Frontend,
    MemoryPlan,
    device_list,
    parse_placement,
    plan_memory,
    render_command,
)
from moeplan.engines.speculative import N_MAX, Drafting, DraftModel, SpecType
from moeplan.errors import ModelNotFound, MoeplanError
from moeplan.hardware.rig import parse_rig
from moeplan.hardware.spec import Rig
from moeplan.memory.kv import CACHE_TYPES, CacheConfig, cache_type
from moeplan.memory.prompt_cache import DEFAULT_ORIGIN, describe
from moeplan.memory.weights import (
    CONVERTER_OUTTYPES,
    FileInventory,
    Weights,
    default_file_type,
    file_bytes,
    nominal_file_type,
    predict,
    released_quantized,
)
from moeplan.notices import notices
from moeplan.perf.estimate import PROMPT_TOKENS
from moeplan.perf.speculative import default_acceptance
from moeplan.plan.fit import UserSet, fit_command, fit_summary, server_cache
from moeplan.plan.llamacpp import (
    FIT_TARGET,
    Candidate,
    Runtime,
    TradeCell,
    backend_name,
    device_slots,
    evaluate_command,
    gpu_backend,
)
from moeplan.plan.llamacpp import plan as llamacpp_plan
from moeplan.plan.options import PlanOptions
from moeplan.plan.policy import QUALITY_FLOOR, RopeScaling, context_bounds, use_named, verdict
from moeplan.plan.speculative import DraftOption
from moeplan.plan.speculative import evaluate as evaluate_drafting
from moeplan.plan.speculative import options as draft_options
from moeplan.quant.ggml import GGMLType
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import CatalogEntry, load_catalog, resolve
from moeplan.sources.file_names import file_type_of_label, read_file_name
from moeplan.sources.hub_refs import parse_ref, quant_label
from moeplan.sources.reference import ResolvedModel, resolve_model

if TYPE_CHECKING:
    from moeplan.engines.llamacpp_args import Command as LlamaCommand
    from moeplan.engines.vision import VisionMemory
    from moeplan.memory.report import SizeReport
    from moeplan.plan.distributed import DistributedPlan

# Not imported here, for `moeplan plan` does not use them (tests/test_cold_start.py): GGUF headers
# (read where a file is inspected or explained), the command-line reader of `explain`, the size
# report, and the vision projector (planned only where --vision asks for it).


def runtime(
    backend: str | None = None,
    llamacpp_build: int | None = None,
    op_offload: bool = True,
    fit_target_mib: int | None = None,
) -> Runtime:
    """The llama.cpp a plan is for, from the options every face offers (--backend, --llamacpp-build,
    --no-op-offload, --fit-target); defaults: the GPUs' vendor backend, the pinned build, 1 GiB."""
    if fit_target_mib is not None and fit_target_mib < 0:
        raise MoeplanError(
            f"--fit-target is MiB kept free per GPU and cannot be negative, got {fit_target_mib}"
        )
    return Runtime(
        builds.check_build(llamacpp_build if llamacpp_build is not None else builds.PINNED_BUILD),
        named_backend(backend) if backend else None,
        op_offload,
        FIT_TARGET if fit_target_mib is None else fit_target_mib * 2**20,
    )


def rig_and_runtime(rig_text: str, rt: Runtime) -> tuple[Rig, Runtime]:
    """The rig, and the runtime with a backend its text names ("RX 7900 XTX (Vulkan)"); an option
    given as well must agree with it."""
    text, said = split_backend(rig_text)
    if said is not None and rt.backend is not None and said != rt.backend:
        raise MoeplanError(f"the rig says {said.name} but --backend says {rt.backend.name}: keep one")
    if said is not None:
        rt = Runtime(rt.build, said, rt.op_offload, rt.fit_target_bytes)
    rig = parse_rig(text)
    if rt.backend is not None:
        gpus = [g for g in rig.node.gpus if g.vendor != "RPC"]
        if not gpus:
            raise MoeplanError(
                f"{rt.backend.name} was asked for, but the rig has no GPU: name one, or drop it"
            )
        wrong = [g.name for g in gpus if rt.backend.vendor and g.vendor != rt.backend.vendor]
        if wrong:
            raise MoeplanError(
                f"{rt.backend.name} runs on {rt.backend.vendor} GPUs only, not {wrong[0]}: "
                "use --backend vulkan or the GPUs' own backend"
            )
    return rig, rt


def _mtp_choice(r: ResolvedModel, mtp: bool | None) -> tuple[bool | None, str]:
    """The MTP layers to count and why: as asked; else what the published GGUFs hold where the
    catalog records it; else the pinned converter's default."""
    spec = r.require_spec()
    n = len(spec.mtp_layers)
    if not n:
        return mtp, "none (the model has no MTP layers)"
    if not mtp_supported(spec):
        return mtp, f"dropped ({n} MTP layer(s)): the pinned converter never writes them for {spec.arch}"
    published = r.entry.published_gguf if r.entry is not None else None
    if mtp is None and published is not None:
        held = "hold them" if published.mtp else "lack them"
        flip = "--no-mtp" if published.mtp else "--mtp for a file made with the pinned converter"
        state = "kept" if published.mtp else "dropped"
        return (
            published.mtp,
            f"{state} ({n} layer(s)): the published GGUFs {held} ({published.source}); {flip}",
        )
    keep = mtp_default(spec) if mtp is None else mtp
    why = "the pinned converter's default" if mtp is None else "as asked"
    if keep:
        return mtp, (
            f"kept ({n} layer(s), {why}); published GGUFs made before llama.cpp kept them lack them: --no-mtp"
        )
    return mtp, f"dropped ({n} layer(s), {why}); the pinned converter keeps them by default: --mtp"


def predict_size(model: str, quant: str | None, mtp: bool | None = None) -> "SizeReport":
    """`quant` None: the file people download first (`default_file_type`)."""
    from moeplan.memory.report import size_report
    from moeplan.quant.native import native_bytes

    r = resolve_model(model)  # a catalog id, a GGUF file or a Hub reference (see the end of this module)
    if r.gguf is not None:
        return _hub_gguf_report(r)
    if r.header is not None:
        return inspect_file(r.id)
    spec = r.require_spec()
    mtp, mtp_note = _mtp_choice(r, mtp)
    inv = inventory(spec, mtp=mtp)
    ft = FileType.parse(quant) if quant else default_file_type(inv)
    w = predict(inv, ft)
    notes = [
        "stock llama-quantize recipe (pinned build 11434); uploads with custom per-tensor recipes "
        "(e.g. unsloth UD, ik_llama quants) differ: run `moeplan inspect` on the real file",
        "file_bytes = exact tensor data and table, plus tokenizer metadata estimated from the vocabulary",
    ]
    if ft in CONVERTER_OUTTYPES and released_quantized(inv):
        notes.append(f"{ft.name} as convert_hf_to_gguf.py writes it: the MXFP4 experts stay MXFP4")
    if r.alias_note:
        notes.insert(0, r.alias_note)
    native: tuple[str, int] | None
    if r.entry is not None:
        native = (
            r.entry.release_format,
            native_bytes(inventory(spec, checkpoint=True).tensors, r.entry.release_format),
        )
    else:
        native, notes = _hub_safetensors_native(r, notes)
    return size_report(
        w,
        source="predicted",
        file_bytes=file_bytes(w, spec.n_vocab),
        mtp=mtp_note,
        notes=notes,
        native=native,
    )


def inspect_file(path: str) -> "SizeReport":
    from moeplan.memory.report import size_report
    from moeplan.sources.gguf_header import read_local
    from moeplan.sources.gguf_weights import weights_from_gguf

    if parse_ref(path) is not None:
        return _hub_gguf_report(resolve_model(path))
    p = Path(path)
    if not p.exists():
        raise MoeplanError(f"no such file: {path}")
    model = read_local(p)
    w = weights_from_gguf(model)
    n_mtp = sum(1 for t in w.tensors if t.spec.role.value == "mtp")
    return size_report(
        w,
        source="gguf header",
        file_bytes=model.file_bytes,
        mtp=f"{n_mtp} MTP tensors in the file" if n_mtp else "none in the file",
        notes=[f"{len(model.shards)} file(s); header bytes read: {model.header_bytes_read}"],
    )


class DeviceReport(BaseModel):
    device: str
    weights_bytes: int
    kv_bytes: int
    state_bytes: int
    compute_bytes: int
    offload_copy_bytes: int  # of compute: the host weight copied in for op offload
    runtime_bytes: int  # not in llama.cpp's buffers: the backend's context, BLAS workspace, pool
    output_bytes: int
    total_bytes: int
    checkpoint_bytes: int = 0  # llama-server's context checkpoints (host; in total_bytes)
    prompt_cache_bytes: int = 0  # llama-server's prompt cache at its --cache-ram bound (host; in total_bytes)


class MemoryReport(BaseModel):
    model: str
    quant: str
    frontend: str
    n_ctx: int
    n_seq: int
    kv_unified: bool
    n_ubatch: int
    cache_types: tuple[str, str]
    flash_attn: bool
    placement: str
    backend: str
    llamacpp_build: str
    devices: list[DeviceReport]
    total_bytes: int
    notes: list[str]
    prompt_cache: str | None = None  # llama-server's prompt cache: its bound and where it comes from


def memory(
    model: str,
    quant: str,
    ctx: int,
    *,
    n_seq: int | None = None,
    ctk: str = "f16",
    ctv: str = "f16",
    flash_attn: bool = True,
    placement: str = "",
    n_cpu_moe: int | None = None,
    gpus: int | None = None,
    frontend: str = "server",
    n_ubatch: int = 512,
    mtp: bool | None = None,
    backend: str = "cuda",
    llamacpp_build: int | None = None,
    op_offload: bool = True,
    cache_ram: int | None = None,
) -> MemoryReport:
    """Bytes per device that llama.cpp allocates for this model, context and placement, on GPUs of
    `backend` (cuda, rocm, vulkan, metal, sycl, rpc) as build `llamacpp_build` allocates them, and
    what llama-server holds beside them (`cache_ram`: its --cache-ram, None: its default)."""
    r = resolve_model(model)
    spec = r.require_spec()
    inv = r.file or inventory(spec, mtp=_mtp_choice(r, mtp)[0])
    w = predict(inv, FileType.parse(quant))  # a GGUF file: its real tensor types
    if frontend not in ("server", "completion"):
        raise MoeplanError(f"unknown front end '{frontend}': use server (llama-server) or completion")
    server = frontend == "server"
    if cache_ram is not None and not server:
        raise MoeplanError("--cache-ram sizes llama-server's prompt cache: drop it or use --frontend server")
    slots = n_seq if n_seq is not None else (4 if server else 1)
    cfg = CacheConfig(
        n_ctx=ctx,
        n_seq=slots,
        unified=server,
        n_ubatch=n_ubatch,
        type_k=cache_type(ctk),
        type_v=cache_type(ctv),
        flash_attn=flash_attn,
    )
    flags = placement + (f" --n-cpu-moe {n_cpu_moe}" if n_cpu_moe is not None else "")
    place = parse_placement(flags)
    n_gpus = gpus if gpus is not None else (1 if flags.strip() else 0)
    rt = runtime(backend, llamacpp_build, op_offload)
    b = rt.backend or named_backend("cuda")
    names = tuple(f"{b.device_prefix}{i}" for i in range(n_gpus))
    fe = Frontend("llama-server", n_outputs_max=slots, cache_ram=cache_ram) if server else Frontend()
    cfg, fe = builds.at_build(rt.build, cfg, fe)
    plan = plan_memory(
        inv,
        w,
        cfg,
        place,
        names,
        fe,
        op_offload=op_offload,
        output_first=builds.output_first(rt.build),
        cuda_row_split=builds.cuda_row_split(rt.build),
    )
    devices = [
        DeviceReport(
            device=d.device,
            output_bytes=d.output_bytes,
            offload_copy_bytes=d.offload_copy_bytes,
            runtime_bytes=d.runtime_bytes,
            **_buffers(d),
        )
        for d in plan.devices
        # A buffer type no tensor went to is never allocated (llama_model_loader::create_tensor
        # makes a context per buffer type on its first tensor, ctx_for_buft), so llama.cpp's log
        # has no line for it: the CPU_REPACK of a quantization with no repackable type.
        if d.total_bytes
    ]
    notes = builds.differences(rt.build)
    if n_gpus:
        notes.append("CPU weights of GPU runs are mmap'd from the file (page cache), not repacked")
        notes.append(f"{b.name} runtime per GPU, outside llama.cpp's buffers: {b.runtime_source}")
        if b.host_buffer:
            notes.append(f"the host's compute and output buffers are {b.host_buffer} (pinned host memory)")
    if r.alias_note:
        notes.insert(0, r.alias_note)
    return MemoryReport(
        model=r.name,
        quant=_file_quant(r) if r.header else FileType.parse(quant).name,
        frontend=fe.name,
        n_ctx=plan.n_ctx,
        n_seq=slots,
        kv_unified=server,
        n_ubatch=plan.n_ubatch,
        cache_types=(ctk, ctv),
        flash_attn=flash_attn,
        placement=flags.strip() or "CPU only",
        backend=b.name if n_gpus else "CPU",
        llamacpp_build=builds.describe(rt.build),
        devices=devices,
        total_bytes=sum(d.total_bytes for d in devices),
        notes=notes,
        prompt_cache=_prompt_cache_line(
            fe,
            plan.device(CPU).prompt_cache_bytes,
            rt.build,
            "given" if cache_ram is not None else DEFAULT_ORIGIN,
        ),
    )


def _prompt_cache_line(fe: Frontend, held: int, build: int, origin: str = DEFAULT_ORIGIN) -> str | None:
    """The line each llama-server plan shows for its prompt cache (memory/prompt_cache.py): the host
    memory it may reach, the --cache-ram behind it and where that comes from; None for other tools."""
    if fe.name != "llama-server":
        return None
    if build < builds.PROMPT_CACHE.landed:
        return f"none: llama-server b{build} predates it ({builds.PROMPT_CACHE.source})"
    return describe(fe.cache_ram_mib, held, origin)


class PlanDevice(BaseModel):
    name: str
    capacity_bytes: int  # what the plan may use: the device's memory less `margin_bytes`
    margin_bytes: int  # kept free, as llama.cpp's --fit-target (0 for the host)
    weights_bytes: int
    kv_bytes: int
    state_bytes: int
    compute_bytes: int
    offload_copy_bytes: int  # of compute: the host weight copied in for op offload
    runtime_bytes: int  # lost outside llama.cpp's buffers (runtime context, BLAS workspace, pool)
    total_bytes: int
    vision_bytes: int = 0  # the vision projector's weights and compute here (in total_bytes)
    checkpoint_bytes: int = 0  # llama-server's context checkpoints (host; in total_bytes)
    prompt_cache_bytes: int = 0  # llama-server's prompt cache at its --cache-ram bound (host; in total_bytes)


def _buffers(d: DeviceMemory) -> dict[str, int]:
    """The byte counts every per-device report shares."""
    return {
        "weights_bytes": d.weights_bytes,
        "kv_bytes": d.kv_bytes,
        "state_bytes": d.state_bytes,
        "compute_bytes": d.compute_bytes,
        "checkpoint_bytes": d.checkpoint_bytes,
        "prompt_cache_bytes": d.prompt_cache_bytes,
        "total_bytes": d.total_bytes,
    }


def plan_devices(memory: MemoryPlan, rig: Rig, rt: Runtime | None = None) -> list[PlanDevice]:
    """Each device the plan uses, with what the rig offers it (the host is always listed)."""
    return device_rows(memory.devices, rig, rt)


def device_rows(devices: Sequence[DeviceMemory], rig: Rig, rt: Runtime | None = None) -> list[PlanDevice]:
    """`plan_devices` for any list of per-device byte counts (a plan's, or one with drafting added)."""
    cpu, gpus = device_slots(rig, rt or Runtime())
    capacity = {s.name: s.capacity_bytes for s in [cpu, *gpus]}
    margin = {s.name: (rt or Runtime()).fit_target_bytes for s in gpus}
    return [
        PlanDevice(
            name=d.device,
            capacity_bytes=capacity.get(d.device, capacity[CPU]),
            margin_bytes=margin.get(d.device, 0),
            offload_copy_bytes=d.offload_copy_bytes,
            runtime_bytes=d.runtime_bytes,
            **_buffers(d),
        )
        for d in devices
        if d.total_bytes or d.device == CPU
    ]


class PlanNotice(BaseModel):
    id: str
    severity: str
    message: str


class PlanAlternative(BaseModel):
    quant: str
    strategy: str
    flags: str
    ctx: int
    fits: bool
    decode_tok_s: float
    why_not: str


class PlanTrade(BaseModel):
    """A cell of the trade table: the fastest plan of a quantization at a context."""

    quant: str
    ctx: int
    fits: bool
    strategy: str | None
    flags: str | None
    cache_type: str | None  # -ctk/-ctv of that plan
    decode_tok_s: float | None
    chosen: bool


class DraftingReport(BaseModel):
    """Speculative decoding added to the plan (plan/speculative.py): what it costs and buys."""

    kind: str  # --spec-type: draft-mtp or draft-simple
    draft_model: str | None  # catalog id of the draft model (draft-simple)
    flags: str
    command: str
    n_max: int
    acceptance: float
    acceptance_source: str
    tokens_per_step: float
    decode_tok_s: float
    speedup: float
    fits: bool
    overflow: dict[str, int]  # device -> bytes over capacity with drafting
    proposed: bool  # fits and is faster
    extra_bytes: dict[str, int]  # per device: weights, KV cache and compute drafting adds
    devices: list[PlanDevice]  # the plan's devices with drafting
    note: str


class VisionReport(BaseModel):
    """The vision projector (`--mmproj`) loaded beside the plan (engines/vision.py)."""

    file: str
    file_type: str  # F16, BF16, Q8_0
    device: str  # the main GPU, or CPU (no GPUs, or --no-mmproj-offload)
    weights_bytes: int
    compute_bytes: int  # for the warmup image, on `device`
    host_compute_bytes: int  # the graph inputs on the host when `device` is a GPU
    warmup_px: int  # side of the warmup image the compute buffer is reserved for
    flags: str
    note: str


def _vision_report(v: "VisionMemory") -> VisionReport:
    from moeplan.engines.vision import vision_flags

    where = f"on {v.device}" + ("" if v.offload else " (--no-mmproj-offload)")
    host = f" + {v.host_compute_bytes / 2**20:,.1f} MiB of inputs on the host" if v.host_compute_bytes else ""
    return VisionReport(
        file=v.file,
        file_type=v.ftype.name,
        device=v.device,
        weights_bytes=v.weights_bytes,
        compute_bytes=v.compute_bytes,
        host_compute_bytes=v.host_compute_bytes,
        warmup_px=v.warmup_px,
        flags=vision_flags(v),
        note=(
            f"vision projector {where}: {v.weights_bytes / 2**20:,.1f} MiB weights + "
            f"{v.compute_bytes / 2**20:,.1f} MiB compute for a {v.warmup_px}x{v.warmup_px} image{host}"
        ),
    )


def _with_vision(rows: list[PlanDevice], v: "VisionMemory | None", rig: Rig, rt: Runtime) -> list[PlanDevice]:
    """The per-device rows with the projector's bytes added where it loads, against the devices'
    capacities under `rt` (the runtime without the projector held back)."""
    if v is None:
        return rows
    from moeplan.plan.vision import device_bytes

    extra = device_bytes(v)
    have = {d.name for d in rows}
    missing = [DeviceMemory(n) for n in extra if n not in have]
    rows = rows + device_rows(missing, rig, rt) if missing else rows
    cpu, gpus = device_slots(rig, rt)
    capacity = {s.name: s.capacity_bytes for s in [cpu, *gpus]}
    return [
        d.model_copy(
            update={
                "vision_bytes": extra.get(d.name, 0),
                "total_bytes": d.total_bytes + extra.get(d.name, 0),
                "capacity_bytes": capacity.get(d.name, d.capacity_bytes),
            }
        )
        for d in rows
    ]


class BareServerReport(BaseModel):
    """A bare `llama-server -m FILE` on the same rig: llama-server's defaults (4 slots, f16 cache)
    and llama.cpp's own --fit choosing the context and placement (`plan/fit.py`)."""

    command: str
    ctx: int
    flags: str  # the placement --fit loads with ("": every layer on the GPUs)
    fits: bool  # --fit checks the GPUs only: the host can still run out
    decode_tok_s: float
    summary: str
    comparison: str  # one line: moeplan's flags against it, context and speed


class PlanReport(BaseModel):
    model: str
    rig: str
    backend: str  # the GPUs' llama.cpp backend (CPU when there are none)
    llamacpp_build: str  # the build modelled, and the changes it predates
    build_notes: list[str]  # what that build allocates differently from the pinned one
    rig_assumptions: list[str]
    fits: bool
    verdict: str  # plan/policy.py: runs well, below quality floor, too slow, does not fit
    verdict_level: int  # 0 (runs well) .. 3 (does not fit)
    below_floor: bool  # the policy went below the quality floor because nothing at it fits
    params_total: int  # parameters of the planned weights (text model, without MTP layers)
    streams_from_disk: bool  # runs only by reading weights from disk (the verdict: does not fit)
    quant: str
    strategy: str
    use: str  # the use (plan/policy.py) whose context and -np the plan targets
    ctx: int
    n_seq: int
    cache_type_k: str
    cache_type_v: str
    n_ubatch: int
    rope_scaling: str | None  # the rope flags of a context beyond the model's trained one
    decode_tok_s: float
    bound_by: str
    prefill_tok_s: float  # for a prompt of prompt_tokens
    prompt_tokens: int
    ttft_s: float  # time to first token for that prompt
    decode_fill: int  # tokens in the KV cache when decode_tok_s is quoted
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    routing: str  # the routing distribution the latency spread assumes
    throughput_tok_s: dict[int, float]  # aggregate decode tokens/s with B sequences in flight
    devices: list[PlanDevice]
    command: str
    notices: list[PlanNotice]
    alternatives: list[PlanAlternative]
    trade: list[PlanTrade]  # quantization x context (plan/policy.py); empty where alternatives are off
    drafting: list[DraftingReport] = []
    vision: VisionReport | None = None
    bare: BareServerReport | None = None  # what llama.cpp's --fit does with no flags at all
    prompt_cache: str | None = None  # llama-server's prompt cache: its bound and where it comes from


_CACHE_NAMES = {t: name for name, t in CACHE_TYPES.items()}


def _trade_cell(cell: TradeCell, chosen: Candidate) -> PlanTrade:
    p = cell.plan
    return PlanTrade(
        quant=cell.quant.name,
        ctx=cell.ctx,
        fits=p is not None,
        strategy=p.strategy if p else None,
        flags=p.flags if p else None,
        cache_type=_CACHE_NAMES[p.cache.type_k] if p else None,
        decode_tok_s=round(p.decode_tok_s, 2) if p else None,
        chosen=p is chosen,
    )


def plan_on_rig(
    model: str | ResolvedModel,
    rig: Rig,
    options: PlanOptions | None = None,
    *,
    rt: Runtime | None = None,
    bare: bool = True,
    **kw: Any,
) -> PlanReport:
    """The best llama.cpp plan for a catalog model on a rig, with its command and notices
    (and the alternatives that lost, unless `alternatives` is off: the checker lists winners only).
    `options` (plan/options.py; or its fields as keywords, over it): left open (None), the context,
    -np and KV cache type are the policy's (plan/policy.py).
    `draft`: speculative decoding to add to it: none, auto (MTP where the model can, else a small
    model of its family; proposed only where it pays), mtp, or a catalog model id as draft model;
    `acceptance` (per drafted token, default: published per family) and `n_draft` (drafted per step).
    `vision`: load the model's vision projector as an mmproj file of this type (f16, bf16, q8_0),
    on the main GPU unless `mmproj_offload` is off; the plan leaves room for it.
    `rt`: the llama.cpp build, backend, op offload and fit margin (`runtime()`; default pinned).
    `bare`: also what `llama-server -m FILE` alone would run with (llama.cpp's --fit, `plan/fit.py`);
    the checker, which shows winners only, skips it."""
    o = _options(options, kw)
    if o.engine != "llamacpp":
        raise MoeplanError(f"plan_on_rig plans llama.cpp, not {o.engine}: call plan")
    o.check()
    return _llamacpp_report(model, rig, o, rt or Runtime(), bare)


def _options(options: PlanOptions | None, kw: dict[str, Any]) -> PlanOptions:
    """`options` with the keywords given over it (the keyword form of every plan entry point)."""
    return PlanOptions(**kw) if options is None else replace(options, **kw)


def _llamacpp_report(
    model: str | ResolvedModel, rig: Rig, o: PlanOptions, rt: Runtime, bare: bool = True
) -> PlanReport:
    """`plan_on_rig` for checked options."""
    quant, n_seq, ctk, ctv, draft = o.quant, o.n_seq, o.ctk, o.ctv, o.draft or "none"
    r = model if isinstance(model, ResolvedModel) else resolve_model(model)
    spec = r.require_spec()
    tower = r.entry.vision_tower() if r.entry is not None else None
    vm: VisionMemory | None = None
    rt_rows = rt
    if o.vision is not None:
        from moeplan.plan.vision import holding, vision_memory

        vm = vision_memory(r.name, tower, o.vision, rig, rt, offload=o.mmproj_offload, file_stem=r.gguf_stem)
        rt = holding(rt, vm)
    purpose = use_named(o.use)
    ext = r.entry.rope_extension if r.entry is not None else None
    rope = context_bounds(
        o.ctx,
        spec.context_length,
        r.name,
        RopeScaling(ext.method, ext.factor, ext.original_context, ext.source) if ext else None,
    )
    if r.file is not None:  # a GGUF file is planned as it is, labelled with its file type
        quant = (r.file_type or nominal_file_type(r.file.weights)).name
    n_seq = purpose.n_seq if n_seq is None else n_seq
    kv_auto = ctk is None and ctv is None
    cache = CacheConfig(
        n_ctx=0,
        n_seq=n_seq,
        unified=True,
        type_k=cache_type(ctk or "f16"),
        type_v=cache_type(ctv or "f16"),
        flash_attn=o.flash_attn,
    )
    result = llamacpp_plan(
        spec,
        rig,
        ctx=o.ctx,
        quant=FileType.parse(quant) if quant else None,
        cache=cache,
        alternatives=o.alternatives,
        file=r.file,
        use=purpose,
        kv_auto=kv_auto,
        ub_auto=True,  # -ub is not an option of plan: always the policy's
        runtime=rt,
        frontend=Frontend("llama-server", n_outputs_max=n_seq, cache_ram=o.cache_ram),
    )
    c = result.chosen
    cache_ram = o.cache_ram if o.cache_ram is not None else result.cache_ram
    ctk, ctv = _CACHE_NAMES[c.cache.type_k], _CACHE_NAMES[c.cache.type_v]
    prefill = c.perf.prefill(PROMPT_TOKENS)
    spread = c.perf.latency
    devices = _with_vision(plan_devices(c.memory, rig, rt_rows), vm, rig, rt_rows)
    offloads = c.strategy != "gpu"  # the dense sibling is worth naming only when the MoE plan offloads
    sibling = _dense_sibling_fits(r.entry, rig, c.ctx) if spec.is_moe and r.entry and offloads else None

    mmproj = f" {_vision_report(vm).flags}" if vm is not None else ""

    def file_name(cand: Candidate) -> str:
        return (
            r.gguf.group.name.rsplit("/", 1)[-1]
            if r.gguf
            else r.id
            if r.header
            else f"{r.gguf_stem}-{cand.quant.name}.gguf"
        )

    def model_file(cand: Candidate) -> str:
        return (
            render_command(
                file_name(cand),
                cand.ctx,
                f"{cand.flags} {rope.flags}" if rope else cand.flags,
                n_seq=n_seq,
                flash_attn=o.flash_attn,
                cache_k=ctk,
                cache_v=ctv,
                n_ubatch=cand.cache.n_ubatch,
                op_offload=rt.op_offload,
                ctx_checkpoints=result.ctx_checkpoints,
                cache_ram=cache_ram,
            )
            + mmproj
        )

    command = model_file(c)
    drafts = (
        []
        if draft == "none"
        else draft_options(
            spec,
            rig,
            c,
            cache,
            # the trade table's plans too: a smaller context (at least the use's) may leave room for it
            alternatives=[a for a in result.alternatives if a.fits]
            + [cell.plan for cell in result.trade if cell.plan is not None and cell.ctx >= purpose.ctx],
            entry=r.entry,
            draft=draft,
            acceptance=o.acceptance,
            n_max=N_MAX if o.n_draft is None else o.n_draft,
            file=r.file,
            runtime=rt,
        )
    )
    drafting = [_drafting_report(o, c, rig, model_file(o.base), n_seq, rt) for o in drafts]
    fits = c.fits and not result.disk
    level = verdict(fits, result.below_floor, c.decode_tok_s)
    table = c.memory.table
    return PlanReport(
        model=r.name,
        rig=rig.text,
        backend=_backend_label(rig, rt),
        llamacpp_build=builds.describe(rt.build),
        build_notes=builds.differences(rt.build),
        rig_assumptions=list(rig.assumptions),
        fits=fits,
        verdict=level.label,
        verdict_level=level.value,
        below_floor=result.below_floor,
        params_total=int(table.elements[~table.role_is(Role.MTP)].sum()),
        streams_from_disk=result.disk and c.fits,
        quant=c.quant.name,
        strategy=c.strategy,
        use=purpose.name,
        ctx=c.ctx,
        n_seq=n_seq,
        cache_type_k=ctk,
        cache_type_v=ctv,
        n_ubatch=c.cache.n_ubatch,
        rope_scaling=rope.flags if rope else None,
        decode_tok_s=round(c.decode_tok_s, 2),
        bound_by=c.bound_by,
        prefill_tok_s=round(prefill.tok_s, 1),
        prompt_tokens=PROMPT_TOKENS,
        ttft_s=round(c.perf.ttft_s(PROMPT_TOKENS), 3),
        decode_fill=c.perf.fill,
        latency_p50_s=round(spread.p50_s, 5),
        latency_p95_s=round(spread.p95_s, 5),
        latency_p99_s=round(spread.p99_s, 5),
        routing=spread.routing,
        throughput_tok_s={b: round(c.perf.throughput(b), 1) for b in (1, 4, 16)},
        devices=devices,
        command=command,
        notices=[
            PlanNotice(id=n.id, severity=n.severity, message=n.message)
            for n in notices(spec, rig, result, sibling, rope)
        ]
        + [
            _drafting_notice(o, d, c)
            for o, d in zip(drafts, drafting, strict=True)
            if d.proposed or draft != "auto"
        ],
        alternatives=[
            PlanAlternative(
                quant=a.quant.name,
                strategy=a.strategy,
                flags=a.flags,
                ctx=a.ctx,
                fits=a.fits,
                decode_tok_s=round(a.decode_tok_s, 2),
                why_not=a.why_not,
            )
            for a in result.alternatives
        ],
        trade=[_trade_cell(cell, c) for cell in result.trade],
        drafting=drafting,
        vision=_vision_report(vm) if vm is not None else None,
        prompt_cache=_prompt_cache_line(
            Frontend("llama-server", cache_ram=cache_ram),
            c.memory.device(CPU).prompt_cache_bytes,
            rt.build,
            "given"
            if o.cache_ram is not None
            else "lowered by moeplan to fit this host: PROMPT_CACHE_REDUCED"
            if result.cache_ram is not None
            else DEFAULT_ORIGIN,
        ),
        bare=_bare_server(spec, rig, c, shlex.quote(file_name(c)), r.file, rt_rows) if bare else None,
    )


def _bare_server(
    spec: ModelSpec, rig: Rig, chosen: Candidate, file: str, inv: FileInventory | None, rt: Runtime
) -> BareServerReport:
    """What `llama-server -m FILE` alone would run with on this rig, against the plan's flags."""
    out, bare = fit_command(spec, rig, chosen.quant, server_cache(rt.build), UserSet(), runtime=rt, file=inv)
    summary = fit_summary(out, spec.context_length)
    if not bare.fits:
        over = ", ".join(f"{d} by {b / 2**30:.1f} GiB" for d, b in bare.overflow.items())
        told = f"it runs out of memory ({over})"
    else:
        told = f"~{bare.decode_tok_s:.1f} tokens/s at -c {bare.ctx:,}"
    if not chosen.fits:
        verdict = f"moeplan's plan (-c {chosen.ctx:,}) does not fit" + ("" if bare.fits else " either")
    elif not bare.fits:
        verdict = "the explicit flags are needed"
    else:
        ratio = chosen.decode_tok_s / bare.decode_tok_s if bare.decode_tok_s else 0.0
        verdict = (
            f"moeplan's flags: {ratio:.2f}x the decode speed at -c {chosen.ctx:,}"
            if abs(ratio - 1) > 0.02 or chosen.ctx != bare.ctx
            else "the same run: the explicit flags only pin it"
        )
    return BareServerReport(
        command=f"llama-server -m {file}",
        ctx=out.n_ctx,
        flags=out.flags,
        fits=bare.fits,
        decode_tok_s=round(bare.decode_tok_s, 2),
        summary=summary,
        comparison=f"llama-server -m {file} alone: {told}; {verdict}",
    )


def _drafting_report(
    o: DraftOption, chosen: Candidate, rig: Rig, command: str, n_seq: int, rt: Runtime
) -> DraftingReport:
    """What drafting adds to the plan it is added to, and its speed against the chosen plan."""
    before = {d.device: d.total_bytes for d in o.base.memory.devices}
    totals = o.memory.totals()
    what = "MTP drafting" if o.drafting.kind is SpecType.MTP else f"drafting with {o.draft_model}"
    speedup = o.speedup_over(chosen)
    if not o.fits:
        over = ", ".join(f"{d} needs {b / 2**30:.1f} GiB more" for d, b in o.overflow.items())
        note = f"{what} does not fit beside this plan: {over}"
    elif not o.speed.pays:
        note = f"{what} does not pay here: {o.speed.speedup:.2f}x the decode speed"
    else:
        note = (
            f"{what}: {o.speed.speedup:.2f}x the decode speed ({o.speed.tokens_per_step:.2f} tokens per step)"
        )
    if o.base is not chosen:
        note += (
            f", on {o.base.quant.name} {o.base.strategy} at {o.base.ctx:,} tokens ({o.base.flags}): "
            "the chosen plan has no room for it"
        )
    if n_seq > 1:
        note += f"; the speed is one stream's (with {n_seq} slots busy, each verifies its own drafts)"
    if o.needs_mtp_file:
        note += f"; {o.needs_mtp_file}"
    return DraftingReport(
        kind=str(o.drafting.kind),
        draft_model=o.draft_model or None,
        flags=o.flags,
        command=f"{command} {o.flags}",
        n_max=o.drafting.n_max,
        acceptance=o.speed.acceptance.p,
        acceptance_source=o.speed.acceptance.source,
        tokens_per_step=round(o.speed.tokens_per_step, 3),
        decode_tok_s=round(o.speed.tok_s, 2),
        speedup=round(speedup, 3),
        fits=o.fits,
        overflow=o.overflow,
        proposed=o.fits and speedup > 1.0,
        extra_bytes={
            d.device: d.total_bytes - before.get(d.device, 0)
            for d in totals
            if d.total_bytes != before.get(d.device, 0)
        },
        devices=device_rows(totals, rig, rt),
        note=note,
    )


def _drafting_notice(o: DraftOption, d: DraftingReport, chosen: Candidate) -> PlanNotice:
    """Drafting that pays, said in a few words that are the same on every rig where it holds (its
    speed-up, memory and command stand beside each rig's plan): what to add, on which plan, and what
    file it needs. Drafting asked for that does not pay or fit says why (`d.note`)."""
    if not d.proposed:
        return PlanNotice(id="SPECULATIVE_DRAFTING", severity="warning", message=f"{d.note}: {d.flags}")
    what = "MTP drafting" if o.drafting.kind is SpecType.MTP else f"drafting with {o.draft_model}"
    message = f"{what} makes decode faster: add {d.flags}"
    if o.base is not chosen:
        message += f" to the {o.base.quant.name} plan at {o.base.ctx:,} tokens (this one has no room for it)"
    if o.needs_mtp_file:
        message += f"; it {o.needs_mtp_file}"
    return PlanNotice(id="SPECULATIVE_DRAFTING", severity="info", message=message)


def _dense_sibling_fits(entry: CatalogEntry, rig: Rig, ctx: int) -> str | None:
    """The dense sibling's name if it runs entirely on the GPU(s) at the quality floor, at the
    MoE plan's context (or the sibling's maximum if smaller)."""
    if not entry.dense_sibling or not rig.node.gpus:
        return None
    sibling = resolve(entry.dense_sibling)
    spec = sibling.spec()
    at = min(ctx, spec.context_length) if spec.context_length else ctx
    r = llamacpp_plan(spec, rig, ctx=at, quant=QUALITY_FLOOR, alternatives=False)
    return sibling.name if r.chosen.fits and r.chosen.strategy == "gpu" else None


def _backend_label(rig: Rig, rt: Runtime) -> str:
    names = sorted({gpu_backend(g, rt).name for g in rig.node.gpus})
    return "+".join(names) if names else "CPU"


@overload
def plan(
    model: str, rig_text: str, options: None = None, *, engine: Literal["llamacpp"] = "llamacpp", **kw: Any
) -> PlanReport: ...
@overload
def plan(
    model: str, rig_text: str, options: PlanOptions | None = None, **kw: Any
) -> "PlanReport | DistributedPlan": ...
def plan(
    model: str, rig_text: str, options: PlanOptions | None = None, **kw: Any
) -> "PlanReport | DistributedPlan":
    """The best plan for a model on a rig with llama.cpp (`plan_on_rig`) or with vLLM / SGLang
    (`serving_plan`), as `options` ask (plan/options.py; or its fields as keywords, over it): an
    option the engine cannot apply is refused there."""
    o = _options(options, kw)
    o.check()
    if o.engine != "llamacpp":
        return _serving_report(model, parse_rig(rig_text), o)
    rig, rt = rig_and_runtime(rig_text, runtime(o.backend, o.llamacpp_build, o.op_offload, o.fit_target_mib))
    return _llamacpp_report(model, rig, o, rt)


def serving_plan(model: str, rig: Rig, engine: str, **kw: Any) -> "DistributedPlan":
    """vLLM / SGLang: `quant` (or `weight_format`, the same) names the weight format, FP8 / AWQ /
    NVFP4 ... (`engines.formats.parse_weight_format`); llama.cpp's own settings are refused."""
    o = PlanOptions(engine=engine, **kw)
    o.check()
    return _serving_report(model, rig, o)


def _serving_report(model: str, rig: Rig, o: PlanOptions) -> "DistributedPlan":
    """`serving_plan` for checked options."""
    from moeplan.plan.distributed import plan_distributed  # vLLM/SGLang planning: not for every command

    name: Literal["vllm", "sglang"] = "vllm" if o.engine == "vllm" else "sglang"
    return plan_distributed(model, rig, name, ctx=o.ctx, weight_format=o.quant or o.weight_format)


class FitRow(BaseModel):
    model: str
    id: str
    fits: bool
    verdict: str  # plan/policy.py: runs well, below quality floor, too slow, does not fit
    verdict_level: int
    params_total: int
    quant: str
    strategy: str
    ctx: int
    decode_tok_s: float
    bound_by: str
    prefill_tok_s: float
    ttft_s: float
    latency_p99_s: float
    command: str
    notices: list[str]


def fit(rig_text: str, models: list[str] | None = None) -> list[FitRow]:
    """The hardware compatibility checker: every catalog model's best plan on this rig, ranked to
    answer "what is the best model this rig runs well": by verdict (plan/policy.py), then the
    larger model (parameters), then speed."""
    rig, rt = rig_and_runtime(rig_text, Runtime())
    rows = []
    for model_id in models or list(load_catalog()):
        resolved = resolve_model(model_id)
        r = plan_on_rig(resolved, rig, alternatives=False, rt=rt, bare=False)
        rows.append(
            FitRow(
                model=r.model,
                id=resolved.id,
                fits=r.fits,
                verdict=r.verdict,
                verdict_level=r.verdict_level,
                params_total=r.params_total,
                quant=r.quant,
                strategy=r.strategy,
                ctx=r.ctx,
                decode_tok_s=r.decode_tok_s,
                bound_by=r.bound_by,
                prefill_tok_s=r.prefill_tok_s,
                ttft_s=r.ttft_s,
                latency_p99_s=r.latency_p99_s,
                command=r.command,
                notices=[n.id for n in r.notices],
            )
        )
    rows.sort(key=fit_rank)
    return rows


def fit_rank(row: FitRow) -> tuple[int, int, float]:
    """Best first: the verdict's level, then the larger model, then the faster plan."""
    return (row.verdict_level, -row.params_total, -row.decode_tok_s)


# --- Hub references (`hf://org/repo`, `hf://org/repo:Q4_K_M`): header-only reads, sources/hub.py ---


def _file_quant(r: ResolvedModel) -> str:
    """The quantization a GGUF file is: its Hub group's name, else its declared file type."""
    if r.gguf is not None and r.gguf.group.quant:
        return r.gguf.group.quant
    return r.file_type.name if r.file_type else "?"


def _hub_gguf_report(r: ResolvedModel) -> "SizeReport":
    """The report of a GGUF on the Hub, from its headers alone: what `inspect` gives for the file."""
    from moeplan.memory.report import size_report

    if r.gguf is None:
        raise MoeplanError(
            f"{r.id} is not a GGUF reference: `inspect` reads GGUF files (name a quant: :Q4_K_M)"
        )
    found, w = r.gguf, r.weights
    assert w is not None
    n_mtp = sum(1 for t in w.tensors if t.spec.role.value == "mtp")
    report = size_report(
        w,
        source="gguf header (hub)",
        file_bytes=found.model.file_bytes,
        mtp=f"{n_mtp} MTP tensors in the file" if n_mtp else "none in the file",
        notes=[
            f"{found.listing.repo}@{found.listing.commit[:12]}: "
            + ", ".join(f.path for f in found.group.files),
            f"{len(found.model.shards)} file(s); header bytes read: {found.model.header_bytes_read}; "
            f"fetched now: {found.fetched.bytes} bytes in {found.fetched.requests} range request(s)",
            f"model description for planning: {r.spec_source}",
        ],
    )
    return report.model_copy(update={"quant": _file_quant(r)})


def _hub_safetensors_native(r: ResolvedModel, notes: list[str]) -> tuple[tuple[str, int] | None, list[str]]:
    """The release's exact bytes from its safetensors headers, and what they hold."""
    st = r.safetensors
    if st is None:
        return None, notes
    by = ", ".join(f"{k} {v / 1e9:,.2f} GB" for k, v in st.bytes_by_dtype().items())
    return (st.release_format, st.tensor_bytes), [
        *notes,
        f"safetensors headers of {len(st.headers)} file(s): {len(st.tensors)} tensors "
        f"({st.scale_tensors} quantization scale tensors), {by}; fetched {st.fetched.bytes} bytes",
    ]


class HubQuantFile(BaseModel):
    quant: str
    file: str
    files: list[str]
    size_bytes: int
    complete: bool


class HubListing(BaseModel):
    repo: str
    commit: str
    gguf: list[HubQuantFile]
    safetensors_files: int
    safetensors_bytes: int
    config_json: bool


def hub_ls(repo: str) -> HubListing:
    """The GGUF quant files of a Hub repository with their sizes (split files grouped), and its
    safetensors weights."""
    from moeplan.sources.hub import gguf_groups, list_repo  # the Hub client loads for Hub commands only

    ref = parse_ref(repo if "://" in repo else f"hf://{repo}")
    if ref is None:
        raise MoeplanError(f"'{repo}' is not a Hub repository (expected org/repo)")
    listing = list_repo(ref.repo, ref.revision)
    st = [f for f in listing.files if f.path.endswith(".safetensors")]
    return HubListing(
        repo=listing.repo,
        commit=listing.commit,
        gguf=[
            HubQuantFile(
                quant=g.quant,
                file=g.name,
                files=[f.path for f in g.files],
                size_bytes=g.size,
                complete=g.complete,
            )
            for g in gguf_groups(listing)
        ],
        safetensors_files=len(st),
        safetensors_bytes=sum(f.size for f in st),
        config_json=listing.file("config.json") is not None,
    )


class FitReport(BaseModel):
    """What llama.cpp's --fit decides for a command's unset -c / -ngl / -ot / -ts (`engines/fit.py`)."""

    ctx: int
    flags: str  # the placement llama.cpp loads with ("": its defaults, every layer on the GPUs)
    changed: bool
    stopped: str | None  # why it left the rest as written ("... already set by user, abort")
    log: list[str]  # the lines llama.cpp logs on the way (shown with -lv 4)
    summary: str  # one line for people


class ExplainReport(BaseModel):
    model: str
    quant: str
    rig: str
    command: str
    placement: str
    ctx: int
    fits: bool
    overflow: dict[str, int]
    devices: list[PlanDevice]
    decode_tok_s: float
    prefill_tok_s: float
    bound_by: str
    suggestion: str
    suggested_command: str | None
    speedup: float | None
    fixes: list[str]  # when it does not fit: the smallest changes of this command that would make it
    backend: str
    llamacpp_build: str
    build_notes: list[str]
    ignored_flags: list[str]
    n_seq: int  # sequences (slots) the KV cache holds
    notes: list[str]  # how the command's model, quantization and context were read
    drafting: DraftingReport | None = None
    vision: VisionReport | None = None
    fit: FitReport | None = None  # llama.cpp's --fit on this command (None: -fit off)
    prompt_cache: str | None = None  # llama-server's prompt cache: its bound and where it comes from


def _explained_model(
    cmd: "LlamaCommand", model: str | None, quant: str | None
) -> tuple[ResolvedModel, FileType, Weights | None, list[str]]:
    """The model, file type and (for a file on disk) real weights a command loads: from -hf, else
    from -m's file (its header when it exists here, its name otherwise); `model` and `quant` say what
    the name cannot."""
    asked = FileType.parse(quant) if quant else None
    hf = cmd.get("hf_repo")
    if hf is not None and model is None:
        r = resolve_model(hf if hf.startswith("hf://") else f"hf://{hf}")
        ft = asked or r.file_type or file_type_of_label(quant_label(hf))[0] or QUALITY_FLOOR
        return r, ft, r.weights, []
    path = cmd.get("model") or hf
    if path is None:
        raise MoeplanError("the command names no model: give -m FILE.gguf or -hf REPO:QUANT")
    on_disk = Path(path).is_file()
    if on_disk and model is None:
        r = resolve_model(path)  # the file's own metadata and tensors
        w = r.weights
        assert w is not None  # a local file always has its header
        return r, asked or r.file_type or nominal_file_type(w), w, []
    named = read_file_name(path)
    base = Path(path).name
    name = model or (named.model if named else "")
    if not name:
        raise MoeplanError(
            f"cannot tell which model '{base}' is from its name: pass --model (a catalog id, e.g. "
            "qwen3.5-35b-a3b) and --quant if the name has no quantization (e.g. Q4_K_M)"
        )
    try:
        r = resolve_model(name)
    except ModelNotFound as e:
        raise ModelNotFound(f"{e}; or pass --model to say which model '{base}' is") from None
    named_ft = asked or (named.file_type if named else None)
    if named_ft is None:
        raise MoeplanError(f"cannot tell the quantization from '{base}': pass --quant (e.g. Q4_K_M)")
    notes = [named.note] if named and named.note and not asked and not on_disk else []
    if not on_disk:
        return r, named_ft, None, notes
    from moeplan.sources.gguf_header import read_local
    from moeplan.sources.gguf_weights import weights_from_gguf

    return r, named_ft, weights_from_gguf(read_local(path)), notes


def _fit_user(cmd: "LlamaCommand") -> UserSet:
    """What a command fixed that --fit leaves alone, read as `common/arg.cpp` does (-ngl auto is the
    default -1, all is -2; -fitt one value for every GPU or one per GPU)."""
    asked = cmd.integer("ctx_size")
    if asked is not None and asked < 0:
        raise MoeplanError(f"-c must be 0 (the model's context) or a positive number of tokens, got {asked}")
    ngl_word = cmd.get("gpu_layers")
    ngl = None if ngl_word in (None, "auto", "-1") else -2 if ngl_word == "all" else cmd.integer("gpu_layers")
    target = cmd.get("fit_target")
    try:
        margins = tuple(int(x) for x in target.split(",")) if target else ()
    except ValueError:
        raise MoeplanError(f"-fitt takes MiB per GPU like 1024 or 512,2048, got '{target}'") from None
    fit_ctx = cmd.integer("fit_ctx")
    if (fit_ctx is not None and fit_ctx < 1) or any(m < 0 for m in margins):
        raise MoeplanError("-fitc must be a positive number of tokens and -fitt non-negative MiB")
    return UserSet(cmd.placement_flags, asked, ngl, fit_ctx or FIT_MIN_CTX, margins)


def explain(
    command: str,
    rig_text: str,
    *,
    model: str | None = None,
    quant: str | None = None,
    backend: str | None = None,
    llamacpp_build: int | None = None,
    fit_target_mib: int | None = None,
) -> ExplainReport:
    """Memory and speed of a real llama.cpp command on a rig, and what moeplan would change
    (the placement flags only: every other word of the command is kept). `llamacpp_build`: the
    build that runs it (default: the pinned one)."""
    from moeplan.engines.llamacpp_args import parse_command
    from moeplan.plan.vision import holding, vision_of_command

    cmd = parse_command(command)
    said_target = cmd.get("fit_target") or ""
    if fit_target_mib is None and said_target.isdigit():  # -fitt N: the margin the command keeps
        fit_target_mib = int(said_target)
    rt = runtime(backend, llamacpp_build, not cmd.has("no_op_offload"), fit_target_mib)
    rig, rt = rig_and_runtime(rig_text, rt)
    rig = _used_gpus(cmd, rig, rt)
    resolved, ft, weights, notes = _explained_model(cmd, model, quant)
    spec = resolved.require_spec()
    tower = resolved.entry.vision_tower() if resolved.entry is not None else None
    vm, vision_note = vision_of_command(cmd, resolved.name, tower, rig, rt)
    notes += [vision_note] if vision_note else []
    rt_rows, rt = rt, (rt if vm is None else holding(rt, vm))  # llama-server fits beside the projector
    server = cmd.binary is None or "server" in Path(cmd.binary).name
    slots = cmd.integer("parallel")
    auto_slots = server and (slots is None or slots < 0)  # llama-server: auto = 4 slots, unified KV
    n_seq = 4 if auto_slots else max(1, slots or 1)
    unified = auto_slots or (cmd.has("kv_unified") and not cmd.has("no_kv_unified"))
    fa_said = cmd.get("flash_attn")
    fa = fa_said not in ("off", "0", "false") if fa_said else builds.default_flash_attn(rt.build)
    flags = cmd.placement_flags or "-ngl 99"

    def cache_at(n_ctx: int) -> CacheConfig:
        return CacheConfig(
            n_ctx=n_ctx,
            n_seq=n_seq,
            unified=unified,
            n_ubatch=cmd.integer("ubatch_size") or 512,
            n_batch=cmd.integer("batch_size") or 2048,
            type_k=cache_type(cmd.get("cache_type_k") or "f16"),
            type_v=cache_type(cmd.get("cache_type_v") or "f16"),
            flash_attn=fa,
            swa_full=cmd.has("swa_full"),
        )

    # llama-server keeps --ctx-checkpoints per slot in host memory (memory/checkpoints.py); others none
    # and a prompt cache of --cache-ram MiB (memory/prompt_cache.py)
    fe = Frontend(
        "llama-server",
        n_outputs_max=n_seq,
        ctx_checkpoints=cmd.integer("ctx_checkpoints"),
        cache_ram=cmd.integer("cache_ram"),
    )
    fe = fe if server else replace(fe, ctx_checkpoints=0, cache_ram=0)

    streams = 1 if unified else n_seq
    user, fit_report, placement = _fit_user(cmd), None, cmd.placement_flags or "-ngl 99 (default)"
    fit_on = (cmd.get("fit") or "on") not in ("off", "0", "false")
    if user.n_ctx == 0:
        each = f" for each of the {streams} KV streams" if fit_on and streams > 1 else ""
        notes.append(f"-c 0: the model's trained context, {spec.context_length:,} tokens{each}")
    if not fit_on:  # llama_context: -c 0 or none is n_ctx_train
        ctx = user.n_ctx or spec.context_length
    else:  # common_fit_params before the model loads (common/common.cpp common_init_result)
        out, _ = fit_command(spec, rig, ft, cache_at(0), user, weights, rt, file=resolved.file)
        ctx, flags = out.n_ctx, f"{cmd.placement_flags} {out.flags}".strip() or flags
        summary = fit_summary(out, spec.context_length * streams)
        fit_report = FitReport(
            ctx=ctx, flags=out.flags, changed=out.changed, stopped=out.stopped, log=out.log, summary=summary
        )
        notes += [summary] if out.changed or user.n_ctx is None else []
        placement = f"{out.flags} (llama.cpp --fit)" if out.flags else placement
    cache = cache_at(ctx)
    given = evaluate_command(spec, rig, ft, flags, cache, weights, rt, fe)
    planned = llamacpp_plan(
        spec, rig, ctx=ctx, quant=ft, cache=cache, file=resolved.file, runtime=rt, frontend=fe
    )
    best = planned.chosen
    devices = plan_devices(given.memory, rig, rt)
    drafting = _explain_drafting(cmd, spec, rig, given, cache, command, rt)
    runs, overflow, decode = given.fits, given.overflow, given.decode_tok_s
    if drafting is not None:
        devices = drafting.devices
        overflow = {
            d.name: d.total_bytes - d.capacity_bytes for d in devices if d.total_bytes > d.capacity_bytes
        }
        runs = runs and drafting.fits
        decode = drafting.decode_tok_s if drafting.kind != "none" else decode
    if vm is not None:
        devices = _with_vision(devices, vm, rig, rt_rows)
        overflow = {
            d.name: d.total_bytes - d.capacity_bytes for d in devices if d.total_bytes > d.capacity_bytes
        }
        runs = runs and not overflow
    suggestion, suggested, speedup = "moeplan would run it the same way", None, None
    if best.strategy == "disk" and not given.fits:
        # Nothing at this quantization fits in RAM + VRAM: moeplan's own plan streams from disk too.
        suggestion = (
            f"nothing at {ft.name} fits in RAM + VRAM here: with mmap (llama.cpp's default) the weights "
            f"that do not fit are read from disk on demand, about {best.decode_tok_s:.1f} tokens/s "
            f"({best.flags}); a smaller quantization avoids it"
        )
    elif best.flags != given.flags and best.fits:
        if not given.fits:
            suggestion = f"as written it does not fit; moeplan would use {best.flags}"
        elif best.decode_tok_s > 1.02 * given.decode_tok_s:
            speedup = best.decode_tok_s / given.decode_tok_s
            suggestion = f"moeplan would use {best.flags}: {speedup:.2f}x the decode speed"
        elif planned.spare_gpus and (spread := _gpus_holding(given)) > (held := _gpus_holding(best)):
            who = "one GPU holds it" if held == 1 else f"{held} GPUs hold it"
            suggestion = (
                f"moeplan would use {best.flags}: {who}, as fast as spread over {spread}; "
                f"the other {len(planned.spare_gpus)} are free for more replicas"
            )
        if suggestion != "moeplan would run it the same way":
            suggested = cmd.with_placement(best.flags)
    return ExplainReport(
        model=resolved.name,
        quant=ft.name,
        rig=rig.text,
        command=command,
        placement=placement,
        ctx=given.memory.n_ctx,
        n_seq=n_seq,
        fits=runs,
        overflow=overflow,
        devices=devices,
        decode_tok_s=round(decode, 2),
        prefill_tok_s=round(given.perf.prefill(PROMPT_TOKENS).tok_s, 1),
        bound_by=given.bound_by,
        suggestion=suggestion,
        suggested_command=suggested,
        speedup=round(speedup, 2) if speedup else None,
        fixes=[] if given.fits else _fixes(spec, rig, ft, flags or "-ngl 99", cache, weights, rt, given, fe),
        backend=_backend_label(rig, rt),
        llamacpp_build=builds.describe(rt.build),
        build_notes=builds.differences(rt.build),
        ignored_flags=list(cmd.ignored),
        notes=notes,
        drafting=drafting,
        vision=_vision_report(vm) if vm is not None else None,
        fit=fit_report,
        prompt_cache=_prompt_cache_line(
            fe if server else Frontend(),
            given.memory.device(CPU).prompt_cache_bytes,
            rt.build,
            "in the command" if cmd.has("cache_ram") else DEFAULT_ORIGIN,
        ),
    )


def _gpus_holding(c: Candidate) -> int:
    """How many GPUs hold some of the plan's weights."""
    return sum(1 for d in c.memory.devices if d.weights_bytes and not d.device.startswith(CPU))


def _used_gpus(cmd: "LlamaCommand", rig: Rig, rt: Runtime) -> Rig:
    """The rig with the GPUs llama.cpp uses for the command: -dev/--device names them (none: CPU
    only; common/arg.cpp), -sm none keeps only the main GPU among them (-mg, default 0; -1: none), as
    `llama_model_load_from_file_impl` (src/llama.cpp) removes the others. Row and tensor split are not
    modelled, so they are refused rather than explained as a layer split."""
    gpus = rig.node.gpus
    numbers = tuple(range(len(gpus)))  # llama.cpp's device numbers, kept for the names (CUDA1)
    if (listed := cmd.get("device")) is not None:
        names = {backend_name(g, i, rt): i for i, g in enumerate(gpus)}
        wanted = device_list(listed)  # () for -dev none
        if unknown := [d for d in wanted if d not in names]:
            known = ", ".join(names) or "none (the rig has no GPU)"
            raise MoeplanError(f"-dev {unknown[0]}: the rig's devices are {known}")
        numbers = tuple(names[d] for d in wanted)
    mode = cmd.get("split_mode") or "layer"
    if mode not in ("layer", "none"):
        raise MoeplanError(
            f"-sm {mode} is not modelled: moeplan explains llama.cpp's layer split (-sm layer, the default) "
            "or one GPU (-sm none -mg N)"
        )
    if mode == "none" and numbers:
        main = cmd.integer("main_gpu") or 0
        if not -1 <= main < len(numbers):
            raise MoeplanError(f"-mg {main}: the command uses {len(numbers)} GPU(s), numbered from 0")
        numbers = () if main < 0 else numbers[main : main + 1]
    node = replace(rig.node, gpus=tuple(gpus[n] for n in numbers), device_numbers=numbers)
    return replace(rig, nodes=(node, *rig.nodes[1:]))


def _explain_drafting(
    cmd: "LlamaCommand",
    spec: ModelSpec,
    rig: Rig,
    given: Candidate,
    cache: CacheConfig,
    command: str,
    rt: Runtime,
) -> DraftingReport | None:
    """The drafting a pasted command asks for (--spec-type, -md and their options), on its plan.
    `-md` without `--spec-type draft-simple` loads the draft model but never drafts with it."""
    draft_file = cmd.get("model_draft")
    if not cmd.has("spec_type") and draft_file is None:
        for key, flag in _DRAFT_OPTIONS.items():
            if cmd.has(key):
                raise MoeplanError(f"{flag} has no effect without --spec-type or -md")
        return None
    kinds = (cmd.get("spec_type") or "none").split(",")
    unknown = [k for k in kinds if k not in {t.value for t in SpecType}]
    if unknown:
        raise MoeplanError(f"unknown --spec-type {', '.join(unknown)}; llama.cpp knows {', '.join(SpecType)}")
    drafts = [SpecType(k) for k in kinds if SpecType(k) in (SpecType.MTP, SpecType.SIMPLE)]
    if len(drafts) > 1 or (SpecType.MTP in drafts and draft_file is not None):
        raise MoeplanError("give one of --spec-type draft-mtp (the model's MTP layers) or -md FILE")
    if not drafts and draft_file is None:
        others = ", ".join(k for k in kinds if k != "none")
        raise MoeplanError(
            f"--spec-type {others}: moeplan plans draft-mtp and draft-simple (-md); "
            "n-gram drafting needs no memory and its speed depends on repeated text"
        )
    n_max = cmd.integer("spec_draft_n_max") or N_MAX
    types = dict(
        type_k=cache_type(cmd.get("cache_type_k_draft") or "f16"),
        type_v=cache_type(cmd.get("cache_type_v_draft") or "f16"),
    )
    ngld = cmd.get("gpu_layers_draft")
    model = None
    if draft_file is not None:
        named = read_file_name(draft_file)
        if named is None or not named.model or named.file_type is None:
            raise MoeplanError(
                f"cannot tell the draft model and quantization from '{Path(draft_file).name}': "
                "name it like Qwen3-0.6B-Q8_0.gguf"
            )
        dinv = inventory(resolve_model(named.model).require_spec())
        # The draft inherits the command's -sm (common_base_params_to_speculative, common/speculative.cpp).
        place = replace(parse_placement(f"-ngl {ngld or 'all'}"), split_mode=cmd.get("split_mode") or "layer")
        model = DraftModel(Path(draft_file).name, dinv, predict(dinv, named.file_type), place)
    kind = SpecType.SIMPLE if model is not None else SpecType.MTP
    drafting = Drafting(kind, n_max, model, **types)
    acc = default_acceptance(spec.arch, kind is SpecType.MTP)
    o = evaluate_drafting(
        spec,
        rig,
        given,
        cache,
        drafting,
        acc,
        draft_model=Path(draft_file).name if draft_file else "",
        ngl_draft=ngld or "",
        runtime=rt,
    )
    report = _drafting_report(o, given, rig, command, cache.n_seq, rt)
    if not drafts:  # -md alone: the memory, not the speed
        report.kind = "none"
        report.decode_tok_s, report.speedup, report.proposed = round(given.decode_tok_s, 2), 1.0, False
        report.note = "-md without --spec-type draft-simple loads the draft model but never drafts with it"
    report.command = command
    return report


_DRAFT_OPTIONS = {
    "spec_draft_n_max": "--spec-draft-n-max",
    "gpu_layers_draft": "-ngld",
    "cache_type_k_draft": "-ctkd",
    "cache_type_v_draft": "-ctvd",
}


# Half a context is offered as a fix only down to this (a smaller one is rarely what was meant).
MIN_FIX_CTX = 8192


def _fixes(
    spec: ModelSpec,
    rig: Rig,
    ft: FileType,
    flags: str,
    cache: CacheConfig,
    weights: Weights | None,
    rt: Runtime,
    given: Candidate,
    fe: Frontend,
) -> list[str]:
    """The one-step changes of a command that does not fit which make it fit: on its GPUs a q8_0 KV
    cache in place of f16 (half its bytes; a quantized V cache needs flash attention, which the
    command has), half the context, a smaller -ub (the compute buffer and the op-offload copies'
    activations shrink with it), --no-op-offload (no host weight copied to the main GPU), one more
    --n-cpu-moe layer; in host RAM the most --cache-ram (256 MiB steps) that fits, where
    llama-server's prompt cache is what is over."""
    tries: list[tuple[str, str, CacheConfig, Runtime, Frontend]] = []
    if any(d != CPU for d in given.overflow):
        if cache.flash_attn and cache.type_k == cache.type_v == GGMLType.F16:
            q8 = replace(cache, type_k=GGMLType.Q8_0, type_v=GGMLType.Q8_0)
            tries.append(("-ctk q8_0 -ctv q8_0", flags, q8, rt, fe))
        half = given.memory.n_ctx // 2
        if half >= MIN_FIX_CTX:
            tries.append((f"-c {half}", flags, replace(cache, n_ctx=half), rt, fe))
        for ub in (256, 128):
            if ub < cache.n_ubatch:
                tries.append((f"-ub {ub}", flags, replace(cache, n_ubatch=ub), rt, fe))
        if rt.op_offload and any(d.offload_copy_bytes for d in given.memory.devices):
            tries.append(
                (
                    "--no-op-offload (slower prompt processing)",
                    flags,
                    cache,
                    replace(rt, op_offload=False),
                    fe,
                )
            )
        m = re.search(r"--n-cpu-moe\s+(\d+)", flags)
        if spec.is_moe and m and int(m.group(1)) < spec.n_layer:
            n = int(m.group(1)) + 1
            moved = flags[: m.start()] + f"--n-cpu-moe {n}" + flags[m.end() :]
            tries.append((f"--n-cpu-moe {n}", moved, cache, rt, fe))
    held, over = given.memory.device(CPU).prompt_cache_bytes, given.overflow.get(CPU, 0)
    if over and held >= over:
        mib = (held - over) // 2**20 // 256 * 256
        what = (
            f"--cache-ram {mib} ("
            + ("no prompt cache" if not mib else "fewer idle conversations in RAM")
            + ")"
        )
        tries.append((what, flags, cache, rt, replace(fe, cache_ram=mib)))
    return [what for what, f, c, r, e in tries if evaluate_command(spec, rig, ft, f, c, weights, r, e).fits]
