"""The mmproj model: its tensors and their converter types, its buffers, and the catalog's towers."""

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from moeplan.arch.vision import (
    MMPROJ_TYPES,
    VisionTower,
    mmproj_bytes,
    mmproj_tensors,
    mmproj_type,
    tower_from_config,
)
from moeplan.engines.vision import check_vision, host_inputs_bytes, plan_vision, warmup_compute_bytes
from moeplan.errors import MoeplanError
from moeplan.quant.ggml import GGMLType
from moeplan.sources.catalog import load_catalog

MIB = 1024 * 1024
LOGS = Path(__file__).parent / "data" / "gpu_memory_logs.json"


def _tower(model_id: str) -> VisionTower:
    t = load_catalog()[model_id].vision_tower()
    assert t is not None
    return t


def _r05() -> dict[str, Any]:
    records: list[dict[str, Any]] = json.loads(LOGS.read_text())["records"]
    return next(r for r in records if r["id"] == "r05")


def test_qwen36_bf16_mmproj_matches_the_real_cuda_log() -> None:
    """unsloth's mmproj-BF16 of Qwen3.6-27B on an RTX 5090: 887.99 MiB weights, 248.10 MiB compute
    on CUDA0 and 24.93 MiB on the host (its graph inputs)."""
    r = _r05()
    t = _tower("qwen3.6-27b")
    assert round(mmproj_bytes(t, GGMLType.BF16) / MIB, 2) == r["devices"]["CUDA0"]["mmproj_model_mib"]
    assert round(warmup_compute_bytes(t) / MIB, 1) == r["devices"]["CUDA0"]["mmproj_compute_mib"]
    assert round(host_inputs_bytes(t) / MIB, 2) == r["host"]["mmproj_cpu_compute_mib"]


def test_converter_types() -> None:
    qwen = {x.name: x for x in mmproj_tensors(_tower("qwen3.6-27b"))}
    # the patch embedding: F16 only in an F16 file (MmprojModel.tensor_force_quant)
    assert qwen["v.patch_embd.weight.1"].type_in(GGMLType.F16) is GGMLType.F16
    assert qwen["v.patch_embd.weight"].type_in(GGMLType.BF16) is GGMLType.F32
    assert qwen["v.position_embd.weight"].type_in(GGMLType.Q8_0) is GGMLType.F32
    # rows of 4304 do not split into Q8_0 blocks: F16 fallback; rows of 1152 do
    assert qwen["v.blk.0.ffn_down.weight"].type_in(GGMLType.Q8_0) is GGMLType.F16
    assert qwen["v.blk.0.ffn_up.weight"].type_in(GGMLType.Q8_0) is GGMLType.Q8_0
    assert qwen["v.blk.0.ln1.bias"].type_in(GGMLType.Q8_0) is GGMLType.F32
    gemma = {x.name: x for x in mmproj_tensors(_tower("gemma-3-4b"))}
    assert gemma["mm.input_projection.weight"].shape == (2560, 1152)
    assert gemma["mm.input_projection.weight"].type_in(GGMLType.Q8_0) is GGMLType.F16
    assert gemma["v.patch_embd.weight"].type_in(GGMLType.F16) is GGMLType.F32


def test_tensor_counts() -> None:
    # patch x2 + bias + positions, 12 per block, post norm 2, mm.0/mm.2 4, 6 per deepstack merger
    assert len(mmproj_tensors(_tower("qwen3.6-27b"))) == 4 + 27 * 12 + 2 + 4
    assert len(mmproj_tensors(_tower("qwen3-vl-30b-a3b"))) == 4 + 27 * 12 + 2 + 4 + 3 * 6
    # SigLIP: patch + bias + positions, 16 per block, post norm 2, projector 2
    assert len(mmproj_tensors(_tower("gemma-3-4b"))) == 3 + 27 * 16 + 2 + 2
    # Llama 4: patch (no bias), CLS, positions, pre norm 2, 16 per block, post norm 2, mlp.1/mlp.2/fc
    llama = {x.name: x for x in mmproj_tensors(_tower("llama-4-scout-17b-16e"))}
    assert len(llama) == 3 + 2 + 34 * 16 + 2 + 3
    assert llama["v.position_embd.weight"].shape == (1408, 24 * 24 + 1)  # a row for the CLS token
    assert llama["mm.model.mlp.1.weight"].shape == (1408 * 4, 4096)  # pixel shuffle 2x2
    assert llama["mm.model.fc.weight"].shape == (4096, 5120)


