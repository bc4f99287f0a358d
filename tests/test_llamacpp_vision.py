"""Vision projectors in the pinned llama-server: the mmproj file moeplan describes loads (clip.cpp
takes every tensor its projector asks for and builds its warmup graph), and its weights and compute
buffer match the log (validation/vision.py). The real CUDA log with a projector: tests/test_vision.py."""

import pytest
from validation.vision import CASES, vision_check

from moeplan.quant.ggml import GGMLType

pytestmark = pytest.mark.llamacpp


@pytest.mark.parametrize(("model_id", "ftype", "n_layer"), CASES)
def test_mmproj_buffers_match_the_log(model_id: str, ftype: GGMLType, n_layer: int) -> None:
    c = vision_check(model_id, ftype, n_layer)
    assert c["ok"], (c["id"], c["ok_by"], c["predicted"], c["measured"], c.get("failure"))
