"""Explain real llama.cpp GPU logs (CUDA, Vulkan, Metal) from the rules moeplan reads in the source.

`tests/data/gpu_memory_logs.json` (a copy of shared/data/gpu_memory_logs.json) holds what users
posted: per GPU the model, KV/state ("context") and compute buffers llama.cpp printed, the command,
and the build where printed. Each `Setup` below restates one record as moeplan's inputs (catalog
model, file type, flags, the build modelled, from the record's build or its date) and says what had
to be inferred; nothing is fitted to the records. `python -m validation.gpu_logs` writes
`validation/results/gpu_logs.json`, which `validation.report` turns into a table.

Acceptance (issue 15): per GPU, compute within 10% or 64 MiB, KV/state exact (to the printed
precision), model + KV/state + compute within 3%.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moeplan.arch.inventory import inventory
from moeplan.engines.builds import at_build, describe, output_first
from moeplan.engines.llamacpp import Frontend, MemoryPlan, parse_placement, plan_memory
from moeplan.memory.kv import CacheConfig, cache_type
from moeplan.memory.weights import predict
from moeplan.quant.ggml import GGMLType
from moeplan.quant.recipe import FileType, QuantOptions
from moeplan.sources.catalog import load_catalog
from validation.llamacpp import write_result

LOGS = Path(__file__).resolve().parent.parent / "tests" / "data" / "gpu_memory_logs.json"
MIB = 2**20
COMPUTE_PCT, COMPUTE_MIB, TOTAL_PCT = 10.0, 64.0, 3.0


@dataclass(frozen=True)
class Setup:
    """One record as moeplan's inputs."""

    record: str
    model: str  # catalog id
    quant: str  # file type moeplan predicts the weights of (the record's, or the stock recipe nearest)
    build: int  # the build modelled: the record's, or estimated from its date
    devices: tuple[str, ...]
    flags: str
    ctx: int
    n_seq: int
    server: bool  # llama-server (slots reserve outputs) vs llama-cli / llama-completion
    n_ubatch: int = 512
    n_batch: int = 2048
    ctk: str = "f16"
    ctv: str = "f16"
    flash_attn: bool = True
    mtp: bool = False
    inferred: str = ""  # what the record does not print and this setup assumes
    # The file's recipe where it differs from stock llama-quantize of `quant`, with its source in `inferred`
    recipe: QuantOptions | None = None


# r15/r17's file: the author's Nix package fetches unsloth/gemma-4-12b-it-GGUF gemma-4-12b-it-Q3_K_M.gguf
# (rev 517f9a95, find_string file id 55069914675). With every layer on the GPU and --no-host/--no-repack
# the host's model line is token_embd alone: 412 MiB = 262144 x 3840 at 110 bytes per 256 (Q3_K's
# size), where stock llama-quantize gives a tied token_embd the output's Q6_K (787.5 MiB,
# llama-quant.cpp llama_tensor_get_type, `has_tied_embeddings`). The same notes (find_string file id
# 54970614717) show 412 MiB for the author's unsloth q3_k_s and iq3_xxs files too, where the tied rule
# would give Q6_K and Q5_K: in these files token_embd took the untied embedding rule (Q3_K, IQ3_S).
# gemma4 ties its output (models/gemma4.cpp: output = token_embd, TENSOR_DUPLICATED), so the GPU holds a
# second copy of the same tensor (llama-model-loader.cpp create_tensor: a duplicated token_embd takes
# the output layer's buffer type).
UNSLOTH_GEMMA4_Q3 = (
    "unsloth's Q3_K_M file (the author's Nix fetch): token_embd (tied output) at Q3_K, as its host "
    "model line (412 MiB, token_embd alone) shows, not stock llama-quantize's Q6_K"
)
UNSLOTH_GEMMA4_Q3_RECIPE = QuantOptions(output_tensor_type=GGMLType.Q3_K)