def test_q8_0_is_smaller_and_bf16_keeps_f32_patches() -> None:
    t = _tower("qwen3.5-35b-a3b")
    f16, bf16, q8, f32 = (mmproj_bytes(t, f) for f in MMPROJ_TYPES.values())
    assert q8 < f16 < bf16 < f32
    assert bf16 - f16 == 2 * 16 * 16 * 3 * 1152 * 2  # the two Conv2Ds at F32 instead of F16


def test_placement_main_gpu_or_cpu() -> None:
    t = _tower("gemma-3-12b")
    on_gpu = plan_vision(t, GGMLType.F16, ("CUDA0", "CUDA1"))
    assert on_gpu.device == "CUDA0" and on_gpu.host_compute_bytes == 896 * 896 * 3 * 4
    kept = plan_vision(t, GGMLType.F16, ("CUDA0",), offload=False)
    assert kept.device == "CPU" and kept.host_compute_bytes == 0
    assert plan_vision(t, GGMLType.F16, ()).device == "CPU"
    # SigLIP at 896 px: 4096 patches x (n_ff + 3 n_embd) F32
    assert on_gpu.compute_bytes == 4096 * (4304 + 3 * 1152) * 4


def test_llama4_compute_at_its_image_size() -> None:
    """336 px, 577 positions: the image, the 2-D RoPE ids and 4 x 577 x (n_ff + 2·n_embd) F32,
    19.89 MiB as the pinned build reserves it (validation/vision.py)."""
    t = _tower("llama-4-scout-17b-16e")
    v = plan_vision(t, GGMLType.F16, ("CUDA0",))
    assert v.warmup_px == 336 and v.host_compute_bytes == 336 * 336 * 3 * 4 + 577 * 2 * 4
    assert v.compute_bytes == v.host_compute_bytes + 577 * (5632 + 2 * 1408) * 4
    assert round(v.compute_bytes / MIB, 2) == 19.89


def test_refusals() -> None:
    with pytest.raises(MoeplanError, match="no vision tower"):
        check_vision("qwen3-8b", load_catalog()["qwen3-8b"].vision_tower(), "llamacpp")
    with pytest.raises(MoeplanError, match=r"llama\.cpp"):
        check_vision("gemma-3-4b", _tower("gemma-3-4b"), "vllm")
    with pytest.raises(MoeplanError, match="f16, bf16, q8_0, f32"):
        mmproj_type("q4_k")


def test_every_catalog_tower_builds() -> None:
    towers = {k: e.vision_tower() for k, e in load_catalog().items() if e.vision is not None}
    assert {
        "qwen3.6-27b",
        "qwen3.5-35b-a3b",
        "qwen3-vl-30b-a3b",
        "qwen3-vl-235b-a22b",
        "qwen3.5-0.8b",
        "gemma-3-27b",
    } <= towers.keys()
    for k, t in towers.items():
        assert t is not None and t.n_embd_text == load_catalog()[k].spec().n_embd, k
        assert all(s.startswith(("https://", "llama.cpp", "/work", "public")) for s in t.sources)


def test_published_mmproj_file_size() -> None:
    """FreedomAISVR/Qwen3.5-4B-MTP-NVFP4-GGUF lists mmproj-qwen35-4b-f16.gguf at 672 MB
    (https://huggingface.co/FreedomAISVR/Qwen3.5-4B-MTP-NVFP4-GGUF, file table of the model card):
    the medium tower's F16 tensor data is 672.4 MB (the header adds well under 1 MB)."""
    assert round(mmproj_bytes(_tower("qwen3.5-4b"), GGMLType.F16) / 1e6) == 672


