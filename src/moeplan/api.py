"""The operations every face offers (CLI now, web later), composed from the core so that no face
re-derives a number."""

import re
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from moeplan.arch.inventory import inventory, mtp_default, mtp_supported
from moeplan.arch.spec import ModelSpec
from moeplan.engines import builds
from moeplan.engines.gpu_backends import backend as named_backend
from moeplan.engines.gpu_backends import split_backend
from moeplan.engines.llamacpp import (
    CPU,
    DeviceMemory,
    Frontend,
    MemoryPlan,
    parse_placement,
    plan_memory,
    render_command,
)
from moeplan.errors import MoeplanError
from moeplan.hardware.rig import parse_rig
from moeplan.hardware.spec import Rig
from moeplan.memory.kv import CacheConfig, cache_type
from moeplan.memory.report import SizeReport, size_report
from moeplan.memory.weights import (
    CONVERTER_OUTTYPES,
    Weights,
    default_file_type,
    file_bytes,
    nominal_file_type,
    predict,
    released_quantized,
)
from moeplan.notices import notices
from moeplan.perf.estimate import PROMPT_TOKENS
from moeplan.plan.llamacpp import (
    FIT_TARGET,
    QUALITY_FLOOR,
    Candidate,
    Runtime,
    device_slots,
    evaluate_command,
    gpu_backend,
)
from moeplan.plan.llamacpp import plan as llamacpp_plan
from moeplan.quant.native import native_bytes
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import CatalogEntry, load_catalog, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_weights import weights_from_gguf
from moeplan.sources.hub import gguf_groups, list_repo, parse_ref
from moeplan.sources.reference import ResolvedModel, resolve_model


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


def predict_size(model: str, quant: str | None, mtp: bool | None = None) -> SizeReport:
    """`quant` None: the file people download first (`default_file_type`)."""
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


def inspect_file(path: str) -> SizeReport:
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
) -> MemoryReport:
    """Bytes per device that llama.cpp allocates for this model, context and placement, on GPUs of
    `backend` (cuda, rocm, vulkan, metal, sycl, rpc) as build `llamacpp_build` allocates them."""
    r = resolve_model(model)
    spec = r.require_spec()
    inv = r.file or inventory(spec, mtp=_mtp_choice(r, mtp)[0])
    w = predict(inv, FileType.parse(quant))  # a GGUF file: its real tensor types
    if frontend not in ("server", "completion"):
        raise MoeplanError(f"unknown front end '{frontend}': use server (llama-server) or completion")
    server = frontend == "server"
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
    fe = Frontend("llama-server", n_outputs_max=slots) if server else Frontend()
    cfg, fe = builds.at_build(rt.build, cfg, fe)
    plan = plan_memory(
        inv, w, cfg, place, names, fe, op_offload=op_offload, output_first=builds.output_first(rt.build)
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
    )


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


def _buffers(d: DeviceMemory) -> dict[str, int]:
    """The byte counts every per-device report shares."""
    return {
        "weights_bytes": d.weights_bytes,
        "kv_bytes": d.kv_bytes,
        "state_bytes": d.state_bytes,
        "compute_bytes": d.compute_bytes,
        "total_bytes": d.total_bytes,
    }


def plan_devices(memory: MemoryPlan, rig: Rig, rt: Runtime | None = None) -> list[PlanDevice]:
    """Each device the plan uses, with what the rig offers it (the host is always listed)."""
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
        for d in memory.devices
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


class PlanReport(BaseModel):
    model: str
    rig: str
    backend: str  # the GPUs' llama.cpp backend (CPU when there are none)
    llamacpp_build: str  # the build modelled, and the changes it predates
    build_notes: list[str]  # what that build allocates differently from the pinned one
    rig_assumptions: list[str]
    fits: bool
    quant: str
    strategy: str
    ctx: int
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


