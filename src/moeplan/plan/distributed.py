"""Plans for vLLM and SGLang on one or more GPUs and nodes: search TP × PP × EP × DP layouts, rank
them (fits first, then serving throughput), and render the winner's commands and manifest.

    plan_distributed("deepseek-v3", parse_rig("8x H200"), "vllm") -> DistributedPlan

Every layout the engine can express on the rig's GPUs is checked (divisibility rules, per-GPU memory
under the engine's memory policy), sized (KV capacity: sequences of `ctx` tokens that fit) and timed
(`plan.distributed_perf`). Losers are kept with the reason they lost.
"""

from dataclasses import dataclass, field
from typing import Literal

from moeplan.arch.spec import ModelSpec
from moeplan.engines import sglang, vllm
from moeplan.engines.formats import WeightFormat, parse_weight_format, support
from moeplan.engines.serving import Command, Engine, GiB, LaunchSpec, Policy
from moeplan.engines.sharding import (
    Layout,
    Problem,
    Sharding,
    StageWeights,
    check_divisibility,
    stage_weights,
)
from moeplan.errors import MoeplanError
from moeplan.hardware.spec import Rig
from moeplan.notices import Notice
from moeplan.plan.distributed_perf import Throughput, serving_throughput
from moeplan.plan.policy import context_bounds
from moeplan.sources.catalog import CatalogEntry, resolve

INFO, WARN, ERROR = "info", "warning", "error"
EngineName = Literal["vllm", "sglang"]
ENGINES: dict[str, Engine] = {"vllm": vllm.ENGINE, "sglang": sglang.ENGINE}

DEFAULT_CTX = 32768  # --max-model-len when none is asked (the engines default to the model's whole context)
# model types whose repositories ship their own config/modeling code (auto_map) that the engines load
# with --trust-remote-code: Kimi; Nemotron-H (every vllm-project/recipes models/nvidia Nemotron-H recipe
# passes it); the Llama-Nemotron NAS models (config.json auto_map: configuration_decilm.DeciLMConfig)
_REMOTE_CODE_TYPES = frozenset({"kimi_k2", "kimi_k25", "nemotron_h", "nemotron-nas"})


@dataclass(frozen=True)
class GPUMemory:
    """Bytes on one GPU of the worst pipeline stage."""

    capacity: int
    weights: int
    kv_cache: int
    activations: int
    cuda_graphs: int
    other: int
    fraction: float  # --gpu-memory-utilization / --mem-fraction-static

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.cuda_graphs + self.other


@dataclass(frozen=True)
class Candidate:
    layout: Layout
    gpus: int
    valid: bool
    fits: bool
    problems: tuple[Problem, ...]
    memory: GPUMemory
    kv_capacity_sequences: int  # sequences of ctx tokens the whole layout holds at once
    kv_capacity_tokens: int
    seq_bytes: int  # per GPU, one sequence of ctx tokens
    throughput: Throughput | None  # at the serving batch
    single_stream_tok_s: float
    why_not: str = ""


@dataclass(frozen=True)
class Alternative:
    layout: str
    fits: bool
    output_tok_s: float
    why: str


@dataclass(frozen=True)
class DistributedPlan:
    model: str
    hf_repo: str | None  # None: no checkpoint in the asked format is recorded (notice NO_CHECKPOINT)
    engine: str
    rig: str
    weight_format: str
    kv_cache_dtype: str
    ctx: int
    fits: bool
    layout: Layout
    gpus_used: int
    memory: GPUMemory
    kv_capacity_sequences: int
    kv_capacity_tokens: int
    batch: int  # concurrent sequences the throughput is for
    output_tok_s: float  # aggregate output tokens/s at `batch`, prefill of `isl` tokens included
    decode_tok_s: float  # aggregate decode tokens/s at `batch`
    single_stream_tok_s: float  # one sequence alone
    bound_by: str
    isl: int
    osl: int
    commands: list[Command]
    manifest: str
    notices: list[Notice]
    alternatives: list[Alternative]
    assumptions: list[str] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return self.layout.tp

    @property
    def pp(self) -> int:
        return self.layout.pp

    @property
    def ep(self) -> int:
        return self.layout.ep

    @property
    def dp(self) -> int:
        return self.layout.dp