SETUPS = (
    Setup(
        "r01",
        "qwen3-30b-a3b",
        "F16",
        6895,
        ("CUDA0",),
        r"-ngl 48 -ot blk\.(1[4-9]|[23][0-9]|4[0-7])\.ffn_(up|down|gate)_exps=CPU",
        4096,
        4,
        True,
        inferred="4 slots (llama-server default; the KV cache is unified, so the same)",
    ),
    Setup(
        "r05",
        "qwen3.6-27b",
        "Q4_K_M",
        9170,
        ("CUDA0",),
        "-ngl 999",
        131072,
        4,
        True,
        ctk="q8_0",
        ctv="q8_0",
        mtp=True,
        inferred="build from the commit date 2026-05-14 (its 'b484' counter is a shallow clone's); "
        "unsloth UD-Q4_K_XL weights predicted as stock Q4_K_M; the MTP draft context is not compared",
    ),
    Setup(
        "r06",
        "minimax-m2.5",
        "IQ4_NL",
        7800,
        ("CUDA0", "CUDA1", "CUDA2", "CUDA3"),
        r"-ngl 99 -ts 1,1,1,1 -ot "
        r"blk\.([1-9]|10|1[7-9]|2[0-5]|3[3-9]|4[01]|49|5[0-7])\.ffn_.*_exps\.weight=CPU",
        120000,
        1,
        True,
        n_batch=512,
        inferred="MiniMax-M2.5 config for the M2.1 PRISM finetune (same shapes); build from the date "
        "(2026-01); the finetune's IQ4_NL recipe is not published, stock llama-quantize IQ4_NL assumed",
    ),
    Setup(
        "r11",
        "gpt-oss-20b",
        "MXFP4_MOE",
        8650,
        ("Vulkan0",),
        "-ngl 99 --n-cpu-moe 22",
        131072,
        4,
        True,
        n_ubatch=2048,
        inferred="all layers offloaded (the log does not print -ngl)",
    ),
    Setup(
        "r15",
        "gemma-4-12b",
        "Q3_K_M",
        9400,
        ("Vulkan0",),
        "-ngl 99",
        82688,
        4,
        True,
        n_ubatch=64,
        ctk="q5_1",
        ctv="q5_1",
        inferred="all layers offloaded, 4 slots (llama-server defaults); build after #23861 (~b9400), not "
        "the notes' ~b8650: the host line holds an F16 mask (#23764) and the GPU no micro-batch of logits; "
        + UNSLOTH_GEMMA4_Q3,
        recipe=UNSLOTH_GEMMA4_Q3_RECIPE,
    ),
    Setup(
        "r17",
        "gemma-4-12b",
        "Q3_K_M",
        9400,
        ("Vulkan0",),
        "-ngl 99",
        70912,
        4,
        True,
        n_ubatch=256,
        ctk="q5_1",
        ctv="q5_1",
        inferred="all layers offloaded, 4 slots (llama-server defaults); build after #23861 (~b9400), not "
        "the notes' ~b8650: the host line holds an F16 mask (#23764) and the GPU no micro-batch of logits; "
        + UNSLOTH_GEMMA4_Q3,
        recipe=UNSLOTH_GEMMA4_Q3_RECIPE,
    ),
    Setup(
        "r21",
        "qwen3.5-9b",
        "Q3_K_M",
        8650,
        ("Vulkan0",),
        "-ngl 99",
        65536,
        4,
        True,
        inferred="all layers offloaded, 4 slots (llama-server defaults); Q3_K_M of the finetune "
        "as the stock recipe",
    ),
    Setup("r28", "gpt-oss-20b", "MXFP4_MOE", 8164, ("MTL0",), "-ngl 99", 131072, 1, False),
    Setup(
        "r30",
        "glm-5.2",
        "Q5_K_M",
        10700,
        ("CUDA0", "CUDA1", "CUDA2", "CUDA3"),
        "-ngl 99 --n-cpu-moe 54 -ts 55,9,8,8",
        768000,
        1,
        True,
        inferred="layer split 55/9/8/6 (+ NextN and output on CUDA3) from the logged KV shares (chosen "
        "by --fit); build from the date (2026-08); unsloth UD-Q5_K_XL predicted as stock Q5_K_M",
    ),
    Setup(
        "r34",
        "qwen3-30b-a3b",
        "Q4_K_M",
        5600,
        ("CUDA0", "CUDA1"),
        "-ngl 99 -ot exps=CPU -ts 12,37",
        16384,
        1,
        False,
        flash_attn=False,
        inferred="layer split 12/36 (+ output on CUDA1) from the logged KV; build from the date (2025-06)",
    ),
    Setup(
        "r36",
        "gpt-oss-20b",
        "MXFP4_MOE",
        6182,
        ("Vulkan0",),
        "-ngl 24 --n-cpu-moe 14",
        4096,
        1,
        False,
        flash_attn=False,
    ),
    Setup("r40", "gemma-3-1b", "Q4_K_M", 5050, ("CUDA0",), "-ngl 99", 4096, 1, False, flash_attn=False),
)


