"""What each page shows, composed from the core and cached in-process.

Every number on a page comes from a core call here (`moeplan.api`, the catalog, the hardware
catalog); this module only picks which calls to make, orders and groups their answers. The HTML page
and its JSON twin are two renderings of the same object built here, and the static site renders the
same objects again, so the three can never disagree.

Caching: `functools.lru_cache` keyed by the (normalised) arguments. Nothing is computed at import;
the first request for a page pays for it (a deploy page about 1-5 s, the checker about 3-5 s), later
ones are served from memory.
"""

from dataclasses import replace
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from moeplan import api, numbers
from moeplan.api import FitRow, MemoryReport, PlanReport, fit_rank
from moeplan.arch.vision import MMPROJ_TYPES, mmproj_bytes
from moeplan.engines.gpu_backends import split_backend
from moeplan.engines.vision import plan_vision
from moeplan.errors import BadInput, UnknownHardware
from moeplan.hardware.catalog import GIB, find_gpus, is_curated
from moeplan.hardware.presets import PRESETS, preset_text
from moeplan.hardware.rig import parse_rig
from moeplan.memory.report import SizeReport
from moeplan.plan.distributed import DistributedPlan, plan_distributed
from moeplan.plan.options import PlanOptions, check_n_seq, check_text
from moeplan.plan.policy import QUALITY_FLOOR, TOO_SLOW_TOK_S, Verdict, use_named
from moeplan.quant.ggml import GGMLType
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import CatalogEntry, load_catalog, resolve
from moeplan.sources.hub import parse_ref

# Input bounds: every text a person can type is cut off here before it reaches the core.
MAX_MODEL_CHARS = 200
MAX_RIG_CHARS = 300
MAX_QUERY_CHARS = 100

# The rigs every deploy page plans for: (label, rig text or preset name, as the CLI reads it).
COMMON_RIGS: tuple[tuple[str, str], ...] = (
    ("8 GB GPU + 32 GB RAM", "8gb-gpu-32gb"),
    ("16 GB GPU + 64 GB RAM", "16gb-gpu-64gb"),
    ("24 GB GPU + 64 GB RAM", "24gb-gpu-64gb"),
    ("32 GB GPU + 128 GB RAM", "32gb-gpu-128gb"),
    ("2x 24 GB + 128 GB RAM", "rtx-3090x2-128gb"),
    ("2x 48 GB + 128 GB RAM", "2x RTX 6000 Ada + 128GB DDR5-5600 quad-channel"),
    ("Mac 64 GB", "mac-64gb"),
    ("Mac 128 GB", "mac-128gb"),
    ("Mac 512 GB", "mac-studio-m3-ultra-512gb"),
    ("8x H100", "8x-h100"),
    ("8x H200", "8x-h200"),
)

# GPU-only rigs from small to large, for "the smallest GPU or rig it fits" (every layer on the GPUs
# at 8k context). Ordered so that fitting one implies fitting the next, which lets a bisection find
# the first one with a handful of plans.
GPU_LADDER: tuple[tuple[str, str], ...] = (
    ("8 GB GPU", "RTX 5060 Ti 8GB"),
    ("12 GB GPU", "RTX 4070 Ti"),
    ("16 GB GPU", "RTX 5070 Ti"),
    ("24 GB GPU", "RTX 4090"),
    ("32 GB GPU", "RTX 5090"),
    ("2x 24 GB", "2x RTX 3090"),
    ("48 GB GPU", "RTX 6000 Ada"),
    ("96 GB GPU", "RTX PRO 6000"),
    ("H200 141 GB", "H200"),
    ("2x H200", "2x H200"),
    ("4x H200", "4x H200"),
    ("8x H200", "8x H200"),
    ("8x B200", "8x B200"),
)

