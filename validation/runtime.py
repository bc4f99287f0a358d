"""Runtime memory, placement and `--fit`: the pinned llama.cpp vs moeplan's runtime rules.

Runners (`python -m validation.runtime [memory|compute|placement|fit ...]`, all by default),
each writing `validation/results/<name>.json`:
- `memory` (`kv_state.json`): KV cache and recurrent state of real runs (`llama-completion`, and
  `llama-server` for unified KV) — the `llama_kv_cache: size = ...` / `llama_memory_recurrent: size
  = ...` lines, per cache (full, SWA/chunked, recurrent) — vs `moeplan.memory.kv.layer_memory`: cells
  exactly, K/V/state bytes to the log's 2-decimal MiB. The same runs' `sched_reserve` CPU compute
  buffer vs `engines.llamacpp.compute_bytes`.
- `compute` (`compute.json`): the exact dry run (`llama-fit-params --fit-print on`) Host compute MiB
  over contexts, micro-batches and flash attention vs moeplan (5% or 16 MiB).
- `placement` (`placement.json`): a memory-limited RPC device (`ggml-rpc-server` under the
  fake-memory shim) with `-ngl`, `-ot`, `--n-cpu-moe`, `-nkvo`: per-device model/context/compute of
  the dry run vs `plan_memory(..., gpus=("RPC0",))`, per-device totals within 2%.
- `fit` (`fit.json`): what `llama-fit-params -fitt 1024` chooses on an RPC device too small for a
  MoE model vs moeplan's `plan()` on a rig whose GPU is that device (smallest fitting --n-cpu-moe).
- `fit_replay` (`fit_replay.json`): llama-fit-params' own choice (no -c: its context too) on one or
  two RPC devices, or on the host alone with its memory faked, vs `moeplan.engines.fit` replaying
  --fit on moeplan's figures: the printed `-c -ngl -ts -ot` line, character for character.
Speed (`llama-bench`) is `validation/speed.py`.

MoE models are materialised "lean" for the real runs (`lean()`: the same shrunk model with at most
max(8, experts per token) experts per layer): a real run maps and touches the whole file, and the
full expert counts make sparse files of 2-12 GB whose loading takes minutes. KV cache, recurrent
state and attention do not depend on the expert count; the compute prediction uses the lean spec
too. The dry runs (`compute`, `placement`, `fit`) read no tensor data and use the full expert counts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from moeplan.arch.inventory import Inventory, inventory
from moeplan.arch.registry import rules
from moeplan.arch.spec import AttnKind, FFNKind, ModelSpec
from moeplan.engines.llamacpp import (
    CPU,
    Frontend,
    MemoryPlan,
    Placement,
    parse_placement,
    plan_memory,
)
from moeplan.hardware.spec import GPU, Host, Node, Rig
from moeplan.memory.kv import CacheConfig, LayerMemory, cache_type, layer_memory, mtp_trunk_memory
from moeplan.memory.weights import TypedTensor, Weights, active_fractions, predict
from moeplan.plan.fit import UserSet, fit_command
from moeplan.plan.llamacpp import FIT_TARGET, PlanResult, plan
from moeplan.quant.ggml import tensor_bytes
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog
from validation.llamacpp import (
    MIB,
    Run,
    _header,
    bin_dir,
    gemma_path,
    parse_fit_print,
    run,
    run_named,
    write_result,
)
from validation.materialize import EXPERT_BYTES_BUDGET, Materialized, materialize, stored_type, write_gguf

# One catalog model per architecture (Mixtral: the llama arch with experts).
ARCH_MODELS = {
    "llama": "llama-3.1-8b",
    "mixtral": "mixtral-8x7b",
    "qwen2": "qwen2.5-7b-instruct",  # q/k/v biases, untied head
    "qwen3": "qwen3-8b",
    "qwen3moe": "qwen3-30b-a3b",
    "qwen3next": "qwen3-next-80b-a3b",
    "qwen35": "qwen3.5-9b",
    "qwen35moe": "qwen3.5-35b-a3b",
    "deepseek2": "deepseek-v3.1",
    "llama4": "llama-4-scout-17b-16e",
    "gpt-oss": "gpt-oss-20b",
    "glm4moe": "glm-4.5-air",
    "deepseek32": "deepseek-v3.2",
    "glm-dsa": "glm-5.2",  # IndexShare: full and shared indexer layers
    "mistral4": "mistral-small-4-119b-2603",
    "gemma3": "gemma-3-270m",
    "nemotron_h_moe": "nemotron-3-nano-30b-a3b",
    "granitehybrid": "granite-4.0-h-tiny",
    "granite": "granite-4.0-micro",  # llama layout with Granite multipliers (an all-attention Granite-4.0)
    "step35": "step-3.5-flash",
    "mimo2": "mimo-v2-flash",
    "minimax-m2": "minimax-m2.7",
    "afmoe": "trinity-mini",
    "bailingmoe2": "ling-mini-2.0",
    "bailingmoe3": "ling-3.0-flash",  # KDA recurrent + gated MLA, the MTP block's MLA in the trunk cache
    "exaone-moe": "k-exaone-236b-a23b",
    "seed_oss": "seed-oss-36b-instruct",
    "olmoe": "olmoe-1b-7b-0924",
    "olmo2": "olmo-3-7b",  # post-norms only, 3:1 SWA pattern from layer_types
    "gemma4": "gemma-4-26b-a4b",  # K=V full layers, experts beside the dense MLP
    "gemma4-ple": "gemma-4-e2b",  # gemma4 with per-layer embeddings and KV-sharing layers
    "ernie4_5-moe": "ernie-4.5-21b-a3b",
    "hunyuan-moe": "hunyuan-a13b",
    "hunyuan-dense": "hunyuan-7b-instruct",  # llama layout with per-head q/k norms, NTK-alpha context
    "dots1": "dots.llm1.inst",
    "phimoe": "phi-3.5-moe",
    "qwen3vlmoe": "qwen3-vl-30b-a3b",
    "kimi-linear": "kimi-linear-48b-a3b-instruct",  # KDA recurrent + MLA layers
    "kimi-k3": "kimi-k3",
    "lfm2moe": "lfm2-8b-a1b",  # short-convolution state + GQA layers
    "minimax-m3": "minimax-m3",  # MSA: indexer cache with K and V, block-sparse masks
    "deepseek4": "deepseek-v4-flash",  # SWA + CSA/HCA compressed caches + indexer + compressor state
    "muse-glimmer": "muse-glimmer-30b",  # dense: gated attention, SWA with NoPE full layers
    "laguna": "laguna-xs.2",  # per-layer query heads, dense-first fixed SWA pattern, per-head gates
    "cohere2": "c4ai-command-r7b-12-2024",  # dense parallel block, fixed 3:1 SWA pattern, NoPE full layers
    "cohere2moe": "north-mini-code-1.0",  # parallel attention + FFN block, SWA from the pattern array
    "qwen4exp": "qwen3.8-flash-next",  # GDN + QSA (pooled indexer cache), hyper-connections, PLE conv state
    "hy_v3": "hy3",  # dense-first, unsuffixed selection bias, MTP block partly loaded without a draft
    "mellum": "mellum2-12b-a2.5b",  # Qwen3-MoE block, 3:1 SWA pattern array
    "nemotron_h": "nemotron-nano-9b-v2",  # dense hybrid: Mamba-2, relu2 MLP and attention blocks
    "deci": "llama-3.3-nemotron-super-49b-v1",  # per-layer KV heads and FFN widths, blocks without attention
}
GEMMA = "gemma-3-270m-real"
LEAN_EXPERTS = 8
KV_TOLERANCE_MIB = 0.005  # the log prints 2 decimals
COMPUTE_REL, COMPUTE_ABS_MIB = 0.05, 16.0
TOTAL_REL = 0.02
RPC_MIB = 2048
TIMEOUT = 180.0


# ------------------------------------------------------------------------------------------------
# subjects: a GGUF and what moeplan knows about it


@dataclass(frozen=True)
class Subject:
    key: str  # "qwen3moe" / "gemma-3-270m-real"
    model: str  # catalog id
    path: Path
    spec: ModelSpec
    inventory: Inventory
    weights: Weights
    lean: bool
    holes: bool


def lean(spec: ModelSpec, experts: int = LEAN_EXPERTS) -> ModelSpec:
    """The same model with at most max(`experts`, experts per token) experts in each MoE layer."""

    def one(layer: Any) -> Any:
        f = layer.ffn
        if f.kind is not FFNKind.MOE:
            return layer
        n = min(f.n_expert, max(experts, f.n_expert_used))
        return dataclasses.replace(layer, ffn=dataclasses.replace(f, n_expert=n))

    return dataclasses.replace(
        spec, layers=tuple(one(la) for la in spec.layers), mtp_layers=tuple(one(la) for la in spec.mtp_layers)
    )


def stored_weights(m: Materialized) -> Weights:
    """The weights exactly as the materialiser stored them (F16, F32 norms/routers, MXFP4 experts)."""
    typed = tuple(
        TypedTensor(t, stored_type(t), tensor_bytes(stored_type(t), t.shape)) for t in m.inventory.tensors
    )
    return Weights(m.spec.name, m.spec.arch, "stored", typed, active_fractions(m.inventory))


@cache
def subject(key: str, *, slim: bool = False, dense_experts: bool = False) -> Subject:
    """`key` an ARCH_MODELS key or GEMMA. `slim`: the lean variant (MoE only); `dense_experts`:
    write the (lean) expert stacks with random data instead of holes (for speed runs)."""
    if key == GEMMA:
        spec = load_catalog()["gemma-3-270m"].spec()
        inv = inventory(spec)
        return Subject(
            key, "gemma-3-270m", gemma_path(), spec, inv, predict(inv, FileType.Q4_K_M), False, False
        )
    model = ARCH_MODELS[key]
    spec = load_catalog()[model].spec()
    is_lean = slim and spec.is_moe
    budget = 1 << 40 if dense_experts else EXPERT_BYTES_BUDGET
    m = materialize(lean(spec) if is_lean else spec, expert_budget=budget)
    return Subject(key, model, m.path, m.spec, m.inventory, stored_weights(m), is_lean, m.holes)


def fullsize_subject(model: str, folder: Path) -> Subject:
    """A catalog model at its real shapes, header only (`write_gguf(header_only=True)`: every tensor
    a hole, a few MB on disk), for the dry run, which reads no tensor data; the weights are typed
    as the F16 file type (the compute buffer does not depend on them)."""
    spec = load_catalog()[model].spec()
    inv = inventory(spec)
    path = folder / f"{model}-header-only.gguf"
    if not path.exists():
        write_gguf(inv, path, header_only=True)
    return Subject(spec.arch, model, path, spec, inv, predict(inv, FileType.F16), False, True)


# ------------------------------------------------------------------------------------------------
# parsing the -lv 4 memory lines

_KV_SIZE = re.compile(
    r"llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers,\s*(\d+)/\s*(\d+) seqs\), "
    r"K \((\w+)\):\s*([\d.]+) MiB(?:, V \((\w+)\):\s*([\d.]+) MiB)?"
)
_RS_SIZE = re.compile(
    r"llama_memory_recurrent: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers,\s*(\d+) seqs.*?\), "
    r"R \(\w+\):\s*([\d.]+) MiB, S \(\w+\):\s*([\d.]+) MiB"
)
_DSV4_STATE = re.compile(r"llama_dsv4_comp_state: (\w+) ratio = .*size =\s*([\d.]+) MiB")
_COMPUTE = re.compile(r"sched_reserve:\s+(\S+) compute buffer size =\s*([\d.]+) MiB")
_OUTPUT = re.compile(r"(\S+)\s+output buffer size =\s*([\d.]+) MiB")


def parse_memory_log(log: str) -> dict[str, Any]:
    """Caches by kind ("full", "swa", "indexer", "recurrent"), compute and output buffers (MiB) of a run."""
    caches: dict[str, dict[str, Any]] = {}
    compute: dict[str, float] = {}
    output: dict[str, float] = {}
    kind = "full"
    for line in log.splitlines():
        if "creating non-SWA KV cache" in line:
            kind = "full"
        elif "creating     SWA KV cache" in line or "creating SWA KV cache" in line:
            kind = "swa"
        elif "creating indexer KV cache" in line or "creating DSV4 lightning-indexer KV cache" in line:
            kind = "indexer"  # llama_kv_cache_dsa's / llama_kv_cache_dsv4's indexer-key cache
        elif "creating DSV4 CSA compressed KV cache" in line:
            kind = "csa"
        elif "creating DSV4 HCA compressed KV cache" in line:
            kind = "hca"
        elif m := _DSV4_STATE.search(line):  # llama_dsv4_comp_state: csa, hca and lid, summed
            state = caches.setdefault("dsv4_state", {"mib": 0.0, "cells": 0, "layers": 0, "lines": 0})
            state["mib"] += float(m.group(2))
            state["lines"] += 1  # each line rounds to 2 decimals
        elif (m := _KV_SIZE.search(line)) and int(m.group(3)) == 0:
            kind = "full"  # a cache without layers (DeepSeek-V4's unused non-SWA half) holds nothing
        elif m := _KV_SIZE.search(line):
            caches[kind] = {
                "mib": float(m.group(1)),
                "cells": int(m.group(2)),
                "layers": int(m.group(3)),
                "seqs": f"{m.group(4)}/{m.group(5)}",
                "k_mib": float(m.group(7)),
                "v_mib": float(m.group(9)) if m.group(9) else 0.0,
            }
            kind = "full"
        elif m := _RS_SIZE.search(line):
            caches["recurrent"] = {
                "mib": float(m.group(1)),
                "cells": int(m.group(2)),
                "layers": int(m.group(3)),
                "r_mib": float(m.group(5)),
                "s_mib": float(m.group(6)),
            }
        elif m := _COMPUTE.search(line):
            compute.setdefault(m.group(1), float(m.group(2)))
        elif m := _OUTPUT.search(line):
            output.setdefault(m.group(1), float(m.group(2)))
    return {"caches": caches, "compute_mib": compute, "output_mib": output}


def predicted_caches(spec: ModelSpec, cfg: CacheConfig, n_mtp: int = 0) -> dict[str, dict[str, Any]]:
    """moeplan's layer_memory grouped the way llama.cpp logs its caches (with the `n_mtp` kept MTP
    blocks the trunk's cache also holds, `mtp_trunk_memory`)."""
    groups: dict[str, list[LayerMemory]] = {}
    blocks = spec.layers + spec.mtp_layers
    for lm in layer_memory(spec, cfg) + mtp_trunk_memory(spec, n_mtp, cfg):
        a = blocks[lm.layer].attn
        if lm.kind is AttnKind.NONE:  # FFN-only block: in no cache
            continue
        if a.kv_reuse >= 0:  # a KV-sharing layer: counted in no cache's layers
            continue
        if lm.kind is AttnKind.LINEAR:
            kind = "recurrent"
        elif a.sliding:
            kind = "swa"
        else:
            kind = "full"
        groups.setdefault(kind, []).append(lm)
        if lm.index_bytes:  # the DSA indexer keys: their own llama_kv_cache, K only
            groups.setdefault("indexer", []).append(lm)
        if lm.comp_bytes:  # DeepSeek-V4's compressed K caches, one per ratio
            groups.setdefault("csa" if a.compress_ratio == 4 else "hca", []).append(lm)
        if a.shared_kv and lm.state_bytes:  # its compressor states
            groups.setdefault("dsv4_state", []).append(lm)
    out: dict[str, dict[str, Any]] = {}
    for kind, lms in groups.items():
        if kind == "recurrent":
            out[kind] = {
                "mib": sum(lm.state_bytes for lm in lms) / MIB,
                "cells": max(1, cfg.n_seq),
                "layers": len(lms),
                **_state_split(spec, lms, max(1, cfg.n_seq)),
            }
            continue
        if kind == "dsv4_state":
            out[kind] = {"mib": sum(lm.state_bytes for lm in lms) / MIB, "cells": 0, "layers": 0}
            continue
        if kind in ("csa", "hca"):
            comp = sum(lm.comp_bytes for lm in lms) / MIB
            out[kind] = {
                "mib": comp,
                "cells": lms[0].comp_cells,
                "layers": len(lms),
                "k_mib": comp,
                "v_mib": 0.0,
            }
            continue
        cells = {lm.comp_cells or lm.cells for lm in lms} if kind == "indexer" else {lm.cells for lm in lms}
        if kind == "indexer":
            idx = sum(lm.index_bytes for lm in lms) / MIB
            idx_v = sum(lm.index_v_bytes for lm in lms) / MIB  # MSA's indexer cache has V too
            out[kind] = {"mib": idx, "cells": cells.pop(), "layers": len(lms), "k_mib": idx - idx_v,
                         "v_mib": idx_v}  # fmt: skip
            continue
        out[kind] = {
            "mib": sum(lm.k_bytes + lm.v_bytes for lm in lms) / MIB,
            "cells": cells.pop() if len(cells) == 1 else sorted(cells),
            "layers": len(lms),
            "k_mib": sum(lm.k_bytes for lm in lms) / MIB,
            "v_mib": sum(lm.v_bytes for lm in lms) / MIB,
        }
    return out