# Why each device's figures are what they are, and the reason for each difference left (from the
# rules, not tuned: a row that misses says what the record would need).
REASONS = {
    "r01/CUDA0": "b6895 predates #18148: -ngl 48 keeps the output layer on the CPU; its F16 weight "
    "(594 MiB) is copied in for the offloaded logits matmul of 512 outputs (#23861 not yet in): "
    "594 + 297 + 8",
    "r05/CUDA0": "logits of the whole micro-batch (248320 x 512 x 4 = 485 MiB, before #23861) dominate "
    "(the F32 mask's cast phase, 256 + 128 MiB, is below them); model: unsloth's UD-Q4_K_XL keeps more "
    "tensors above Q4_K than stock Q4_K_M (-1299 MiB); the file's per-tensor types are in no public "
    "source found (GitHub issues, code and pages searched for its load log or a gguf dump; only its file "
    "size is quoted), so they are not modelled",
    "r06/CUDA0": "host experts' copies for op offload, one at a time: the largest CPU expert tensor of the "
    "stock IQ4_NL recipe (ffn_down_exps, 792 MiB) + FFN activations, beside the F16 mask; layer 0 casts "
    "the F32 mask copy (234 MiB, before #23764) to F16 here, so that copy sits below the expert copy",
    "r06/CUDA1": "F16 KQ mask copy (120064 x 512 x 2; the F32 one is cast on CUDA0) + the MoE FFN "
    "activations of a layer",
    "r06/CUDA2": "F16 KQ mask copy (120064 x 512 x 2; the F32 one is cast on CUDA0) + the MoE FFN "
    "activations of a layer",
    "r06/CUDA3": "logits of 512 outputs (200064 vocab, before #23861) on the device with the output layer",
    "r11/Vulkan0": "Vulkan's 1 GiB buffer chunks (suballocation_block_size, chunked since #15815): the F32 "
    "KQ mask copy (131072 x 2048 x 4 = 1 GiB, before #23764) fills chunk 0; the SWA mask's F32 copy, the "
    "first layer's activations and the F16 casts (673 MiB) chunk 1; and the 2048 outputs' logits "
    "(1571 MiB) take a chunk of their own: 1024 + 673 + 1571; the host line (282 MiB) does not fit "
    "this run's -ub 2048 (its SWA cache of 2560 cells says 2048): the host holds the 1 GiB F32 mask "
    "(1089 MiB predicted), and the notes' gpt-oss-120b block at the same -ub 2048 and build logs its host "
    "line at exactly the predicted 577 MiB (F32 mask 512 + SWA mask 20 + rows 45); 282 is the same setup "
    "at -ub 512 (F32 mask 256 + rows + SWA mask)",
    "r15/Vulkan0": "compute: F16 mask copies + layer + 4 outputs' logits (after #23861). Model: the 48 "
    "layers + the tied output's copy of token_embd on the GPU (gemma4 output = token_embd, "
    "TENSOR_DUPLICATED, in the output layer's buffer), at unsloth's Q3_K: 5002.5 + 412.5 MiB. Not "
    "--fit's doing: on one GPU with no -c, lowering the context ends --fit before it moves any layer "
    "(common/fit.cpp, replayed in engines/fit.py); moeplan keeps -ngl 99's placement",
    "r17/Vulkan0": "as r15 at -ub 256 (compute 93 vs 98 MiB; model: layers + the Q3_K tied output copy)",
    "r21/Vulkan0": "logits of 512 outputs (248320 vocab, before #23861) + norm rows",
    "r28/MTL0": "F32 mask copy 256 MiB + its F16 cast 128 MiB (before #23764) + the first layer's "
    "activations, above the logits of 512 outputs (404 MiB); model: Metal maps the whole file, "
    "token_embd included (the host's CPU_Mapped pages, counted once in unified memory)",
    "r30/CUDA0": "op-offload copy of the largest host expert tensor (stock Q5_K_M ffn_down_exps) + mask + "
    "activations; model and compute low by the UD-Q5_K_XL recipe (wider experts than stock Q5_K_M: the "
    "log's 5124 MiB needs a ~3.2 GiB expert tensor where stock Q5_K_M's largest is 2520 MiB)",
    "r30/CUDA1": "DSA masks (KQ and indexer) + sparse-attention leaves of 9 layers; "
    "model: UD-Q5_K_XL vs Q5_K_M",
    "r30/CUDA2": "as CUDA1 with 8 layers; model: UD-Q5_K_XL vs stock Q5_K_M",
    "r30/CUDA3": "as CUDA1 with 6 layers + output (8 outputs reserved after #23861); model: UD recipe",
    "r34/CUDA0": "FA off: F32 KQ scores 16384 x 512 x 32 heads (1024 MiB) + F32 mask, on every GPU",
    "r34/CUDA1": "as CUDA0; logits of 512 outputs (608 MiB incl. norm rows) are below the KQ peak",
    "r36/Vulkan0": "b6182 predates #18148: the output layer stays on the CPU; its Q8_0 weight (587 MiB) is "
    "copied in with 512 outputs' logits (393 MiB). KV: before #17046 caches were padded to 32 cells "
    "without flash attention (SWA 640 cells, not 768). Host line: masks + rows (15 MiB) + the CPU experts' "
    "bias adds, which this Vulkan's offload_op (ne[1] >= 32; ADD_ID's ne[1] is n_expert_used = 4) left "
    "on the host: up and gate ADD_ID in place, 2 x 2880 x 4 x 512 x 4 = 45 MiB (builds.py VULKAN_ROW_BATCH)",
    "r40/CUDA0": "b5050 predates #13194 (SWA cache): all 26 layers cache 4096 cells; logits of 512 "
    "outputs x 262144 vocab (512 MiB)",
}


