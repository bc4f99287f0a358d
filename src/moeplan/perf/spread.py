"""Steadiness: how much per-token latency varies with routing, from a small seeded simulation.

Routing distribution (stated, and the same one `decode.py` uses for its mean): every token picks
k of a layer's E experts uniformly at random, independently per layer — the balance MoE training's
load-balancing loss aims for. Real routing is skewed towards popular experts; a skew makes a page
cache hit more often, so disk-plan numbers here are on the slow side.

Per-token work depends on routing only where which expert is picked changes the cost:
- disk-mmap plans: an expert resident in the page cache costs a RAM read, one that is not an NVMe
  read; the page cache is modelled as holding a fixed share of each layer's experts;
- several sequences per step: the number of distinct experts a layer reads varies (each expert is
  hit by the batch with probability 1 − (1 − k/E)^B; the simulation draws that count per layer).
A whole layer's expert stack lives on one device in llama.cpp (`-ot` places whole tensors), so
for one sequence without disk reads the bytes per token do not depend on routing: dense models,
all-GPU plans and `--n-cpu-moe` plans have (next to) no routing spread.
"""

from dataclasses import dataclass

import numpy as np

from moeplan.engines.llamacpp import CPU
from moeplan.perf.decode import Disk, StepTime
from moeplan.perf.traffic import TokenWork

ROUTING = "uniform: each token picks k of E experts at random, independently per layer"
SAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class Spread:
    p50_s: float
    p95_s: float
    p99_s: float
    routing: str
    simulated: bool  # False: per-token work does not depend on routing here


def spread(
    work: TokenWork,
    mean: StepTime,
    rates_bandwidth: dict[str, float],
    batch: int = 1,
    disk: Disk | None = None,
    samples: int = SAMPLES,
    seed: int = SEED,
) -> Spread:
    """p50/p95/p99 of step latency around `mean` (the deterministic expectation from `decode.py`).

    Only the routed-expert part varies: each sample redraws it per MoE layer and device, and
    the step time moves by (drawn − expected) bytes over that device's bandwidth (or disk's)."""
    with_disk = disk is not None and disk.miss_fraction > 0
    layers = [(name, e) for name, dw in work.devices.items() for e in dw.experts]
    if not layers or (batch <= 1 and not with_disk):
        s = mean.seconds
        return Spread(s, s, s, ROUTING, False)
    rng = np.random.default_rng(seed)
    delta = np.zeros(samples)
    for name, e in layers:
        bw = rates_bandwidth.get(name) or rates_bandwidth[CPU]
        if batch <= 1:
            drawn = np.full(samples, float(e.n_used))
        else:
            p = 1.0 - (1.0 - e.n_used / e.n_expert) ** batch
            drawn = rng.binomial(e.n_expert, p, samples).astype(float)
        expected = e.n_expert * (1.0 - (1.0 - e.n_used / e.n_expert) ** batch)
        delta += (drawn - expected) * e.bytes_per_expert / bw
        if with_disk and disk is not None and name == CPU:
            missing = round(disk.miss_fraction * e.n_expert)
            if batch <= 1:  # k draws without replacement from E experts, `missing` of them not cached
                missed = rng.hypergeometric(missing, e.n_expert - missing, e.n_used, samples).astype(float)
            else:
                p = 1.0 - (1.0 - e.n_used / e.n_expert) ** batch
                missed = rng.binomial(missing, p, samples).astype(float)
            expected_missed = expected * disk.miss_fraction
            delta += (missed - expected_missed) * e.bytes_per_expert / disk.bytes_s
    t = np.maximum(mean.seconds + delta, 0.0)
    p50, p95, p99 = (float(x) for x in np.percentile(t, [50, 95, 99]))
    return Spread(p50, p95, p99, ROUTING, True)
