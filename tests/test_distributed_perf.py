"""Throughput predictions for the datacenter points of shared/data/perf_points.json, each within 2x.

Run with -s to see the table (also in docs/distributed-calibration.md). The TensorRT-LLM points are
compared with our vLLM model of the same layout family; the efficiencies in plan/distributed_perf.py
were calibrated on these points, so this is a consistency check, not an independent validation."""

from dataclasses import dataclass

import pytest

from moeplan.hardware.rig import parse_rig
from moeplan.plan.distributed import DistributedPlan, plan_entry
from moeplan.sources.catalog import CatalogEntry, resolve


def llama_33_70b() -> CatalogEntry:
    # Llama-3.3-70B is not in the catalog; it has Llama-3.1-70B's architecture (same config.json
    # apart from the weights: meta-llama/Llama-3.3-70B-Instruct model card).
    return resolve("llama-3.1-70b").model_copy(
        update={
            "id": "llama-3.3-70b",
            "name": "Llama-3.3-70B",
            "hf_repo": "meta-llama/Llama-3.3-70B-Instruct",
        }
    )


@dataclass(frozen=True)
class Point:
    id: str
    model: str
    rig: str
    engine: str
    fmt: str
    measured: float
    metric: str  # "output" = total_output_tok_s at ISL/OSL 1000/1000; "single" = batch-1 decode
    source: str


POINTS = [
    Point(
        "p044",
        "qwen3-235b-a22b",
        "8x H200",
        "vllm",
        "fp8",
        23789,
        "output",
        "TensorRT-LLM perf-overview.md @00f3768, trtllm-bench max load, ISL/OSL 1000/1000",
    ),
    Point(
        "p049",
        "llama-4-scout-17b-16e",
        "4x H200",
        "vllm",
        "fp8",
        21636,
        "output",
        "TensorRT-LLM perf-overview.md @00f3768, trtllm-bench max load, ISL/OSL 1000/1000",
    ),
    Point(
        "p055",
        "llama-3.3-70b",
        "1x H200",
        "vllm",
        "fp8",
        2909,
        "output",
        "TensorRT-LLM perf-overview.md @00f3768, trtllm-bench max load, ISL/OSL 1000/1000",
    ),
    Point(
        "p063",
        "qwen3-30b-a3b",
        "1x H20",
        "sglang",
        "bf16",
        137.18,
        "single",
        "Qwen speed_benchmark.md @ac72724, SGLang 0.4.6.post1, 1-token prompt, 2048 generated",
    ),
    Point(
        "p064",
        "qwen3-30b-a3b",
        "1x H20",
        "sglang",
        "fp8",
        155.55,
        "single",
        "Qwen speed_benchmark.md @ac72724, SGLang 0.4.6.post1, 1-token prompt, 2048 generated",
    ),
]


def predict(pt: Point) -> tuple[float, DistributedPlan]:
    entry = llama_33_70b() if pt.model == "llama-3.3-70b" else resolve(pt.model)
    rig = parse_rig(pt.rig)
    if pt.metric == "output":
        p = plan_entry(entry, rig, pt.engine, ctx=2048, weight_format=pt.fmt, isl=1000, osl=1000)  # type: ignore[arg-type]
        return p.output_tok_s, p
    p = plan_entry(entry, rig, pt.engine, ctx=4096, weight_format=pt.fmt, isl=1, osl=2048)  # type: ignore[arg-type]
    return p.single_stream_tok_s, p


@pytest.mark.parametrize("pt", POINTS, ids=[p.id for p in POINTS])
def test_throughput_within_2x(pt: Point) -> None:
    predicted, plan = predict(pt)
    ratio = predicted / pt.measured
    print(
        f"\n{pt.id} {pt.model} {pt.fmt} {pt.rig} {pt.engine} {plan.layout.label()}: "
        f"predicted {predicted:,.0f} measured {pt.measured:,.0f} ratio {ratio:.2f} ({plan.bound_by}-bound)"
    )
    assert plan.fits
    assert 0.5 <= ratio <= 2.0
