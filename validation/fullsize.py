"""Full-size catalog models in the pinned llama.cpp, header only: every tensor at its real shape
(the file is sparse: a few MB on disk however large the model), read by llama.cpp's own loader.

- `llama-fit-params -v` prints `print_info: model params`: llama.cpp's parameter count of the file
  moeplan's inventory describes, compared with the inventory's and with the published figure;
- `llama-quantize --dry-run FILE Q4_K_M` gives the quantized size at real shapes (the per-tensor
  recipe is checked at shrunk widths by `types`; this checks the sizes where widths matter).
Neither tool reads tensor data, so a 1 TB model costs a second.
"""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from moeplan.arch.inventory import inventory
from moeplan.memory.weights import llama_quantize
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog
from validation.llamacpp import MIB, _header, parse_quantize, run, run_named, write_result
from validation.materialize import SOURCE_TYPE, write_gguf

_PARAMS = re.compile(r"print_info: model params\s+=\s+([\d.]+) ([TBMK])")
_UNIT = {"T": 1e12, "B": 1e9, "M": 1e6, "K": 1e3}


def print_info_params(log: str) -> tuple[float, float] | None:
    """llama.cpp's `model params = 30.53 B` as (value, unit): printed with 2 decimals."""
    m = _PARAMS.search(log)
    return (float(m.group(1)), _UNIT[m.group(2)]) if m else None


def fullsize_check(model_id: str, folder: Path) -> dict[str, Any]:
    entry = load_catalog()[model_id]
    inv = inventory(entry.spec())  # the converter's default (MTP blocks as it writes them)
    ours = sum(t.n_elements for t in inv.tensors)
    path = folder / f"{model_id}.gguf"
    write_gguf(inv, path, header_only=True)
    try:
        fit = run("llama-fit-params", ["-m", str(path), "-c", "512", "-v"])
        printed = print_info_params(fit.stderr + fit.stdout)
        dry = parse_quantize(run("llama-quantize", ["--dry-run", str(path), "Q4_K_M"]))
    finally:
        path.unlink(missing_ok=True)
    predicted_q = llama_quantize(inv, FileType.Q4_K_M, source_type=SOURCE_TYPE).tensor_bytes / MIB
    measured_params = printed[0] * printed[1] if printed else None
    params_ok = printed is not None and round(ours / printed[1], 2) == printed[0]
    q_err = None if dry.quant_mib is None else round(dry.quant_mib - predicted_q, 3)
    published = entry.params_published
    no_mtp = sum(t.n_elements for t in inventory(entry.spec(), mtp=False).tensors)
    return {
        "id": f"fullsize/{model_id}",
        "model": model_id,
        "arch": inv.spec.arch,
        "what": "full-size header-only GGUF: llama.cpp print_info params vs inventory; Q4_K_M dry-run MiB",
        "predicted": {"params": ours, "params_without_mtp": no_mtp, "q4_k_m_mib": round(predicted_q, 2)},
        "measured": {"print_info_params": measured_params, "q4_k_m_mib": dry.quant_mib},
        "published": {"total": published.total, "active": published.active},
        "error": {
            "params_vs_print_info": None if measured_params is None else ours - measured_params,
            "params_vs_published_pct": round((no_mtp - published.total) / published.total * 100, 2),
            "q4_k_m_mib": q_err,
        },
        "command": fit.shell,
        # fit-params may exit non-zero (the model does not fit this machine): its print_info counts
        "ok": params_ok and q_err is not None and abs(q_err) <= 0.006,
    }


def run_fullsize(model_ids: Iterable[str] | None = None) -> dict[str, Any]:
    ids = list(model_ids or load_catalog())
    with tempfile.TemporaryDirectory(prefix="moeplan-fullsize-") as tmp:
        comparisons = [fullsize_check(i, Path(tmp)) for i in ids]
    payload = _header(
        "fullsize",
        "Full-size models in llama.cpp's loader: parameter counts and Q4_K_M sizes at real shapes",
        comparisons,
        models=len(ids),
        architectures=sorted({c["arch"] for c in comparisons}),
    )
    write_result("fullsize", payload)
    return payload


RUNNERS = {"fullsize": run_fullsize}


def main(argv: Sequence[str] | None = None) -> int:
    return run_named(RUNNERS, argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
