"""The operations every face offers (CLI now, web later), composed from the core so that no face
re-derives a number."""

from pathlib import Path

from moeplan.arch.inventory import MTP_SUPPORTED, inventory, mtp_default
from moeplan.errors import MoeplanError
from moeplan.memory.report import SizeReport, size_report
from moeplan.memory.weights import file_bytes, predict
from moeplan.quant.native import native_bytes
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import CatalogEntry, resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_weights import weights_from_gguf


def _mtp_note(entry: CatalogEntry, mtp: bool | None) -> str:
    spec = entry.spec()
    n = len(spec.mtp_layers)
    if not n:
        return "none (the model has no MTP layers)"
    if spec.arch not in MTP_SUPPORTED:
        return f"dropped ({n} MTP layer(s)): the pinned converter never writes them for {spec.arch}"
    keep = mtp_default(spec.arch) if mtp is None else mtp
    why = "the pinned converter's default" if mtp is None else "as asked"
    if keep:
        return (
            f"kept ({n} layer(s), {why}); published GGUFs made before llama.cpp kept them lack them: --no-mtp"
        )
    return f"dropped ({n} layer(s), {why}); the pinned converter keeps them by default: --mtp"


def predict_size(model: str, quant: str, mtp: bool | None = None) -> SizeReport:
    entry = resolve(model)
    ft = FileType.parse(quant)
    spec = entry.spec()
    w = predict(inventory(spec, mtp=mtp), ft)
    notes = [
        "stock llama-quantize recipe (pinned build 11434); uploads with custom per-tensor recipes "
        "(e.g. unsloth UD, ik_llama quants) differ: run `moeplan inspect` on the real file",
        "file_bytes = exact tensor data and table, plus tokenizer metadata estimated from the vocabulary",
    ]
    release = native_bytes(inventory(spec, checkpoint=True).tensors, entry.release_format)
    return size_report(
        w,
        source="predicted",
        file_bytes=file_bytes(w, spec.n_vocab),
        mtp=_mtp_note(entry, mtp),
        notes=notes,
        native=(entry.release_format, release),
    )


def inspect_file(path: str) -> SizeReport:
    p = Path(path)
    if not p.exists():
        raise MoeplanError(f"no such file: {path}")
    model = read_local(p)
    w = weights_from_gguf(model)
    n_mtp = sum(1 for t in w.tensors if t.spec.role.value == "mtp")
    return size_report(
        w,
        source="gguf header",
        file_bytes=model.file_bytes,
        mtp=f"{n_mtp} MTP tensors in the file" if n_mtp else "none in the file",
        notes=[f"{len(model.shards)} file(s); header bytes read: {model.header_bytes_read}"],
    )
