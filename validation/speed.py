"""Speed on this machine: `llama-bench` against the speed model, with the host measured first.

A VM's CPU speed is on no datasheet and changes from one session to the next (the same 2-core VM
ran the real Gemma's pp64 at 907 and at 300 tokens/s on different days), so the host is measured
before anything is predicted: `llama-bench` on three *dense* probe models (materialised, none of
them a target) fixes three host factors that scale the calibration fitted on published data
(`moeplan.perf.calibration`): CPU matmul throughput (from pp), per-thread memory streaming and
per-layer overhead (from tg; a large-weight and a small-weight probe separate the two). The
targets are then predicted, not fitted: the real Gemma-3-270M Q4_K_M file and two materialised
MoE models, qwen3moe quantized to Q4_K_M and gpt-oss to MXFP4_MOE by llama-quantize. Issue #6
asks for pp64 and tg32 within 25%.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from moeplan.engines.llamacpp import Frontend, MemoryPlan, parse_placement, plan_memory
from moeplan.hardware.detect import detect
from moeplan.hardware.spec import Node
from moeplan.memo import by_identity
from moeplan.memory.kv import CacheConfig
from moeplan.memory.weights import Weights, predict
from moeplan.perf.calibration import CALIBRATION, Calibration
from moeplan.perf.estimate import speed
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog
from validation.llamacpp import _header, run, run_named, write_result
from validation.materialize import materialize
from validation.runtime import ARCH_MODELS, GEMMA, TIMEOUT, Subject, stored_weights, subject

THREADS = 2
PROMPT, GEN = 64, 32
TOLERANCE = 0.25
# (materialised model, llama-quantize file type; None = as materialised, F16 with F32 norms).
# "wide": materialised at width 2048 instead of 256 (~230 MB at Q4_K_M): the small probes stay in
# the CPU caches, so only a probe larger than them measures DRAM streaming as the targets see it.
PROBES: tuple[tuple[str, str | None], ...] = (("llama", None), ("llama", "Q4_K_M"), ("llama-wide", "Q4_K_M"))
WIDE = 2048
TARGETS: tuple[tuple[str, str | None], ...] = (
    (GEMMA, None),
    ("qwen3moe", "Q4_K_M"),
    ("gpt-oss", "MXFP4_MOE"),
)
_GRID = [math.exp(math.log(0.05) + i * (math.log(20.0) - math.log(0.05)) / 60) for i in range(61)]


@dataclass(frozen=True)
class BenchModel:
    key: str  # "qwen3moe:Q4_K_M"
    subject: Subject
    path: str
    weights: Weights


def bench_model(key: str, quant: str | None) -> BenchModel:
    """A materialised (or the real) model, quantized with llama-quantize when `quant` is given;
    moeplan's recipe predicts the quantized tensors (checked exact against llama-quantize)."""
    s = _wide(key) if key.endswith("-wide") else subject(key, slim=True, dense_experts=True)
    if quant is None:
        return BenchModel(key, s, str(s.path), s.weights)
    ft = FileType.parse(quant)
    out = s.path.with_name(f"{s.path.stem}-{ft.name}.gguf")
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        r = run("llama-quantize", [str(s.path), str(tmp), ft.name], timeout=TIMEOUT)
        if not r.ok:
            raise RuntimeError(f"llama-quantize {key} {ft.name} failed: {r.failure()}")
        tmp.replace(out)
    return BenchModel(f"{key}:{ft.name}", s, str(out), predict(s.inventory, ft))


def _wide(key: str) -> Subject:
    base = key.removesuffix("-wide")
    model = ARCH_MODELS[base]
    m = materialize(load_catalog()[model].spec(), expert_budget=1 << 40, width=WIDE)
    return Subject(key, model, m.path, m.spec, m.inventory, stored_weights(m), False, m.holes)


def measure(m: BenchModel, reps: int = 3) -> tuple[dict[str, dict[str, Any]], str, bool]:
    """llama-bench pp64 and tg32 with 2 threads: mean and spread of the repetitions."""
    args = [
        "-m",
        m.path,
        "-p",
        str(PROMPT),
        "-n",
        str(GEN),
        "-t",
        str(THREADS),
        "-r",
        str(reps),
        "-o",
        "json",
    ]
    r = run("llama-bench", args, timeout=TIMEOUT)
    rows: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(ValueError):
        for row in json.loads(r.stdout or "[]"):
            test = f"pp{row['n_prompt']}" if row.get("n_prompt") else f"tg{row.get('n_gen')}"
            rows[test] = {
                "avg_ts": round(row["avg_ts"], 2),
                "stddev_ts": round(row["stddev_ts"], 2),
                "samples_ts": [round(x, 2) for x in row.get("samples_ts", [])],
            }
    ok = r.ok and {f"pp{PROMPT}", f"tg{GEN}"} <= set(rows) and all(v["avg_ts"] > 0 for v in rows.values())
    return rows, r.shell, ok


_CFG = CacheConfig(n_ctx=PROMPT + GEN, n_ubatch=512)