def test_published_gemma3_mmproj_sizes() -> None:
    """bartowski/google_gemma-3-4b-it-GGUF (llama.cpp b4877; file table mirrored at
    https://mygguf.com/models/bartowski_google_gemma-3-4b-it-GGUF): mmproj f16 851 MB, f32 1.68 GB.
    The F16 file is the pinned converter's to the MB; that older F32 file kept the input projection
    in F32, which the pinned converter writes F16 in every file type (llama.cpp issue 13025)."""
    t = _tower("gemma-3-4b")
    assert round(mmproj_bytes(t, GGMLType.F16) / 1e6) == 851
    projection = 2560 * 1152
    assert round((mmproj_bytes(t, GGMLType.F32) + 2 * projection) / 1e9, 2) == 1.68
    assert round(mmproj_bytes(t, GGMLType.F32) / 1e9, 2) == 1.67  # the pinned converter's


def test_qwen3vl_compute_is_the_allocator_layout() -> None:
    """The replay of clip.cpp's Qwen3-VL graph (engines/clip_graph.py) against the pinned build
    (validation/vision.py): a tower no wider than 3·p² (768 for 16-px patches) puts its roped Q in
    the freed image's hole, so attention peaks above it: the hole, positions, residual, QKV, roped K
    and its F16 copy, 4 x patches x (3·p² + 4 + 5.5·n_embd), 161.31 MiB for Qwen3.5-0.8B (the old
    six-widths rule said 173.71); wider towers keep the input stage's 6 widths above the image."""
    patches = 92 * 92  # the 1472-px warmup image
    small = _tower("qwen3.5-0.8b")
    assert warmup_compute_bytes(small) == 4 * patches * (768 + 4 + 768 * 11 // 2)
    assert round(warmup_compute_bytes(small) / MIB, 2) == 161.31
    # --image-max-tokens: 576 (768 px, the position table's own 48x48: no interpolation) and 300
    # (544 px, resized), 43.91 and 22.03 MiB on the pinned build
    assert round(warmup_compute_bytes(small, 576) / MIB, 2) == 43.91
    assert round(warmup_compute_bytes(small, 300) / MIB, 2) == 22.03
    medium = _tower("qwen3.5-4b")
    assert warmup_compute_bytes(medium) == 4 * patches * (768 + 4 + 6 * 1024)


def test_deepstack_outputs_stay_live_to_the_end() -> None:
    """ggml orders the graph from its output (the concat of the merger and the deepstack features), so
    the deepstack mergers run last and blocks 8 and 16 keep their outputs through the later blocks:
    Qwen3-VL-30B-A3B's full tower reserves 359.68 MiB (the pinned build: 359.68), not the 248.10 MiB of
    the same tower without deepstack."""
    t = _tower("qwen3-vl-30b-a3b")
    assert round(warmup_compute_bytes(t) / MIB, 2) == 359.68
    flat = dataclasses.replace(t, deepstack=())
    assert round(warmup_compute_bytes(flat) / MIB, 2) == 248.10


def test_published_qwen35_small_mmproj_files() -> None:
    """unsloth's Qwen3.5-0.8B and -2B mmproj-F16.gguf, 204,987,232 and 668,227,264 bytes (pinned with
    their sha256 in MetisLocal's model manifest, find_string index file id 66228468365): the tensor
    data is short of each by only the GGUF header (10,080 and 18,112 bytes: ~56 bytes of tensor info
    for each of the 154 and 298 tensors, and the metadata)."""
    for model_id, published in (("qwen3.5-0.8b", 204_987_232), ("qwen3.5-2b", 668_227_264)):
        t = _tower(model_id)
        header = published - mmproj_bytes(t, GGMLType.F16)
        assert 0 < header < 64 * len(mmproj_tensors(t)) + 2048, (model_id, header)


def test_gemma4_tower_and_published_file() -> None:
    """Gemma 4 26B-A4B (gemma4v): the tensor list holds the vision tower's 572,794,416 parameters (the
    HF safetensors total minus the text model, catalog note) in 2 + 27 x 13 + 3 tensors; unsloth's
    mmproj-F16.gguf is 1,193,058,784 bytes (MmprojFileSize in a public app catalog, find_string index
    file id 69558837785): the tensor data is short of it by the GGUF header only (22,816 bytes)."""
    t = _tower("gemma-4-26b-a4b")
    tensors = {x.name: x for x in mmproj_tensors(t)}
    assert len(tensors) == 2 + 27 * 13 + 3
    assert sum(math.prod(x.shape) for x in tensors.values()) == 572_794_416
    assert tensors["v.position_embd.weight"].shape == (1152, 10240, 2)
    assert tensors["mm.input_projection.weight"].shape == (1152, 2816)
    assert tensors["v.blk.0.attn_q_norm.weight"].type_in(GGMLType.Q8_0) is GGMLType.F32
    assert tensors["v.blk.0.ffn_down.weight"].type_in(GGMLType.Q8_0) is GGMLType.F16  # rows of 4304
    header = 1_193_058_784 - mmproj_bytes(t, GGMLType.F16)
    assert 0 < header < 64 * len(tensors) + 2048, header


def test_gemma4_compute_at_its_warmup() -> None:
    """clip.cpp warms Gemma 4 up at 16x16 pooled tokens (768 px, 2304 patches); the FFN peaks at
    4 x patches x (3·p² + 2 + 3·n_embd + 3·n_ff): 150.63 MiB, as the pinned build reserves it at 2 and
    at 27 blocks, and 58.84 MiB at --image-max-tokens 100 (480 px)."""
    t = _tower("gemma-4-31b")
    v = plan_vision(t, GGMLType.BF16, ("CUDA0",))
    assert v.warmup_px == 768 and round(v.compute_bytes / MIB, 2) == 150.63
    assert v.host_compute_bytes == 2304 * (768 + 2) * 4
    assert round(warmup_compute_bytes(t, 100) / MIB, 2) == 58.84


def test_gemma4_narrow_tower_is_refused() -> None:
    """E2B / E4B's 768-wide towers fit the freed image's hole, which the Gemma 4 rule assumes they do not."""
    config = {
        "num_hidden_layers": 16,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
    }
    with pytest.raises(MoeplanError, match="wider than"):
        tower_from_config("gemma4v", {**config, "patch_size": 16, "pooling_kernel_size": 3}, 1536)


def test_glm46v_tower() -> None:
    """GLM-4.6V (glm4v): 858,681,856 parameters in the tensor list, as the GLM-4.5V safetensors list
    sums for the same tower; the blocks' gated FFN is out_hidden_size (4096) wide, the merger's
    intermediate_size (10944); warmup at 46x46 tokens (1288 px, 8464 patches), where the block FFN
    peaks: 4 x patches x (3·p² + 4 + 2·n_embd + 3·n_ff) = 515.05 MiB (the pinned build: 515.05 at 2 and
    24 blocks); a narrow FFN peaks in attention instead (6.5·n_embd: 64.55 MiB measured at FFN 2048,
    560 px)."""
    t = _tower("glm-4.6v")
    tensors = {x.name: x for x in mmproj_tensors(t)}
    assert sum(math.prod(x.shape) for x in tensors.values()) == 858_681_856
    assert tensors["v.blk.0.ffn_gate.weight"].shape == (1536, 4096)
    assert tensors["mm.gate.weight"].shape == (4096, 10944)
    assert tensors["mm.patch_merger.weight"].type_in(GGMLType.BF16) is GGMLType.F32  # the patch rule
    v = plan_vision(t, GGMLType.F16, ("CUDA0",))
    assert v.warmup_px == 1288 and round(v.compute_bytes / MIB, 2) == 515.05
    narrow = dataclasses.replace(t, n_ff=2048)
    assert round(warmup_compute_bytes(narrow, 400) / MIB, 2) == 64.55
