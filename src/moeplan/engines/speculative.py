"""llama.cpp's speculative decoding: what drafting adds to each device's memory, and its flags.

From the pinned llama.cpp (build 11434):
- `--spec-type` takes the names of `common_speculative_type_from_name_map` (common/speculative.cpp);
  `--spec-draft-n-max N` (default 3, `common_params_speculative_draft`) is the tokens drafted per step.
- `draft-mtp` drafts with the target file's NextN blocks: `load_mtp` loads their weights, on their
  layer's device (`common_model_params_to_llama`); the draft context (`LLAMA_CONTEXT_TYPE_MTP`,
  `common_speculative_init_result`) shares the target's weights and has its n_ctx, slots and unified
  KV, a KV cache of the NextN layers only (`llama_model::create_memory`, the `il >= n_layer` filter)
  in the `-ctkd/-ctvd` types (default f16, whatever -ctk says), and one output per slot
  (`common_base_params_to_speculative`: n_outputs_max = n_parallel). Only architectures whose
  graph builder has an MTP graph (`LLM_GRAPH_TYPE_DECODER_MTP` in src/models/*.cpp) can use it.
- `draft-simple` drafts with a second model (`-md FILE`): its own weights, placed by `-ngld`
  (default: like -ngl, every layer), `-otd` and `-devd`, and its own KV cache and compute buffer at
  the target's n_ctx, slots, micro-batch and flash attention. `-md` without `--spec-type draft-simple`
  loads the draft model but never drafts with it (`common_speculative_init` enables only the types
  asked for).
- The target context reserves n_parallel x (1 + n_max) outputs (`server_output_limits`), and where
  the architecture rolls recurrent state back partially (`llm_arch_supports_rs_rollback`), the types
  with a draft context other than draft-simple keep n_max state snapshots per sequence
  (`common_params_speculative::need_n_rs_seq`, `llama_memory_recurrent`: rows x (1 + n_rs_seq)).
- The MTP draft graph is one decoder block. Measured on the pinned CPU build (validation/speculative.py):
  its compute peak is the larger of its attention phase (KQ mask and the block's attention
  activations, as in a decoder layer) and its routed experts' activations, 3·k·n_ff_exp + 3·n_embd
  F32 per token (a dense block: 3·n_ff + 3·n_embd); neither the mask nor the shared expert is live
  then: in a one-block graph ggml-alloc frees the mask after its only use, and the shared expert runs
  once the routed intermediates are freed.
Drafting runs in llama-server and llama-cli only (`set_examples` of the --spec-* options).
"""

import dataclasses
import shlex
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from moeplan.arch.inventory import Inventory
from moeplan.arch.spec import FFNKind, ModelSpec
from moeplan.engines.llamacpp import (
    CPU,
    DeviceMemory,
    Frontend,
    MemoryPlan,
    Placement,
    compute_bytes,
    layer_devices,
    listed_devices,
    plan_memory,
)
from moeplan.errors import MoeplanError
from moeplan.memory.kv import CacheConfig, context, layer_memory
from moeplan.memory.weights import Weights
from moeplan.quant.ggml import GGMLType


class SpecType(StrEnum):
    """`--spec-type` values (common/speculative.cpp `common_speculative_type_from_name_map`)."""

    NONE = "none"
    SIMPLE = "draft-simple"
    EAGLE3 = "draft-eagle3"
    MTP = "draft-mtp"
    DFLASH = "draft-dflash"
    DSPARK = "draft-dspark"
    NGRAM_SIMPLE = "ngram-simple"
    NGRAM_MAP_K = "ngram-map-k"
    NGRAM_MAP_K4V = "ngram-map-k4v"
    NGRAM_MOD = "ngram-mod"
    NGRAM_CACHE = "ngram-cache"


N_MAX = 3  # --spec-draft-n-max default
# Architectures whose pinned graph builder has an MTP draft graph (LLM_GRAPH_TYPE_DECODER_MTP).
MTP_ARCHS = frozenset(
    {
        "bailingmoe3",
        "cohere2moe",
        "deepseek2",
        "deepseek32",
        "deepseek4",
        "glm-dsa",
        "glm4moe",
        "glm5-next",
        "hy_v3",
        "mimo2",
        "nemotron_h_moe",
        "qwen35",
        "qwen35moe",
        "qwen3next",
        "qwen4exp",
        "step35",
    }
)
# `llm_arch_supports_rs_rollback` (src/llama-arch.cpp).
RS_ROLLBACK_ARCHS = frozenset(
    {
        "kimi-k3",
        "qwen35",
        "qwen35moe",
        "qwen4exp",
        "deepseek4",
        "glm5-next",
        "nemotron_h",
        "nemotron_h_moe",
        "lfm2",
        "lfm2moe",
        "bailingmoe3",
    }
)
_SNAPSHOT_TYPES = (SpecType.MTP, SpecType.EAGLE3, SpecType.DFLASH, SpecType.DSPARK)


