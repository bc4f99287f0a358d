"""Dry runs of the pinned llama.cpp's CUDA build on a lent GPU, against moeplan's per-GPU figures.

Run by `validation/gpu_dry_run.sh` (which builds llama.cpp with -DGGML_CUDA=ON first); never by the
tests, which check only `cases` and `compare` here. For each materialised catalog model
(`validation.materialize`: real layer structure, shrunk widths) and each case (every layer on the
GPU, experts on the CPU, -ub 512 and 2048, flash attention on and off), `llama-fit-params
--fit-print on -lv 4` prints the breakdown llama.cpp would allocate (model, context, compute per
buffer type) without allocating it; moeplan predicts the same terms for CUDA0 and the host. The
result is one dated JSON file naming the GPU, for tests/data once reviewed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moeplan.engines.builds import PINNED_BUILD
from moeplan.engines.llamacpp import CPU, Frontend, parse_placement, plan_memory
from moeplan.memory.kv import CacheConfig
from validation.llamacpp import parse_breakdown_table
from validation.runtime import breakdown_rows, subject

CTX = 32768
# dense, MoE, sliding window with sinks and MXFP4 experts, hybrid recurrent
MODELS = ("qwen3", "qwen3moe", "gpt-oss", "qwen35")
GPU = "CUDA0"


@dataclass(frozen=True)
class Case:
    placement: str  # "gpu" (every layer) or "experts" (expert stacks on the CPU)
    n_ubatch: int
    flash_attn: bool

    @property
    def label(self) -> str:
        return f"{self.placement} ub{self.n_ubatch} fa{'on' if self.flash_attn else 'off'}"

    def flags(self) -> str:
        return "-ngl 99" + (" -ot .ffn_.*_exps.=CPU" if self.placement == "experts" else "")

    def args(self, model: Path, ctx: int = CTX) -> list[str]:
        """llama-fit-params' arguments: a dry run with these settings and no fitting."""
        return [
            "-m", str(model), "-c", str(ctx), *self.flags().split(),
            "-ub", str(self.n_ubatch), "-b", str(max(2048, self.n_ubatch)),
            "-fa", "on" if self.flash_attn else "off", "--fit-print", "on", "-lv", "4",
        ]  # fmt: skip


def cases(moe: bool) -> list[Case]:
    """Every placement, micro-batch and flash-attention setting the issue asks for."""
    places = ("gpu", "experts") if moe else ("gpu",)
    return [Case(p, ub, fa) for p in places for ub in (512, 2048) for fa in (True, False)]


def predicted(key: str, case: Case, ctx: int = CTX) -> dict[str, dict[str, float]]:
    """moeplan's figures in the breakdown's rows (MiB): the host and CUDA0."""
    s = subject(key)
    ub = case.n_ubatch
    cfg = CacheConfig(n_ctx=ctx, n_ubatch=ub, n_batch=max(2048, ub), flash_attn=case.flash_attn)
    place = parse_placement(case.flags())
    mp = plan_memory(s.inventory, s.weights, cfg, place, (GPU,), Frontend("llama-fit-params"))
    return breakdown_rows(mp, ((CPU, "Host"), (GPU, GPU)))


def compare(pred: dict[str, dict[str, float]], got: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Predicted minus logged per row and term; the breakdown prints whole MiB (truncated), so a
    difference within 1 MiB is none. Rows are matched by prefix ("CUDA0 (NVIDIA H200)" is CUDA0)."""
    out: dict[str, Any] = {}
    for row, terms in pred.items():
        logged = next((v for k, v in got.items() if k == row or k.startswith(row + " ")), None)
        if logged is None:
            out[row] = None
            continue
        out[row] = {t: round(terms[t] - logged[t], 2) for t in ("model", "context", "compute")}
    return out


def gpu_name() -> str:
    p = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return p.stdout.strip().splitlines()[0] if p.returncode == 0 and p.stdout.strip() else "unknown GPU"


def run_all(bin_dir: Path, deadline: float) -> dict[str, Any]:
    rows = []
    for key in MODELS:
        s = subject(key)
        for case in cases(s.spec.is_moe):
            if time.monotonic() > deadline:
                rows.append({"model": key, "case": case.label, "skipped": "time budget spent"})
                continue
            args = case.args(s.path)
            t0 = time.monotonic()
            tool = str(bin_dir / "llama-fit-params")
            p = subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, check=False)
            got = parse_breakdown_table(p.stderr + "\n" + p.stdout)
            pred = predicted(key, case)
            rows.append(
                {
                    "model": key,
                    "catalog": s.model,
                    "case": case.label,
                    "args": args[2:],
                    "rc": p.returncode,
                    "seconds": round(time.monotonic() - t0, 2),
                    "logged_mib": got,
                    "predicted_mib": {r: {k: round(v, 2) for k, v in t.items()} for r, t in pred.items()},
                    "error_mib": compare(pred, got),
                    "log_tail": "" if got else (p.stderr + p.stdout)[-1500:],
                }
            )
            print(key, case.label, "rc", p.returncode, json.dumps(rows[-1]["error_mib"]), flush=True)
    return {
        "name": "gpu_dry_run",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gpu": gpu_name(),
        "llamacpp_build": PINNED_BUILD,
        "ctx": CTX,
        "runs": rows,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, required=True, help="bin folder of the CUDA build")
    ap.add_argument("--out", type=Path, required=True, help="folder for the dated JSON")
    ap.add_argument("--budget-s", type=float, default=240.0, help="stop starting runs after this long")
    a = ap.parse_args(argv)
    payload = run_all(a.bin, time.monotonic() + a.budget_s)
    slug = "".join(c if c.isalnum() else "-" for c in payload["gpu"].split(",")[0]).strip("-")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"gpu_dry_run-{time.strftime('%Y%m%d', time.gmtime())}-{slug}.json"
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print("wrote", path)
    return 0 if all(r.get("rc", 0) == 0 for r in payload["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
