"""Vision projectors in the pinned llama-server vs moeplan: the mmproj's weights and compute buffer.

    python -m validation.vision

A tower (`arch.vision.VisionTower`) is written as an mmproj GGUF from moeplan's own tensor list
(`mmproj_tensors`, each tensor in the type the converter gives it in that file type), with the
metadata the pinned converter writes (`MmprojModel.set_gguf_parameters` and the projector classes),
and loaded by `llama-server -m TEXT --mmproj FILE` beside a materialised text model of the tower's
output width (mtmd refuses a text model of another width). clip.cpp's loader takes only the tensors
its projector asks for (`clip_model_loader::load_tensors`: a missing required tensor fails the
load) and its warmup builds the projector's graph at the warmup image, where a misshapen tensor
aborts. Compared with the log: "model size" (clip.cpp `load_hparams`, the sum of ggml_nbytes, to
its 2 decimals) and the projector's "compute buffer size" (`reserve_compute_meta`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFWriter
from gguf.constants import LlamaFileType

from moeplan.arch.vision import Projector, VisionTower, mmproj_bytes, mmproj_tensors
from moeplan.engines.vision import plan_vision, warmup_compute_bytes
from moeplan.quant.ggml import GGMLType, tensor_bytes
from moeplan.sources.catalog import load_catalog
from validation.gpu_logs import LOGS
from validation.llamacpp import MIB, _header, run_named, write_result
from validation.materialize import materialize
from validation.runtime import compute_ok, server_startup

TEXT_MODEL = "qwen3-0.6b"  # materialised at width 256: the towers below project to it
_FILE_TYPES = {GGMLType.F16: LlamaFileType.MOSTLY_F16, GGMLType.BF16: LlamaFileType.MOSTLY_BF16}
_FILE_TYPES |= {GGMLType.Q8_0: LlamaFileType.MOSTLY_Q8_0, GGMLType.F32: LlamaFileType.ALL_F32}
_MODEL_SIZE = re.compile(r"load_hparams: model size:\s+([\d.]+) MiB")
_COMPUTE = re.compile(r"reserve_compute_meta:\s+(\S+) compute buffer size =\s*([\d.]+) MiB")
_WARMUP = re.compile(r"warmup with image size = (\d+) x (\d+)")


def tower_of(model_id: str, n_layer: int, n_embd_text: int) -> VisionTower:
    """A catalog model's tower at its real widths, `n_layer` blocks deep (ggml-alloc reuses one
    block's tensors for the next, so depth adds nothing but the deepstack outputs kept live to the
    end), projecting to `n_embd_text`; deepstack mergers only on the blocks kept."""
    t = load_catalog()[model_id].vision_tower()
    if t is None:
        raise ValueError(f"{model_id} has no vision tower")
    return dataclasses.replace(
        t, n_layer=n_layer, n_embd_text=n_embd_text, deepstack=tuple(k for k in t.deepstack if k < n_layer)
    )


def text_width(tower: VisionTower) -> int:
    """The text model's input width the projector must match (mtmd_init_from_file): its output
    width, and one more of it per deepstack merger (clip_n_mmproj_embd, qwen3vl_merger)."""
    return tower.n_embd_text * (1 + len(tower.deepstack))


def write_mmproj(tower: VisionTower, ftype: GGMLType, path: Path) -> None:
    """The tower as the converter writes it (zeros: the warmup reserves, it never computes)."""
    w = GGUFWriter(str(path), "clip")
    w.add_type("mmproj")
    w.add_file_type(_FILE_TYPES[ftype])
    w.add_clip_has_vision_encoder(True)
    w.add_vision_projection_dim(tower.n_embd_text)
    w.add_vision_image_size(tower.image_size)
    w.add_vision_patch_size(tower.patch_size)
    w.add_vision_embedding_length(tower.n_embd)
    w.add_vision_feed_forward_length(tower.n_ff)
    w.add_vision_block_count(tower.n_layer)
    w.add_vision_head_count(tower.n_head)
    w.add_vision_image_mean([0.5, 0.5, 0.5])
    w.add_vision_image_std([0.5, 0.5, 0.5])
    w.add_clip_projector_type(str(tower.projector))
    w.add_vision_attention_layernorm_eps(1e-6)
    if tower.projector is Projector.GLM4V:  # Glm4VVisionModel: hidden_act silu
        w.add_vision_use_silu(True)
    else:
        w.add_vision_use_gelu(True)
    if tower.projector is Projector.LLAMA4:
        w.add_vision_projector_scale_factor(tower.n_merge)
    if tower.projector is Projector.QWEN3VL:
        w.add_vision_spatial_merge_size(tower.n_merge)
        if tower.deepstack:
            w.add_vision_is_deepstack_layers([i in tower.deepstack for i in range(tower.n_layer)])
    for t in mmproj_tensors(tower):
        ty = t.type_in(ftype)
        rows = tuple(reversed(t.shape[1:]))
        row_bytes = tensor_bytes(ty, (t.shape[0],))
        w.add_tensor(t.name, np.zeros((*rows, row_bytes), dtype=np.uint8), raw_dtype=ty)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def parse_clip_log(log: str) -> dict[str, Any]:
    size = _MODEL_SIZE.search(log)
    warm = _WARMUP.search(log)
    return {
        "model_mib": float(size.group(1)) if size else None,
        "compute_mib": {m.group(1): float(m.group(2)) for m in _COMPUTE.finditer(log)},
        "warmup": int(warm.group(1)) if warm else None,
    }


def vision_check(model_id: str, ftype: GGMLType, n_layer: int = 2) -> dict[str, Any]:
    text = materialize(load_catalog()[TEXT_MODEL].spec())
    tower = tower_of(model_id, n_layer, text.spec.n_embd)
    tower = dataclasses.replace(tower, n_embd_text=text.spec.n_embd // (1 + len(tower.deepstack)))
    if text_width(tower) != text.spec.n_embd:
        raise ValueError(f"{model_id}: no projector width matches the text model's {text.spec.n_embd}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"mmproj-{model_id}-{ftype.name}.gguf"
        write_mmproj(tower, ftype, path)
        args = ["-m", str(text.path), "--mmproj", str(path), "-c", "512", "-t", "2", "--fit", "off"]
        r = server_startup([*args, "-lv", "4"])
    log = r.stderr + "\n" + r.stdout
    meas = parse_clip_log(log)
    pred_model = mmproj_bytes(tower, ftype) / MIB
    pred_compute = warmup_compute_bytes(tower) / MIB
    cpu_compute = meas["compute_mib"].get("CPU")
    pairs = (("model_mib", meas["model_mib"], pred_model), ("compute_mib", cpu_compute, pred_compute))
    ok = {
        "model": meas["model_mib"] is not None and abs(meas["model_mib"] - pred_model) <= 0.006,
        "compute": cpu_compute is not None and compute_ok(pred_compute, cpu_compute),
    }
    c: dict[str, Any] = {
        "id": f"vision/{model_id}/{ftype.name}/{n_layer}L",
        "model": model_id,
        "what": "mmproj weights (clip 'model size', to its 2 decimals), warmup compute (5% or 16 MiB)",
        "predicted": {"model_mib": round(pred_model, 3), "compute_mib": round(pred_compute, 3)},
        "measured": {"model_mib": meas["model_mib"], "compute_mib": cpu_compute, "warmup": meas["warmup"]},
        "error": {k: round(m - p, 3) for k, m, p in pairs if m is not None},
        "ok_by": ok,
        "ok": r.ok and all(ok.values()),
        "command": r.shell,
        "seconds": r.seconds,
    }
    if not r.ok:
        c["failure"] = r.failure()
    return c


# (model, mmproj type, blocks kept): five families, every file type's rules, the small and medium
# Qwen3.5 towers (the small one peaks in attention), and Qwen3-VL deep enough to keep one deepstack
# merger (9 blocks), and at full depth (27: blocks 8 and 16 keep their outputs live to the end)
CASES = (
    ("qwen3.6-27b", GGMLType.BF16, 2),
    ("qwen3.6-27b", GGMLType.Q8_0, 2),
    ("qwen3.6-27b", GGMLType.F32, 2),
    ("qwen3-vl-30b-a3b", GGMLType.F16, 9),
    ("qwen3-vl-30b-a3b", GGMLType.F16, 27),
    ("qwen3.5-4b", GGMLType.F16, 2),
    ("qwen3.5-0.8b", GGMLType.F16, 2),
    ("qwen3.5-0.8b", GGMLType.BF16, 12),
    ("gemma-3-4b", GGMLType.F16, 2),
    ("gemma-3-4b", GGMLType.Q8_0, 2),
    ("glm-4.6v", GGMLType.F16, 2),
    ("glm-4.6v", GGMLType.Q8_0, 2),
    ("gemma-4-26b-a4b", GGMLType.F16, 2),
    ("gemma-4-31b", GGMLType.Q8_0, 2),
    ("llama-4-scout-17b-16e", GGMLType.F16, 2),
    ("llama-4-scout-17b-16e", GGMLType.BF16, 2),
)


def real_log_check() -> dict[str, Any]:
    """The one public log with a projector (validation/gpu_logs.py's r05: Qwen3.6-27B with unsloth's
    mmproj-BF16.gguf on an RTX 5090): its clip buffers against the full tower's prediction."""
    records = json.loads(LOGS.read_text())["records"]
    r = next(x for x in records if x["id"] == "r05")
    tower = load_catalog()["qwen3.6-27b"].vision_tower()
    if tower is None:
        raise ValueError("qwen3.6-27b has no vision tower in the catalog")
    v = plan_vision(tower, GGMLType.BF16, ("CUDA0",))
    pred = {
        "model_mib": v.weights_bytes / MIB,
        "compute_mib": v.compute_bytes / MIB,
        "host_compute_mib": v.host_compute_bytes / MIB,
    }
    meas = {
        "model_mib": r["devices"]["CUDA0"]["mmproj_model_mib"],
        "compute_mib": r["devices"]["CUDA0"]["mmproj_compute_mib"],
        "host_compute_mib": r["host"]["mmproj_cpu_compute_mib"],
    }
    return {
        "id": "vision/real-log/r05/qwen3.6-27b/BF16/CUDA0",
        "model": "qwen3.6-27b",
        "what": "a real CUDA log's mmproj buffers (the log's 2 decimals; compute 1 decimal)",
        "predicted": {k: round(x, 3) for k, x in pred.items()},
        "measured": meas,
        "error": {k: round(meas[k] - pred[k], 3) for k in pred},
        "ok": all(abs(meas[k] - pred[k]) <= 0.051 for k in pred),
        "command": r["command"] + " (+ mmproj-BF16.gguf)",
    }


def run_vision(cases: Sequence[tuple[str, GGMLType, int]] = CASES) -> dict[str, Any]:
    checks = [vision_check(m, f, n) for m, f, n in cases] + [real_log_check()]
    payload = _header("vision", "vision projectors: mmproj weights and compute buffer", checks)
    write_result("vision", payload)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    return run_named({"vision": run_vision}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