@dataclass(frozen=True)
class Served:
    """The checkpoint a plan serves and how the engine loads it."""

    repo: str | None  # None: no checkpoint in this format is recorded
    fmt: WeightFormat  # what the engine holds (an INT4 request may be met by a GPTQ/AWQ checkpoint)
    quantization: str | None  # --quantization: only for online FP8 of BF16 weights
    block_scaled: bool  # FP8 with 128x128 block scales: TP must keep the blocks whole
    note: str | None


def _checkpoint(entry: CatalogEntry, fmt: WeightFormat) -> Served:
    """The repository to serve `entry` from in `fmt`: the release itself, a pre-quantized release the
    catalog records (with its source), or, for FP8 of a BF16 release, the engine's online
    quantization (`--quantization fp8`: per-tensor scales computed at load). Never a guessed repo.
    A pre-quantized checkpoint gets no --quantization: both engines read it from its config.json
    (SGLang docs "Quantization": "do not add --quantization" for pre-quantized models, and "Server
    Arguments": "--quantization fp8 on a fp16 checkpoint"; vLLM docs "FP8 W8A8", online dynamic
    quantization with --quantization fp8)."""
    if fmt == entry.release_format:
        return Served(entry.hf_repo, fmt, None, fmt in ("fp8", "int4"), None)
    accepted: tuple[WeightFormat, ...] = ("int4", "awq") if fmt == "int4" else (fmt,)
    for want in accepted:
        for c in entry.checkpoints:
            if c.format == want:
                return Served(c.repo, want, None, want != "fp8" or c.block_scaled, None)
    if fmt == "fp8" and entry.release_format == "bf16":
        return Served(
            entry.hf_repo,
            fmt,
            "fp8",
            False,
            "online FP8: no pre-quantized FP8 release is recorded, the engine quantizes the BF16 "
            "weights at load (--quantization fp8)",
        )
    known = ", ".join(sorted({entry.release_format, *(c.format for c in entry.checkpoints)}))
    return Served(
        None,
        fmt,
        None,
        fmt != "mxfp4",
        f"no {fmt.upper()} checkpoint of {entry.name} is recorded (known: {known}); the figures are for "
        "one you quantize yourself (llm-compressor, ModelOpt) and the command names none",
    )