# The issue's own example (not a record of gpu_memory_logs.json): Qwen3.5-9B, `-c 262144 -fa on -ctk q8_0
# -ctv q8_0` on an M4 Pro (Metal), build 8999, 833 MiB of Metal compute. Q4_K_M and llama-server's 4 slots
# are assumed (neither moves the compute buffer: the F32 mask's cast phase is its peak).
ISSUE_METAL = Setup(
    "issue15-metal",
    "qwen3.5-9b",
    "Q4_K_M",
    8999,
    ("MTL0",),
    "-ngl 99",
    262144,
    4,
    True,
    ctk="q8_0",
    ctv="q8_0",
)
ISSUE_METAL_COMPUTE_MIB = 833.0


def predict_setup(s: Setup) -> MemoryPlan:
    spec = load_catalog()[s.model].spec()
    inv = inventory(spec, mtp=s.mtp)
    w = predict(inv, FileType.parse(s.quant), s.recipe)
    cfg = CacheConfig(
        n_ctx=s.ctx,
        n_seq=s.n_seq,
        unified=s.server,
        n_ubatch=s.n_ubatch,
        n_batch=s.n_batch,
        type_k=cache_type(s.ctk),
        type_v=cache_type(s.ctv),
        flash_attn=s.flash_attn,
    )
    fe = Frontend("llama-server", n_outputs_max=s.n_seq) if s.server else Frontend()
    cfg, fe = at_build(s.build, cfg, fe)
    return plan_memory(
        inv, w, cfg, parse_placement(s.flags), s.devices, fe, output_first=output_first(s.build)
    )


_HOST_COMPUTE = ("host_compute_mib", "cuda_host_compute_mib", "cpu_compute_mib", "vulkan_host_compute_mib")


def _logged_host(record: dict[str, Any]) -> float | None:
    """The host's compute buffer as the record prints it (CPU, CUDA_Host or Vulkan_Host), if it does."""
    host = record.get("host", {})
    return next((float(host[k]) for k in _HOST_COMPUTE if k in host), None)


