"""Every tensor of a model's GGUF, as the pinned llama.cpp converter writes it.

Names, shapes (ggml order: ne0 = input features first) and converter dtypes follow
`convert_hf_to_gguf.py` + `conversion/*.py` and the loaders in `src/models/*.cpp` of llama.cpp
build 11434. Facts worth knowing, each from that source:
- Experts are written as separate `ffn_gate_exps` / `ffn_up_exps` stacks (fusion is opt-in).
- The converter forces F32 on 1-D tensors, `*_norm.weight`, routers (`ffn_gate_inp`,
  `ffn_gate_inp_shexp`), `ssm_conv1d` and every name not ending in `.weight` (biases, `ssm_a`).
- DeepSeek MLA: `kv_b_proj` is split into `attn_k_b` {nope, kv_lora, n_head} and `attn_v_b`
  {kv_lora, v_head, n_head}; `attn_kv_b` is not written.
- MTP / NextN layers: dropped for deepseek2 (always); kept by default for qwen3next, qwen35,
  qwen35moe and glm4moe (`--no-mtp` drops them), as `blk.{n_layer}` = one more decoder block plus
  `nextn.eh_proj` {2E, E} and three norms.
- gpt-oss experts keep their native MXFP4 encoding whatever `--outtype` is.
- Vision towers go to a separate mmproj file and are not part of this inventory.
"""

from dataclasses import dataclass
from enum import StrEnum

from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.memo import by_identity
from moeplan.quant.ggml import GGMLType


class Role(StrEnum):
    EMBED = "embed"
    OUTPUT = "output"
    ATTN = "attn"
    NORM = "norm"
    ROUTER = "router"
    EXPERT = "expert"
    SHARED_EXPERT = "shared_expert"
    DENSE_FFN = "dense_ffn"
    SSM = "ssm"
    MTP = "mtp"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # ggml order
    role: Role
    layer: int | None
    stored: GGMLType | None  # type the converter forces (F32, native MXFP4); None = the --outtype

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Inventory:
    spec: ModelSpec
    tensors: tuple[TensorSpec, ...]
    block_count: int  # n_layer_all: decoder blocks + kept MTP blocks
    mtp_kept: int  # MTP blocks in the file


# Architectures whose pinned converter keeps MTP layers unless `--no-mtp` is given.
MTP_KEPT_BY_DEFAULT = frozenset({"qwen3next", "qwen35", "qwen35moe", "glm4moe"})
# Architectures whose converter can write MTP layers at all (deepseek2 always drops them).
MTP_SUPPORTED = MTP_KEPT_BY_DEFAULT

_F32_SUBSTRINGS = ("ffn_gate_inp.", "ffn_gate_inp_shexp.", "ssm_conv1d.")


def converter_type(name: str, n_dims: int) -> GGMLType | None:
    """`ModelBase.prepare_tensors`: F32 for 1-D tensors, norms, routers, conv1d and non-weights."""
    if n_dims <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return GGMLType.F32
    if any(s in name for s in _F32_SUBSTRINGS):
        return GGMLType.F32
    return None


class _Builder:
    def __init__(self) -> None:
        self.out: list[TensorSpec] = []

    def add(
        self,
        name: str,
        shape: tuple[int, ...],
        role: Role,
        layer: int | None = None,
        stored: GGMLType | None = None,
    ) -> None:
        self.out.append(
            TensorSpec(
                name, shape, role, layer, stored if stored is not None else converter_type(name, len(shape))
            )
        )