def plan_on_rig(
    model: str | ResolvedModel,
    rig: Rig,
    *,
    ctx: int | None = None,
    quant: str | None = None,
    n_seq: int = 1,
    ctk: str = "f16",
    ctv: str = "f16",
    flash_attn: bool = True,
    alternatives: bool = True,
    rt: Runtime | None = None,
) -> PlanReport:
    """The best llama.cpp plan for a catalog model on a rig, with its command and notices
    (and the alternatives that lost, unless told not to: the checker lists winners only).
    `rt`: the llama.cpp build, backend, op offload and fit margin (`runtime()`; default pinned)."""
    rt = rt or Runtime()
    r = model if isinstance(model, ResolvedModel) else resolve_model(model)
    spec = r.require_spec()
    if r.file is not None:  # a GGUF file is planned as it is, labelled with its file type
        quant = (r.file_type or nominal_file_type(r.file.weights)).name
    cache = CacheConfig(
        n_ctx=0,
        n_seq=n_seq,
        unified=True,
        type_k=cache_type(ctk),
        type_v=cache_type(ctv),
        flash_attn=flash_attn,
    )
    result = llamacpp_plan(
        spec,
        rig,
        ctx=ctx,
        quant=FileType.parse(quant) if quant else None,
        cache=cache,
        alternatives=alternatives,
        file=r.file,
        runtime=rt,
    )
    c = result.chosen
    prefill = c.perf.prefill(PROMPT_TOKENS)
    spread = c.perf.latency
    devices = plan_devices(c.memory, rig, rt)
    sibling = _dense_sibling_fits(r.entry, rig, ctx) if spec.is_moe and r.entry else None
    command = render_command(
        r.gguf.group.name.rsplit("/", 1)[-1]
        if r.gguf
        else r.id
        if r.header
        else f"{r.name}-{c.quant.name}.gguf",
        c.ctx,
        c.flags,
        n_seq=n_seq,
        flash_attn=flash_attn,
        cache_k=ctk,
        cache_v=ctv,
        op_offload=rt.op_offload,
    )
    return PlanReport(
        model=r.name,
        rig=rig.text,
        backend=_backend_label(rig, rt),
        llamacpp_build=builds.describe(rt.build),
        build_notes=builds.differences(rt.build),
        rig_assumptions=list(rig.assumptions),
        fits=c.fits and not result.disk,
        quant=c.quant.name,
        strategy=c.strategy,
        ctx=c.ctx,
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
            for n in notices(spec, rig, result, sibling)
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
    )


def _dense_sibling_fits(entry: CatalogEntry, rig: Rig, ctx: int | None) -> str | None:
    """The dense sibling's name if it runs entirely on the GPU(s) at the quality floor."""
    if not entry.dense_sibling or not rig.node.gpus:
        return None
    sibling = resolve(entry.dense_sibling)
    r = llamacpp_plan(sibling.spec(), rig, ctx=ctx or 8192, quant=QUALITY_FLOOR, alternatives=False)
    return sibling.name if r.chosen.fits and r.chosen.strategy == "gpu" else None


def _backend_label(rig: Rig, rt: Runtime) -> str:
    names = sorted({gpu_backend(g, rt).name for g in rig.node.gpus})
    return "+".join(names) if names else "CPU"


def plan(
    model: str,
    rig_text: str,
    *,
    backend: str | None = None,
    llamacpp_build: int | None = None,
    op_offload: bool = True,
    fit_target_mib: int | None = None,
    **kw: Any,
) -> PlanReport:
    rig, rt = rig_and_runtime(rig_text, runtime(backend, llamacpp_build, op_offload, fit_target_mib))
    return plan_on_rig(model, rig, rt=rt, **kw)