TABLE_QUANTS: tuple[FileType, ...] = (
    FileType.BF16,
    FileType.Q8_0,
    FileType.Q6_K,
    FileType.Q5_K_M,
    FileType.Q4_K_M,
    FileType.IQ4_XS,
    FileType.Q3_K_M,
    FileType.Q2_K,
    FileType.IQ2_XXS,
)
TABLE_CONTEXTS: tuple[tuple[str, int], ...] = (("8k", 8192), ("32k", 32768), ("128k", 131072))
CURVE_CONTEXTS: tuple[int, ...] = (4096, 8192, 16384, 32768, 65536, 131072, 262144)
CURVE_QUANTS: tuple[FileType, ...] = (FileType.Q8_0, FileType.Q4_K_M, FileType.Q2_K)
ALL_GPU = "-ngl 99"  # every layer on the (first) GPU

DEFAULT_PAIR = ("qwen3.5-9b", "qwen3.5-35b-a3b")
DEFAULT_PRESET = "24gb-gpu-64gb"

# Fields every PlanReport has; any other number the speed model adds (prefill, time to first token,
# spread) is shown as it comes, so a new field appears on the pages without a change here.
BASE_PLAN_FIELDS = frozenset(
    {
        "model",
        "rig",
        "rig_assumptions",
        "fits",
        "verdict",
        "verdict_level",
        "below_floor",
        "params_total",
        "streams_from_disk",
        "quant",
        "strategy",
        "use",
        "ctx",
        "n_seq",
        "cache_type_k",
        "cache_type_v",
        "n_ubatch",
        "rope_scaling",
        "decode_tok_s",
        "bound_by",
        "devices",
        "command",
        "notices",
        "alternatives",
        "trade",
    }
)


def rig_key(rig: str) -> str:
    """The rig text as the cache key and share link: bounded, trimmed, a preset name in lower case."""
    rig = check_text(rig, "rig", MAX_RIG_CHARS)
    if not rig:
        raise UnknownHardware("empty rig: write e.g. 'RTX 4090 + 64GB DDR5' or pick a preset")
    return rig.lower() if preset_text(rig) is not None else rig


def model_id(name: str) -> str:
    """The catalog id for a name, id, or HF repo (raises ModelNotFound with "did you mean")."""
    return resolve(check_text(name, "model name", MAX_MODEL_CHARS)).id


def plan_model(name: str) -> str:
    """What the plan box accepts: a catalog model, or a Hub reference (`hf://org/repo[:QUANT]`) read
    header-only from the configured Hub endpoint; any other URL is refused before a request is made."""
    text = check_text(name, "model name", MAX_MODEL_CHARS)
    hub = parse_ref(text)
    return str(hub) if hub is not None else model_id(text)


def quant_name(quant: str | None) -> str | None:
    if not quant:
        return None
    return FileType.parse(check_text(quant, "quantization", 32)).name


# ---------------------------------------------------------------------------------------------- core


@lru_cache(maxsize=2048)
def _plan(mid: str, rig: str, options: PlanOptions) -> PlanReport | DistributedPlan:
    """`api.plan` for a normalised model, rig and options, cached (every refusal of an option that
    cannot apply comes from api.plan too)."""
    return api.plan(mid, rig, options)


def plan(model: str, rig: str, options: PlanOptions | None = None) -> PlanReport:
    """`api.plan` with llama.cpp, cached; the model, rig and options normalised so that spellings
    share one entry. Left open (None), context, -np and cache type are the policy's
    (plan/policy.py); the draft, speculative decoding to consider, is auto (proposed where it pays)
    unless given (none; mtp; a model id)."""
    o = (options or PlanOptions()).bounded()
    o = replace(
        o,
        quant=quant_name(o.quant),
        use=use_named(o.use).name if o.use else None,
        draft=o.draft or "auto",
    )
    r = _plan(plan_model(model), rig_key(rig), o)
    assert isinstance(r, PlanReport)  # llama.cpp plans are PlanReports
    return r


def engine_plan(model: str, rig: str, options: PlanOptions) -> PlanReport | DistributedPlan:
    """`/api/plan` with an engine: llama.cpp through `plan`; vLLM and SGLang through the same cache,
    the page's default draft (auto, or none) meaning no drafting asked."""
    if options.engine == "llamacpp" and not options.weight_format:
        return plan(model, rig, options)
    if options.draft not in (None, "auto", "none") or options.acceptance is not None:
        raise BadInput("draft and acceptance are llama.cpp settings (speculative decoding): leave them out")
    o = replace(options, draft=None).bounded()
    return _plan(plan_model(model), rig_key(rig), o)