@dataclass(frozen=True)
class DraftModel:
    """A draft model for `draft-simple`: its tensors, typed, and where `-ngld`/`-otd` put them."""

    file: str
    inventory: Inventory
    weights: Weights
    placement: Placement = field(default_factory=Placement)


@dataclass(frozen=True)
class Drafting:
    kind: SpecType
    n_max: int = N_MAX
    model: DraftModel | None = None  # draft-simple only
    type_k: GGMLType = GGMLType.F16  # -ctkd
    type_v: GGMLType = GGMLType.F16  # -ctvd

    def __post_init__(self) -> None:
        if self.kind not in (SpecType.MTP, SpecType.SIMPLE):
            raise MoeplanError(
                f"--spec-type {self.kind}: moeplan plans draft-mtp (the model's MTP layers) and "
                "draft-simple (a draft model, -md); the catalog has no EAGLE3/DFlash heads"
            )
        if (self.kind is SpecType.SIMPLE) != (self.model is not None):
            raise MoeplanError("draft-simple needs a draft model (-md FILE); draft-mtp takes none")
        if self.n_max < 1:
            raise MoeplanError(f"--spec-draft-n-max must be at least 1 to draft, got {self.n_max}")


@dataclass(frozen=True, eq=False)
class SpeculativeMemory:
    """The target context as drafting changes it, and what the draft side adds on each device:
    the draft model's weights (draft-simple), the draft context's KV cache and compute buffer.
    MTP weights are the target's (its model buffer holds them): `mtp_weights` says how much."""

    target: MemoryPlan
    draft: tuple[DeviceMemory, ...]
    mtp_weights: dict[str, int]
    snapshots: bool = False  # the target keeps n_max recurrent-state snapshots per sequence

    def totals(self) -> list[DeviceMemory]:
        """Target plus draft side, per device (the order of the target's devices)."""
        extra = {d.device: d for d in self.draft}
        out = []
        for d in self.target.devices:
            e = extra.get(d.device, DeviceMemory(d.device))
            out.append(
                DeviceMemory(
                    d.device,
                    d.weights_bytes + e.weights_bytes,
                    d.kv_bytes + e.kv_bytes,
                    d.state_bytes + e.state_bytes,
                    d.compute_bytes + e.compute_bytes,
                    d.output_bytes + e.output_bytes,
                    checkpoint_bytes=d.checkpoint_bytes,  # the target's; the draft's share is not modelled
                    # one limit for both models' copies (server_prompt_cache counts data.drft too)
                    prompt_cache_bytes=d.prompt_cache_bytes,
                )
            )
        return out


def mtp_error(spec: ModelSpec, inv: Inventory) -> str | None:
    """Why MTP drafting cannot run on this file, or None."""
    if not spec.mtp_layers:
        return f"{spec.name} has no MTP layers to draft with"
    if spec.arch not in MTP_ARCHS:
        return f"the pinned llama.cpp has no MTP draft graph for {spec.arch} (its MTP layers cannot draft)"
    if not inv.mtp_kept:
        return "the GGUF lacks the MTP layers (converted with --no-mtp or before llama.cpp kept them)"
    return None


def target_frontend(cfg: CacheConfig, drafting: Drafting) -> Frontend:
    """llama-server's target outputs: n_parallel x (1 + n_max), at most n_batch."""
    return Frontend("llama-server", n_outputs_max=min(cfg.n_batch, cfg.n_seq * (1 + drafting.n_max)))