def _logged(dev: dict[str, Any]) -> dict[str, float]:
    """The record's model / context (KV + state) / compute MiB for one device, whichever way printed."""
    if "kv_mib" in dev:  # buffer lines
        context = dev.get("kv_mib", 0.0) + dev.get("rs_mib", 0.0) + dev.get("indexer_kv_mib", 0.0)
        return {"model": dev["model_mib"], "context": context, "compute": dev["compute_mib"]}
    return {"model": dev["model_mib"], "context": dev["context_mib"], "compute": dev["compute_mib"]}


def host_ok(pred: float, got: float) -> bool:
    """The host's compute line to the compute tolerance (10% or 64 MiB)."""
    return abs(pred - got) <= max(COMPUTE_MIB, COMPUTE_PCT / 100 * got)


def pct(pred: float, got: float) -> float:
    return 100.0 * (pred - got) / got if got else 0.0


def compare(s: Setup, record: dict[str, Any]) -> list[dict[str, Any]]:
    plan = predict_setup(s)
    host_logged = _logged_host(record)
    host_pred = plan.device("CPU").compute_bytes / MIB
    rows = []
    for name in s.devices:
        d = plan.device(name)
        pred = {
            "model": d.weights_bytes / MIB,
            "context": (d.kv_bytes + d.state_bytes) / MIB,
            "compute": d.compute_bytes / MIB,
            "offload_copy": d.offload_copy_bytes / MIB,
            "runtime": d.runtime_bytes / MIB,
        }
        got = _logged(record["devices"][name])
        total_pred = pred["model"] + pred["context"] + pred["compute"]
        total_got = got["model"] + got["context"] + got["compute"]
        compute_err = pred["compute"] - got["compute"]
        rows.append(
            {
                "id": f"{s.record}/{name}",
                "model": s.model,
                "quant": s.quant,
                "backend": record["backend"],
                "build": describe(s.build),
                "predicted": {k: round(v, 2) for k, v in pred.items()},
                "logged": got,
                "total": {"predicted": round(total_pred, 2), "logged": total_got},
                "ok": {
                    "compute": abs(compute_err) <= max(COMPUTE_MIB, COMPUTE_PCT / 100 * got["compute"]),
                    # KV/state exact to the precision printed (MiB with two decimals, or whole MiB)
                    "context": abs(pred["context"] - got["context"]) < 1.0,
                    "total": abs(pct(total_pred, total_got)) <= TOTAL_PCT,
                },
                # The host's compute line, once per record (on its first GPU's row)
                "host_compute": (
                    {"predicted": round(host_pred, 2), "logged": host_logged}
                    if name == s.devices[0] and host_logged is not None
                    else None
                ),
                "command": record["command"],
                "flags": s.flags,
                "inferred": s.inferred,
                "reason": REASONS[f"{s.record}/{name}"],
            }
        )
    return rows


def run() -> dict[str, Any]:
    records = {r["id"]: r for r in json.loads(LOGS.read_text())["records"]}
    rows = [row for s in SETUPS for row in compare(s, records[s.record])]
    ok = {k: sum(r["ok"][k] for r in rows) for k in ("compute", "context", "total")}
    hosts = [r["host_compute"] for r in rows if r["host_compute"]]
    ok["host"] = sum(host_ok(h["predicted"], h["logged"]) for h in hosts)
    return {
        "name": "gpu_logs",
        "title": "Real GPU logs (CUDA, Vulkan, Metal) explained from the source",
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "summary": {
            "devices": len(rows),
            "records": len(SETUPS),
            "hosts": len(hosts),
            **{f"{k}_ok": v for k, v in ok.items()},
        },
        "comparisons": rows,
        "issue_example": {
            "what": "issue 15's Metal example (Qwen3.5-9B, -c 262144 -fa on q8_0 cache, M4 Pro, b8999)",
            "compute_predicted_mib": round(predict_setup(ISSUE_METAL).device("MTL0").compute_bytes / MIB, 2),
            "compute_logged_mib": ISSUE_METAL_COMPUTE_MIB,
            "reason": "F32 KQ mask copy (262144 x 512 x 4 = 512 MiB, before #23764) + its F16 cast (256 MiB) "
            "+ the first attention layer's activations, above the 512 outputs' logits (501 MiB)",
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    payload = run()
    path = write_result("gpu_logs", payload)
    print(json.dumps(payload["summary"]), "->", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