@lru_cache(maxsize=256)
def _fit(rig: str) -> tuple[FitRow, ...]:
    return tuple(api.fit(rig))


def fit(rig: str) -> list[FitRow]:
    return list(_fit(rig_key(rig)))


@lru_cache(maxsize=1024)
def size(mid: str, quant: str | None, mtp: bool | None = None) -> SizeReport:
    return api.predict_size(mid, quant, mtp)


@lru_cache(maxsize=4096)
def _memory(
    mid: str, quant: str, ctx: int, placement: str, gpus: int | None, n_seq: int | None
) -> MemoryReport:
    return api.memory(mid, quant, ctx, n_seq=n_seq, placement=placement, gpus=gpus)


def memory(
    model: str,
    quant: str,
    ctx: int,
    *,
    placement: str = "",
    gpus: int | None = None,
    n_seq: int | None = None,
) -> MemoryReport:
    q = quant_name(quant) or FileType.Q4_K_M.name
    placement = check_text(placement, "placement", MAX_RIG_CHARS)
    if gpus is not None and not 0 <= gpus <= 64:
        raise BadInput(f"gpus must be between 0 and 64, not {gpus}")
    ctx = int(numbers.CONTEXT_OR_MODEL.check(ctx))  # 0: the model's own, as `moeplan memory --ctx 0`
    return _memory(model_id(model), q, ctx, placement, gpus, check_n_seq(n_seq))


def gpu_bytes(m: MemoryReport) -> int:
    """Bytes on the GPU(s) of a memory report (everything but the host buffers)."""
    return sum(d.total_bytes for d in m.devices if d.device != "CPU")


def plan_extras(r: PlanReport) -> dict[str, float]:
    """Numbers the speed model added to PlanReport beyond the base fields (prefill, TTFT, spread)."""
    out: dict[str, float] = {}
    for name, value in r.model_dump().items():
        if name not in BASE_PLAN_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


# ---------------------------------------------------------------------------------------- models


class ModelSummary(BaseModel):
    id: str
    name: str
    hf_repo: str
    arch: str
    is_moe: bool
    params_total: int  # counted from the tensor inventory
    params_active: int
    params_total_published: int
    params_active_published: int | None
    n_layer: int
    moe_layers: int
    n_expert: int
    n_expert_used: int
    n_shared: int
    attention: dict[str, int]  # attention kind -> layers
    context_length: int
    release_format: str
    q4_file_bytes: int
    q4_active_bytes: int
    dense_sibling: str | None
    moe_siblings: list[str]


def _summary(entry: CatalogEntry) -> ModelSummary:
    spec = entry.spec()
    ffn = spec.moe_ffn
    s = size(entry.id, QUALITY_FLOOR.name)
    attention: dict[str, int] = {}
    for layer in spec.layers:
        attention[layer.attn.kind.value] = attention.get(layer.attn.kind.value, 0) + 1
    return ModelSummary(
        id=entry.id,
        name=entry.name,
        hf_repo=entry.hf_repo,
        arch=spec.arch,
        is_moe=spec.is_moe,
        params_total=s.params_total,
        params_active=s.params_active,
        params_total_published=entry.params_published.total,
        params_active_published=entry.params_published.active,
        n_layer=spec.n_layer,
        moe_layers=sum(1 for la in spec.layers if la.ffn.kind.value == "moe"),
        n_expert=ffn.n_expert if ffn else 0,
        n_expert_used=ffn.n_expert_used if ffn else 0,
        n_shared=ffn.n_shared if ffn else 0,
        attention=attention,
        context_length=entry.context_length,
        release_format=entry.release_format,
        q4_file_bytes=s.file_bytes,
        q4_active_bytes=s.active_bytes,
        dense_sibling=entry.dense_sibling,
        moe_siblings=[e.id for e in load_catalog().values() if e.dense_sibling == entry.id],
    )


