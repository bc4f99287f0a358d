"""The operations every face offers (CLI now, web later), composed from the core so that no face
re-derives a number."""

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from moeplan.arch.inventory import MTP_SUPPORTED, inventory, mtp_default
from moeplan.engines.llamacpp import CPU, Frontend, parse_placement, plan_memory, render_command
from moeplan.errors import MoeplanError
from moeplan.hardware.rig import parse_rig
from moeplan.hardware.spec import Rig
from moeplan.memory.kv import CacheConfig, cache_type
from moeplan.memory.report import SizeReport, size_report
from moeplan.memory.weights import file_bytes, predict
from moeplan.notices import notices
from moeplan.plan.llamacpp import QUALITY_FLOOR, device_slots
from moeplan.plan.llamacpp import plan as llamacpp_plan
from moeplan.quant.native import native_bytes
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import CatalogEntry, load_catalog, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_weights import weights_from_gguf


def _mtp_note(entry: CatalogEntry, mtp: bool | None) -> str:
    spec = entry.spec()
    n = len(spec.mtp_layers)
    if not n:
        return "none (the model has no MTP layers)"
    if spec.arch not in MTP_SUPPORTED:
        return f"dropped ({n} MTP layer(s)): the pinned converter never writes them for {spec.arch}"
    keep = mtp_default(spec.arch) if mtp is None else mtp
    why = "the pinned converter's default" if mtp is None else "as asked"
    if keep:
        return (
            f"kept ({n} layer(s), {why}); published GGUFs made before llama.cpp kept them lack them: --no-mtp"
        )
    return f"dropped ({n} layer(s), {why}); the pinned converter keeps them by default: --mtp"


def predict_size(model: str, quant: str, mtp: bool | None = None) -> SizeReport:
    entry = resolve(model)
    ft = FileType.parse(quant)
    spec = entry.spec()
    w = predict(inventory(spec, mtp=mtp), ft)
    notes = [
        "stock llama-quantize recipe (pinned build 11434); uploads with custom per-tensor recipes "
        "(e.g. unsloth UD, ik_llama quants) differ: run `moeplan inspect` on the real file",
        "file_bytes = exact tensor data and table, plus tokenizer metadata estimated from the vocabulary",
    ]
    release = native_bytes(inventory(spec, checkpoint=True).tensors, entry.release_format)
    return size_report(
        w,
        source="predicted",
        file_bytes=file_bytes(w, spec.n_vocab),
        mtp=_mtp_note(entry, mtp),
        notes=notes,
        native=(entry.release_format, release),
    )


def inspect_file(path: str) -> SizeReport:
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
) -> MemoryReport:
    """Bytes per device that llama.cpp allocates for this model, context and placement."""
    entry = resolve(model)
    spec = entry.spec()
    inv = inventory(spec, mtp=mtp)
    w = predict(inv, FileType.parse(quant))
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
    names = tuple(f"CUDA{i}" for i in range(n_gpus))
    fe = Frontend("llama-server", n_outputs_max=slots) if server else Frontend()
    plan = plan_memory(inv, w, cfg, place, names, fe)
    devices = [
        DeviceReport(
            device=d.device,
            weights_bytes=d.weights_bytes,
            kv_bytes=d.kv_bytes,
            state_bytes=d.state_bytes,
            compute_bytes=d.compute_bytes,
            output_bytes=d.output_bytes,
            total_bytes=d.total_bytes,
        )
        for d in plan.devices
    ]
    notes = [
        "compute buffers follow llama.cpp's CPU graph; CUDA adds its context (~300-500 MiB per GPU) "
        "and, with experts on the CPU, copies of offloaded weights for large batches"
    ]
    if n_gpus:
        notes.append("CPU weights of GPU runs are mmap'd from the file (page cache), not repacked")
    return MemoryReport(
        model=entry.name,
        quant=FileType.parse(quant).name,
        frontend=fe.name,
        n_ctx=plan.n_ctx,
        n_seq=slots,
        kv_unified=server,
        n_ubatch=plan.n_ubatch,
        cache_types=(ctk, ctv),
        flash_attn=flash_attn,
        placement=flags.strip() or "CPU only",
        devices=devices,
        total_bytes=sum(d.total_bytes for d in devices),
        notes=notes,
    )