def _state_split(spec: ModelSpec, lms: list[LayerMemory], n_seq: int) -> dict[str, float]:
    """The R (conv) and S (recurrent) parts of the recurrent cache, F32, by the family's
    `recurrent_state` rule (llama_memory_recurrent's `R (f32)` / `S (f32)`); nothing where that rule
    does not account for a layer's whole state."""
    fam = rules(spec.arch)
    r = s = 0
    for lm in lms:
        lr, ls = fam.recurrent_state(spec.layers[lm.layer].attn)
        if 4 * (lr + ls) * n_seq != lm.state_bytes:
            return {}
        r, s = r + 4 * lr * n_seq, s + 4 * ls * n_seq
    return {"r_mib": r / MIB, "s_mib": s / MIB}


def compare_caches(
    pred: dict[str, dict[str, Any]], meas: dict[str, dict[str, Any]]
) -> tuple[bool, dict[str, Any]]:
    """Cells and layers exactly, MiB within the log's rounding, per cache kind."""
    errors: dict[str, Any] = {}
    ok = set(pred) == set(meas)
    for kind in sorted(set(pred) | set(meas)):
        p, m = pred.get(kind), meas.get(kind)
        if p is None or m is None:
            errors[kind] = "missing in " + ("prediction" if p is None else "log")
            ok = False
            continue
        e: dict[str, Any] = {}
        for key in ("mib", "k_mib", "v_mib", "r_mib", "s_mib"):
            if key in p and key in m:
                e[key] = round(m[key] - p[key], 4)
                ok = ok and abs(m[key] - p[key]) <= KV_TOLERANCE_MIB * m.get("lines", 1) + 1e-9
        e["cells"] = m["cells"] == p["cells"]
        ok = ok and e["cells"]
        if kind != "recurrent":  # the recurrent line counts every layer of the model
            e["layers"] = m["layers"] == p["layers"]
            ok = ok and e["layers"]
        errors[kind] = e
    return ok, errors