class FitRow(BaseModel):
    model: str
    id: str
    fits: bool
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
    """The hardware compatibility checker: every catalog model's best plan on this rig, fastest first."""
    rig, rt = rig_and_runtime(rig_text, Runtime())
    rows = []
    for model_id in models or list(load_catalog()):
        resolved = resolve_model(model_id)
        r = plan_on_rig(resolved, rig, alternatives=False, rt=rt)
        rows.append(
            FitRow(
                model=r.model,
                id=resolved.id,
                fits=r.fits,
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
    rows.sort(key=lambda x: (not x.fits, -x.decode_tok_s))
    return rows


# --- Hub references (`hf://org/repo`, `hf://org/repo:Q4_K_M`): header-only reads, sources/hub.py ---


def _file_quant(r: ResolvedModel) -> str:
    """The quantization a GGUF file is: its Hub group's name, else its declared file type."""
    if r.gguf is not None and r.gguf.group.quant:
        return r.gguf.group.quant
    return r.file_type.name if r.file_type else "?"


def _hub_gguf_report(r: ResolvedModel) -> SizeReport:
    """The report of a GGUF on the Hub, from its headers alone: what `inspect` gives for the file."""
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


# Flags of a llama.cpp command line that change memory or speed, and those that do not.
_PLACEMENT_FLAGS = {
    "-ngl",
    "--gpu-layers",
    "--n-gpu-layers",
    "-ot",
    "--override-tensor",
    "-ncmoe",
    "--n-cpu-moe",
    "-ts",
    "--tensor-split",
}
_PLACEMENT_SWITCHES = {"-cmoe", "--cpu-moe", "-nkvo", "--no-kv-offload"}
_RUNTIME_SWITCHES = {"--no-op-offload"}
_VALUE_FLAGS = {
    "-m",
    "--model",
    "-hf",
    "--hf-repo",
    "-c",
    "--ctx-size",
    "-np",
    "--parallel",
    "-ctk",
    "--cache-type-k",
    "-ctv",
    "--cache-type-v",
    "-fa",
    "--flash-attn",
    "-ub",
    "--ubatch-size",
    "-b",
    "--batch-size",
}


def _parse_command(command: str) -> tuple[dict[str, str], str, list[str]]:
    try:
        args = shlex.split(command)
    except ValueError as e:
        raise MoeplanError(f"cannot parse the command: {e}") from None
    if args and not args[0].startswith("-"):
        args = args[1:]  # the binary: llama-server, llama-cli, ./build/bin/llama-server ...
    values: dict[str, str] = {}
    placement: list[str] = []
    ignored: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in _PLACEMENT_FLAGS:
            if i + 1 >= len(args):
                raise MoeplanError(f"{a} needs a value")
            placement += [a, shlex.quote(args[i + 1])]
            i += 2
        elif a in _PLACEMENT_SWITCHES:
            placement.append(a)
            i += 1
        elif a in _RUNTIME_SWITCHES:
            values[a.lstrip("-")] = "1"
            i += 1
        elif a in _VALUE_FLAGS:
            if i + 1 >= len(args):
                raise MoeplanError(f"{a} needs a value")
            values[a.lstrip("-")] = args[i + 1]
            i += 2
        else:
            ignored.append(a)  # with its value, if the next word is not a flag
            i += 2 if i + 1 < len(args) and not args[i + 1].startswith("-") else 1
    return values, " ".join(placement), ignored


def _quant_from_name(name: str) -> FileType | None:
    upper = name.upper().replace("-", "_")
    found = [ft for ft in FileType if ft.name in upper]
    return max(found, key=lambda ft: len(ft.name)) if found else None


def _model_from_file(path: str) -> tuple[str, FileType]:
    """The catalog model and quantization a GGUF file name names (e.g. Qwen3.5-35B-A3B-Q4_K_M.gguf)."""
    stem = Path(path).name
    stem = re.sub(r"-\d{5}-of-\d{5}", "", stem.removesuffix(".gguf"))
    ft = _quant_from_name(stem)
    if ft is None:
        raise MoeplanError(
            f"cannot tell the quantization from '{Path(path).name}': name it like Model-Q4_K_M.gguf"
        )
    base = re.split(ft.name, stem.upper().replace("-", "_"), maxsplit=1)[0]
    model = stem[: len(base)].rstrip("-_.")
    return model, ft


def explain(
    command: str,
    rig_text: str,
    *,
    backend: str | None = None,
    llamacpp_build: int | None = None,
    fit_target_mib: int | None = None,
) -> ExplainReport:
    """Memory and speed of a real llama.cpp command on a rig, and what moeplan would change.
    `llamacpp_build`: the build that runs it (default: the pinned one)."""
    values, flags, ignored = _parse_command(command)
    rt = runtime(backend, llamacpp_build, "no-op-offload" not in values, fit_target_mib)
    rig, rt = rig_and_runtime(rig_text, rt)
    weights = None
    if "hf" in values or "hf-repo" in values:
        ref = values.get("hf") or values["hf-repo"]
        resolved = resolve_model(ref if ref.startswith("hf://") else f"hf://{ref}")
        ft = resolved.file_type or _quant_from_name(ref) or QUALITY_FLOOR
        weights = resolved.weights
    elif "m" in values or "model" in values:
        path = values.get("m") or values["model"]
        name, ft = _model_from_file(path)
        resolved = resolve_model(name)
        if Path(path).is_file():
            weights = weights_from_gguf(read_local(path))  # the real file's tensor types
    else:
        raise MoeplanError("the command names no model: give -m FILE.gguf or -hf REPO:QUANT")
    spec = resolved.require_spec()
    ctx = int(values.get("c") or values.get("ctx-size") or 0) or min(spec.context_length, 4096)
    n_seq = int(values.get("np") or values.get("parallel") or 4)
    fa_said = values.get("fa") or values.get("flash-attn")
    fa = fa_said != "off" if fa_said else builds.default_flash_attn(rt.build)
    cache = CacheConfig(
        n_ctx=ctx,
        n_seq=n_seq,
        unified=True,
        n_ubatch=int(values.get("ub") or values.get("ubatch-size") or 512),
        n_batch=int(values.get("b") or values.get("batch-size") or 2048),
        type_k=cache_type(values.get("ctk") or "f16"),
        type_v=cache_type(values.get("ctv") or "f16"),
        flash_attn=fa,
    )
    given = evaluate_command(spec, rig, ft, flags or "-ngl 99", cache, weights, rt)
    best = llamacpp_plan(spec, rig, ctx=ctx, quant=ft, cache=cache, runtime=rt).chosen
    devices = plan_devices(given.memory, rig, rt)
    suggestion, suggested, speedup = "moeplan would run it the same way", None, None
    if best.flags != given.flags and best.fits:
        if not given.fits:
            suggestion = f"as written it does not fit; moeplan would use {best.flags}"
        elif best.decode_tok_s > 1.02 * given.decode_tok_s:
            speedup = best.decode_tok_s / given.decode_tok_s
            suggestion = f"moeplan would use {best.flags}: {speedup:.2f}x the decode speed"
        if suggestion != "moeplan would run it the same way":
            suggested = render_command(
                Path(values.get("m") or values.get("model") or f"{resolved.name}.gguf").name,
                ctx,
                best.flags,
                n_seq=n_seq,
                flash_attn=fa,
                cache_k=values.get("ctk") or "f16",
                cache_v=values.get("ctv") or "f16",
            )
    return ExplainReport(
        model=resolved.name,
        quant=ft.name,
        rig=rig.text,
        command=command,
        placement=flags or "-ngl 99 (default)",
        ctx=given.memory.n_ctx,
        fits=given.fits,
        overflow=given.overflow,
        devices=devices,
        decode_tok_s=round(given.decode_tok_s, 2),
        prefill_tok_s=round(given.perf.prefill(PROMPT_TOKENS).tok_s, 1),
        bound_by=given.bound_by,
        suggestion=suggestion,
        suggested_command=suggested,
        speedup=round(speedup, 2) if speedup else None,
        fixes=[] if given.fits else _fixes(spec, rig, ft, flags or "-ngl 99", cache, weights, rt, given),
        backend=_backend_label(rig, rt),
        llamacpp_build=builds.describe(rt.build),
        build_notes=builds.differences(rt.build),
        ignored_flags=ignored,
    )


def _fixes(
    spec: ModelSpec,
    rig: Rig,
    ft: FileType,
    flags: str,
    cache: CacheConfig,
    weights: Weights | None,
    rt: Runtime,
    given: Candidate,
) -> list[str]:
    """The one-step changes of a command that does not fit on its GPUs which make it fit: a smaller
    -ub (the compute buffer and the op-offload copies' activations shrink with it), --no-op-offload
    (no host weight copied to the main GPU), one more --n-cpu-moe layer."""
    if not any(d != CPU for d in given.overflow):
        return []
    tries: list[tuple[str, str, CacheConfig, Runtime]] = []
    for ub in (256, 128):
        if ub < cache.n_ubatch:
            tries.append((f"-ub {ub}", flags, replace(cache, n_ubatch=ub), rt))
    if rt.op_offload and any(d.offload_copy_bytes for d in given.memory.devices):
        tries.append(
            ("--no-op-offload (slower prompt processing)", flags, cache, replace(rt, op_offload=False))
        )
    m = re.search(r"--n-cpu-moe\s+(\d+)", flags)
    if spec.is_moe and m and int(m.group(1)) < spec.n_layer:
        n = int(m.group(1)) + 1
        tries.append(
            (f"--n-cpu-moe {n}", flags[: m.start()] + f"--n-cpu-moe {n}" + flags[m.end() :], cache, rt)
        )
    fixes = []
    for what, f, c, r in tries:
        if evaluate_command(spec, rig, ft, f, c, weights, r).fits:
            fixes.append(what)
    return fixes
