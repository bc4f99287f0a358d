"""Typed weights read from a real GGUF header: the same `Weights` a prediction produces."""

import re
from collections.abc import Mapping

from moeplan.arch.inventory import Role, TensorSpec, block_index, role_of
from moeplan.errors import BadGGUF, printable
from moeplan.memory.weights import TypedTensor, Weights
from moeplan.sources.gguf_header import GGUFModel, Value


def _int_key(meta: Mapping[str, Value], key: str, default: int = 0) -> int:
    v = meta.get(key, default)
    if isinstance(v, list):  # per-layer arrays: the planner needs the common value
        v = max((x for x in v if isinstance(x, int)), default=default)
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def arch_of(model: GGUFModel) -> str:
    arch = model.metadata.get("general.architecture")
    if not isinstance(arch, str):
        raise BadGGUF(f"{model.shards[0].source}: no general.architecture in the header")
    if not re.fullmatch(r"[a-z0-9_.-]{1,64}", arch, re.ASCII):  # llama.cpp's LLM_ARCH_NAMES spelling
        raise BadGGUF(
            f"{model.shards[0].source}: general.architecture '{printable(arch)}' is not an architecture name"
        )
    return arch


def _roles(model: GGUFModel, n_layer: int) -> list[tuple[Role, int | None]]:
    """Each tensor's role and layer; a `blk.` name without a layer number is the file's fault."""
    try:
        linear = frozenset(
            block_index(t.name) for t in model.tensors if t.name.startswith("blk.") and ".ssm_" in t.name
        )
        return [role_of(t.name, n_layer, linear) for t in model.tensors]
    except BadGGUF as e:
        raise BadGGUF(f"{model.shards[0].source}: {e}") from None


def weights_from_gguf(model: GGUFModel) -> Weights:
    meta = model.metadata
    arch = arch_of(model)
    block_count = _int_key(meta, f"{arch}.block_count")
    n_layer = block_count - _int_key(meta, f"{arch}.nextn_predict_layers")
    n_expert = _int_key(meta, f"{arch}.expert_count")
    n_used = _int_key(meta, f"{arch}.expert_used_count")
    typed = []
    expert_layers: set[int] = set()
    for t, (role, layer) in zip(model.tensors, _roles(model, n_layer), strict=True):
        if role.value == "expert" and layer is not None:
            expert_layers.add(layer)
        typed.append(TypedTensor(TensorSpec(t.name, t.shape, role, layer, t.type), t.type, t.nbytes))
    fraction = {il: n_used / n_expert for il in expert_layers} if n_expert else {}
    name = meta.get("general.name")
    ftype = meta.get("general.file_type")
    return Weights(
        str(name) if name else model.shards[0].source, arch, f"file_type {ftype}", tuple(typed), fraction
    )
