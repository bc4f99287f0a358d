"""The speed model (src/moeplan/perf): batching, spread, and the calibration targets."""

from statistics import median

import numpy as np
from benchmarks.perf_cases import CASES, LOCAL, case_speed, error, load_cases, predict_case

from moeplan.perf.batching import distinct_experts, max_concurrency
from moeplan.perf.spread import _hypergeometric_pmf, _sum_pmf


def test_distinct_experts() -> None:
    assert distinct_experts(128, 8, 1) == 8
    assert abs(distinct_experts(128, 8, 1000) - 128) < 1e-3
    assert distinct_experts(128, 8, 4) < 32
    assert max_concurrency(10e9, 1e9) == 10


def test_published_decode_median_error_within_20_percent() -> None:
    cases = [c for c in load_cases(CASES) if c.metric == "decode"]
    errs = [abs(error(predict_case(c, case_speed(c)), c.measured)) for c in cases]
    assert len(errs) >= 8 and median(errs) <= 0.20
    assert max(errs) < 1.0  # no decode point off by 2x


def test_this_machine_within_25_percent() -> None:
    for c in load_cases(LOCAL):
        assert abs(error(predict_case(c, case_speed(c)), c.measured)) <= 0.25, c.id


def test_spread_only_where_routing_matters() -> None:
    c = next(c for c in load_cases(CASES) if c.id == "p033")
    s = case_speed(c)
    one = s.latency
    assert not one.simulated and one.p99_s == one.p50_s  # whole expert stacks per device: no spread
    many = s.spread(8)
    assert many.simulated and many.p99_s >= many.p50_s
    assert s.throughput(8) > s.throughput(1)


def test_summed_page_cache_misses_have_the_hypergeometric_moments() -> None:
    """m layers, each token using k of E experts of which M are not cached: the summed misses
    have mean m*k*M/E and the hypergeometric variance m*k*(M/E)*(1-M/E)*(E-k)/(E-1)."""
    n_expert, missing, k, m = 256, 100, 8, 58
    pmf = _sum_pmf(_hypergeometric_pmf(n_expert, missing, k), m)
    x = np.arange(len(pmf))
    mean = float((x * pmf).sum())
    var = float(((x - mean) ** 2 * pmf).sum())
    p = missing / n_expert
    assert abs(pmf.sum() - 1) < 1e-12 and len(pmf) == m * k + 1
    assert abs(mean - m * k * p) < 1e-9
    assert abs(var - m * k * p * (1 - p) * (n_expert - k) / (n_expert - 1)) < 1e-9
