"""Speculative decoding in the pinned llama-server vs moeplan: the draft side's buffers and the speed.

    python -m validation.speculative

Memory: llama-server started with `--spec-type draft-mtp` on a materialised model whose file carries
MTP layers, and with `-md DRAFT --spec-type draft-simple` on a materialised target + draft pair; its
`-lv 4` log is split where the draft side begins ("creating MTP draft context" / "loading draft
model") and each part's model buffer, KV cache, recurrent state and compute buffer are compared
with `engines.speculative.plan_speculative`.

Speed: llama-server decodes the same prompt without and with drafting (`/completion`, greedy);
random weights accept nothing useful, so `--spec-synth-len` sets a synthetic acceptance (the target
still verifies and the draft still drafts every token; only the accept decision is drawn). The
acceptance moeplan is given is measured from the run's own counters (draft_n_accepted over
verification steps), and the host speed from the run without drafting: what is predicted is what
drafting does to it.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from moeplan.engines.llamacpp import CPU
from moeplan.engines.speculative import Drafting, DraftModel, SpecType, SpeculativeMemory, plan_speculative
from moeplan.hardware.detect import detect
from moeplan.memory.kv import CacheConfig
from moeplan.perf.estimate import speed
from moeplan.perf.speculative import Acceptance, acceptance_from_length, drafted_speed, mtp_token_seconds
from moeplan.sources.catalog import load_catalog
from validation.llamacpp import MIB, _header, bin_dir, run_named, write_result
from validation.materialize import materialize
from validation.runtime import (
    KV_TOLERANCE_MIB,
    TIMEOUT,
    Subject,
    _stop,
    compute_ok,
    free_port,
    lean,
    parse_memory_log,
    server_startup,
    stored_weights,
    subject,
)

MTP_KEY = "qwen35moe"  # hybrid recurrent target: MTP drafting also grows its recurrent state
DRAFT_PAIR = ("qwen3moe", "qwen3-0.6b")  # a MoE target and its family's smallest dense model
CTX = 4096
SPEED_TOLERANCE = 0.25
_MODEL_BUF = re.compile(r"load_tensors:\s+(\S+) model buffer size =\s*([\d.]+) MiB")
_DRAFT_START = ("creating MTP draft context", "loading draft model")


@dataclass(frozen=True)
class Pair:
    target: Subject
    drafting: Drafting
    draft_path: str = ""


def draft_subject(model_id: str) -> tuple[str, DraftModel]:
    """A catalog model materialised as a draft model (its file and moeplan's view of it)."""
    spec = load_catalog()[model_id].spec()
    m = materialize(lean(spec) if spec.is_moe else spec)
    return str(m.path), DraftModel(str(m.path), m.inventory, stored_weights(m))


def pair(kind: SpecType) -> Pair:
    if kind is SpecType.MTP:
        return Pair(subject(MTP_KEY, slim=True), Drafting(SpecType.MTP))
    path, dm = draft_subject(DRAFT_PAIR[1])
    return Pair(subject(DRAFT_PAIR[0], slim=True), Drafting(SpecType.SIMPLE, model=dm), path)


def spec_args(p: Pair) -> list[str]:
    args = ["--spec-type", str(p.drafting.kind)]
    return ["-md", p.draft_path, *args] if p.draft_path else args


def split_log(log: str) -> tuple[str, str]:
    """The target's part of a llama-server log and the draft side's."""
    at = min((i for i in (log.find(s) for s in _DRAFT_START) if i >= 0), default=len(log))
    return log[:at], log[at:]


def parse_side(log: str) -> dict[str, Any]:
    out = parse_memory_log(log)
    out["model_mib"] = {m.group(1): float(m.group(2)) for m in _MODEL_BUF.finditer(log)}
    return out


def predicted(p: Pair, cfg: CacheConfig) -> SpeculativeMemory:
    return plan_speculative(p.target.inventory, p.target.weights, cfg, None, (), p.drafting)


def _near(pred_mib: float, meas: float | None, tol: float = KV_TOLERANCE_MIB) -> bool:
    return meas is not None and abs(meas - pred_mib) <= tol + 1e-9


def memory_check(kind: SpecType, ctx: int = CTX, n_seq: int = 1) -> dict[str, Any]:
    p = pair(kind)
    cfg = CacheConfig(n_ctx=ctx, n_seq=n_seq, unified=True)
    args = ["-m", str(p.target.path), "-c", str(ctx), "-np", str(n_seq), "-kvu", "-t", "2", "-lv", "4"]
    r = server_startup([*args, "--fit", "off", "--no-warmup", *spec_args(p)])
    tgt_log, dft_log = split_log(r.stderr + "\n" + r.stdout)
    tgt, dft = parse_side(tgt_log), parse_side(dft_log)
    sm = predicted(p, cfg)
    t_cpu = sm.target.device(CPU)
    d_cpu = next(d for d in sm.draft if d.device == CPU)
    mib = {
        "target_weights": t_cpu.weights_bytes / MIB,
        "target_kv": t_cpu.kv_bytes / MIB,
        "target_state": t_cpu.state_bytes / MIB,
        "target_compute": t_cpu.compute_bytes / MIB,
        "mtp_weights": sum(sm.mtp_weights.values()) / MIB,
        "draft_weights": d_cpu.weights_bytes / MIB,
        "draft_kv": d_cpu.kv_bytes / MIB,
        "draft_compute": d_cpu.compute_bytes / MIB,
    }
    meas = {
        "target_weights": tgt["model_mib"].get("CPU_Mapped"),
        "target_kv": sum(c["mib"] for k, c in tgt["caches"].items() if k != "recurrent") or None,
        "target_state": tgt["caches"].get("recurrent", {}).get("mib"),
        "target_compute": tgt["compute_mib"].get("CPU"),
        "draft_weights": dft["model_mib"].get("CPU_Mapped", 0.0),
        "draft_kv": sum(c["mib"] for c in dft["caches"].values()),
        "draft_compute": dft["compute_mib"].get("CPU"),
    }
    ok = {
        # a mapped model buffer spans the file's tensor data, alignment padding included
        "target_weights": _near(mib["target_weights"], meas["target_weights"], 0.05),
        "target_kv": _near(mib["target_kv"], meas["target_kv"]),
        "target_state": mib["target_state"] == 0 or _near(mib["target_state"], meas["target_state"]),
        "target_compute": meas["target_compute"] is not None
        and compute_ok(mib["target_compute"], meas["target_compute"]),
        "draft_weights": _near(mib["draft_weights"], meas["draft_weights"], 0.05),
        "draft_kv": _near(mib["draft_kv"], meas["draft_kv"]),
        "draft_compute": meas["draft_compute"] is not None
        and compute_ok(mib["draft_compute"], meas["draft_compute"]),
    }
    c: dict[str, Any] = {
        "id": f"spec-memory/{kind}/{p.target.key}/c{ctx}np{n_seq}",
        "model": p.target.model,
        "what": "target and draft-side buffers of llama-server with drafting (KV/state to the log's "
        "2 decimals, weights to 0.05 MiB, compute 5% or 16 MiB)",
        "predicted": {k: round(v, 3) for k, v in mib.items()},
        "measured": meas,
        "ok_by": ok,
        "ok": r.ok and all(ok.values()),
        "command": r.shell,
        "seconds": r.seconds,
    }
    if not r.ok:
        c["failure"] = r.failure()
    return c


# ------------------------------------------------------------------------------------------------
# speed


@contextlib.contextmanager
def server(args: Sequence[str], timeout: float = TIMEOUT) -> Iterator[int]:
    """A llama-server on a free loopback port for the duration of the block (its port)."""
    port = free_port()
    cmd = (str(bin_dir() / "llama-server"), *args, "--host", "127.0.0.1", "--port", str(port))
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            t0 = time.monotonic()
            while True:
                if proc.poll() is not None or time.monotonic() - t0 > timeout:
                    log.seek(0)
                    raise RuntimeError(f"llama-server did not start: {log.read().decode()[-2000:]}")
                log.seek(0)
                if b"listening on http" in log.read():
                    break
                time.sleep(0.1)
            yield port
        finally:
            _stop(proc)


def completion(port: int, n_predict: int) -> dict[str, Any]:
    body = {"prompt": "The capital of France is", "n_predict": n_predict, "temperature": 0.0}
    body |= {"cache_prompt": False, "ignore_eos": True}
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/completion",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    return out


def measure_decode(args: Sequence[str], n_predict: int, reps: int) -> dict[str, float]:
    """Median decode tokens/s of `reps` completions and the drafting counters summed over them."""
    with server(args) as port:
        completion(port, 8)  # warm-up
        runs = [completion(port, n_predict)["timings"] for _ in range(reps)]
    speeds = sorted(t["predicted_per_second"] for t in runs)
    return {
        "tok_s": speeds[len(speeds) // 2],
        "draft_n": float(sum(t.get("draft_n", 0) for t in runs)),
        "draft_n_accepted": float(sum(t.get("draft_n_accepted", 0) for t in runs)),
        "predicted_n": float(sum(t["predicted_n"] for t in runs)),
    }


def speed_check(kind: SpecType, synth_len: float = 3.0, n_predict: int = 48, reps: int = 3) -> dict[str, Any]:
    p = pair(kind)
    cfg = CacheConfig(n_ctx=CTX, n_seq=1, unified=True)
    base_args = ["-m", str(p.target.path), "-c", str(CTX), "-np", "1", "-t", "2", "--fit", "off"]
    base_args += ["--no-warmup", "--cache-ram", "0"]
    base = measure_decode(base_args, n_predict, reps)
    spec = measure_decode([*base_args, *spec_args(p), "--spec-synth-len", str(synth_len)], n_predict, reps)
    n_max = p.drafting.n_max
    steps = spec["draft_n"] / n_max  # every step drafts n_max (p_min 0, n_min 0)
    mean_len = 1 + spec["draft_n_accepted"] / steps if steps else 1.0
    acc = Acceptance(acceptance_from_length(min(mean_len, n_max + 1 - 1e-9), n_max), "measured")
    node = detect().node
    sm = predicted(p, cfg)
    fill = 16  # tokens in the cache mid-completion (prompt + half the generation is ~30: KV is tiny)
    target_mem = sm.target
    perf = speed(p.target.spec, target_mem, cfg, node, fill=fill, threads=2)
    if kind is SpecType.MTP:
        draft_s = mtp_token_seconds(sm, p.target.spec, perf, cfg)
    else:
        assert p.drafting.model is not None
        dm = p.drafting.model
        from moeplan.engines.llamacpp import Frontend, plan_memory

        dplan = plan_memory(dm.inventory, dm.weights, cfg, None, (), Frontend("llama-server", 1))
        draft_s = speed(dm.inventory.spec, dplan, cfg, node, fill=fill, threads=2).seconds_per_token
    ds = drafted_speed(perf, draft_s, n_max, acc)
    predicted_tok_s = base["tok_s"] * ds.speedup
    err = predicted_tok_s / spec["tok_s"] - 1
    return {
        "id": f"spec-speed/{kind}/{p.target.key}",
        "model": p.target.model,
        "what": "decode tok/s with drafting: measured host speed without it x moeplan's speedup, "
        f"within {SPEED_TOLERANCE:.0%}",
        "acceptance_p": round(acc.p, 4),
        "mean_len": round(mean_len, 3),
        "measured": {"base_tok_s": base["tok_s"], "spec_tok_s": spec["tok_s"], **spec},
        "predicted": {
            "speedup": round(ds.speedup, 3),
            "spec_tok_s": round(predicted_tok_s, 2),
            "verify_s": ds.verify_s,
            "draft_token_s": draft_s,
            "base_step_s": perf.seconds_per_token,
        },
        "measured_speedup": round(spec["tok_s"] / base["tok_s"], 3),
        "error": round(err, 4),
        "ok": abs(err) <= SPEED_TOLERANCE,
    }


def run_speculative() -> dict[str, Any]:
    checks = [memory_check(k) for k in (SpecType.MTP, SpecType.SIMPLE)]
    checks += [speed_check(k) for k in (SpecType.MTP, SpecType.SIMPLE)]
    payload = _header("speculative", "speculative decoding: draft-side buffers and speed", checks)
    write_result("speculative", payload)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    return run_named({"speculative": run_speculative}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