def _gqa(b: _Builder, p: str, il: int, a: Attention, e: int, spec: ModelSpec, role: Role) -> None:
    q_out = a.n_head * a.head_dim_k
    kv_k, kv_v = a.n_head_kv * a.head_dim_k, a.n_head_kv * a.head_dim_v
    # Qwen3-Next / Qwen3.5 full-attention layers carry their output gate inside attn_q.
    q_rows = 2 * q_out if spec.arch in ("qwen3next", "qwen35", "qwen35moe") else q_out
    b.add(f"{p}.attn_q.weight", (e, q_rows), role, il)
    b.add(f"{p}.attn_k.weight", (e, kv_k), role, il)
    b.add(f"{p}.attn_v.weight", (e, kv_v), role, il)
    b.add(f"{p}.attn_output.weight", (a.n_head * a.head_dim_v, e), role, il)
    if spec.has("attn_bias") or spec.arch == "gpt-oss":
        b.add(f"{p}.attn_q.bias", (q_out,), role, il)
        b.add(f"{p}.attn_k.bias", (kv_k,), role, il)
        b.add(f"{p}.attn_v.bias", (kv_v,), role, il)
    if spec.arch == "gpt-oss":
        b.add(f"{p}.attn_output.bias", (e,), role, il)
        b.add(f"{p}.attn_sinks.weight", (a.n_head,), role, il)
    if spec.arch in ("qwen3", "qwen3moe", "gemma3", "qwen3next", "qwen35", "qwen35moe") or spec.has(
        "qk_norm"
    ):
        norm_role = Role.MTP if role is Role.MTP else Role.NORM
        b.add(f"{p}.attn_q_norm.weight", (a.head_dim_k,), norm_role, il)
        b.add(f"{p}.attn_k_norm.weight", (a.head_dim_k,), norm_role, il)


def _mla(b: _Builder, p: str, il: int, a: Attention, e: int, role: Role) -> None:
    qk_head = a.qk_nope_head_dim + a.qk_rope_head_dim
    norm_role = Role.MTP if role is Role.MTP else Role.NORM
    if a.q_lora_rank:
        b.add(f"{p}.attn_q_a.weight", (e, a.q_lora_rank), role, il)
        b.add(f"{p}.attn_q_a_norm.weight", (a.q_lora_rank,), norm_role, il)
        b.add(f"{p}.attn_q_b.weight", (a.q_lora_rank, a.n_head * qk_head), role, il)
    else:
        b.add(f"{p}.attn_q.weight", (e, a.n_head * qk_head), role, il)
    b.add(f"{p}.attn_kv_a_mqa.weight", (e, a.kv_lora_rank + a.qk_rope_head_dim), role, il)
    b.add(f"{p}.attn_kv_a_norm.weight", (a.kv_lora_rank,), norm_role, il)
    b.add(f"{p}.attn_k_b.weight", (a.qk_nope_head_dim, a.kv_lora_rank, a.n_head), role, il)
    b.add(f"{p}.attn_v_b.weight", (a.kv_lora_rank, a.mla_v_head_dim, a.n_head), role, il)
    b.add(f"{p}.attn_output.weight", (a.n_head * a.mla_v_head_dim, e), role, il)


def _gated_deltanet(b: _Builder, p: str, il: int, a: Attention, e: int, arch: str, role: Role) -> None:
    """Qwen3-Next / Qwen3.5 linear-attention layer (`in_proj_qkvz` split into attn_qkv + attn_gate)."""
    key_dim = a.linear_k_heads * a.linear_k_head_dim
    value_dim = a.linear_v_heads * a.linear_v_head_dim
    conv_dim = 2 * key_dim + value_dim
    b.add(f"{p}.attn_qkv.weight", (e, conv_dim), role, il)
    b.add(f"{p}.attn_gate.weight", (e, value_dim), role, il)
    b.add(f"{p}.ssm_conv1d.weight", (a.conv_kernel, conv_dim), role, il)
    b.add(f"{p}.ssm_dt.bias", (a.linear_v_heads,), role, il)
    b.add(f"{p}.ssm_a", (a.linear_v_heads,), role, il)
    if arch == "qwen3next":
        b.add(f"{p}.ssm_ba.weight", (e, 2 * a.linear_v_heads), role, il)
    else:
        b.add(f"{p}.ssm_beta.weight", (e, a.linear_v_heads), role, il)
        b.add(f"{p}.ssm_alpha.weight", (e, a.linear_v_heads), role, il)
    b.add(f"{p}.ssm_norm.weight", (a.linear_v_head_dim,), Role.MTP if role is Role.MTP else Role.NORM, il)
    b.add(f"{p}.ssm_out.weight", (value_dim, e), role, il)


