"""Speculative decoding's speed: tokens per target step from an acceptance rate, the draft's own
cost, and the decode speed that results.

Acceptance: `p` is the chance a drafted token is accepted given the one before it was, the same at
every position; with n drafted per step a step commits 1 + p + p² + ... + pⁿ tokens in expectation.
It is the model llama.cpp itself uses for synthetic acceptance
(`common_speculative_synth_rates_resolve`, common/speculative.cpp: per-position rates pⁱ) and the
inverse of what its server prints as "mean len" (1 + accepted / verification steps).

One step of the target verifies n + 1 tokens of one sequence in one forward pass: the weights are
read once (a MoE layer reads the distinct experts its n + 1 tokens picked), the KV cache once, the
FLOPs are n + 1 tokens' (`decode.step_time` with batch n + 1 over one sequence). So the experts
streamed from RAM in an expert-offload plan are read once for every accepted token of the step,
but on the CPU each token still costs one dot-product pass over each expert it routes to (from
cache): llama.cpp's CPU MUL_MAT_ID multiplies a few-row batch one token at a time. The
draft decodes n tokens one at a time and first catches up on the tokens the target accepted (one
more pass over its weights): n + 1 draft passes per step (`common_speculative_impl_draft_mtp`
process/draft).
"""

from dataclasses import dataclass

import numpy as np

from moeplan.arch.spec import ModelSpec
from moeplan.engines.llamacpp import CPU
from moeplan.engines.speculative import SpeculativeMemory
from moeplan.errors import MoeplanError
from moeplan.memory.kv import CacheConfig, kv_widths, row_bytes
from moeplan.perf.decode import step_time
from moeplan.perf.estimate import Speed
from moeplan.perf.traffic import host_device


@dataclass(frozen=True)
class Acceptance:
    p: float
    source: str


# Published MTP acceptance per architecture family (the first drafted token's rate where that is
# what was published; llama.cpp's "draft acceptance" ratio converted to p where that was).
MTP_ACCEPTANCE = {
    "deepseek2": Acceptance(
        0.85, "DeepSeek-V3 technical report (arXiv:2412.19437, 5.4.3): 2nd-token acceptance 85-90%"
    ),
    "glm-dsa": Acceptance(0.88, "GLM-5 with --draft-max 1: 88.2% accepted (ik_llama.cpp PR #1815)"),
    "qwen35moe": Acceptance(
        0.85,
        "Qwen3.5-122B-A10B Q4 in llama.cpp: draft acceptance 0.726 at n_max 3, i.e. p = 0.85 "
        "(ggml-org/llama.cpp PR #22673)",
    ),
    "step35": Acceptance(0.9, "Step-3.5-Flash, draft size 1: 86-96% accepted (ggml-org/llama.cpp PR #23274)"),
}
MTP_ACCEPTANCE["deepseek32"] = MTP_ACCEPTANCE["deepseek2"]
MTP_ACCEPTANCE["qwen35"] = MTP_ACCEPTANCE["qwen35moe"]
DEFAULT_MTP = Acceptance(0.8, "default for MTP heads without a published figure (published ones: 0.85-0.9)")
DEFAULT_DRAFT_MODEL = Acceptance(
    0.6,
    "default for a small draft model of the same family (Leviathan et al. 2023, arXiv:2211.17192: 0.5-0.9)",
)


def default_acceptance(arch: str, mtp: bool) -> Acceptance:
    return MTP_ACCEPTANCE.get(arch, DEFAULT_MTP) if mtp else DEFAULT_DRAFT_MODEL