@lru_cache(maxsize=1)
def summaries() -> dict[str, ModelSummary]:
    return {mid: _summary(e) for mid, e in load_catalog().items()}


def summary(model: str) -> ModelSummary:
    return summaries()[model_id(model)]


MODEL_SORTS = {
    "name": lambda m: m.name.lower(),
    "total": lambda m: m.params_total,
    "active": lambda m: m.params_active,
    "experts": lambda m: m.n_expert,
    "context": lambda m: m.context_length,
    "size": lambda m: m.q4_file_bytes,
}


class ModelsPage(BaseModel):
    kind: str
    q: str
    sort: str
    desc: bool
    max_gb: float | None
    models: list[ModelSummary]


def models_page(
    kind: str = "all", q: str = "", sort: str = "name", desc: bool = False, max_gb: float | None = None
) -> ModelsPage:
    """The catalog, filtered (dense/MoE, name text, Q4_K_M file at most max_gb GB) and sorted."""
    q = check_text(q, "search text", MAX_QUERY_CHARS)
    if kind not in ("all", "moe", "dense"):
        raise BadInput(f"kind must be all, moe or dense, not '{kind[:20]}'")
    if sort not in MODEL_SORTS:
        raise BadInput(f"sort must be one of {', '.join(MODEL_SORTS)}, not '{sort[:20]}'")
    rows = list(summaries().values())
    if kind != "all":
        rows = [m for m in rows if m.is_moe == (kind == "moe")]
    if q:
        rows = [m for m in rows if q.lower() in f"{m.id} {m.name} {m.hf_repo} {m.arch}".lower()]
    if max_gb is not None:
        rows = [m for m in rows if m.q4_file_bytes <= max_gb * 1e9]
    rows.sort(key=MODEL_SORTS[sort], reverse=desc)
    return ModelsPage(kind=kind, q=q, sort=sort, desc=desc, max_gb=max_gb, models=rows)


# ----------------------------------------------------------------------------------- deploy page


class QuantRow(BaseModel):
    quant: str
    bits_per_weight: float
    file_bytes: int
    active_bytes: int
    vram_bytes: dict[str, int | None]  # "8k" -> bytes on the GPU with every layer there; None: > context
    smallest: str | None  # label of the smallest GPU-only rig that holds it at 8k, None: none of them
    smallest_rig: str | None
    floor: bool  # the MoE quality floor
    below_floor: bool


class RoleBytes(BaseModel):
    role: str
    bytes: int


class RigPlan(BaseModel):
    label: str
    rig: str
    plan: PlanReport
    extras: dict[str, float]


class NoticeRow(BaseModel):
    id: str
    severity: str
    message: str
    rigs: list[str]


class CurvePoint(BaseModel):
    ctx: int
    gpu_bytes: int


class ServingCommand(BaseModel):
    """One command of a serving plan; `where` names the node on a multi-node plan (None on one node),
    kept apart from the text so that copying the command copies the command alone."""

    where: str | None
    text: str


class ServingPlan(BaseModel):
    """A vLLM / SGLang plan on a datacenter rig (plan/distributed.py)."""

    rig: str
    engine: str
    fits: bool
    weight_format: str
    layout: str
    gpus_used: int
    gpu_total_bytes: int
    gpu_capacity_bytes: int
    kv_capacity_sequences: int
    output_tok_s: float
    batch: int
    single_stream_tok_s: float
    commands: list[ServingCommand]
    notices: list[str]


class VisionFile(BaseModel):
    file_type: str  # F16, BF16, Q8_0
    weights_bytes: int


class VisionSection(BaseModel):
    """The model's vision projector (--mmproj): its files and memory, and plans that load it."""

    projector: str
    n_layer: int
    n_embd: int
    patch_size: int
    warmup_px: int  # the image its compute buffer is reserved for
    compute_bytes: int
    host_compute_bytes: int  # its inputs on the host when it runs on a GPU
    files: list[VisionFile]
    plans: list[RigPlan]  # VISION_RIGS with the F16 projector on the main GPU (drafting aside)