def _evaluate(
    spec: ModelSpec,
    engine: Engine,
    layout: Layout,
    rig: Rig,
    fmt: WeightFormat,
    check_fmt: WeightFormat,
    ctx: int,
    kv_bytes: float,
    isl: int,
    osl: int,
    batch: int | None,
    cache: dict[tuple[Sharding, str], list[StageWeights]],
) -> Candidate:
    gpu = rig.node.gpus[0]
    sh = engine.sharding(layout)
    checks = check_divisibility(spec, sh, check_fmt, experts_must_divide=engine.experts_must_divide)
    key = (sh, fmt)
    if key not in cache:
        cache[key] = stage_weights(spec, sh, fmt)
    stages = cache[key]
    worst = max(stages, key=lambda s: s.total)
    policy: Policy = engine.policy(spec, gpu, layout, sh, len(worst.layers))
    # capacity: the stage with the least room sets it
    per_stage = []
    for s in stages:
        pool = engine.kv_pool(policy, s.total)
        seq = max(1, engine.seq_bytes(spec, s.layers, sh, ctx, kv_bytes))
        served = max(1, engine.seq_bytes(spec, s.layers, sh, isl + osl, kv_bytes))
        per_stage.append((pool, seq, served))
    seqs_ctx = min(p // s for p, s, _ in per_stage)
    seqs_served = min(p // s for p, _, s in per_stage)
    pool, seq, _ = per_stage[stages.index(worst)]
    replicas = engine.world(layout) // (sh.gpus * sh.pp)
    total_seqs = seqs_ctx * sh.attn_dp * replicas
    tokens = min(p // max(1, s) * ctx for p, s, _ in per_stage) * sh.attn_dp * replicas
    mem = GPUMemory(
        capacity=policy.capacity,
        weights=worst.total,
        kv_cache=pool,
        activations=policy.activations,
        cuda_graphs=policy.cuda_graphs,
        other=policy.other,
        fraction=policy.fraction,
    )
    why = ""
    fits = checks.valid
    if not checks.valid:
        why = "; ".join(p.message for p in checks.problems if p.blocking)
    elif worst.total + policy.activations + policy.other > policy.fraction * policy.capacity:
        fits = False
        need = (worst.total + policy.activations + policy.other) / GiB
        may = policy.fraction * policy.capacity / GiB
        why = f"needs {need:.1f} GiB per GPU before any KV cache; {engine.name} may use {may:.1f} GiB"
    elif seqs_ctx < 1:
        fits = False
        why = (
            f"no room for the KV cache of one {ctx}-token sequence "
            f"({seq / GiB:.2f} GiB per GPU; {pool / GiB:.2f} GiB left)"
        )
    elif mem.total > policy.capacity:
        fits = False
        why = (
            f"activations and CUDA graphs push the total to {mem.total / GiB:.1f} GiB "
            f"of {policy.capacity / GiB:.0f} GiB"
        )
    thr: Throughput | None = None
    single = 0.0
    if checks.valid:
        per_replica = (
            max(1, min(policy.max_seqs, seqs_served))
            if batch is None
            else max(1, -(-batch // (sh.attn_dp * replicas)))
        )
        fp8 = fmt == "fp8"
        thr = serving_throughput(spec, rig, sh, stages, per_replica, isl, osl, kv_bytes, fp8, replicas)
        single = serving_throughput(spec, rig, sh, stages, 1, isl, osl, kv_bytes, fp8, 1).per_seq_tok_s
    return Candidate(
        layout=layout,
        gpus=engine.world(layout),
        valid=checks.valid,
        fits=fits,
        problems=tuple(checks.problems),
        memory=mem,
        kv_capacity_sequences=max(0, total_seqs),
        kv_capacity_tokens=max(0, tokens),
        seq_bytes=seq,
        throughput=thr,
        single_stream_tok_s=single,
        why_not=why,
    )


def _rank_key(c: Candidate) -> tuple[int, int, float, int, int]:
    speed = c.throughput.output_tok_s if c.throughput else 0.0
    # fits first; then throughput; ties go to fewer pipeline stages and no DP attention
    return (not c.fits, not c.valid, -speed, c.layout.pp, int(c.layout.dp_attention))


def _default_layout(engine: Engine, rig: Rig) -> Layout:
    """What people type first: TP over the GPUs of a node, PP over nodes."""
    return Layout(tp=len(rig.node.gpus), pp=len(rig.nodes))


def _notices(
    spec: ModelSpec,
    rig: Rig,
    engine: Engine,
    fmt: WeightFormat,
    chosen: Candidate,
    ranked: list[Candidate],
    default: Candidate | None,
    ctx: int,
) -> list[Notice]:
    out: list[Notice] = []
    gpu = rig.node.gpus[0]
    if not chosen.fits:
        out.append(
            Notice(
                "DOES_NOT_FIT",
                ERROR,
                f"no {engine.name} layout on {rig.gpu_count}x {gpu.name} fits {spec.name} in {fmt.upper()} "
                f"at {ctx} tokens: {chosen.why_not}",
            )
        )
    sup = support(fmt, gpu, engine.name)
    if not sup.native:
        out.append(
            Notice(
                "FORMAT_NOT_NATIVE",
                WARN if sup.runs else ERROR,
                f"{fmt.upper()} is not native on {gpu.name}: {sup.how}"
                + ("" if sup.runs else "; pick BF16 or a GPU that supports it"),
            )
        )
    if default is not None and not default.valid and chosen.valid:
        msg = "; ".join(p.message for p in default.problems if p.blocking)
        out.append(
            Notice(
                "DIVISIBILITY",
                WARN,
                f"{default.layout.label()} is not valid ({msg}); "
                f"nearest valid layout: {chosen.layout.label()}",
            )
        )
    for p in chosen.problems:
        if not p.blocking:
            out.append(Notice("DIVISIBILITY", INFO, f"{p.message}: some ranks hold one more expert"))
    if chosen.layout.tp > 1 and rig.node.gpu_link == "pcie":
        out.append(
            Notice(
                "PCIE_ONLY_TP",
                WARN,
                f"tensor parallel {chosen.layout.tp} all-reduces twice per layer over PCIe "
                f"({rig.node.gpu_link_bytes_s / 1e9:.0f} GB/s): expect slow decode; pipeline parallel or "
                "NVLink-connected GPUs avoid it",
            )
        )
    if spec.is_moe and len(rig.node.gpus) > 1:
        fitting = [c for c in ranked if c.fits and c.throughput]
        tp_best = next((c for c in fitting if c.layout.ep == 1), None)
        ep_best = next((c for c in fitting if c.layout.ep > 1), None)
        if tp_best and ep_best and tp_best.throughput and ep_best.throughput:
            t, e = tp_best.throughput.output_tok_s, ep_best.throughput.output_tok_s
            f = spec.moe_ffn
            assert f is not None
            if t >= e:
                # Without TP (TP1, DP only) every GPU holds a whole replica: no all-reduce to be cheap.
                why = (
                    "each GPU holds a whole replica and exchanges nothing per token"
                    if tp_best.layout.tp == 1
                    else f"on {rig.node.gpu_link} the all-reduce is cheap and TP splits every expert evenly "
                    "(no hot experts)"
                )
                verdict = "matches" if round(t) == round(e) else "beats"
                out.append(
                    Notice(
                        "TP_PREFERRED_OVER_EP",
                        INFO,
                        f"{tp_best.layout.label()} ({t:,.0f} tok/s) {verdict} expert parallel "
                        f"{ep_best.layout.label()} ({e:,.0f} tok/s): {why}",
                    )
                )
            else:
                reasons = []
                if f.n_expert >= 64 and f.n_ff_exp <= 2048:
                    reasons.append(f"{f.n_expert} small experts ({f.n_ff_exp} wide) shard badly by TP")
                if len(rig.nodes) > 1:
                    reasons.append("the layout spans nodes, where all-to-all beats all-reduce")
                if any("block" in p.message for p in tp_best.problems):
                    reasons.append("the quantization block limits TP")
                out.append(
                    Notice(
                        "TP_PREFERRED_OVER_EP",
                        INFO,
                        f"expert parallel wins here: {ep_best.layout.label()} ({e:,.0f} tok/s) vs "
                        f"{tp_best.layout.label()} ({t:,.0f} tok/s)"
                        + (f" — {'; '.join(reasons)}" if reasons else ""),
                    )
                )
    if len(rig.nodes) > 1:
        net = rig.network or "an unstated network"
        out.append(
            Notice(
                "MULTI_NODE",
                INFO,
                f"{len(rig.nodes)} nodes over {net}: keep TP inside a node ({rig.node.gpu_link}); "
                "PP, EP and DP cross nodes; start the per-node commands in order (head first)",
            )
        )
    return out


def _why_lost(c: Candidate, best: Candidate) -> str:
    if not c.valid or not c.fits:
        return c.why_not
    speed = c.throughput.output_tok_s if c.throughput else 0.0
    best_speed = best.throughput.output_tok_s if best.throughput else 0.0
    bound = c.throughput.bound if c.throughput else ""
    return f"{speed:,.0f} tok/s vs {best_speed:,.0f} tok/s ({bound}-bound)"


def plan_distributed(
    model: str | CatalogEntry,
    rig: Rig,
    engine: EngineName = "vllm",
    *,
    ctx: int | None = None,
    weight_format: str | None = None,
    batch: int | None = None,
    kv_cache_dtype: str = "auto",
    isl: int | None = None,
    osl: int | None = None,
    spec: ModelSpec | None = None,
) -> DistributedPlan:
    """The best vLLM / SGLang layout for a catalog model (its id or entry, or an entry built for a
    model outside the catalog, with its `spec`) on `rig`, with its memory, KV capacity, throughput,
    commands, manifest, notices and the alternatives that lost.

    `ctx`: --max-model-len / --context-length (default 32,768 or the model's if smaller; 0: the
    model's; above the model's: refused); `weight_format`: bf16 | fp8 | mxfp4 | nvfp4 | int4 | awq
    or a name for one (`parse_weight_format`; default: the release's); `batch`: concurrent sequences
    for the throughput figure (default: as many as the KV cache and the scheduler admit);
    `isl`/`osl`: prompt and output tokens per request."""
    entry = resolve(model) if isinstance(model, str) else model
    if engine not in ENGINES:
        raise MoeplanError(f"unknown engine '{engine}'; use vllm or sglang")
    if not rig.node.gpus:
        raise MoeplanError("vLLM and SGLang plans need GPUs in the rig")
    if kv_cache_dtype not in ("auto", "fp8"):
        raise MoeplanError(f"unknown KV cache dtype '{kv_cache_dtype}'; use auto or fp8")
    eng = ENGINES[engine]
    spec = spec or entry.spec()
    asked = parse_weight_format(weight_format, engine) if weight_format else entry.release_format
    served = _checkpoint(entry, asked)
    fmt = served.fmt
    check_fmt: WeightFormat = fmt if served.block_scaled else "bf16"
    if ctx is None:
        ctx = min(DEFAULT_CTX, spec.context_length)
    elif ctx <= 0:
        ctx = spec.context_length
    else:  # the engines refuse a --max-model-len above the model's (vLLM: without an override)
        context_bounds(ctx, spec.context_length, entry.name, None)
    kv_bytes = 1.0 if kv_cache_dtype == "fp8" else 2.0
    isl = isl if isl is not None else min(1000, max(1, ctx // 2))
    osl = osl if osl is not None else min(1000, max(1, ctx - isl))
    cache: dict[tuple[Sharding, str], list[StageWeights]] = {}
    cands = [
        _evaluate(spec, eng, lay, rig, fmt, check_fmt, ctx, kv_bytes, isl, osl, batch, cache)
        for lay in eng.layouts(spec, rig)
    ]
    ranked = sorted(cands, key=_rank_key)
    chosen = ranked[0]
    if not chosen.fits:  # nothing fits: show the valid layout closest to fitting
        valid = [c for c in ranked if c.valid] or ranked
        chosen = min(valid, key=lambda c: c.memory.weights)
    default_lay = _default_layout(eng, rig)
    default = next((c for c in cands if c.layout == default_lay), None)
    launch = LaunchSpec(
        repo=served.repo or f"<{fmt.upper()} checkpoint of {entry.hf_repo}>",
        ctx=ctx,
        fraction=chosen.memory.fraction,
        quantization=served.quantization,
        kv_cache_dtype=kv_cache_dtype,
        trust_remote_code=str(entry.config.get("model_type", "")) in _REMOTE_CODE_TYPES,
        nodes=len(rig.nodes),
        gpus_per_node=len(rig.node.gpus),
    )
    thr = chosen.throughput
    alternatives = [
        Alternative(
            c.layout.label(), c.fits, c.throughput.output_tok_s if c.throughput else 0.0, _why_lost(c, chosen)
        )
        for c in ranked
        if c is not chosen
    ][:16]
    assumptions = [
        *rig.assumptions,
        *([served.note] if served.note and served.repo else []),
        f"throughput at {isl} prompt + {osl} output tokens per request",
        "MTP / NextN layers are not loaded (no speculative decoding)",
    ]
    return DistributedPlan(
        model=entry.name,
        hf_repo=served.repo,
        engine=engine,
        rig=rig.text,
        weight_format=fmt,
        kv_cache_dtype=kv_cache_dtype,
        ctx=ctx,
        fits=chosen.fits,
        layout=chosen.layout,
        gpus_used=chosen.gpus,
        memory=chosen.memory,
        kv_capacity_sequences=chosen.kv_capacity_sequences,
        kv_capacity_tokens=chosen.kv_capacity_tokens,
        batch=thr.concurrent if thr else 0,
        output_tok_s=thr.output_tok_s if thr else 0.0,
        decode_tok_s=thr.decode_tok_s if thr else 0.0,
        single_stream_tok_s=chosen.single_stream_tok_s,
        bound_by=thr.bound if thr else "",
        isl=isl,
        osl=osl,
        commands=eng.commands(chosen.layout, launch),
        manifest=eng.manifest(chosen.layout, launch),
        notices=[
            *([Notice("NO_CHECKPOINT", WARN, served.note)] if served.note and not served.repo else []),
            *_notices(spec, rig, eng, fmt, chosen, ranked, default, ctx),
        ],
        alternatives=alternatives,
        assumptions=assumptions,
    )


plan_entry = plan_distributed  # the name where a catalog entry is in hand
