"""Reconstruct each calibration case (a published or local llama.cpp measurement) as a moeplan plan
and predict its tokens/s with the speed model. Shared by `calibrate.py` and the tests."""

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from statistics import median
from typing import Any

from moeplan.arch.inventory import inventory
from moeplan.arch.spec import ModelSpec
from moeplan.engines.llamacpp import Frontend, MemoryPlan, parse_placement, plan_memory
from moeplan.hardware.rig import parse_rig
from moeplan.hardware.spec import Node
from moeplan.memory.kv import CacheConfig, cache_type
from moeplan.memory.weights import Weights, predict
from moeplan.perf.calibration import CALIBRATION, Calibration
from moeplan.perf.estimate import Speed, speed
from moeplan.plan.llamacpp import backend_name
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import resolve

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "data" / "perf_points.json"
LOCAL = ROOT / "tests" / "data" / "perf_local.json"


@dataclass(frozen=True)
class Case:
    id: str
    metric: str  # decode | prefill
    measured: float
    raw: dict[str, Any] = field(hash=False, compare=False)


def load_cases(path: Path = CASES) -> list[Case]:
    data = json.loads(path.read_text())
    return [Case(c["id"], c["metric"], float(c["measured_tok_s"]), c) for c in data["cases"]]


@cache
def _weights(model: str, quant: str) -> tuple[ModelSpec, Weights]:
    spec = resolve(model).spec()
    inv = inventory(spec, mtp=False)
    return spec, predict(inv, FileType.parse(quant))


def case_speed(c: Case, cal: Calibration = CALIBRATION) -> Speed:
    spec, mem, cfg, node = _setup(c)
    raw = c.raw
    return speed(spec, mem, cfg, node, fill=int(raw.get("fill", 16)), threads=raw.get("threads"), cal=cal)


@cache
def _setup(c: Case) -> tuple[ModelSpec, MemoryPlan, CacheConfig, Node]:
    raw = c.raw
    spec, w = _weights(raw["model"], raw["quant"])
    rig = parse_rig(raw["rig"])
    node = rig.node
    names = tuple(backend_name(g, i) for i, g in enumerate(node.gpus)) if raw["flags"] != "-ngl 0" else ()
    ub = int(raw.get("n_ubatch", 512))
    ctk = cache_type(raw.get("ctk", "f16"))
    cfg = CacheConfig(n_ctx=int(raw.get("ctx", 4096)), n_ubatch=ub, type_k=ctk, type_v=ctk)
    mem = plan_memory(inventory(spec, mtp=False), w, cfg, parse_placement(raw["flags"]), names, Frontend())
    return spec, mem, cfg, node


def predict_case(c: Case, s: Speed) -> float:
    if c.metric == "decode":
        return s.decode_at(int(c.raw.get("fill", 16)))
    return s.prefill(int(c.raw["prompt"])).tok_s


def error(predicted: float, measured: float) -> float:
    """Signed relative error of a prediction: (predicted − measured) / measured."""
    return (predicted - measured) / measured


def summary(rows: list[dict[str, Any]], metric: str) -> dict[str, float]:
    errs = [abs(r["error"]) for r in rows if r["metric"] == metric]
    return {
        "n": len(errs),
        "median_abs_error": median(errs) if errs else 0.0,
        "max_abs_error": max(errs, default=0.0),
    }
