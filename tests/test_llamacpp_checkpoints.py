"""The pinned llama-server's logged context-checkpoint sizes equal moeplan's prediction
(validation/checkpoints.py): SWA models (a real Gemma 3 file, materialised gpt-oss and Laguna) and a
hybrid Gated DeltaNet model (Qwen3.5 MoE)."""

import pytest
from validation.checkpoints import SUBJECTS, check

pytestmark = pytest.mark.llamacpp


@pytest.mark.parametrize("key", SUBJECTS)
def test_logged_checkpoint_size_is_the_predicted_one(key: str) -> None:
    c = check(key)
    assert c["measured"]["logged_mib_at_position"], c  # the prompt is long enough to checkpoint
    assert c["ok"], (c["id"], c["predicted"], c["measured"])
