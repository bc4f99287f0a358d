"""The size report that `size`, `inspect` and `compare` print (and the web app will serve)."""

from pydantic import BaseModel

from moeplan.memory.weights import Weights

# Roles folded into the four groups people ask about first.
_GROUPS = {
    "experts": ("expert", "router", "shared_expert"),
    "attention": ("attn", "ssm"),
    "embeddings": ("embed", "output"),
}


class SizeReport(BaseModel):
    model: str
    arch: str
    quant: str
    source: str  # "predicted" (config + stock llama-quantize recipe) or "gguf header"
    file_bytes: int
    tensor_bytes: int
    bits_per_weight: float
    params_total: int  # without MTP layers: one count per model (Weights.params_total)
    params_active: int
    active_bytes: int
    by_role: dict[str, int]
    by_group: dict[str, int]
    type_histogram: dict[str, int]
    n_tensors: int
    mtp: str
    notes: list[str]
    native_format: str | None = None  # the official safetensors release, for vLLM / SGLang
    native_bytes: int | None = None
    params_mtp: int = 0  # parameters of the MTP layers the file holds, beside params_total


def group_bytes(by_role: dict[str, int]) -> dict[str, int]:
    out = {g: sum(by_role.get(r, 0) for r in roles) for g, roles in _GROUPS.items()}
    grouped = {r for roles in _GROUPS.values() for r in roles}
    out["rest"] = sum(v for r, v in by_role.items() if r not in grouped)
    return out


def size_report(
    w: Weights,
    *,
    source: str,
    file_bytes: int,
    mtp: str,
    notes: list[str],
    native: tuple[str, int] | None = None,
) -> SizeReport:
    by_role = w.bytes_by_role()
    return SizeReport(
        model=w.model,
        arch=w.arch,
        quant=w.quant,
        source=source,
        file_bytes=file_bytes,
        tensor_bytes=w.tensor_bytes,
        bits_per_weight=round(w.bits_per_weight, 4),
        params_total=w.params_total,
        params_active=w.params_active,
        params_mtp=w.params_mtp,
        active_bytes=w.active_bytes,
        by_role=by_role,
        by_group=group_bytes(by_role),
        type_histogram=w.type_histogram(),
        n_tensors=len(w.tensors),
        mtp=mtp,
        notes=notes,
        native_format=native[0] if native else None,
        native_bytes=native[1] if native else None,
    )