def _ffn(b: _Builder, p: str, il: int, f: FFN, e: int, arch: str, mtp: bool) -> None:
    dense_role = Role.MTP if mtp else Role.DENSE_FFN
    if f.kind is FFNKind.DENSE:
        b.add(f"{p}.ffn_gate.weight", (e, f.n_ff), dense_role, il)
        b.add(f"{p}.ffn_up.weight", (e, f.n_ff), dense_role, il)
        b.add(f"{p}.ffn_down.weight", (f.n_ff, e), dense_role, il)
        return
    router, expert, shared = (Role.MTP,) * 3 if mtp else (Role.ROUTER, Role.EXPERT, Role.SHARED_EXPERT)
    x = f.n_expert
    b.add(f"{p}.ffn_gate_inp.weight", (e, x), router, il)
    if arch == "gpt-oss":
        b.add(f"{p}.ffn_gate_inp.bias", (x,), router, il)
    if arch in ("deepseek2", "glm4moe"):
        b.add(f"{p}.exp_probs_b.bias", (x,), router, il)
    # gpt-oss ships its experts as MXFP4 and the converter repacks them without dequantizing.
    native = GGMLType.MXFP4 if arch == "gpt-oss" else None
    b.add(f"{p}.ffn_gate_exps.weight", (e, f.n_ff_exp, x), expert, il, native)
    b.add(f"{p}.ffn_up_exps.weight", (e, f.n_ff_exp, x), expert, il, native)
    b.add(f"{p}.ffn_down_exps.weight", (f.n_ff_exp, e, x), expert, il, native)
    if arch == "gpt-oss":
        b.add(f"{p}.ffn_gate_exps.bias", (f.n_ff_exp, x), expert, il)
        b.add(f"{p}.ffn_up_exps.bias", (f.n_ff_exp, x), expert, il)
        b.add(f"{p}.ffn_down_exps.bias", (e, x), expert, il)
    if f.n_ff_shexp:
        if arch in ("qwen3next", "qwen35moe"):
            b.add(f"{p}.ffn_gate_inp_shexp.weight", (e, 1), shared, il)  # written 2-D {E, 1}
        b.add(f"{p}.ffn_gate_shexp.weight", (e, f.n_ff_shexp), shared, il)
        b.add(f"{p}.ffn_up_shexp.weight", (e, f.n_ff_shexp), shared, il)
        b.add(f"{p}.ffn_down_shexp.weight", (f.n_ff_shexp, e), shared, il)


# The norm that precedes the FFN, by arch (HF post_attention_layernorm maps to one or the other).
_POST_ATTN_NORM_ARCHS = frozenset({"gpt-oss", "qwen3next", "qwen35", "qwen35moe", "glm4moe"})


def _block(b: _Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, mtp_head: bool = False) -> None:
    p, e, a = f"blk.{il}", spec.n_embd, layer.attn
    role = Role.MTP if mtp else Role.ATTN
    norm = Role.MTP if mtp else Role.NORM
    b.add(f"{p}.attn_norm.weight", (e,), norm, il)
    if a.kind is AttnKind.MLA:
        _mla(b, p, il, a, e, role)
    elif a.kind is AttnKind.LINEAR:
        _gated_deltanet(b, p, il, a, e, spec.arch, Role.MTP if mtp else Role.SSM)
    else:
        _gqa(b, p, il, a, e, spec, role)
    if spec.arch == "gemma3":
        b.add(f"{p}.post_attention_norm.weight", (e,), norm, il)
        b.add(f"{p}.ffn_norm.weight", (e,), norm, il)
        b.add(f"{p}.post_ffw_norm.weight", (e,), norm, il)
    elif spec.arch in _POST_ATTN_NORM_ARCHS:
        b.add(f"{p}.post_attention_norm.weight", (e,), norm, il)
    else:
        b.add(f"{p}.ffn_norm.weight", (e,), norm, il)
    _ffn(b, p, il, layer.ffn, e, spec.arch, mtp)
    if mtp:
        b.add(f"{p}.nextn.eh_proj.weight", (2 * e, e), Role.MTP, il)
        b.add(f"{p}.nextn.enorm.weight", (e,), Role.MTP, il)
        b.add(f"{p}.nextn.hnorm.weight", (e,), Role.MTP, il)
        b.add(f"{p}.nextn.shared_head_norm.weight", (e,), Role.MTP, il)
        if mtp_head:  # DeepSeek's checkpoint gives its MTP module its own embedding and head copies
            b.add(f"{p}.nextn.embed_tokens.weight", (e, spec.n_vocab), Role.MTP, il)
            b.add(f"{p}.nextn.shared_head_head.weight", (e, spec.n_vocab), Role.MTP, il)


