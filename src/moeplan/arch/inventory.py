"""Every tensor of a model's GGUF, as the pinned llama.cpp converter writes it.

Names, shapes (ggml order: ne0 = input features first) and converter dtypes follow
`convert_hf_to_gguf.py` + `conversion/*.py` and the loaders in `src/models/*.cpp` of llama.cpp
build 11434; what differs per architecture lives in its family module (`arch/families/`).
Facts shared by all of them:
- Experts are written as separate `ffn_gate_exps` / `ffn_up_exps` stacks (fusion is opt-in).
- MTP / NextN layers are kept by default where the family says so (`Family.mtp_kept`; `--no-mtp`
  drops them), as `blk.{n_layer}` = one more decoder block plus `nextn.eh_proj` {2E, E} and three
  norms; other families' converters drop them.
- Vision towers go to a separate mmproj file and are not part of this inventory.
"""

import re

from moeplan.arch.registry import family
from moeplan.arch.spec import ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role, TensorSpec
from moeplan.errors import BadGGUF, printable
from moeplan.memo import PER_MODEL, by_identity

__all__ = [
    "Inventory",
    "Role",
    "TensorSpec",
    "block_index",
    "inventory",
    "mtp_default",
    "mtp_supported",
    "role_of",
]


def mtp_supported(spec: ModelSpec) -> bool:
    """Whether the pinned converter can write this model's MTP layers at all."""
    return family(spec.arch).keeps_mtp(spec)


def mtp_default(spec: ModelSpec) -> bool:
    return family(spec.arch).keeps_mtp(spec)


@by_identity(maxsize=PER_MODEL)  # the planner asks for the same model's tensors once per rig and quant
def inventory(spec: ModelSpec, mtp: bool | None = None, *, checkpoint: bool = False) -> Inventory:
    """The tensors of `spec`'s GGUF. `mtp`: keep the MTP layers (None = the converter's default).
    `checkpoint`: the tensors of the HF release instead, MTP layers always included (with GGUF names)."""
    fam = family(spec.arch)
    kept = fam.keeps_mtp(spec)
    keep_mtp = checkpoint or ((kept if mtp is None else mtp) and kept)
    mtp_layers = spec.mtp_layers if keep_mtp else ()
    own_head = (checkpoint and fam.mtp_own_head) or (keep_mtp and fam.mtp_head_written(spec))
    b = Builder()
    fam.head(b, spec)
    for il, layer in enumerate(spec.layers):
        fam.block(b, spec, il, layer, mtp=False, own_head=False)
    for k, layer in enumerate(mtp_layers):
        fam.block(b, spec, spec.n_layer + k, layer, mtp=True, own_head=own_head)
    fam.tail(b, spec)
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


_BLOCK = re.compile(r"blk\.([0-9]{1,9})\.")


def block_index(name: str) -> int:
    """The layer of a `blk.N.` tensor (ASCII digits, as llama.cpp's `blk.%d.` names write it)."""
    m = _BLOCK.match(name)
    if m is None:
        raise BadGGUF(f"tensor '{printable(name)}' has no layer number after 'blk.' (expected blk.N.<name>)")
    return int(m.group(1))


def role_of(name: str, n_layer: int, linear_layers: frozenset[int] = frozenset()) -> tuple[Role, int | None]:
    """Role and layer of a tensor found in a GGUF file. `n_layer`: decoder blocks without MTP
    (block_count − nextn_predict_layers); `linear_layers`: linear-attention block indices, whose
    attn_qkv / attn_gate belong to the recurrent (ssm) part."""
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):  # the latter: Gemma 3n/4 PLE
        return Role.EMBED, None
    if name == "output.weight":
        return Role.OUTPUT, None
    if not name.startswith("blk."):
        return (Role.NORM if "_norm" in name else Role.ATTN), None
    layer = block_index(name)
    if layer >= n_layer:
        return Role.MTP, layer
    for sub, role in _ROLE_BY_SUBSTRING:
        if sub in name:
            return role, layer
    return (Role.SSM if layer in linear_layers else Role.ATTN), layer