class DeployPage(BaseModel):
    model: ModelSummary
    size: SizeReport
    roles: list[RoleBytes]
    quants: list[QuantRow]
    memory_curve: dict[str, list[CurvePoint]]  # quant -> GPU bytes (all layers on the GPU) by context
    plans: list[RigPlan]
    serving: list[ServingPlan]
    notices: list[NoticeRow]
    quality_floor: str
    vision: VisionSection | None = None


# The rigs the deploy page plans "with vision" on: single and dual consumer GPUs, where the
# projector's memory decides the quantization or context.
VISION_RIGS = COMMON_RIGS[:5]
FILE_TYPES = tuple(MMPROJ_TYPES.values())


def vision_section(mid: str) -> VisionSection | None:
    tower = load_catalog()[mid].vision_tower()
    if tower is None:
        return None
    v = plan_vision(tower, GGMLType.F16, ("GPU",))
    plans = [plan(mid, rig, PlanOptions(draft="none", vision="f16")) for _, rig in VISION_RIGS]
    return VisionSection(
        projector=str(tower.projector),
        n_layer=tower.n_layer,
        n_embd=tower.n_embd,
        patch_size=tower.patch_size,
        warmup_px=v.warmup_px,
        compute_bytes=v.compute_bytes,
        host_compute_bytes=v.host_compute_bytes,
        files=[
            VisionFile(file_type=t.name, weights_bytes=mmproj_bytes(tower, t)) for t in MMPROJ_TYPES.values()
        ],
        plans=[
            RigPlan(label=label, rig=rig, plan=r, extras=plan_extras(r))
            for (label, rig), r in zip(VISION_RIGS, plans, strict=True)
        ],
    )


# Datacenter rigs the deploy page plans vLLM and SGLang layouts for (32k context, native weights).
SERVING_RIGS = ("8x H100-SXM", "8x H200", "2 nodes x 8x H200, 400Gb IB")


def serving_plans(mid: str) -> list[ServingPlan]:
    out = []
    for rig in SERVING_RIGS:
        for engine in ("vllm", "sglang"):
            p = plan_distributed(mid, parse_rig(rig), "vllm" if engine == "vllm" else "sglang")
            out.append(
                ServingPlan(
                    rig=rig,
                    engine=engine,
                    fits=p.fits,
                    weight_format=p.weight_format,
                    layout=p.layout.label(),
                    gpus_used=p.gpus_used,
                    gpu_total_bytes=p.memory.total,
                    gpu_capacity_bytes=p.memory.capacity,
                    kv_capacity_sequences=p.kv_capacity_sequences,
                    output_tok_s=round(p.output_tok_s, 1),
                    batch=p.batch,
                    single_stream_tok_s=round(p.single_stream_tok_s, 1),
                    commands=[
                        ServingCommand(where=c.where if len(p.commands) > 1 else None, text=c.text)
                        for c in p.commands
                    ],
                    notices=[n.id for n in p.notices],
                )
            )
    return out


def _smallest_gpu_rig(mid: str, quant: str) -> tuple[str, str] | None:
    """The first GPU_LADDER rig on which the planner puts every layer on the GPUs at 8k context."""

    def all_on_gpu(i: int) -> bool:
        r = plan(mid, GPU_LADDER[i][1], PlanOptions(ctx=8192, quant=quant, draft="none"))
        return r.fits and r.strategy == "gpu"

    lo, hi = 0, len(GPU_LADDER)
    while lo < hi:
        mid_i = (lo + hi) // 2
        if all_on_gpu(mid_i):
            hi = mid_i
        else:
            lo = mid_i + 1
    return GPU_LADDER[lo] if lo < len(GPU_LADDER) else None


