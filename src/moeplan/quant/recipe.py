"""llama-quantize's per-tensor type rules, reproduced for every file type (Q4_K_M, IQ2_XXS, ...).

A port of `src/llama-quant.cpp` of the pinned llama.cpp (build 11434): `tensor_allows_quantization`,
`tensor_get_category`, `llama_tensor_get_type_impl`, `tensor_type_fallback`,
`llama_ftype_get_default_type` and the counters of `init_quantize_state_counters`. No library
exposes these rules (gguf-py has the type sizes, not the recipes), so they are written here; the
snapshots that llama.cpp itself tests against (`tests/snapshots/*.schema`) check this module.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache

from moeplan.errors import UnknownQuant, did_you_mean
from moeplan.memo import PER_MODEL, by_identity
from moeplan.quant.ggml import UNQUANTIZED, GGMLType, block_size

T = GGMLType


class FileType(Enum):
    """llama.cpp file types (`llama_ftype`) with the default tensor type of each."""

    F32 = T.F32
    F16 = T.F16
    BF16 = T.BF16
    Q8_0 = T.Q8_0
    Q6_K = T.Q6_K
    Q5_K_M = (T.Q5_K, "M")
    Q5_K_S = (T.Q5_K, "S")
    Q5_1 = T.Q5_1
    Q5_0 = T.Q5_0
    Q4_K_M = (T.Q4_K, "M")
    Q4_K_S = (T.Q4_K, "S")
    Q4_1 = T.Q4_1
    Q4_0 = T.Q4_0
    Q3_K_L = (T.Q3_K, "L")
    Q3_K_M = (T.Q3_K, "M")
    Q3_K_S = (T.Q3_K, "S")
    Q2_K = T.Q2_K
    Q2_K_S = (T.Q2_K, "S")
    IQ4_XS = T.IQ4_XS
    IQ4_NL = T.IQ4_NL
    IQ3_M = (T.IQ3_S, "M")
    IQ3_S = T.IQ3_S
    IQ3_XS = (T.IQ3_S, "XS")
    IQ3_XXS = T.IQ3_XXS
    IQ2_M = (T.IQ2_S, "M")
    IQ2_S = (T.IQ2_XS, "S")
    IQ2_XS = T.IQ2_XS
    IQ2_XXS = T.IQ2_XXS
    IQ1_M = T.IQ1_M
    IQ1_S = T.IQ1_S
    TQ1_0 = T.TQ1_0
    TQ2_0 = T.TQ2_0
    MXFP4_MOE = (T.MXFP4, "MOE")

    # Members are singletons compared by identity; Enum's own __hash__ (a Python-level hash of the
    # name) was a tenth of a recipe's time, spent in set and dict lookups of the rules.
    __hash__ = object.__hash__

    @property
    def default_type(self) -> GGMLType:
        """`llama_ftype_get_default_type`."""
        v = self.value
        t: GGMLType = v[0] if isinstance(v, tuple) else v
        return t

    @classmethod
    def parse(cls, name: str) -> "FileType":
        """A file type however people spell it: 'Q4_K_M', 'q4_k_m', 'Q4-K-M', 'q4km' (no two names
        differ only in their underscores)."""
        key = re.sub(r"[^A-Z0-9]", "", name.upper())
        found = _COMPACT_NAMES.get(key)
        if found is not None:
            return cls.__members__[found]
        base = custom_recipe_base(name)
        if base is not None:
            raise UnknownQuant(
                f"'{name}' is unsloth's dynamic recipe, whose tensor types differ from upload to "
                f"upload: plan the file itself (its path, or hf://ORG/REPO:{name.strip().upper()}), "
                f"or --quant {base.name}, the stock type it builds on"
            )
        raise UnknownQuant(
            f"unknown quantization '{name}'{did_you_mean(name, cls.__members__)}; "
            f"choose one of {', '.join(cls.__members__)}"
        )


F = FileType
_COMPACT_NAMES = {n.replace("_", ""): n for n in FileType.__members__}
# llama-quantize's own aliases (tools/quantize/quantize.cpp QUANT_OPTIONS: "Q4_K" is Q4_K_M ...) and
# ggml-org's name for the files convert_hf_to_gguf.py writes from MXFP4 releases.
LABEL_ALIASES = {"Q3_K": F.Q3_K_M, "Q4_K": F.Q4_K_M, "Q5_K": F.Q5_K_M, "MXFP4": F.MXFP4_MOE}
# The stock type of the same bit width that each unsloth `_XL` label starts from.
_XL_BASES = {
    "Q2_K": F.Q2_K,
    "Q3_K": F.Q3_K_M,
    "Q4_K": F.Q4_K_M,
    "Q5_K": F.Q5_K_M,
    "Q6_K": F.Q6_K,
    "Q8_K": F.Q8_0,
}


def custom_recipe_base(label: str) -> "FileType | None":
    """The stock file type an unsloth dynamic label (`UD-Q4_K_XL`, `UD-IQ2_M`, `Q4_K_XL`) builds on;
    None for a label that is not one (a stock type is not a custom recipe)."""
    upper = label.strip().upper()
    base = upper.removeprefix("UD-")
    if base.endswith("_XL"):
        return _XL_BASES.get(base[:-3])
    if upper.startswith("UD-"):
        return F.__members__.get(base) or LABEL_ALIASES.get(base)
    return None


# The file types whose rules need an importance matrix (`tensor_requires_imatrix`): llama-quantize
# refuses them without one, so a recipe for them assumes one was given.
NEEDS_IMATRIX = frozenset({F.IQ2_XXS, F.IQ2_XS, F.IQ2_S, F.IQ1_S, F.IQ1_M})


class Category(Enum):
    """`tensor_category`: broad classes found by substring match, in this order."""

    OUTPUT = "output"
    TOKEN_EMBD = "token_embd"
    QKV = "attn_qkv"
    KV_B = "attn_kv_b"
    V = "attn_v"
    K = "attn_k"
    Q = "attn_q"
    ATTN_OUTPUT = "attn_output"
    FFN_UP = "ffn_up"
    FFN_GATE = "ffn_gate"
    FFN_DOWN = "ffn_down"
    OTHER = "other"

    __hash__ = object.__hash__  # identity, as for FileType


_CATEGORY_BY_SUBSTRING = [
    ("attn_qkv.weight", Category.QKV),
    ("attn_kv_b.weight", Category.KV_B),
    ("attn_v.weight", Category.V),
    ("attn_k.weight", Category.K),
    ("attn_q.weight", Category.Q),
    ("attn_output.weight", Category.ATTN_OUTPUT),
    ("ffn_up", Category.FFN_UP),
    ("ffn_gate", Category.FFN_GATE),
    ("ffn_down", Category.FFN_DOWN),
]


@cache  # names repeat across models and file types; the planner asks thousands of times
def category(name: str) -> Category:
    if name == "output.weight":
        return Category.OUTPUT
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return Category.TOKEN_EMBD
    for sub, cat in _CATEGORY_BY_SUBSTRING:
        if sub in name:
            return cat
    return Category.OTHER


_ATTN_V_LIKE = frozenset({Category.V, Category.QKV, Category.KV_B})
# Categories whose rules read or advance the quantizer's running counters (or the layer index).
_COUNTED = _ATTN_V_LIKE | {Category.FFN_DOWN, Category.FFN_GATE, Category.FFN_UP}

# Substrings that keep a tensor unquantized whatever the file type (`tensor_allows_quantization`).
_NEVER_QUANTIZED = (
    "_norm.weight",
    "ffn_gate_inp.weight",
    "ffn_gate_tid2eid.weight",
    "altup",
    "laurel",
    "per_layer_model_proj",
    "ssm_conv1d",
    "shortconv.conv.weight",
    "indexer.k_proj.weight",
    "indexer.q_proj.weight",
    "time_mix_first.weight",
    "time_mix_w0.weight",
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_v0.weight",
    "time_mix_v1.weight",
    "time_mix_v2.weight",
    "time_mix_a0.weight",
    "time_mix_a1.weight",
    "time_mix_a2.weight",
    "time_mix_g1.weight",
    "time_mix_g2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",
    ".position_embd",
    "sam.pos_embd",
    "sam.neck.",
    "sam.net_",
    ".rel_pos",
    ".patch_embd",
    ".patch_merger",
    "a.rvq.codebook",
    "mm.a.code_embd",
)
_NEVER_QUANTIZED_EXACT = frozenset({"position_embd.weight", "token_types.weight"})


def ggml_n_dims(shape: tuple[int, ...]) -> int:
    """`ggml_n_dims`: trailing dimensions of size 1 do not count ({2048, 1} is 1-D)."""
    for i in range(len(shape) - 1, 0, -1):
        if shape[i] > 1:
            return i + 1
    return 1


def allows_quantization(name: str, shape: tuple[int, ...], *, quantize_output: bool = True) -> bool:
    """`tensor_allows_quantization`: only 2-D and 3-D weights, minus the listed exceptions."""
    if ggml_n_dims(shape) < 2:
        return False
    if not quantize_output and name == "output.weight":
        return False
    return _name_allows_quantization(name)


@cache
def _name_allows_quantization(name: str) -> bool:
    if not name.endswith("weight") or name in _NEVER_QUANTIZED_EXACT:
        return False
    return not any(s in name for s in _NEVER_QUANTIZED)


@dataclass(frozen=True)
class QuantModel:
    """The few model facts the rules read (`llama_quant_model_from_metadata`)."""

    arch: str
    n_layer: int  # block_count, MTP/nextn layers included (n_layer_all)
    n_head: int
    n_head_kv: int
    n_expert: int = 0

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0

    @property
    def is_70b(self) -> bool:
        """LLM_TYPE_70B as llama-quantize gets it from the architecture's `load_arch_hparams`: a GQA
        llama with 80 blocks (src/models/llama.cpp), any deci with 80 (src/models/deci.cpp, the
        Llama-Nemotron NAS models pruned from Llama-3.x-70B), any qwen2 with 80 (src/models/qwen2.cpp,
        Qwen2.5-72B)."""
        if self.arch in ("deci", "qwen2"):
            return self.n_layer == 80
        return self.arch == "llama" and self.n_layer == 80 and self.n_head != self.n_head_kv


@dataclass(frozen=True)
class QuantOptions:
    """llama-quantize flags that change the recipe."""

    imatrix: bool | None = None  # None: as llama-quantize requires (yes for IQ1/IQ2 file types)
    pure: bool = False
    leave_output_tensor: bool = False
    output_tensor_type: GGMLType | None = None
    token_embedding_type: GGMLType | None = None
    tensor_types: tuple[tuple[str, GGMLType], ...] = field(default=())  # --tensor-type REGEX=TYPE


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@cache
def _layer_of(name: str) -> int:
    m = re.match(r"blk\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


def visit_order(names: Sequence[str]) -> list[int]:
    """Indices of `names` in the quantizer's visiting order (`weight_name_comparer`: layer, then name)."""
    keys = [(_layer_of(n), n.encode()) for n in names]
    return sorted(range(len(names)), key=keys.__getitem__)