def _round(d: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {kk: round(v, 4) if isinstance(v, float) else v for kk, v in c.items()} for k, c in d.items()}


# ------------------------------------------------------------------------------------------------
# real runs: llama-completion, and llama-server for unified KV


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(p: subprocess.Popen[bytes]) -> None:
    """End a process we started (its own process group), SIGTERM then SIGKILL, bounded."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def server_startup(args: Sequence[str], timeout: float = TIMEOUT) -> Run:
    """Start llama-server on a free loopback port, wait until it listens (or exits), stop it;
    its log up to then is what it allocated at startup."""
    port = free_port()
    cmd = (str(bin_dir() / "llama-server"), *args, "--host", "127.0.0.1", "--port", str(port))
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        rc = 124
        try:
            while time.monotonic() - t0 < timeout:
                if p.poll() is not None:
                    rc = p.returncode
                    break
                log.seek(0)
                if b"listening on http" in log.read():
                    rc = 0
                    break
                time.sleep(0.1)
        finally:
            _stop(p)
        log.seek(0)
        text = log.read().decode(errors="replace")
    return Run(cmd, rc, "", text, round(time.monotonic() - t0, 3))


@dataclass(frozen=True)
class MemCase:
    ctx: int
    n_seq: int = 1
    unified: bool = False
    cache: str = "f16"
    flash_attn: bool = True
    n_ubatch: int = 512

    @property
    def label(self) -> str:
        kvu = " kvu" if self.unified else ""
        return (
            f"c{self.ctx} np{self.n_seq}{kvu} {self.cache} fa{'on' if self.flash_attn else 'off'} "
            f"ub{self.n_ubatch}"
        )

    def config(self) -> CacheConfig:
        t = cache_type(self.cache)
        return CacheConfig(
            n_ctx=self.ctx,
            n_seq=self.n_seq,
            unified=self.unified,
            n_ubatch=self.n_ubatch,
            type_k=t,
            type_v=t,
            flash_attn=self.flash_attn,
        )

    def frontend(self) -> Frontend:
        return Frontend("llama-server", n_outputs_max=self.n_seq) if self.unified else Frontend()

    def args(self) -> list[str]:
        a = ["-c", str(self.ctx), "-np", str(self.n_seq), "-ctk", self.cache, "-ctv", self.cache]
        a += ["-fa", "on" if self.flash_attn else "off", "-ub", str(self.n_ubatch), "-t", "2", "-lv", "4"]
        return a


def memory_run(s: Subject, case: MemCase) -> Run:
    if case.unified:
        return server_startup(["-m", str(s.path), *case.args(), "-kvu", "--fit", "off", "--no-warmup"])
    args = ["-m", str(s.path), *case.args(), "--fit", "off", "-n", "1", "-p", "hi", "-no-cnv", "--temp", "0"]
    return run("llama-completion", args, timeout=TIMEOUT)


def predicted_compute_mib(
    s: Subject, cfg: CacheConfig, fe: Frontend, placement: Placement | None = None
) -> float:
    mp = plan_memory(s.inventory, s.weights, cfg, placement, (), fe)
    return float(mp.device(CPU).compute_bytes) / MIB


def compute_ok(pred_mib: float, meas_mib: float, truncated: bool = False) -> bool:
    slack = 1.0 if truncated else 0.0  # integer MiB of the dry run are truncated
    return abs(meas_mib - pred_mib) <= max(COMPUTE_REL * meas_mib, COMPUTE_ABS_MIB) + slack


def memory_check(s: Subject, case: MemCase) -> dict[str, Any]:
    cfg = case.config()
    r = memory_run(s, case)
    measured = parse_memory_log(r.stderr + "\n" + r.stdout)
    pred = predicted_caches(s.spec, cfg, s.inventory.mtp_kept)
    ok, errors = compare_caches(pred, measured["caches"])
    pred_compute = predicted_compute_mib(s, cfg, case.frontend())
    meas_compute = measured["compute_mib"].get("CPU")
    c_err = None if meas_compute is None else round(meas_compute - pred_compute, 2)
    c: dict[str, Any] = {
        "id": f"kv/{s.key}/{case.label}",
        "model": s.model,
        "arch": s.spec.arch,
        "lean": s.lean,
        "case": dataclasses.asdict(case),
        "what": "KV cache and recurrent state per cache kind (cells exact, MiB to the log's 2 decimals); "
        "CPU compute buffer of the same run (5% or 16 MiB)",
        "predicted": {"caches": _round(pred), "compute_mib": round(pred_compute, 2)},
        "measured": {
            "caches": measured["caches"],
            "compute_mib": meas_compute,
            "output_mib": measured["output_mib"],
        },
        "error": {"caches": errors, "compute_mib": c_err},
        "ok_kv": r.ok and ok,
        "ok_compute": meas_compute is not None and compute_ok(pred_compute, meas_compute),
        "command": r.shell,
        "seconds": r.seconds,
    }
    c["ok"] = c["ok_kv"] and c["ok_compute"]
    if not r.ok:
        c["failure"] = r.failure()
    return c


def memory_cases(full: bool = True) -> list[MemCase]:
    ctxs = (512, 4096, 32768, 5000) if full else (4096, 5000)
    out = []
    for ctx in ctxs:
        for n_seq, unified in ((1, False), (4, False), (4, True)):
            for ct in ("f16", "q8_0") if full else ("f16",):
                out.append(MemCase(ctx, n_seq, unified, ct))
    out += [MemCase(4096, 1, False, "f16", flash_attn=False), MemCase(4096, 4, True, "f16", flash_attn=False)]
    out += [MemCase(4096, 1, False, "f16", n_ubatch=32), MemCase(4096, 1, False, "f16", n_ubatch=2048)]
    if not full:
        out += [MemCase(512, 4, True, "q8_0")]
    return out


def run_memory(keys: Sequence[str] | None = None, full: bool = True) -> dict[str, Any]:
    keys = list(keys or [*ARCH_MODELS, GEMMA])
    comparisons = []
    for key in keys:
        s = subject(key, slim=True)
        comparisons += [memory_check(s, case) for case in memory_cases(full)]
    kv_err = [
        abs(v)
        for c in comparisons
        for e in c["error"]["caches"].values()
        if isinstance(e, dict)
        for k, v in e.items()
        if k.endswith("mib")
    ]
    c_err = [_rel(c["predicted"]["compute_mib"], c["measured"]["compute_mib"]) for c in comparisons]
    payload = _header(
        "kv_state",
        "KV cache, recurrent state and compute buffer of real runs vs moeplan",
        comparisons,
        models=keys,
        kv_ok=sum(c["ok_kv"] for c in comparisons),
        compute_ok=sum(c["ok_compute"] for c in comparisons),
        max_abs_kv_error_mib=max(kv_err, default=None),
        max_compute_error=_max_err(c_err),
    )
    write_result("kv_state", payload)
    return payload


def _rel(pred: float, meas: float | None) -> tuple[float, float] | None:
    if meas is None:
        return None
    return (round(meas - pred, 2), round((meas - pred) / meas * 100, 1) if meas else 0.0)


def _max_err(errs: list[tuple[float, float] | None]) -> dict[str, float] | None:
    e = [x for x in errs if x is not None]
    if not e:
        return None
    return {"abs_mib": max(abs(a) for a, _ in e), "pct": max(abs(b) for _, b in e)}


# ------------------------------------------------------------------------------------------------
# compute buffer: the exact dry run over ctx / ubatch / flash attention


def compute_check(s: Subject, ctx: int, ub: int, fa: bool, n_seq: int = 1) -> dict[str, Any]:
    args = ["-c", str(ctx), "-ub", str(ub), "-fa", "on" if fa else "off", "-np", str(n_seq)]
    r = run("llama-fit-params", ["-m", str(s.path), *args, "--fit-print", "on"], timeout=TIMEOUT)
    rows = parse_fit_print(r.stdout)
    cfg = CacheConfig(n_ctx=ctx, n_ubatch=ub, flash_attn=fa, n_seq=n_seq)
    pred = predicted_compute_mib(s, cfg, Frontend("llama-fit-params"))
    meas = rows.get("Host", {}).get("compute")
    streams = f" np{n_seq}" if n_seq > 1 else ""
    c: dict[str, Any] = {
        "id": f"compute/{s.key}/c{ctx} ub{ub} fa{'on' if fa else 'off'}{streams}",
        "model": s.model,
        "arch": s.spec.arch,
        "what": "Host compute buffer of the dry run (integer MiB, truncated) vs moeplan (5% or 16 MiB)",
        "predicted": {"compute_mib": round(pred, 2)},
        "measured": {"compute_mib": meas, "fit_print_mib": rows},
        "error": {
            "compute_mib": None if meas is None else round(meas - pred, 2),
            "pct": None if not meas else round((meas - pred) / meas * 100, 1),
        },
        "command": r.shell,
        "seconds": r.seconds,
        "ok": r.ok and meas is not None and compute_ok(pred, meas, truncated=True),
    }
    if not r.ok:
        c["failure"] = r.failure()
    return c


def run_compute(keys: Sequence[str] | None = None, full: bool = True) -> dict[str, Any]:
    keys = list(keys or [*ARCH_MODELS, GEMMA])
    grid = [(c, u, fa) for c in (512, 4096, 32768) for u in (32, 512, 2048) for fa in (True, False)]
    if not full:
        grid = [(4096, 32, True), (4096, 512, False), (32768, 2048, True)]
    comparisons = [compute_check(subject(k), c, u, fa) for k in keys for c, u, fa in grid]
    errs = [
        (c["error"]["compute_mib"], c["error"]["pct"]) for c in comparisons if c["error"]["pct"] is not None
    ]
    payload = _header(
        "compute",
        "Compute buffer: llama-fit-params dry run vs moeplan",
        comparisons,
        models=keys,
        max_compute_error=_max_err(errs),  # type: ignore[arg-type]
    )
    write_result("compute", payload)
    return payload


# ------------------------------------------------------------------------------------------------
# a memory-limited device: ggml-rpc-server on loopback under the fake-memory shim


def fakemem_lib() -> Path:
    return bin_dir().parent / "fakemem" / "libfakemem.so"


@contextlib.contextmanager
def rpc_server(mib: int, timeout: float = 30.0) -> Iterator[str]:
    """A CPU-backed RPC device advertising `mib` MiB on 127.0.0.1; yields "host:port" and always
    stops the server (its own process group) on exit."""
    port = free_port()
    env = {**os.environ, "FAKE_PHYS_MIB": str(mib), "LD_PRELOAD": str(fakemem_lib())}
    cmd = [str(bin_dir() / "ggml-rpc-server"), "-H", "127.0.0.1", "-p", str(port), "-t", "1"]
    p = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        t0 = time.monotonic()
        while True:
            if p.poll() is not None:
                raise RuntimeError(f"ggml-rpc-server exited with {p.returncode}: {' '.join(cmd)}")
            with socket.socket() as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"ggml-rpc-server did not listen on port {port} within {timeout} s")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(p)


PLACEMENT_MODELS = (GEMMA, "qwen3moe", "qwen35moe", "deepseek2", "gpt-oss")
PLACEMENT_CTX = 4096


def placement_flags(s: Subject) -> list[str]:
    n = s.spec.n_layer
    if not s.spec.is_moe:
        return ["-ngl 99", "-ngl 99 -ot ffn_(up|gate|down)=CPU", "-ngl 99 -nkvo", f"-ngl {n // 2}", "-ngl 1"]
    return [
        "-ngl 99",
        "-ngl 99 -ot .ffn_.*_exps.=CPU",
        f"-ngl 99 --n-cpu-moe {n // 2}",
        f"-ngl 99 --n-cpu-moe {n - 1}",
        "-ngl 99 -nkvo",
        f"-ngl {n // 2}",
    ]


def predicted_devices(s: Subject, flags: str, ctx: int = PLACEMENT_CTX) -> dict[str, dict[str, float]]:
    """moeplan's plan in the dry run's terms (MiB): model, context (KV + state), compute per device;
    the Host row is the CPU buffer type (CPU_REPACK and the output buffer are not in the dry run)."""
    mp: MemoryPlan = plan_memory(
        s.inventory, s.weights, CacheConfig(n_ctx=ctx), parse_placement(flags), ("RPC0",), Frontend()
    )
    return breakdown_rows(mp, ((CPU, "Host"), ("RPC0", "RPC0")))


def breakdown_rows(mp: MemoryPlan, rows: Sequence[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """A memory plan's devices as llama.cpp's memory breakdown rows (device, row name) show them, in
    MiB: model, context (KV + state), compute."""
    out = {}
    for name, row in rows:
        d = mp.device(name)
        out[row] = {
            "model": d.weights_bytes / MIB,
            "context": (d.kv_bytes + d.state_bytes) / MIB,
            "compute": d.compute_bytes / MIB,
        }
    return out


def placement_check(s: Subject, flags: str, addr: str, ctx: int = PLACEMENT_CTX) -> dict[str, Any]:
    args = ["-m", str(s.path), "--rpc", addr, *flags.split(), "-c", str(ctx), "--fit-print", "on"]
    r = run("llama-fit-params", args, timeout=TIMEOUT)
    rows = parse_fit_print(r.stdout)
    pred = predicted_devices(s, flags, ctx)
    errors: dict[str, Any] = {}
    ok = r.ok and set(rows) >= {"Host", "RPC0"}
    for dev, p in pred.items():
        m = rows.get(dev)
        if m is None:
            continue
        p_total, m_total = sum(p.values()), sum(m.values())
        parts = {k: round(m[k] - p[k], 2) for k in p}
        rel = (m_total - p_total) / m_total * 100 if m_total else 0.0
        # three fields, each truncated to whole MiB: the sum may be short by < 3 MiB
        # within 2% of the total; on a device whose total is mostly compute buffer (tiny models), the
        # compute tolerance (5% or 16 MiB) with model and context exact to the truncation
        parts_exact = all(abs(m[k] - p[k]) <= 1 for k in ("model", "context"))
        dev_ok = abs(m_total - p_total) <= TOTAL_REL * m_total + 3 or (
            parts_exact and compute_ok(p["compute"], m["compute"], truncated=True)
        )
        errors[dev] = {"total_mib": round(m_total - p_total, 2), "total_pct": round(rel, 2), **parts}
        ok = ok and dev_ok
    c: dict[str, Any] = {
        "id": f"placement/{s.key}/{flags}",
        "model": s.model,
        "arch": s.spec.arch,
        "flags": flags,
        "what": "per-device model/context/compute MiB of the dry run with an RPC device vs "
        "plan_memory(gpus=('RPC0',)); per-device totals within 2% (+3 MiB truncation)",
        "predicted": _round(pred),
        "measured": rows,
        "error": errors,
        "command": r.shell,
        "seconds": r.seconds,
        "ok": ok,
    }
    if not r.ok:
        c["failure"] = r.failure()
    return c


def run_placement(keys: Sequence[str] = PLACEMENT_MODELS, limit: int | None = None) -> dict[str, Any]:
    comparisons = []
    with rpc_server(RPC_MIB) as addr:
        for key in keys:
            s = subject(key)
            flags = placement_flags(s)[:limit]
            comparisons += [placement_check(s, f, addr) for f in flags]
    totals = [abs(e["total_pct"]) for c in comparisons for e in c["error"].values()]
    payload = _header(
        "placement",
        "Per-device memory on a memory-limited RPC device: llama-fit-params dry run vs moeplan",
        comparisons,
        rpc_mib=RPC_MIB,
        max_total_error_pct=max(totals, default=None),
    )
    write_result("placement", payload)
    return payload


# ------------------------------------------------------------------------------------------------
# --fit vs moeplan's smallest fitting --n-cpu-moe

# (model, advertised MiB): sizes between "only attention and shared weights fit" and "all fits"
FIT_CASES = (("qwen3moe", 2048), ("qwen3moe", 1536), ("qwen35moe", 3072), ("deepseek2", 3072))
FIT_MARGIN_MIB = FIT_TARGET // MIB
_OT_LAYER = re.compile(r"blk\\\.(\d+)\\\.ffn_")


def rpc_rig(mib: int) -> Rig:
    gpu = GPU("ggml-rpc-server (fake memory)", "RPC", mib * MIB, 1e12, fp16_tflops=100.0)
    host = Host(256 * 1024 * MIB, 20e9, "loopback test host", 2, 10e9, 1e9)
    return Rig((Node((gpu,), host),), text=f"RPC0 {mib} MiB")


def parse_fit_choice(stdout: str) -> dict[str, Any]:
    """`-c N -ngl N [-ot "..."]` as printed by llama-fit-params."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith("-c ")), "")
    ngl = re.search(r"-ngl (\d+)", line)
    ot = re.search(r'-ot "([^"]*)"', line)
    rules = ot.group(1).split(",") if ot else []
    full = sorted({int(m.group(1)) for r in rules if "exps" in r and (m := _OT_LAYER.search(r))})
    partial = sorted({int(m.group(1)) for r in rules if "exps" not in r and (m := _OT_LAYER.search(r))})
    return {
        "line": line,
        "ngl": int(ngl.group(1)) if ngl else None,
        "cpu_expert_layers": full,
        "partial_layers": partial,
    }