def _quant_row(m: ModelSummary, ft: FileType) -> QuantRow:
    s = size(m.id, ft.name)
    vram: dict[str, int | None] = {}
    for label, ctx in TABLE_CONTEXTS:
        vram[label] = (
            gpu_bytes(memory(m.id, ft.name, ctx, placement=ALL_GPU, gpus=1, n_seq=1))
            if ctx <= m.context_length
            else None
        )
    smallest = _smallest_gpu_rig(m.id, ft.name)
    floor_rank = TABLE_QUANTS.index(QUALITY_FLOOR)
    return QuantRow(
        quant=ft.name,
        bits_per_weight=s.bits_per_weight,
        file_bytes=s.file_bytes,
        active_bytes=s.active_bytes,
        vram_bytes=vram,
        smallest=smallest[0] if smallest else None,
        smallest_rig=smallest[1] if smallest else None,
        floor=ft is QUALITY_FLOOR,
        below_floor=m.is_moe and ft in TABLE_QUANTS and TABLE_QUANTS.index(ft) > floor_rank,
    )


def rig_plans(mid: str) -> list[RigPlan]:
    out = []
    for label, rig in COMMON_RIGS:
        r = plan(mid, rig)
        out.append(RigPlan(label=label, rig=rig, plan=r, extras=plan_extras(r)))
    return out


def collect_notices(plans: list[RigPlan]) -> list[NoticeRow]:
    """One row per notice as worded, worst severity first, naming the rigs whose own plans say it
    (a notice whose wording differs per rig, e.g. the context it was set to, has a row per wording)."""
    order = {"error": 0, "warning": 1, "info": 2}
    by_text: dict[tuple[str, str], NoticeRow] = {}
    for p in plans:
        for n in p.plan.notices:
            row = by_text.setdefault((n.id, n.message), NoticeRow(**n.model_dump(), rigs=[]))
            row.rigs.append(p.label)
    return sorted(by_text.values(), key=lambda n: (order.get(n.severity, 3), n.id, n.message))


@lru_cache(maxsize=64)
def _deploy(mid: str) -> DeployPage:
    m = summaries()[mid]
    s = size(mid, QUALITY_FLOOR.name)
    quants = list(TABLE_QUANTS)
    if m.release_format == "mxfp4":
        quants.insert(1, FileType.MXFP4_MOE)
    curve: dict[str, list[CurvePoint]] = {}
    for ft in CURVE_QUANTS:
        curve[ft.name] = [
            CurvePoint(
                ctx=ctx, gpu_bytes=gpu_bytes(memory(mid, ft.name, ctx, placement=ALL_GPU, gpus=1, n_seq=1))
            )
            for ctx in CURVE_CONTEXTS
            if ctx <= m.context_length
        ]
    plans = rig_plans(mid)
    return DeployPage(
        model=m,
        size=s,
        roles=[RoleBytes(role=r, bytes=b) for r, b in sorted(s.by_role.items(), key=lambda x: -x[1]) if b],
        quants=[_quant_row(m, ft) for ft in quants],
        memory_curve=curve,
        plans=plans,
        serving=serving_plans(mid),
        notices=collect_notices(plans),
        quality_floor=QUALITY_FLOOR.name,
        vision=vision_section(mid),
    )


def deploy_page(model: str) -> DeployPage:
    return _deploy(model_id(model))


# --------------------------------------------------------------------------------------- compare


class CompareSide(BaseModel):
    model: ModelSummary
    size: SizeReport
    vram_bytes: dict[str, int | None]  # at the quality floor, every layer on the GPU
    plans: list[RigPlan]
    notices: list[NoticeRow]


class ComparePage(BaseModel):
    a: CompareSide
    b: CompareSide
    pairs: list[tuple[str, str]]  # every dense/MoE sibling pair in the catalog


def sibling_pairs() -> list[tuple[str, str]]:
    """(dense, MoE) for every catalog model that names a dense sibling."""
    return sorted((e.dense_sibling, e.id) for e in load_catalog().values() if e.dense_sibling)


def _side(mid: str) -> CompareSide:
    m = summaries()[mid]
    plans = rig_plans(mid)
    vram: dict[str, int | None] = {}
    for label, ctx in TABLE_CONTEXTS:
        vram[label] = (
            gpu_bytes(memory(mid, QUALITY_FLOOR.name, ctx, placement=ALL_GPU, gpus=1, n_seq=1))
            if ctx <= m.context_length
            else None
        )
    return CompareSide(
        model=m,
        size=size(mid, QUALITY_FLOOR.name),
        vram_bytes=vram,
        plans=plans,
        notices=collect_notices(plans),
    )


