"""Drafting as an option of a chosen llama.cpp plan: MTP drafting where the model has MTP layers the
pinned build can draft with, or a small dense model of the same family from the catalog; its extra
memory on each device, whether it still fits, and the decode speed it buys.

Drafting is added on top of the chosen plan (its quantization, placement and context); where it
does not fit there, on the fastest alternative it fits beside (a lower quantization, more experts on
the CPU). It is proposed only where it fits and decodes faster than the chosen plan, and says by
how much. A draft model goes to the GPU(s)
when it fits there (`-ngld` default: every layer), else to the CPU (`-ngld 0`). A draft model must
share the target's vocabulary: llama.cpp refuses one whose vocabulary differs by more than 128
tokens (`common_speculative_are_compatible`); catalog models of one family (the id's prefix up to
its first '-') share their tokenizer.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from moeplan.arch.inventory import inventory
from moeplan.arch.spec import ModelSpec
from moeplan.engines.llamacpp import CPU, Frontend, Placement, parse_placement, plan_memory
from moeplan.engines.speculative import (
    N_MAX,
    Drafting,
    DraftModel,
    SpecType,
    SpeculativeMemory,
    mtp_error,
    plan_speculative,
    spec_flags,
)
from moeplan.errors import MoeplanError
from moeplan.hardware.spec import Rig
from moeplan.memory.kv import CacheConfig
from moeplan.memory.weights import FileInventory, predict
from moeplan.perf.estimate import speed
from moeplan.perf.speculative import (
    Acceptance,
    DraftedSpeed,
    default_acceptance,
    drafted_speed,
    mtp_token_seconds,
    snapshot_bytes,
)
from moeplan.plan.llamacpp import Candidate, Runtime, device_slots, memory_options
from moeplan.sources.catalog import CatalogEntry, catalog_ids, load_entry

VOCAB_MAX_DIFFERENCE = 128  # SPEC_VOCAB_MAX_SIZE_DIFFERENCE, common/speculative.cpp
MAX_BASES = 8  # alternatives tried when drafting does not fit beside the chosen plan

PINNED = Runtime()  # the pinned build, the GPUs' own backend, op offload on, 1 GiB margin


@dataclass(frozen=True)
class DraftOption:
    base: Candidate  # the plan drafting is added to
    drafting: Drafting
    draft_model: str  # catalog id of the draft model, "" for MTP
    flags: str  # the llama-server flags drafting adds
    memory: SpeculativeMemory
    overflow: dict[str, int]  # device -> bytes over capacity with drafting
    speed: DraftedSpeed
    needs_mtp_file: str  # why the usual GGUF would not do, "" if it does

    @property
    def fits(self) -> bool:
        return not self.overflow

    def speedup_over(self, chosen: Candidate) -> float:
        return self.speed.tok_s / chosen.decode_tok_s if chosen.decode_tok_s else 0.0


def draft_candidates(entry: CatalogEntry) -> list[CatalogEntry]:
    """Dense catalog models of the target's family and vocabulary, smaller than its active
    parameters, smallest first."""
    family = entry.id.split("-")[0]
    n_vocab = entry.spec().n_vocab
    active = entry.params_published.active or entry.params_published.total
    same_family = (load_entry(i) for i in catalog_ids() if i != entry.id and i.split("-")[0] == family)
    out = [
        e
        for e in same_family
        if not e.spec().is_moe
        and abs(e.spec().n_vocab - n_vocab) <= VOCAB_MAX_DIFFERENCE
        and e.params_published.total < active
    ]
    return sorted(out, key=lambda e: e.params_published.total)


def evaluate(
    spec: ModelSpec,
    rig: Rig,
    chosen: Candidate,
    cache: CacheConfig,
    drafting: Drafting,
    acceptance: Acceptance,
    *,
    draft_model: str = "",
    file: FileInventory | None = None,
    needs_mtp_file: str = "",
    ngl_draft: str = "",
    runtime: Runtime = PINNED,
) -> DraftOption:
    """Memory, fit and speed of `chosen` with this drafting added, for the plan's llama.cpp
    (`runtime`: build, backend, op offload, margin)."""
    cpu, gpus = device_slots(rig, runtime)
    names = tuple(g.name for g in gpus) if chosen.strategy != "cpu" else ()
    cfg = dataclasses.replace(cache, n_ctx=chosen.ctx)
    mtp = drafting.kind is SpecType.MTP
    inv = file if file is not None else inventory(spec, mtp=mtp)
    w = predict(inv, chosen.quant)
    options = memory_options(chosen.strategy, chosen.flags, cpu, gpus)
    sm = plan_speculative(inv, w, cfg, parse_placement(chosen.flags), names, drafting, **options)
    capacity = {s.name: s.capacity_bytes for s in [cpu, *gpus]}
    totals = sm.totals()
    overflow = {}
    host = sum(d.total_bytes for d in totals if d.device.startswith(CPU))
    if host > cpu.capacity_bytes:
        overflow[CPU] = host - cpu.capacity_bytes
    for d in totals:
        if d.device in capacity and d.device != CPU and d.total_bytes > capacity[d.device]:
            overflow[d.device] = d.total_bytes - capacity[d.device]
    draft_cfg = dataclasses.replace(cfg, type_k=drafting.type_k, type_v=drafting.type_v)
    perf = chosen.perf
    if mtp:
        draft_s = mtp_token_seconds(sm, spec, perf, draft_cfg)
    else:
        m, node = drafting.model, cpu.node
        if m is None or node is None:
            raise ValueError("draft-simple without a draft model, or a CPU slot without its node")
        fe = Frontend("llama-server", n_outputs_max=1)
        dplan = plan_memory(
            m.inventory, m.weights, draft_cfg, m.placement, names, fe, op_offload=runtime.op_offload
        )
        draft_s = speed(m.inventory.spec, dplan, draft_cfg, node, fill=perf.fill).seconds_per_token
    snaps = snapshot_bytes(sm, drafting.n_max, cfg.n_seq)
    ds = drafted_speed(perf, draft_s, drafting.n_max, acceptance, snaps)
    flags = spec_flags(drafting, ngl_draft=ngl_draft)
    return DraftOption(chosen, drafting, draft_model, flags, sm, overflow, ds, needs_mtp_file)


def options(
    spec: ModelSpec,
    rig: Rig,
    chosen: Candidate,
    cache: CacheConfig,
    *,
    alternatives: list[Candidate],
    entry: CatalogEntry | None,
    draft: str,
    acceptance: float | None = None,
    n_max: int = N_MAX,
    file: FileInventory | None = None,
    runtime: Runtime = PINNED,
) -> list[DraftOption]:
    """The drafting options `draft` asks for: "mtp", a catalog model id (a draft model), or
    "auto" (MTP where the model can, else its family's smallest dense model; none if neither)."""
    out: list[DraftOption] = []
    if draft in ("auto", "mtp"):
        inv = file if file is not None else inventory(spec, mtp=True)
        why = mtp_error(spec, inv)
        if why is None:
            acc = _acceptance(spec, True, acceptance)
            published = entry.published_gguf if entry is not None else None
            needs = ""
            if file is None and published is not None and not published.mtp:
                needs = (  # the files checked: the catalog entry's published_gguf
                    "needs a GGUF that keeps the MTP layers, which the published uploads drop: "
                    "convert with the pinned convert_hf_to_gguf.py"
                )
            d = Drafting(SpecType.MTP, n_max)
            out.append(
                _best_fitting(
                    [chosen, *alternatives],
                    lambda c: evaluate(
                        spec, rig, c, _at(c, cache), d, acc, file=file, needs_mtp_file=needs, runtime=runtime
                    ),
                )
            )
        elif draft == "mtp":
            raise MoeplanError(f"--draft mtp: {why}")
        if out or draft == "mtp":
            return out
    if draft == "auto":
        if entry is None:
            return out
        picks = draft_candidates(entry)[:1]
    else:
        picks = [_draft_entry(draft, entry, spec)]
    acc = _acceptance(spec, False, acceptance)
    for e in picks:
        out.append(
            _best_fitting(
                [chosen, *alternatives],
                lambda c, e=e: _draft_model_option(spec, rig, c, _at(c, cache), e, acc, n_max, runtime),  # type: ignore[misc]
            )
        )
    return out


def _best_fitting(bases: list[Candidate], option: Callable[[Candidate], DraftOption]) -> DraftOption:
    """Drafting on the chosen plan (`bases[0]`) if it fits there; else the fastest drafted option
    among the fastest MAX_BASES alternatives that fit at its context; else at the largest smaller
    context offered (the caller passes only contexts the use accepts); else on the chosen plan."""
    first = option(bases[0])
    if first.fits:
        return first
    fitting = [c for c in bases[1:] if c.fits]
    for ctx in sorted({c.ctx for c in fitting if c.ctx <= bases[0].ctx}, reverse=True):
        at_ctx = sorted((c for c in fitting if c.ctx == ctx), key=lambda c: c.seconds_per_token)[:MAX_BASES]
        drafted = [o for o in map(option, at_ctx) if o.fits]
        if drafted:
            return max(drafted, key=lambda o: o.speed.tok_s)
    return first


def _at(base: Candidate, cache: CacheConfig) -> CacheConfig:
    """The chosen plan's runtime settings at `base`'s context (the draft's KV cache follows it)."""
    return cache if base.ctx == cache.n_ctx else base.cache


def _acceptance(spec: ModelSpec, mtp: bool, given: float | None) -> Acceptance:
    if given is not None:
        return Acceptance(given, "as given (--acceptance)")
    return default_acceptance(spec.arch, mtp)


def _draft_entry(draft: str, entry: CatalogEntry | None, spec: ModelSpec) -> CatalogEntry:
    if draft not in catalog_ids():
        raise MoeplanError(f"--draft '{draft}': use mtp, auto, none or a catalog model id")
    e = load_entry(draft)
    if abs(e.spec().n_vocab - spec.n_vocab) > VOCAB_MAX_DIFFERENCE or (
        entry is not None and e.id.split("-")[0] != entry.id.split("-")[0]
    ):
        raise MoeplanError(
            f"--draft {draft}: its vocabulary does not match {spec.name}'s (llama.cpp needs the same "
            "tokenizer, within 128 tokens); pick a model of the same family"
        )
    return e


def _draft_model_option(
    spec: ModelSpec,
    rig: Rig,
    chosen: Candidate,
    cache: CacheConfig,
    e: CatalogEntry,
    acc: Acceptance,
    n_max: int,
    runtime: Runtime,
) -> DraftOption:
    """The draft model on the GPU(s) if that fits, else on the CPU."""
    dspec = e.spec()
    dinv = inventory(dspec)
    dw = predict(dinv, chosen.quant)
    file = f"{e.gguf_stem}-{chosen.quant.name}.gguf"
    # The draft inherits the main model's -sm (and so -mg) and -dev: common_base_params_to_speculative
    # (common/speculative.cpp) starts from a copy of the main model's parameters.
    main = parse_placement(chosen.flags)
    inherited = Placement(split_mode=main.split_mode, devices=main.devices)
    placements = [("", inherited)]
    if chosen.strategy != "cpu":
        placements.append(("0", dataclasses.replace(inherited, n_gpu_layers=0)))
    tried = []
    for ngld, place in placements:
        d = Drafting(SpecType.SIMPLE, n_max, DraftModel(file, dinv, dw, place))
        tried.append(
            evaluate(spec, rig, chosen, cache, d, acc, draft_model=e.id, ngl_draft=ngld, runtime=runtime)
        )
        if tried[-1].fits and tried[-1].speed.pays:
            break
    return next((o for o in tried if o.fits and o.speed.pays), tried[-1])