class PlanDevice(BaseModel):
    name: str
    capacity_bytes: int
    weights_bytes: int
    kv_bytes: int
    state_bytes: int
    compute_bytes: int
    total_bytes: int


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
    rig_assumptions: list[str]
    fits: bool
    quant: str
    strategy: str
    ctx: int
    decode_tok_s: float
    bound_by: str
    devices: list[PlanDevice]
    command: str
    notices: list[PlanNotice]
    alternatives: list[PlanAlternative]


def plan_on_rig(
    model: str,
    rig: Rig,
    *,
    ctx: int | None = None,
    quant: str | None = None,
    n_seq: int = 1,
    ctk: str = "f16",
    ctv: str = "f16",
    flash_attn: bool = True,
) -> PlanReport:
    """The best llama.cpp plan for a catalog model on a rig, with its command and notices."""
    entry = resolve(model)
    spec = entry.spec()
    cache = CacheConfig(
        n_ctx=0,
        n_seq=n_seq,
        unified=True,
        type_k=cache_type(ctk),
        type_v=cache_type(ctv),
        flash_attn=flash_attn,
    )
    result = llamacpp_plan(spec, rig, ctx=ctx, quant=FileType.parse(quant) if quant else None, cache=cache)
    c = result.chosen
    cpu, gpus = device_slots(rig)
    capacity = {s.name: s.capacity_bytes for s in [cpu, *gpus]}
    devices = [
        PlanDevice(
            name=d.device,
            capacity_bytes=capacity.get(d.device, capacity[CPU]),
            weights_bytes=d.weights_bytes,
            kv_bytes=d.kv_bytes,
            state_bytes=d.state_bytes,
            compute_bytes=d.compute_bytes,
            total_bytes=d.total_bytes,
        )
        for d in c.memory.devices
        if d.total_bytes or d.device == CPU
    ]
    sibling = _dense_sibling_fits(entry, rig, ctx) if spec.is_moe else None
    command = render_command(
        f"{entry.name}-{c.quant.name}.gguf",
        c.ctx,
        c.flags,
        n_seq=n_seq,
        flash_attn=flash_attn,
        cache_k=ctk,
        cache_v=ctv,
    )
    return PlanReport(
        model=entry.name,
        rig=rig.text,
        rig_assumptions=list(rig.assumptions),
        fits=c.fits and not result.disk,
        quant=c.quant.name,
        strategy=c.strategy,
        ctx=c.ctx,
        decode_tok_s=round(c.decode_tok_s, 2),
        bound_by=c.bound_by,
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
    r = llamacpp_plan(sibling.spec(), rig, ctx=ctx or 8192, quant=QUALITY_FLOOR)
    return sibling.name if r.chosen.fits and r.chosen.strategy == "gpu" else None


def plan(model: str, rig_text: str, **kw: Any) -> PlanReport:
    return plan_on_rig(model, parse_rig(rig_text), **kw)


class FitRow(BaseModel):
    model: str
    id: str
    fits: bool
    quant: str
    strategy: str
    ctx: int
    decode_tok_s: float
    bound_by: str
    command: str
    notices: list[str]


def fit(rig_text: str, models: list[str] | None = None) -> list[FitRow]:
    """The hardware compatibility checker: every catalog model's best plan on this rig, fastest first."""
    rig = parse_rig(rig_text)
    rows = []
    for model_id in models or list(load_catalog()):
        r = plan_on_rig(model_id, rig)
        rows.append(
            FitRow(
                model=r.model,
                id=resolve(model_id).id,
                fits=r.fits,
                quant=r.quant,
                strategy=r.strategy,
                ctx=r.ctx,
                decode_tok_s=r.decode_tok_s,
                bound_by=r.bound_by,
                command=r.command,
                notices=[n.id for n in r.notices],
            )
        )
    rows.sort(key=lambda x: (not x.fits, -x.decode_tok_s))
    return rows
