"""llama-bench runs on the real Gemma and a materialised MoE model with real expert data."""

import pytest
from validation.runtime import GEMMA, bench_check

pytestmark = pytest.mark.llamacpp


@pytest.mark.parametrize("key", [GEMMA, "gpt-oss"])
def test_bench_produces_numbers(key: str) -> None:
    c = bench_check(key, reps=1)
    assert c["ok"], (c["measured"], c.get("failure"), c["command"])
    assert not c["file"]["expert_holes"]