class _Counters:
    def __init__(self, n_attention_wv: int, n_layer: int) -> None:
        self.n_attention_wv = n_attention_wv
        self.n_ffn = n_layer
        self.i_attention_wv = 0
        self.i_ffn_down = 0
        self.i_ffn_gate = 0
        self.i_ffn_up = 0


_IQ2_FAMILY = frozenset({F.IQ2_XXS, F.IQ2_XS, F.IQ1_S, F.IQ2_S, F.IQ2_M, F.IQ1_M})
_OUTPUT_Q5K = frozenset({F.IQ2_XXS, F.IQ2_XS, F.IQ3_XXS, F.IQ1_S, F.IQ2_S, F.IQ2_M, F.IQ1_M})
_MOE8_ATTN_OUT_Q5K = frozenset(
    {
        F.Q2_K,
        F.IQ3_XS,
        F.IQ3_XXS,
        F.Q3_K_S,
        F.Q3_K_M,
        F.IQ4_NL,
        F.Q4_K_S,
        F.Q4_K_M,
        F.IQ3_S,
        F.IQ3_M,
        F.IQ4_XS,
    }
)

_FALLBACK = {
    T.IQ1_S: T.IQ4_NL,
    T.IQ1_M: T.IQ4_NL,
    T.IQ2_XXS: T.IQ4_NL,
    T.IQ2_XS: T.IQ4_NL,
    T.IQ2_S: T.IQ4_NL,
    T.IQ3_XXS: T.IQ4_NL,
    T.IQ3_S: T.IQ4_NL,
    T.IQ4_XS: T.IQ4_NL,
    T.Q2_K: T.Q4_0,
    T.Q3_K: T.Q4_0,
    T.TQ1_0: T.Q4_0,
    T.TQ2_0: T.Q4_0,
    T.Q4_K: T.Q5_0,
    T.Q5_K: T.Q5_1,
    T.Q6_K: T.Q8_0,
}


