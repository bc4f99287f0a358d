"""Speculative decoding in the pinned llama-server: every buffer moeplan predicts for the target and
the draft side matches its log (validation/speculative.py)."""

import pytest
from validation.speculative import memory_check

from moeplan.engines.speculative import SpecType

pytestmark = pytest.mark.llamacpp


@pytest.mark.parametrize("kind", [SpecType.MTP, SpecType.SIMPLE])
@pytest.mark.parametrize(("ctx", "n_seq"), [(4096, 1), (5000, 2)])
def test_draft_side_buffers_match_the_log(kind: SpecType, ctx: int, n_seq: int) -> None:
    c = memory_check(kind, ctx, n_seq)
    assert c["ok"], (c["id"], c["ok_by"], c["predicted"], c["measured"], c.get("failure"))