@lru_cache(maxsize=64)
def _compare(a: str, b: str) -> ComparePage:
    return ComparePage(a=_side(a), b=_side(b), pairs=sibling_pairs())


def default_pair(a: str | None, b: str | None) -> tuple[str, str]:
    """Both given: those; one given: it and its sibling (dense <-> MoE); none: Qwen3.5-9B vs 35B-A3B."""
    if a and b:
        return model_id(a), model_id(b)
    one = a or b
    if not one:
        return DEFAULT_PAIR
    m = summary(one)
    other = m.dense_sibling or (m.moe_siblings[0] if m.moe_siblings else None)
    if other is None:
        raise BadInput(f"{m.name} has no dense/MoE sibling in the catalog: name the second model (b=...)")
    return (other, m.id) if m.dense_sibling else (m.id, other)


def compare_page(a: str | None = None, b: str | None = None) -> ComparePage:
    return _compare(*default_pair(a, b))


# ---------------------------------------------------------------------------------------- checker


class CheckerRow(BaseModel):
    fit: FitRow
    is_moe: bool
    params_total: int
    params_active: int


class CheckerPage(BaseModel):
    rig: str
    rig_text: str  # the rig string a preset stands for, or the rig itself
    preset: str | None
    gpus: list[str]
    ram_bytes: int
    assumptions: list[str]
    show: str
    kind: str
    sort: str
    total: int
    runs: int
    runs_well: int
    quality_floor: str  # the verdicts' terms (plan/policy.py)
    too_slow_tok_s: float
    rows: list[CheckerRow]


CHECKER_SORTS = {
    "best": lambda r: fit_rank(r.fit),  # the best model the rig runs well first (api.fit)
    "speed": lambda r: (r.fit.verdict_level, -r.fit.decode_tok_s),
    "model": lambda r: r.fit.model.lower(),
    "context": lambda r: (not r.fit.fits, -r.fit.ctx),
    "params": lambda r: -r.params_total,
}


def compose_rig(gpu: str = "", count: int = 1, ram_gb: int = 0, ram_type: str = "", channels: int = 0) -> str:
    """The rig string a checker form's builder fields describe, in the CLI's rig grammar."""
    gpu = check_text(gpu, "GPU name", MAX_QUERY_CHARS)
    ram_type = check_text(ram_type, "RAM type", 20)
    numbers.GPU_COUNT.check(count)
    if ram_gb:
        numbers.RAM_GB.check(ram_gb)
    if channels:
        numbers.CHANNELS.check(channels)
    parts = []
    if gpu:
        parts.append(f"{count}x {gpu}" if count > 1 else gpu)
    ram = " ".join(
        x for x in (f"{ram_gb}GB" if ram_gb else "", ram_type, f"{channels}-channel" if channels else "") if x
    )
    if ram:
        parts.append(ram)
    return " + ".join(parts)


def checker_page(rig: str, show: str = "all", kind: str = "all", sort: str = "best") -> CheckerPage:
    if show not in ("all", "runs"):
        raise BadInput(f"show must be all or runs, not '{show[:20]}'")
    if kind not in ("all", "moe", "dense"):
        raise BadInput(f"kind must be all, moe or dense, not '{kind[:20]}'")
    if sort not in CHECKER_SORTS:
        raise BadInput(f"sort must be one of {', '.join(CHECKER_SORTS)}, not '{sort[:20]}'")
    key = rig_key(rig)
    parsed = parse_rig(split_backend(key)[0])  # 'RX 7900 XTX (Vulkan)': the backend is the plan's
    models = summaries()
    all_rows = [
        CheckerRow(
            fit=f,
            is_moe=models[f.id].is_moe,
            params_total=models[f.id].params_total,
            params_active=models[f.id].params_active,
        )
        for f in fit(key)
    ]
    rows = [
        r
        for r in all_rows
        if (show == "all" or r.fit.fits) and (kind == "all" or r.is_moe == (kind == "moe"))
    ]
    rows.sort(key=CHECKER_SORTS[sort])
    return CheckerPage(
        rig=key,
        rig_text=preset_text(key) or key,
        preset=key if preset_text(key) else None,
        gpus=[g.name for n in parsed.nodes for g in n.gpus],
        ram_bytes=parsed.node.host.ram_bytes,
        assumptions=list(parsed.assumptions),
        show=show,
        kind=kind,
        sort=sort,
        total=len(all_rows),
        runs=sum(1 for r in all_rows if r.fit.fits),
        runs_well=sum(1 for r in all_rows if r.fit.verdict_level == Verdict.RUNS_WELL.value),
        quality_floor=QUALITY_FLOOR.name,
        too_slow_tok_s=TOO_SLOW_TOK_S,
        rows=rows,
    )