def plan_materialised(s: Subject, mib: int, ctx: int = PLACEMENT_CTX) -> PlanResult:
    """moeplan's plan for the materialised file (F16 = what it stores) on the RPC rig, with
    llama-fit-params' front end (logits for the whole micro-batch) and the file's MTP blocks."""
    return plan(
        s.spec,
        rpc_rig(mib),
        ctx=ctx,
        quant=FileType.F16,
        cache=CacheConfig(n_ctx=ctx),
        frontend=Frontend(),
        mtp=None,
    )


def _moe_layers(spec: ModelSpec, first: int) -> int:
    return sum(1 for la in spec.layers[:first] if la.ffn.kind is FFNKind.MOE)


def fit_check(key: str, mib: int, ctx: int = PLACEMENT_CTX) -> dict[str, Any]:
    s = subject(key)
    with rpc_server(mib) as addr:
        args = ["-m", str(s.path), "--rpc", addr, "-c", str(ctx), "-fitt", str(FIT_MARGIN_MIB), "-lv", "4"]
        r = run("llama-fit-params", args, timeout=TIMEOUT)
        choice = parse_fit_choice(r.stdout)
        ot = re.search(r'-ot "([^"]*)"', choice["line"])
        theirs_flags = f"-ngl {choice['ngl']}" + (f" -ot {ot.group(1)}" if ot else "")
        check = placement_check(s, theirs_flags, addr, ctx) if choice["ngl"] is not None else None
    n_layer = s.spec.n_layer
    # layers below -ngl's first GPU layer are wholly on the CPU (llama.cpp counts -ngl from the end)
    start = s.inventory.block_count + 1 - choice["ngl"] if choice["ngl"] is not None else 0
    moe = {i for i, la in enumerate(s.spec.layers) if la.ffn.kind is FFNKind.MOE}
    touched = sorted(moe & {*range(start), *choice["cpu_expert_layers"], *choice["partial_layers"]})
    res = plan_materialised(s, mib, ctx)
    fitting = [
        c for c in (res.chosen, *res.alternatives) if c.fits and c.strategy in ("n_cpu_moe", "cpu_moe", "gpu")
    ]
    best = min(fitting, key=lambda c: _n_cpu_moe(c.flags, n_layer), default=None)
    n = _n_cpu_moe(best.flags, n_layer) if best else None
    ours = _moe_layers(s.spec, n) if n is not None else None
    used = fitting and best and sum(d.total_bytes for d in best.memory.devices if d.device == "RPC0") / MIB
    capacity = mib - FIT_MARGIN_MIB
    explain: dict[str, Any] = {
        "moeplan_capacity_mib": capacity,
        "llamacpp_choice_measured_rpc0_mib": sum(check["measured"].get("RPC0", {}).values())
        if check
        else None,
        "llamacpp_choice_predicted_rpc0_mib": round(sum(check["predicted"]["RPC0"].values()), 1)
        if check
        else None,
    }
    if n:  # what moeplan predicts with one CPU expert layer fewer (why it did not go lower)
        fewer = predicted_devices(s, f"-ngl 99 --n-cpu-moe {n - 1}", ctx)
        explain["moeplan_one_fewer_rpc0_mib"] = round(sum(fewer["RPC0"].values()), 1)
    diff = None if ours is None else len(touched) - ours
    c: dict[str, Any] = {
        "id": f"fit/{key}/{mib} MiB",
        "model": s.model,
        "arch": s.spec.arch,
        "what": "MoE layers whose experts stay on the CPU: llama.cpp --fit (-fitt = moeplan headroom) vs "
        "moeplan's smallest fitting --n-cpu-moe on a rig whose GPU is the RPC device",
        "predicted": {
            "n_cpu_moe": n,
            "cpu_expert_layers": ours,
            "flags": best.flags if best else None,
            "rpc0_mib": round(used, 1) if used else None,
        },
        "measured": {
            "cpu_expert_layers": len(touched),
            "layers": touched,
            "partial_layers": choice["partial_layers"],
            "ngl": choice["ngl"],
            "fit_line": choice["line"][:400],
        },
        "error": {"layers": diff},
        "explanation": explain,
        "command": r.shell,
        "seconds": r.seconds,
        "ok": r.ok and diff is not None and abs(diff) <= 1,
    }
    if not r.ok:
        c["failure"] = r.failure()
    return c