def fallback(t: GGMLType, ne0: int) -> GGMLType:
    """`tensor_type_fallback`: a row length the type's block does not divide falls back to a
    32-block type, and to F16 if even that does not divide it."""
    if ne0 % block_size(t) == 0:
        return t
    out = _FALLBACK.get(t, t)
    return out if ne0 % block_size(out) == 0 else T.F16


def _layer_info(model: QuantModel, running: int, name: str) -> int:
    """The layer index used by the FFN rules: parsed from the name for MoE models (experts of a
    layer are not consecutive in the file), the running count of that category otherwise."""
    if max(1, model.n_expert) > 1:
        i = _layer_of(name)
        if not 0 <= i < model.n_layer:
            raise ValueError(f"bad layer {i} for tensor {name}: must be in [0, {model.n_layer})")
        return i
    return running


def _impl(
    model: QuantModel,
    ft: FileType,
    opts: QuantOptions,
    imatrix: bool,
    tied: bool,
    c: _Counters,
    name: str,
    ne: tuple[int, ...],
    cat: Category,
    new: GGMLType,
) -> GGMLType:
    n_expert = model.n_expert
    if cat is Category.OUTPUT or (tied and cat is Category.TOKEN_EMBD):
        if opts.output_tensor_type is not None:
            return opts.output_tensor_type
        if ft is F.MXFP4_MOE:
            return T.Q8_0
        if model.arch == "falcon" or ne[0] % block_size(new) != 0:
            return T.Q8_0
        if ft in _OUTPUT_Q5K:
            return T.Q5_K
        return new if new == T.Q8_0 else T.Q6_K
    if ft is F.MXFP4_MOE:  # 3-D tensors MXFP4, the rest Q8_0; bailingmoe3's 3-D MLA projections are
        # not experts, so there only the FFN roles count (`llama_tensor_get_type_impl`)
        stacked = len(ne) > 2 and ne[2] > 1
        expert_role = model.arch != "bailingmoe3" or cat in (
            Category.FFN_UP,
            Category.FFN_GATE,
            Category.FFN_DOWN,
        )
        return T.MXFP4 if stacked and expert_role else T.Q8_0
    if cat is Category.TOKEN_EMBD:
        if opts.token_embedding_type is not None:
            return opts.token_embedding_type
        if ft in (F.IQ2_XXS, F.IQ2_XS, F.IQ1_S, F.IQ1_M):
            return T.Q2_K
        if ft in (F.IQ2_S, F.IQ2_M, F.IQ3_XXS):
            return T.IQ3_S
        if ft in (F.TQ1_0, F.TQ2_0):
            return T.Q4_K
        return new
    if ft in _IQ2_FAMILY:
        if cat in _ATTN_V_LIKE:
            if model.n_gqa >= 4 or n_expert >= 4:
                new = T.Q4_K
            else:
                new = T.IQ3_S if ft in (F.IQ2_S, F.IQ2_M) else T.Q2_K
            c.i_attention_wv += 1
        elif n_expert == 8 and cat is Category.K:
            new = T.Q4_K
        elif cat is Category.FFN_DOWN:
            if c.i_ffn_down < c.n_ffn // 8:
                new = T.IQ3_S if ft in (F.IQ2_S, F.IQ2_M) else T.Q2_K
            c.i_ffn_down += 1
        elif cat is Category.ATTN_OUTPUT:
            if n_expert == 8:
                new = T.Q5_K
            elif ft in (F.IQ1_S, F.IQ1_M):
                new = T.IQ2_XXS
            elif ft in (F.IQ2_S, F.IQ2_M):
                new = T.IQ3_S
        return new
    if cat in _ATTN_V_LIKE:
        i, n, gqa = c.i_attention_wv, c.n_attention_wv, model.n_gqa
        if ft is F.Q2_K:
            new = T.Q4_K if gqa >= 4 else T.Q3_K
        elif ft is F.Q2_K_S and gqa >= 4:
            new = T.Q4_K
        elif ft is F.IQ3_XXS:
            new = T.Q4_K if gqa >= 4 else (T.IQ3_S if not imatrix else T.IQ3_XXS)
        elif (ft in (F.IQ3_XS, F.IQ3_S) and gqa >= 4) or ft is F.IQ3_M:
            new = T.Q4_K
        elif ft is F.Q3_K_M:
            new = T.Q5_K if i < 2 else T.Q4_K
        elif ft is F.Q3_K_L or (ft in (F.IQ4_NL, F.IQ4_XS) and gqa >= 4):
            new = T.Q5_K
        elif ft in (F.Q4_K_M, F.Q5_K_M) and _use_more_bits(i, n):
            new = T.Q6_K
        elif ft is F.Q4_K_S and i < 4:
            new = T.Q5_K
        if model.is_70b and new in (T.Q3_K, T.Q4_K):
            new = T.Q5_K
        if n_expert == 8:
            new = T.Q8_0
        c.i_attention_wv += 1
        return new
    if cat is Category.K:
        if n_expert == 8:
            return T.Q8_0
        if ft is F.IQ3_XS:
            return T.IQ3_XXS
        if ft is F.IQ3_XXS:
            return T.IQ2_S
        return new
    if cat is Category.Q:
        if ft is F.IQ3_XS:
            return T.IQ3_XXS
        if ft is F.IQ3_XXS:
            return T.IQ2_S
        return new
    if cat is Category.FFN_DOWN:
        i = _layer_info(model, c.i_ffn_down, name)
        n = c.n_ffn
        falcon = model.arch == "falcon"
        if ft is F.Q2_K:
            new = T.Q3_K
        elif ft is F.Q2_K_S:
            if i < n // 8:
                new = T.Q4_K
        elif ft is F.IQ3_XXS and not imatrix:
            new = T.Q4_K if i < n // 8 else T.Q3_K
        elif ft is F.Q3_K_M:
            new = T.Q5_K if i < n // 16 else T.Q4_K if not falcon or _use_more_bits(i, n) else T.Q3_K
        elif ft is F.IQ3_M and (i < n // 8 or (n_expert == 8 and _use_more_bits(i, n))):
            new = T.Q4_K
        elif ft is F.Q3_K_L:
            new = T.Q4_K if falcon else T.Q5_K
        elif ft is F.Q4_K_M:
            if falcon:
                new = T.Q6_K if i < n // 16 else T.Q5_K if _use_more_bits(i, n) else T.Q4_K
            elif _use_more_bits(i, n):
                new = T.Q6_K
        elif i < n // 8 and ft in (F.IQ4_NL, F.IQ4_XS) and not imatrix:
            new = T.Q5_K
        elif ft is F.Q5_K_M and _use_more_bits(i, n):
            new = T.Q6_K
        elif ft is F.Q4_K_S and not falcon and i < n // 8:
            new = T.Q5_K
        elif ft in (F.Q4_0, F.Q5_0) and imatrix and i < n // 8:
            new = T.Q4_1 if ft is F.Q4_0 else T.Q5_1
        c.i_ffn_down += 1
        return new
    if cat is Category.ATTN_OUTPUT:
        if model.arch != "falcon":
            if n_expert == 8:
                if ft in _MOE8_ATTN_OUT_Q5K:
                    new = T.Q5_K
            elif ft is F.Q2_K:
                new = T.Q3_K
            elif ft is F.IQ3_XXS:
                new = T.IQ3_S
            elif ft is F.Q3_K_M:
                new = T.Q4_K
            elif ft is F.Q3_K_L:
                new = T.Q5_K
            elif ft is F.IQ3_M:
                new = T.Q4_K
        elif ft is F.Q3_K_L:
            new = T.Q4_K
        return new
    # (llama.cpp's ATTENTION_QKV branch is unreachable: attn_qkv is attn_v-like and handled above.)
    if cat in (Category.FFN_GATE, Category.FFN_UP):
        running = c.i_ffn_gate if cat is Category.FFN_GATE else c.i_ffn_up
        i = _layer_info(model, running, name)
        if ft is F.IQ3_XS and c.n_ffn // 8 <= i < 7 * c.n_ffn // 8:
            new = T.IQ3_XXS
        if cat is Category.FFN_GATE:
            c.i_ffn_gate += 1
        else:
            c.i_ffn_up += 1
        return new
    return new


@dataclass(frozen=True, eq=False)
class _Prepared:
    """What does not depend on the file type (the planner asks for many file types of one model)."""

    tensors: tuple[tuple[str, tuple[int, ...], GGMLType], ...]
    cats: tuple[Category, ...]
    # Quantizable tensors whose rules read or advance a running counter, in the quantizer's
    # visiting order (the counters depend on it).
    counted: tuple[int, ...]
    # The other quantizable tensors by (category, shape): their rules see nothing else, so the
    # layers of a model repeat each answer.
    uniform: tuple[tuple[int, ...], ...]
    n_attention_wv: int
    tied: bool  # no output.weight: the token embeddings serve as the output


# Keyed by identity: the planner passes one tuple per inventory, and hashing its 1,000 entries on
# every call cost more than the work saved.
@by_identity(maxsize=PER_MODEL)
def _prepare(tensors: tuple[tuple[str, tuple[int, ...], GGMLType], ...]) -> _Prepared:
    names = [n for n, _, _ in tensors]
    cats = tuple(category(n) for n in names)
    # allows_quantization, the name test (cached) first
    allowed = _name_allows_quantization
    quantizable = [i for i in visit_order(names) if allowed(names[i]) and ggml_n_dims(tensors[i][1]) >= 2]
    groups: dict[tuple[Category, tuple[int, ...]], list[int]] = {}
    for i in quantizable:
        if cats[i] not in _COUNTED:
            groups.setdefault((cats[i], tensors[i][1]), []).append(i)
    return _Prepared(
        tensors,
        cats,
        tuple(i for i in quantizable if cats[i] in _COUNTED),
        tuple(tuple(g) for g in groups.values()),
        sum(1 for c in cats if c in _ATTN_V_LIKE),
        "output.weight" not in names,
    )


@dataclass(frozen=True, eq=False)
class TypeGroups:
    """The quantizable tensors of one model split into groups whose rules see the same inputs, so
    one decision per group serves every member, whatever the file type (without --tensor-type
    patterns, which match names). The tensors outside every group keep their source type."""

    members: tuple[tuple[int, ...], ...]  # indices into the tensors, first member decided
    shapes: tuple[tuple[int, ...], ...]  # the members' common shape
    # The running counters (attn_v, ffn_down, ffn_gate, ffn_up) at the first member, in the
    # quantizer's visiting order: None for the categories whose rules read none.
    counters: tuple[tuple[int, int, int, int] | None, ...]
    n_attention_wv: int


@by_identity(maxsize=PER_MODEL)
def _groups(p: _Prepared, n_layer: int, moe: bool) -> TypeGroups:
    """Counted tensors grouped by category, shape and what their rules test of the running counters
    and of the layer index (`i < n/8`, `use_more_bits(i, n)`, ...): the counters advance the same
    way for every file type, so each tensor's counters are known before any rule runs."""
    n, n_wv = n_layer, p.n_attention_wv
    keyed: dict[object, list[int]] = {}
    state: dict[object, tuple[int, int, int, int]] = {}
    a = d = g = u = 0
    for idx in p.counted:
        name, ne, _ = p.tensors[idx]
        cat = p.cats[idx]
        snap = (a, d, g, u)
        key: object
        if cat in _ATTN_V_LIKE:
            key = (cat, ne, a < 2, a < 4, _use_more_bits(a, n_wv))
            a += 1
        else:
            running = d if cat is Category.FFN_DOWN else g if cat is Category.FFN_GATE else u
            i = _layer_of(name) if moe else running
            if moe and not 0 <= i < n:
                key = idx  # _layer_info raises for it: on its own
            elif cat is Category.FFN_DOWN:
                key = (cat, ne, d < n // 8, i < n // 8, i < n // 16, _use_more_bits(i, n))
            else:
                key = (cat, ne, n // 8 <= i < 7 * n // 8)
            if cat is Category.FFN_DOWN:
                d += 1
            elif cat is Category.FFN_GATE:
                g += 1
            else:
                u += 1
        if key not in keyed:
            keyed[key] = []
            state[key] = snap
        keyed[key].append(idx)
    members = [tuple(m) for m in keyed.values()] + list(p.uniform)
    counters: list[tuple[int, int, int, int] | None] = [state[k] for k in keyed]
    counters += [None] * len(p.uniform)
    return TypeGroups(tuple(members), tuple(p.tensors[m[0]][1] for m in members), tuple(counters), n_wv)


def _decider(
    model: QuantModel, ft: FileType, opts: QuantOptions, p: _Prepared, counters: _Counters
) -> Callable[[int], GGMLType]:
    imatrix = ft in NEEDS_IMATRIX if opts.imatrix is None else opts.imatrix
    default = ft.default_type
    patterns = [(re.compile(pat), t) for pat, t in opts.tensor_types]

    def decide(idx: int) -> GGMLType:
        name, ne, src = p.tensors[idx]
        cat = p.cats[idx]
        if opts.leave_output_tensor and cat is Category.OUTPUT:
            return src
        if opts.token_embedding_type is not None and cat is Category.TOKEN_EMBD:
            return opts.token_embedding_type
        if opts.output_tensor_type is not None and cat is Category.OUTPUT:
            return opts.output_tensor_type
        if default in UNQUANTIZED:
            return default
        manual = next((t for pat, t in patterns if pat.search(name)), None) if patterns else None
        if manual is not None:
            return fallback(manual, ne[0])
        if opts.pure:
            return fallback(default, ne[0])
        return fallback(_impl(model, ft, opts, imatrix, p.tied, counters, name, ne, cat, default), ne[0])

    return decide


def grouped_types(
    model: QuantModel,
    ft: FileType,
    tensors: Sequence[tuple[str, tuple[int, ...], GGMLType]],
    opts: QuantOptions | None = None,
) -> tuple[TypeGroups, list[GGMLType]] | None:
    """`tensor_types` as one type per group of `TypeGroups` (None with --tensor-type patterns: those
    match names, and a matched tensor advances no counter, so every tensor is decided on its own)."""
    opts = opts or QuantOptions()
    if opts.tensor_types:
        return None
    p = _prepare(tensors if isinstance(tensors, tuple) else tuple(tensors))
    groups = _groups(p, model.n_layer, max(1, model.n_expert) > 1)
    c = _Counters(p.n_attention_wv, model.n_layer)
    decide = _decider(model, ft, opts, p, c)
    out = []
    for members, snap in zip(groups.members, groups.counters, strict=True):
        if snap is not None:
            c.i_attention_wv, c.i_ffn_down, c.i_ffn_gate, c.i_ffn_up = snap
        out.append(decide(members[0]))
    return groups, out


def tensor_types(
    model: QuantModel,
    ft: FileType,
    tensors: Sequence[tuple[str, tuple[int, ...], GGMLType]],
    opts: QuantOptions | None = None,
) -> list[GGMLType]:
    """The type llama-quantize gives each tensor (name, ggml shape, type in the source file).

    Returned in the order given; the rules run in the quantizer's own visiting order, since the
    running counters (attn_v index, ffn_down index of dense models) depend on it.
    """
    opts = opts or QuantOptions()
    tensors = tensors if isinstance(tensors, tuple) else tuple(tensors)
    out = [t[2] for t in tensors]
    grouped = grouped_types(model, ft, tensors, opts)
    if grouped is not None:
        for members, new in zip(grouped[0].members, grouped[1], strict=True):
            for idx in members:
                out[idx] = new
        return out
    p = _prepare(tensors)
    decide = _decider(model, ft, opts, p, _Counters(p.n_attention_wv, model.n_layer))
    for idx in p.counted:  # in visiting order: the counters advance as the quantizer's do
        out[idx] = decide(idx)
    for group in p.uniform:
        for idx in group:
            out[idx] = decide(idx)
    return out
