"""Vision projectors in the pinned llama-server: the mmproj file moeplan describes loads (clip.cpp
takes every tensor its projector asks for and builds its warmup graph), and its weights and compute
buffer match the log (validation/vision.py)."""

import pytest
from validation.vision import vision_check

from moeplan.quant.ggml import GGMLType

pytestmark = pytest.mark.llamacpp


@pytest.mark.parametrize(
    ("model_id", "ftype"),
    [
        ("qwen3.6-27b", GGMLType.BF16),
        ("qwen3.6-27b", GGMLType.Q8_0),
        ("qwen3-vl-30b-a3b", GGMLType.F16),  # deepstack mergers on the kept blocks
        ("qwen3.5-4b", GGMLType.F16),  # the medium tower: 1024 wide, 16 heads of 64
        ("gemma-3-4b", GGMLType.F16),
        ("gemma-3-4b", GGMLType.Q8_0),
    ],
)
def test_mmproj_buffers_match_the_log(model_id: str, ftype: GGMLType) -> None:
    n_layer = 9 if model_id == "qwen3-vl-30b-a3b" else 2
    c = vision_check(model_id, ftype, n_layer)
    assert c["ok"], (c["id"], c["ok_by"], c["predicted"], c["measured"], c.get("failure"))