def _global_head(b: _Builder, spec: ModelSpec) -> None:
    e = spec.n_embd
    if spec.has("rope_freqs"):
        head_dim = spec.layers[0].attn.head_dim_k
        b.add("rope_freqs.weight", (head_dim // 2,), Role.ATTN)
    b.add("token_embd.weight", (e, spec.n_vocab), Role.EMBED)


def _global_tail(b: _Builder, spec: ModelSpec) -> None:
    b.add("output_norm.weight", (spec.n_embd,), Role.NORM)
    if not spec.tied_embeddings:
        b.add("output.weight", (spec.n_embd, spec.n_vocab), Role.OUTPUT)


def mtp_default(arch: str) -> bool:
    return arch in MTP_KEPT_BY_DEFAULT


@by_identity(maxsize=128)  # the planner asks for the same model's tensors once per rig and quant
def inventory(spec: ModelSpec, mtp: bool | None = None, *, checkpoint: bool = False) -> Inventory:
    """The tensors of `spec`'s GGUF. `mtp`: keep the MTP layers (None = the converter's default).
    `checkpoint`: the tensors of the HF release instead, MTP layers always included (with GGUF names)."""
    keep_mtp = checkpoint or ((mtp_default(spec.arch) if mtp is None else mtp) and spec.arch in MTP_SUPPORTED)
    mtp_layers = spec.mtp_layers if keep_mtp else ()
    mtp_head = checkpoint and spec.arch == "deepseek2"
    b = _Builder()
    _global_head(b, spec)
    for il, layer in enumerate(spec.layers):
        _block(b, spec, il, layer, mtp=False)
    for k, layer in enumerate(mtp_layers):
        _block(b, spec, spec.n_layer + k, layer, mtp=True, mtp_head=mtp_head)
    _global_tail(b, spec)
    return Inventory(spec, tuple(b.out), spec.n_layer + len(mtp_layers), len(mtp_layers))


_ROLE_BY_SUBSTRING = (
    ("_shexp", Role.SHARED_EXPERT),
    ("_exps", Role.EXPERT),
    ("_chexps", Role.EXPERT),
    ("ffn_gate_inp", Role.ROUTER),
    ("exp_probs_b", Role.ROUTER),
    ("_norm", Role.NORM),
    ("ssm_", Role.SSM),
    ("ffn_", Role.DENSE_FFN),
)


def role_of(name: str, n_layer: int, linear_layers: frozenset[int] = frozenset()) -> tuple[Role, int | None]:
    """Role and layer of a tensor found in a GGUF file. `n_layer`: decoder blocks without MTP
    (block_count − nextn_predict_layers); `linear_layers`: linear-attention block indices, whose
    attn_qkv / attn_gate belong to the recurrent (ssm) part."""
    if name == "token_embd.weight":
        return Role.EMBED, None
    if name == "output.weight":
        return Role.OUTPUT, None
    if not name.startswith("blk."):
        return (Role.NORM if "_norm" in name else Role.ATTN), None
    layer = int(name.split(".")[1])
    if layer >= n_layer:
        return Role.MTP, layer
    for sub, role in _ROLE_BY_SUBSTRING:
        if sub in name:
            return role, layer
    return (Role.SSM if layer in linear_layers else Role.ATTN), layer
