"""llama-bench runs on the real Gemma and a quantized materialised MoE model (real expert data),
and the speed model predicts the same two numbers for them (how close is `make bench`'s report)."""

import pytest
from validation.runtime import GEMMA
from validation.speed import GEN, PROMPT, bench_model, measure, predicted

from moeplan.perf.calibration import CALIBRATION

pytestmark = pytest.mark.llamacpp


@pytest.mark.parametrize(("key", "quant"), [(GEMMA, None), ("gpt-oss", "MXFP4_MOE")])
def test_bench_measures_and_predicts_pp_and_tg(key: str, quant: str | None) -> None:
    m = bench_model(key, quant)
    rows, command, ok = measure(m, reps=1)
    assert ok, (rows, command)
    assert not m.subject.holes
    pred = predicted(m, CALIBRATION)
    assert set(pred) == set(rows) == {f"pp{PROMPT}", f"tg{GEN}"}
    assert all(v > 0 for v in pred.values())