@cache
def _this_node() -> Node:
    return detect().node


@by_identity(maxsize=16)
def _memory(m: BenchModel) -> MemoryPlan:
    """The run's memory plan: the host-factor fit predicts each model thousands of times."""
    return plan_memory(m.subject.inventory, m.weights, _CFG, parse_placement("-ngl 0"), (), Frontend())


def predicted(m: BenchModel, cal: Calibration) -> dict[str, float]:
    """The speed model's pp64 and tg32 for this machine (CPU backend, 2 threads)."""
    sp = speed(m.subject.spec, _memory(m), _CFG, _this_node(), fill=GEN // 2, threads=THREADS, cal=cal)
    return {f"pp{PROMPT}": sp.prefill(PROMPT).tok_s, f"tg{GEN}": sp.decode_at(GEN // 2)}


def _errors(pred: dict[str, float], meas: dict[str, float]) -> dict[str, float]:
    return {t: round((pred[t] - meas[t]) / meas[t], 4) for t in pred if t in meas}


def host_scaled(cal: Calibration, compute: float, memory: float, overhead: float) -> Calibration:
    return dataclasses.replace(
        cal,
        cpu_core_flops=cal.cpu_core_flops * compute,
        cpu_core_bandwidth=cal.cpu_core_bandwidth * memory,
        cpu_layer_overhead_s=cal.cpu_layer_overhead_s * overhead,
        cpu_thread_sync_s=cal.cpu_thread_sync_s * overhead,
    )


def fit_host(probes: list[tuple[BenchModel, dict[str, float]]]) -> tuple[Calibration, dict[str, float]]:
    """The three host factors that best explain the probes (least squares in log space): compute
    from pp (compute-bound on the CPU), then memory and overhead from tg on a grid, then compute again."""

    def sq_log(cal: Calibration, test: str) -> float:
        return sum(math.log(predicted(m, cal)[test] / meas[test]) ** 2 for m, meas in probes)

    compute, memory, overhead = 1.0, 1.0, 1.0
    for _ in range(2):
        for _ in range(3):  # pp ∝ compute almost exactly: a few fixed-point steps settle it
            ratios = [
                meas[f"pp{PROMPT}"]
                / predicted(m, host_scaled(CALIBRATION, compute, memory, overhead))[f"pp{PROMPT}"]
                for m, meas in probes
            ]
            compute *= math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        memory, overhead = min(
            ((a, b) for a in _GRID for b in _GRID),
            key=lambda ab: sq_log(host_scaled(CALIBRATION, compute, *ab), f"tg{GEN}"),
        )
    factors = {"compute": round(compute, 4), "memory": round(memory, 4), "overhead": round(overhead, 4)}
    return host_scaled(CALIBRATION, compute, memory, overhead), factors


def run_speed(reps: int = 3) -> dict[str, Any]:
    probes, runs, comparisons = [], [], []
    for key, quant in PROBES:
        m = bench_model(key, quant)
        rows, command, ok = measure(m, reps)
        if not ok:
            raise RuntimeError(f"llama-bench failed on the probe {m.key}: {command}")
        probes.append((m, {t: v["avg_ts"] for t, v in rows.items()}))
        runs.append((rows, command))
    cal, factors = fit_host(probes)
    for (m, meas), (rows, command) in zip(probes, runs, strict=True):
        pred = predicted(m, cal)
        comparisons.append(
            _comparison(m, "probe (sets the host factors)", pred, rows, command, True, _errors(pred, meas))
        )
    for key, quant in TARGETS:
        m = bench_model(key, quant)
        rows, command, ran = measure(m, reps)
        meas = {t: v["avg_ts"] for t, v in rows.items()}
        pred = predicted(m, cal)
        errors = _errors(pred, meas)
        within = ran and len(errors) == 2 and all(abs(e) <= TOLERANCE for e in errors.values())
        comparisons.append(_comparison(m, "target (predicted)", pred, rows, command, within, errors))
    payload = _header(
        "bench",
        f"Speed: llama-bench on this machine ({THREADS} threads) vs the speed model, host set by probes",
        comparisons,
        cpu=cpu_name(),
        host_factors=factors,
        tolerance=TOLERANCE,
    )
    write_result("bench", payload)
    return payload


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    return run_named({"bench": run_speed}, argv, details=True)


def _comparison(
    m: BenchModel,
    role: str,
    pred: dict[str, float],
    measured: dict[str, Any],
    command: str,
    ok: bool,
    errors: dict[str, float] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"bench/{m.key}",
        "model": m.subject.model,
        "arch": m.subject.spec.arch,
        "what": f"{role}: llama-bench pp{PROMPT} / tg{GEN} tokens/s, {THREADS} threads, CPU backend",
        "predicted": {t: round(v, 1) for t, v in pred.items()},
        "measured": measured,
        "error": errors,
        "weights_mib": round(m.weights.tensor_bytes / 2**20, 2),
        "command": command,
        "ok": ok,
    }


if __name__ == "__main__":
    raise SystemExit(main())
