"""What vLLM and SGLang share: how a model's tensors and KV cache divide over tensor-, expert-,
pipeline- and data-parallel ranks, and the divisibility rules a layout must meet.

The engine modules (`engines/vllm.py`, `engines/sglang.py`) translate their flags into a `Sharding`
(which degree each part of the model is split by) and add their own memory policy and KV rules;
everything here is the same in both engines because both use the same Megatron-style layers:
- `VocabParallelEmbedding` / `ParallelLMHead`: the vocabulary split over ranks, padded to a multiple
  of 64 per shard (vLLM `vocab_parallel_embedding.py` DEFAULT_VOCAB_PADDING_SIZE = 64; SGLang copies it).
- `QKVParallelLinear`: query heads split over TP ranks; KV heads split when there are at least as many
  as ranks, otherwise each rank holds one KV head, replicated TP / n_kv times
  (vLLM `linear.py` QKVParallelLinear: `num_kv_head_replicas = divide(tp_size, total_num_kv_heads)`).
- `RowParallelLinear` o_proj / down_proj split along their input; `MergedColumnParallelLinear` gate/up
  along their output.
- MLA (DeepSeek): q_a_proj and kv_a_proj_with_mqa are `ReplicatedLinear` (every rank holds all of it);
  q_b_proj, kv_b_proj and o_proj are split by heads; the cached latent (kv_lora_rank + rope dim per
  token per layer) is the same for all heads, so every TP rank caches all of it (vLLM
  `deepseek_v2.py` DeepseekV2MLAAttention; the MLA backends store one latent vector: `AttentionSpec`
  page size "For MLA we only store a single latent vector").
- FusedMoE: with expert parallel each rank holds n_expert / EP whole experts (the first
  n_expert % EP ranks one more in vLLM `determine_expert_map`); without it every rank holds a 1/TP
  slice of every expert's intermediate dimension.
- Gated DeltaNet (Qwen3-Next / Qwen3.5) linear attention: heads split over TP ranks like attention;
  its recurrent state per sequence splits with them.
- Pipeline parallel: decoder layers split into contiguous stages (vLLM `get_pp_indices`: an even
  split, the remainder going to the middle stages, not the first or last, which also hold the
  embedding and the lm_head).
- MTP / NextN layers are not loaded unless speculative decoding is on (vLLM `DeepseekV2ForCausalLM.
  load_weights` skips `get_spec_layer_idx_from_weight_name`; SGLang loads them only for EAGLE/NEXTN).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from moeplan.arch.inventory import Role, TensorSpec, inventory
from moeplan.arch.spec import Attention, AttnKind, FFNKind, ModelSpec
from moeplan.engines.formats import SHARD_MULTIPLE, WeightFormat, tensor_bytes

VOCAB_PAD = 64


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Layout:
    """A parallel layout as the engine's flags state it.

    vLLM: GPUs = tp · pp · dp; `ep` is tp · dp when `--enable-expert-parallel` is given, else 1.
    SGLang: GPUs = tp · pp (· dp when dp replicas run without DP attention); `ep` ≤ tp;
    `dp_attention`: attention data-parallel inside the TP group (`--dp D --enable-dp-attention`).
    """

    tp: int
    pp: int = 1
    dp: int = 1
    ep: int = 1
    dp_attention: bool = False

    def label(self) -> str:
        parts = [f"TP{self.tp}"]
        if self.pp > 1:
            parts.append(f"PP{self.pp}")
        if self.dp > 1:
            parts.append(f"DP{self.dp}" + ("-attn" if self.dp_attention else ""))
        if self.ep > 1:
            parts.append(f"EP{self.ep}")
        return " ".join(parts)


@dataclass(frozen=True)
class Sharding:
    """The degree each part of the model is split by on one pipeline stage (of `gpus` GPUs)."""

    gpus: int  # GPUs per pipeline stage (all replicas of all parts)
    attn_tp: int  # query/KV heads and linear-attention heads split by this
    attn_dp: int  # attention replicas per stage, each with its own sequences
    moe_tp: int  # each expert's intermediate dimension split by this
    moe_ep: int  # whole experts distributed over this many ranks
    dense_tp: int  # dense FFN and shared experts
    embed_tp: int
    lm_tp: int
    pp: int = 1


def stage_layers(n_layer: int, pp: int) -> list[range]:
    """Contiguous layer ranges per stage: an even split with the remainder on middle stages."""
    base, extra = divmod(n_layer, pp)
    sizes = [base] * pp
    order = [*range(1, pp - 1), pp - 1, 0] if pp > 2 else list(range(pp - 1, -1, -1))
    for i in range(extra):
        sizes[order[i % len(order)]] += 1
    out, start = [], 0
    for s in sizes:
        out.append(range(start, start + s))
        start += s
    return out


def _padded_share(n: int, tp: int) -> float:
    """Fraction of an n-row vocabulary tensor on one rank: padded to 64 per shard."""
    per_rank = ceil_div(ceil_div(n, tp), VOCAB_PAD) * VOCAB_PAD
    return min(1.0, per_rank / n)


_MLA_REPLICATED = ("attn_q_a.", "attn_kv_a_mqa.")
_KV_PROJ = ("attn_k.", "attn_v.")


def tensor_share(t: TensorSpec, spec: ModelSpec, sh: Sharding) -> float:
    """Fraction of tensor `t` one rank holds."""
    if t.role is Role.MTP:
        return 0.0
    if t.role is Role.EMBED:
        return _padded_share(spec.n_vocab, sh.embed_tp)
    if t.role is Role.OUTPUT:
        return _padded_share(spec.n_vocab, sh.lm_tp)
    if t.role in (Role.NORM, Role.ROUTER) or t.layer is None:
        return 1.0
    layer = spec.layers[t.layer]
    a, f = layer.attn, layer.ffn
    if t.role is Role.EXPERT:
        return ceil_div(f.n_expert, sh.moe_ep) / f.n_expert / sh.moe_tp
    if t.role in (Role.SHARED_EXPERT, Role.DENSE_FFN):
        return 1.0 if "ffn_gate_inp_shexp" in t.name else 1.0 / sh.dense_tp
    if t.role is Role.SSM:
        return 1.0 / sh.attn_tp
    # attention
    if any(s in t.name for s in _MLA_REPLICATED):
        return 1.0
    if any(s in t.name for s in _KV_PROJ):
        kv_rank = max(1, a.n_head_kv // sh.attn_tp)
        return kv_rank / a.n_head_kv
    return 1.0 / sh.attn_tp


@dataclass(frozen=True)
class StageWeights:
    """Bytes one GPU of a stage holds, split into routed experts and the rest, and the parameter
    counts the speed model needs."""

    layers: range
    expert_bytes: int
    other_bytes: int
    embed_bytes: int  # part of other_bytes that is only looked up, never streamed per token
    expert_params: int  # routed-expert parameters on this GPU
    other_params: int  # everything else this GPU multiplies per token (no embedding lookup)

    @property
    def total(self) -> int:
        return self.expert_bytes + self.other_bytes


def stage_weights(spec: ModelSpec, sh: Sharding, fmt: WeightFormat) -> list[StageWeights]:
    """Per-GPU weights of each pipeline stage (the HF checkpoint's tensors in format `fmt`)."""
    tensors = inventory(spec, checkpoint=True).tensors
    stages = stage_layers(spec.n_layer, sh.pp)
    out = []
    for si, rng in enumerate(stages):
        first, last = si == 0, si == len(stages) - 1
        exp_b = oth_b = emb_b = exp_p = oth_p = 0
        for t in tensors:
            if t.layer is not None:
                if t.layer not in rng:
                    continue
            elif t.role is Role.EMBED:
                # the first stage looks tokens up; with tied weights the last stage also needs them as lm_head
                if not (first or (last and spec.tied_embeddings)):
                    continue
            elif not last and t.role in (Role.OUTPUT, Role.NORM):
                continue
            share = tensor_share(t, spec, sh)
            if share == 0.0:
                continue
            b = round(tensor_bytes(t, fmt) * share)
            p = round(t.n_elements * share)
            if t.role is Role.EXPERT:
                exp_b, exp_p = exp_b + b, exp_p + p
            else:
                oth_b += b
                if t.role is Role.EMBED and not (last and spec.tied_embeddings):
                    emb_b += b
                else:
                    oth_p += p
        out.append(StageWeights(rng, exp_b, oth_b, emb_b, exp_p, oth_p))
    return out


def kv_values_per_token(a: Attention, sh: Sharding) -> int:
    """Cached values per token of one attention layer on one rank (0 for linear attention)."""
    if a.kind is AttnKind.LINEAR or not a.n_head_kv:  # recurrent, or a block without attention (deci)
        return 0
    if a.kind is AttnKind.MLA:
        return a.kv_lora_rank + a.qk_rope_head_dim  # one latent, replicated on every TP rank
    kv_rank = max(1, a.n_head_kv // sh.attn_tp)  # replicated when fewer KV heads than ranks
    return kv_rank * (a.head_dim_k + a.head_dim_v)


def linear_state_values(a: Attention, sh: Sharding) -> tuple[int, int]:
    """(conv state, SSM state) values per sequence of one Gated-DeltaNet layer on one rank.
    Same shapes as `memory.kv.recurrent_state_values` (HF `Qwen3NextGatedDeltaNet`), split by heads."""
    d_inner = a.linear_v_heads * a.linear_v_head_dim
    conv = (a.conv_kernel - 1) * (d_inner + 2 * a.linear_k_heads * a.linear_k_head_dim)
    ssm = a.linear_k_head_dim * d_inner
    return conv // sh.attn_tp, ssm // sh.attn_tp


# Tokens a layer keeps for one sequence of `ctx` tokens: the engine's rule for SWA/chunked layers.
TokensRule = Callable[[Attention, int], int]


@dataclass(frozen=True)
class SeqMemory:
    """KV and state of one sequence on one GPU of the worst stage, by kind of layer."""

    full_bytes: int  # full-attention / MLA layers
    window_bytes: int  # sliding-window / chunked layers
    state_bytes: int  # linear-attention recurrent state

    @property
    def total(self) -> int:
        return self.full_bytes + self.window_bytes + self.state_bytes


def seq_memory(
    spec: ModelSpec,
    layers: Sequence[int],
    sh: Sharding,
    ctx: int,
    kv_bytes: float,
    tokens: TokensRule,
    conv_bytes: int,
    ssm_bytes: int,
) -> SeqMemory:
    full = window = state = 0.0
    for il in layers:
        a = spec.layers[il].attn
        if a.kind is AttnKind.LINEAR:
            conv, ssm = linear_state_values(a, sh)
            state += conv * conv_bytes + ssm * ssm_bytes
            continue
        b = kv_values_per_token(a, sh) * kv_bytes * tokens(a, ctx)
        if a.sliding:
            window += b
        else:
            full += b
    return SeqMemory(round(full), round(window), round(state))


@dataclass(frozen=True)
class Problem:
    """A reason a layout is not valid, in one line."""

    message: str
    blocking: bool = True  # False: the engine accepts it but something suffers (load imbalance)


@dataclass(frozen=True)
class Checks:
    problems: list[Problem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(p.blocking for p in self.problems)


def check_divisibility(
    spec: ModelSpec, sh: Sharding, fmt: WeightFormat, *, experts_must_divide: bool
) -> Checks:
    """Rules both engines enforce at load time; each message names the numbers."""
    out: list[Problem] = []
    seen: set[str] = set()

    def add(msg: str, blocking: bool = True) -> None:
        if msg not in seen:
            seen.add(msg)
            out.append(Problem(msg, blocking))

    tp = sh.attn_tp
    if sh.pp > spec.n_layer:
        add(f"pipeline parallel {sh.pp} exceeds the {spec.n_layer} layers")
    block = SHARD_MULTIPLE.get(fmt, 0) if fmt != "mxfp4" else 0  # vLLM pads MXFP4 shards itself
    for layer in spec.layers:
        a, f = layer.attn, layer.ffn
        if a.kind is AttnKind.LINEAR:
            # vLLM Qwen3NextGatedDeltaNet: num_k_heads / num_v_heads divided by tp_size
            for n, what in ((a.linear_k_heads, "linear-attention key"), (a.linear_v_heads, "value")):
                if n % tp:
                    add(f"{n} {what} heads are not divisible by tensor parallel {tp}")
        else:
            # vLLM ModelConfig.verify_with_parallel_config: "Total number of attention heads (N) must be
            # divisible by tensor parallel size (T)"; KV heads: divisible, or TP a multiple of them.
            if a.n_head % tp:
                add(f"{a.n_head} attention heads are not divisible by tensor parallel {tp}")
            if a.kind is not AttnKind.MLA and a.n_head_kv % tp and tp % a.n_head_kv:
                add(f"{a.n_head_kv} KV heads and tensor parallel {tp}: neither divides the other")
        if f.kind is FFNKind.MOE:
            if f.n_ff_exp % sh.moe_tp:
                add(f"expert width {f.n_ff_exp} is not divisible by MoE tensor parallel {sh.moe_tp}")
            elif block and (f.n_ff_exp // sh.moe_tp) % block:
                add(
                    f"expert width {f.n_ff_exp} / TP {sh.moe_tp} = {f.n_ff_exp // sh.moe_tp} is not a "
                    f"multiple of the {fmt.upper()} block {block}"
                )
            if f.n_expert % sh.moe_ep:
                add(
                    f"{f.n_expert} experts are not divisible by expert parallel {sh.moe_ep}",
                    blocking=experts_must_divide,
                )
            widths = [f.n_ff_shexp] if f.n_ff_shexp else []
        else:
            widths = [f.n_ff]
        for w in widths:
            if w % sh.dense_tp:
                add(f"FFN width {w} is not divisible by tensor parallel {sh.dense_tp}")
            elif block and (w // sh.dense_tp) % block:
                add(
                    f"FFN width {w} / TP {sh.dense_tp} = {w // sh.dense_tp} is not a multiple of the "
                    f"{fmt.upper()} block {block}"
                )
    return Checks(out)