def _n_cpu_moe(flags: str, n_layer: int) -> int:
    m = re.search(r"--n-cpu-moe (\d+)", flags)
    return int(m.group(1)) if m else (n_layer if "--cpu-moe" in flags else 0)


def run_fit(cases: Sequence[tuple[str, int]] | None = None) -> dict[str, Any]:
    cases = list(cases or FIT_CASES)
    comparisons = [fit_check(key, mib) for key, mib in cases]
    payload = _header(
        "fit",
        "llama.cpp --fit vs moeplan's smallest fitting --n-cpu-moe on a memory-limited RPC device",
        comparisons,
        margin_mib=FIT_MARGIN_MIB,
        equal=sum(c["error"]["layers"] == 0 for c in comparisons),
    )
    write_result("fit", payload)
    return payload


# ------------------------------------------------------------------------------------------------
# llama.cpp's --fit replayed on moeplan's figures (`moeplan.engines.fit`) vs llama-fit-params itself

# (model, MiB of each RPC device, the host's faked MiB (host-only cases), -c or None: --fit's own)
FIT_REPLAY_CASES: tuple[tuple[str, tuple[int, ...], int | None, int | None], ...] = (
    ("qwen3moe", (), 2600, None),
    ("qwen3moe", (), 2800, None),
    ("qwen3moe", (), 3200, None),
    ("qwen3moe", (2800,), None, None),
    ("qwen3moe", (3000,), None, None),
    (GEMMA, (1000,), None, None),
    (GEMMA, (1100,), None, None),
    ("qwen3moe", (1200, 900), None, 4096),
    ("qwen3moe", (1600, 1500), None, None),
)
FIT_REPLAY_MARGIN_MIB = 256
# Why a replay differs: moeplan's memory figures, not the replayed steps (the -lv 4 lines of both agree
# up to the first projection that differs).
FIT_REPLAY_REASONS = {
    (GEMMA, (1000,)): "moeplan types the real file as the stock Q4_K_M recipe: one layer at the boundary",
    (
        GEMMA,
        (1100,),
    ): "the same: a few MiB at the trained context move the interpolated context 3 x 256 cells",
    ("qwen3moe", (1200, 900)): "layer 30: llama.cpp keeps only its attention on RPC1, moeplan its up "
    "projection too (moeplan's RPC1 figure a few MiB lower)",
    (
        "qwen3moe",
        (1600, 1500),
    ): "at the trained context moeplan projects 2925 MiB on the two devices' default "
    "split, llama.cpp 3175: the interpolated context comes out larger",
}