def check_acceptance(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise MoeplanError(f"the acceptance rate must be in [0, 1), got {p}")
    return p


def tokens_per_step(p: float, n_max: int) -> float:
    """Tokens one target step commits: the verified token plus the accepted prefix of n_max drafts."""
    return sum(p**i for i in range(n_max + 1))


def acceptance_from_length(mean_len: float, n_max: int) -> float:
    """The per-position acceptance p whose expected step length is `mean_len` (llama.cpp's
    bisection in `common_speculative_synth_rates_resolve`)."""
    if not 1.0 <= mean_len <= n_max + 1:
        raise MoeplanError(f"a mean accepted length must lie in [1, {n_max + 1}], got {mean_len}")
    lo, hi = 0.0, 1.0
    for _ in range(48):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tokens_per_step(mid, n_max) < mean_len else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class DraftedSpeed:
    acceptance: Acceptance
    n_max: int
    tokens_per_step: float
    base_tok_s: float  # the same plan without drafting
    verify_s: float  # one target step over n_max + 1 tokens
    draft_token_s: float  # one draft pass
    tok_s: float

    @property
    def speedup(self) -> float:
        return self.tok_s / self.base_tok_s if self.base_tok_s else 0.0

    @property
    def pays(self) -> bool:
        return self.speedup > 1.0


def verify_seconds(perf: Speed, n_tokens: int, snapshot_bytes: dict[str, float] | None = None) -> float:
    """The target's forward pass over `n_tokens` tokens of one sequence at the plan's fill: the
    decode step of `n_tokens` tokens over one KV cache (`decode.step_time`: weights and distinct
    experts read once, dense matmuls at the matmul rate, the CPU's routed experts one dot-product
    pass per token).
    `snapshot_bytes`: per device, one sequence's recurrent state. With rollback snapshots the gated
    delta-net op writes one state per token of the step into its output and a copy moves each into
    the cache (read and write; `build_delta_net` with n_rs_seq > 0, models/delta-net-base.cpp): three
    passes over a state per further token."""
    step = step_time(perf.work, perf.rates, perf.fill, n_tokens, perf.disk, perf.cal, sequences=1)
    extra = 0.0
    for name, nbytes in (snapshot_bytes or {}).items():
        r = perf.rates.get(host_device(name)) or perf.rates[CPU]
        extra += 3 * (n_tokens - 1) * nbytes / r.bandwidth
    return step.seconds + extra


def snapshot_bytes(sm: SpeculativeMemory, n_max: int, n_seq: int) -> dict[str, float]:
    """Per device, one sequence's recurrent state where drafting keeps rollback snapshots of it
    (the target's state grew to (1 + n_max) copies per sequence)."""
    grown = {d.device: d.state_bytes for d in sm.target.devices if d.state_bytes}
    if not sm.snapshots:
        return {}
    return {dev: b / (1 + n_max) / max(1, n_seq) for dev, b in grown.items()}


def mtp_token_seconds(sm: SpeculativeMemory, spec: ModelSpec, perf: Speed, draft_cache: CacheConfig) -> float:
    """One MTP draft pass: each device reads its share of the NextN blocks (k of E experts), the
    LM head the block uses (its own `nextn.shared_head_head`, else the model's output layer) and the
    blocks' KV cache (in the draft's cache types) up to the fill."""
    mem, table = sm.target, sm.target.table
    names = [host_device(d.device) for d in mem.devices]
    mtp_rows = np.flatnonzero(table.layout.layer >= spec.n_layer)
    rows = [int(r) for r in mtp_rows if mem.assignment[r] < len(names)]
    by_dev: dict[str, float] = {}
    for r in rows:
        f = table.layout.specs[r]
        layer = spec.mtp_layers[f.layer - spec.n_layer] if f.layer is not None else None
        share = 1.0
        if layer is not None and "_exps" in f.name and layer.ffn.n_expert:
            share = layer.ffn.n_expert_used / layer.ffn.n_expert
        dev = names[mem.assignment[r]]
        by_dev[dev] = by_dev.get(dev, 0.0) + float(table.nbytes[r]) * share
    if not rows:
        raise MoeplanError("the plan loads no MTP layers to draft with")
    if not any("shared_head_head" in table.names[r] for r in rows):
        head = table.row("output.weight", "token_embd.weight")
        head_dev = host_device(mem.output_device)
        by_dev[head_dev] = by_dev.get(head_dev, 0.0) + float(table.nbytes[head])
    offloaded = any(d.kv_bytes for d in sm.draft if d.device != CPU)
    kv_dev = names[mem.assignment[rows[0]]] if offloaded else CPU
    for layer in spec.mtp_layers:
        k_w, v_w = kv_widths(layer.attn)
        kv = row_bytes(draft_cache.type_k, k_w) + (row_bytes(draft_cache.type_v, v_w) if v_w else 0)
        by_dev[kv_dev] = by_dev.get(kv_dev, 0.0) + kv * perf.fill
    seconds = 0.0
    for dev, nbytes in by_dev.items():
        rate = perf.rates.get(dev) or perf.rates[CPU]
        seconds += nbytes / rate.bandwidth + rate.layer_overhead_s
    return seconds


def drafted_speed(
    perf: Speed,
    draft_token_s: float,
    n_max: int,
    acceptance: Acceptance,
    snapshot_bytes: dict[str, float] | None = None,
) -> DraftedSpeed:
    """Decode speed with drafting: tokens per step over (verification + n_max + 1 draft passes)."""
    check_acceptance(acceptance.p)
    verify = verify_seconds(perf, n_max + 1, snapshot_bytes)
    tps = tokens_per_step(acceptance.p, n_max)
    step = verify + (n_max + 1) * draft_token_s
    return DraftedSpeed(acceptance, n_max, tps, perf.decode_tok_s, verify, draft_token_s, tps / step)