def plan_speculative(
    inv: Inventory,
    w: Weights,
    cfg: CacheConfig,
    placement: Placement | None,
    gpus: tuple[str, ...],
    drafting: Drafting,
    repack: bool | None = None,
    **runtime: Any,
) -> SpeculativeMemory:
    """Bytes per device of a llama-server run with this drafting (see the module docstring);
    `runtime`: `plan_memory`'s op_offload / free / output_first for the target."""
    spec = inv.spec
    mtp = drafting.kind is SpecType.MTP
    if mtp and (why := mtp_error(spec, inv)):
        raise MoeplanError(f"--spec-type draft-mtp: {why}")
    p = placement or Placement()
    target = plan_memory(
        inv, w, cfg, p, gpus, target_frontend(cfg, drafting), repack, load_mtp=mtp, **runtime
    )
    snapshots = drafting.kind in _SNAPSHOT_TYPES and spec.arch in RS_ROLLBACK_ARCHS
    if snapshots:
        grown = tuple(
            dataclasses.replace(d, state_bytes=d.state_bytes * (1 + drafting.n_max)) for d in target.devices
        )
        target = dataclasses.replace(target, devices=grown)
    draft_cfg = dataclasses.replace(cfg, type_k=drafting.type_k, type_v=drafting.type_v)
    if drafting.model is not None:
        m = drafting.model
        fe = Frontend("llama-server", n_outputs_max=cfg.n_seq)
        op_offload = runtime.get("op_offload", True)
        dplan = plan_memory(
            m.inventory, m.weights, draft_cfg, m.placement, gpus, fe, repack, op_offload=op_offload
        )
        return SpeculativeMemory(target, dplan.devices, {}, snapshots)
    names = [d.device for d in target.devices]
    rows = np.flatnonzero(target.table.layout.layer >= spec.n_layer)
    nbytes = target.table.nbytes[rows]
    per_dev = np.bincount(target.assignment[rows], weights=nbytes, minlength=len(names) + 1)
    mtp_weights = {n: round(per_dev[i]) for i, n in enumerate(names) if per_dev[i]}
    return SpeculativeMemory(target, _mtp_context(inv, draft_cfg, p, gpus, names), mtp_weights, snapshots)


def _mtp_context(
    inv: Inventory, cfg: CacheConfig, p: Placement, gpus: tuple[str, ...], names: list[str]
) -> tuple[DeviceMemory, ...]:
    """The MTP draft context's KV cache and compute buffer on each device."""
    spec = inv.spec
    head = dataclasses.replace(spec, layers=spec.mtp_layers, mtp_layers=())
    devs = layer_devices(inv.block_count, listed_devices(p, gpus)[0], p)  # -dev's GPUs only
    mtp_dev = devs[spec.n_layer : inv.block_count]  # each NextN block's device
    out = {n: DeviceMemory(n) for n in names}
    for lm, dev in zip(layer_memory(head, cfg), mtp_dev, strict=True):
        out[CPU if p.no_kv_offload else dev].kv_bytes += lm.k_bytes + lm.v_bytes + lm.index_bytes
    n_out = min(context(head, cfg).n_ubatch, cfg.n_seq)
    for name in out:
        here = np.array([d == name for d in mtp_dev], dtype=np.bool_)
        has_output = devs[-1] == name
        if here.any():
            attention = compute_bytes(head, cfg, n_out, has_output, here, np.zeros_like(here))
            out[name].compute_bytes = max(attention, _routed_activations(head, cfg, here))
        elif name == CPU:  # the graph inputs stay on the host
            out[name].compute_bytes = compute_bytes(head, cfg, n_out, has_output, here, here)
    return tuple(out.values())


def _routed_activations(head: ModelSpec, cfg: CacheConfig, here: np.ndarray) -> int:
    ub = context(head, cfg).n_ubatch
    peak = 0
    for layer, on in zip(head.layers, here, strict=True):
        f = layer.ffn
        if not on or f.kind is FFNKind.NONE:
            continue
        width = 3 * f.n_expert_used * f.n_ff_exp if f.kind is FFNKind.MOE else 3 * f.n_ff
        peak = max(peak, 4 * ub * (width + 3 * head.n_embd))
    return peak


def spec_flags(drafting: Drafting, *, ngl_draft: str = "") -> str:
    """The llama-server flags of this drafting (`ngl_draft`: the -ngld value, e.g. "all")."""
    parts = ["--spec-type", str(drafting.kind)]
    if drafting.model is not None:
        parts = ["-md", shlex.quote(drafting.model.file), *parts]
        if ngl_draft:
            parts += ["-ngld", ngl_draft]
    if drafting.n_max != N_MAX:
        parts += ["--spec-draft-n-max", str(drafting.n_max)]
    if (drafting.type_k, drafting.type_v) != (GGMLType.F16, GGMLType.F16):
        parts += ["-ctkd", drafting.type_k.name.lower(), "-ctvd", drafting.type_v.name.lower()]
    return " ".join(parts)