# ------------------------------------------------------------------------------------------- gpus


class GPURow(BaseModel):
    name: str
    vendor: str
    architecture: str
    memory_gib: float
    bandwidth_gb_s: float
    fp16_tflops: float | None
    fp8: bool
    mxfp4: bool
    unified_memory: bool
    curated: bool
    source: str


class GPUsPage(BaseModel):
    q: str
    total: int
    gpus: list[GPURow]


MAX_GPU_ROWS = 300


@lru_cache(maxsize=256)
def _gpus(q: str) -> GPUsPage:
    found = find_gpus(q)
    rows = [
        GPURow(
            name=g.name,
            vendor=g.vendor,
            architecture=g.architecture,
            memory_gib=round(g.memory_bytes / GIB, 1),
            bandwidth_gb_s=round(g.bandwidth_bytes_s / 1e9, 1),
            fp16_tflops=round(g.fp16_tflops, 1) if g.fp16_tflops else None,
            fp8=g.fp8,
            mxfp4=g.mxfp4,
            unified_memory=g.unified_memory,
            curated=is_curated(g),
            source=g.source,
        )
        for g in found[:MAX_GPU_ROWS]
    ]
    return GPUsPage(q=q, total=len(found), gpus=rows)


def gpus_page(q: str = "") -> GPUsPage:
    return _gpus(check_text(q, "search text", MAX_QUERY_CHARS))


# ------------------------------------------------------------------------------------------- home


class HomePage(BaseModel):
    model: str
    rig: str
    ctx: int | None
    quant: str | None
    plan: PlanReport | None
    extras: dict[str, float]
    model_id: str | None  # the catalog id (it has a deploy page); None for a Hub reference
    vision: str | None = None  # the mmproj type asked for (f16, bf16, q8_0), None: text only
    cache_ram: int | None = None  # llama-server's --cache-ram MiB asked for (-1: no limit); None: its default
    fit_target: int | None = None  # llama.cpp's --fit-target MiB asked for; None: its default


def home_page(
    model: str = "",
    rig: str = "",
    ctx: int | None = None,
    quant: str | None = None,
    vision: str | None = None,
    cache_ram: int | None = None,
    fit_target: int | None = None,
) -> HomePage:
    model = check_text(model, "model name", MAX_MODEL_CHARS)
    rig = check_text(rig, "rig", MAX_RIG_CHARS)
    asked = HomePage(
        model=model,
        rig=rig,
        ctx=ctx,
        quant=quant,
        vision=vision,
        cache_ram=cache_ram,
        fit_target=fit_target,
        plan=None,
        extras={},
        model_id=None,
    )
    if not model or not rig:
        return asked
    options = PlanOptions(ctx=ctx, quant=quant, vision=vision, cache_ram=cache_ram, fit_target_mib=fit_target)
    r = plan(model, rig, options)
    mid = None if parse_ref(model) is not None else model_id(model)
    return asked.model_copy(update={"plan": r, "extras": plan_extras(r), "model_id": mid})


def presets() -> dict[str, str]:
    return dict(PRESETS)


def dump(obj: BaseModel | list[Any]) -> Any:
    """JSON-ready form of a page object (what the JSON twins serve)."""
    if isinstance(obj, list):
        return [o.model_dump(mode="json") if isinstance(o, BaseModel) else o for o in obj]
    return obj.model_dump(mode="json")
