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

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from moeplan.engines.llamacpp import CPU
from moeplan.perf.batching import distinct_experts
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


def _hit(n_expert: int, n_used: int, batch: int) -> float:
    """The chance that a batch uses a given expert (uniform routing)."""
    return distinct_experts(n_expert, n_used, batch) / n_expert


def _hypergeometric_pmf(n_expert: int, missing: int, n_used: int) -> NDArray[np.float64]:
    """P(x of the k experts a token uses are among the `missing` uncached ones), x = 0..k."""
    total = math.comb(n_expert, n_used)
    return np.array(
        [math.comb(missing, x) * math.comb(n_expert - missing, n_used - x) / total for x in range(n_used + 1)]
    )


def _sum_pmf(pmf: NDArray[np.float64], m: int) -> NDArray[np.float64]:
    """The distribution of the sum of `m` independent draws from `pmf` (support 0, 1, 2, ...)."""
    out: NDArray[np.float64] = np.ones(1)
    for _ in range(m):
        out = np.convolve(out, pmf)
    total = float(out.sum())
    return out / total


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
    if batch > 1:
        # The distinct experts a layer's batch reads: Binomial(E, hit). Layers alike in E, k and
        # seconds per expert add up exactly to one Binomial(m·E, hit): each group is drawn once.
        groups = Counter(
            (e.n_expert, e.n_used, e.bytes_per_expert / (rates_bandwidth.get(n) or rates_bandwidth[CPU]))
            for n, e in layers
        )
        for (n_expert, n_used, s_per_expert), m in groups.items():
            hit = _hit(n_expert, n_used, batch)
            delta += (rng.binomial(m * n_expert, hit, samples) - m * n_expert * hit) * s_per_expert
    if with_disk and disk is not None:
        # Layers alike in E, k and expert size are drawn together, from the exact distribution of
        # their summed misses (numpy's hypergeometric sampler, per layer and sample, was slow).
        on_cpu = Counter((e.n_expert, e.n_used, e.bytes_per_expert) for name, e in layers if name == CPU)
        for (n_expert, n_used, bytes_per_expert), m in on_cpu.items():
            missing = round(disk.miss_fraction * n_expert)
            hit = _hit(n_expert, n_used, batch)
            if batch <= 1:  # k draws without replacement from E experts, `missing` of them not cached
                pmf = _sum_pmf(_hypergeometric_pmf(n_expert, missing, n_used), m)
                missed = rng.choice(len(pmf), samples, p=pmf)
            else:
                missed = rng.binomial(m * missing, hit, samples)
            expected_missed = m * n_expert * hit * disk.miss_fraction
            delta += (missed - expected_missed) * bytes_per_expert / disk.bytes_s
    t = np.maximum(mean.seconds + delta, 0.0)
    p50, p95, p99 = (float(x) for x in np.percentile(t, [50, 95, 99]))
    return Spread(p50, p95, p99, ROUTING, True)