def rpc_rig_of(mibs: Sequence[int], host_mib: int = 256 * 1024) -> Rig:
    """A rig whose GPUs are these RPC devices (none: the host alone, with `host_mib` of RAM)."""
    gpus = tuple(GPU("ggml-rpc-server (fake memory)", "RPC", m * MIB, 1e12, fp16_tflops=100.0) for m in mibs)
    host = Host(host_mib * MIB, 20e9, "loopback test host", 2, 10e9, 1e9)
    return Rig((Node(gpus, host),), text=" + ".join(f"RPC{i} {m} MiB" for i, m in enumerate(mibs)) or "host")


def _fit_line(stdout: str, endpoints: Sequence[str]) -> str | None:
    """llama-fit-params' `-c N -ngl N [-ts ..] [-ot "..."]` with each RPC buffer type named as moeplan
    names the device (every server calls its own RPC0[endpoint])."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith("-c ")), None)
    for i, e in enumerate(endpoints):
        line = line.replace(f"=RPC0[{e}]", f"=RPC{i}") if line else line
    return line


def fit_replay_check(
    key: str, mibs: tuple[int, ...], host_mib: int | None, ctx: int | None
) -> dict[str, Any]:
    s = subject(key)
    args = ["-m", str(s.path), "-fitt", str(FIT_REPLAY_MARGIN_MIB), *(["-c", str(ctx)] if ctx else [])]
    with contextlib.ExitStack() as stack:
        endpoints = [stack.enter_context(rpc_server(m)) for m in mibs]
        if host_mib is not None:  # no device: --fit budgets the host's total memory, faked here
            env = {**os.environ, "FAKE_PHYS_MIB": str(host_mib), "LD_PRELOAD": str(fakemem_lib())}
            cmd = [str(bin_dir() / "llama-fit-params"), *args]
            t0 = time.monotonic()
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
            r = Run(tuple(cmd), p.returncode, p.stdout, p.stderr, round(time.monotonic() - t0, 3))
        else:
            r = run("llama-fit-params", [*args, "--rpc", ",".join(endpoints)], timeout=TIMEOUT)
    theirs = _fit_line(r.stdout, endpoints)
    rig = rpc_rig_of(mibs, host_mib or 256 * 1024)
    user = UserSet(n_ctx=ctx, margin_mib=(FIT_REPLAY_MARGIN_MIB,))
    cache = CacheConfig(n_ctx=ctx or 0)
    out, _ = fit_command(s.spec, rig, FileType.F16, cache, user, s.weights, frontend=Frontend())
    ours = None if out.stopped and "abort" in out.stopped else f"-c {out.n_ctx} {out.flags or '-ngl -1'}"
    ours = ours.replace("'", '"') if ours else None
    where = f"host {host_mib} MiB" if host_mib else f"RPC {'+'.join(map(str, mibs))} MiB"
    return {
        "id": f"fit_replay/{key}/{where}" + (f" -c {ctx}" if ctx else ""),
        "model": s.model,
        "predicted": {"line": (ours or f"stops: {out.stopped}")[:300]},
        "measured": {"line": (theirs or "exits 1: failed to fit")[:300]},
        "error": {
            "same": theirs == ours,
            "why": None if theirs == ours else FIT_REPLAY_REASONS.get((key, mibs)),
        },
        "command": r.shell,
        "seconds": r.seconds,
        "ok": theirs == ours,
    }


def run_fit_replay(
    cases: Sequence[tuple[str, tuple[int, ...], int | None, int | None]] | None = None,
) -> dict[str, Any]:
    comparisons = [fit_replay_check(*case) for case in cases or FIT_REPLAY_CASES]
    payload = _header(
        "fit_replay",
        "llama.cpp --fit replayed on moeplan's figures (engines/fit.py) vs llama-fit-params' own choice",
        comparisons,
        margin_mib=FIT_REPLAY_MARGIN_MIB,
        equal=sum(c["ok"] for c in comparisons),
    )
    write_result("fit_replay", payload)
    return payload


RUNNERS: dict[str, Callable[[], dict[str, Any]]] = {
    "memory": run_memory,
    "compute": run_compute,
    "placement": run_placement,
    "fit": run_fit,
    "fit_replay": run_fit_replay,
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_named(RUNNERS, argv, details=True)


if __name__ == "__main__":
    raise SystemExit(main())
