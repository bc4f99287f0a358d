"""Speculative decoding in the pinned llama-server vs moeplan: the draft side's buffers and the speed.

    python -m validation.speculative

Memory: llama-server started with `--spec-type draft-mtp` on a materialised model whose file carries
MTP layers, and with `-md DRAFT --spec-type draft-simple` on a materialised target + draft pair; its
`-lv 4` log is split where the draft side begins ("creating MTP draft context" / "loading draft
model") and each part's model buffer, KV cache, recurrent state and compute buffer are compared
with `engines.speculative.plan_speculative`.

Speed: llama-server decodes the same prompt without and with drafting (`/completion`, greedy),
the two servers' completions interleaved;
random weights accept nothing useful, so `--spec-synth-len` sets a synthetic acceptance (the target
still verifies and the draft still drafts every token; only the accept decision is drawn). The
acceptance moeplan is given is measured from the run's own counters (draft_n_accepted over
verification steps). Absolute speeds are predicted with host factors fitted on dense probes
(validation/speed.py) measured just before; the check passes on the drafted speed predicted from
the measured speed without drafting (the host's drift between minutes cancels), within 25%.

Steps of k tokens: a verification step is one forward pass over 1 + n_max tokens. llama-bench
pp1/pp2/pp4/pp8 times exactly such a step (from an empty cache); the targets' and the draft's
growth t_k / t_1 is checked against `decode.step_time` at batch k over one sequence. The one rate
no dense probe shows, a thread's dot-product pass over experts already in cache, is fitted first on
a lean OLMoE (a MoE probe that is not a target).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import re
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from scipy.optimize import minimize_scalar  # type: ignore[import-untyped]

from moeplan.arch.spec import ModelSpec
from moeplan.engines.llamacpp import CPU, Frontend, MemoryPlan, plan_memory
from moeplan.engines.speculative import Drafting, DraftModel, SpecType, SpeculativeMemory, plan_speculative
from moeplan.hardware.detect import detect
from moeplan.memory.kv import CacheConfig
from moeplan.perf.calibration import Calibration
from moeplan.perf.decode import step_time
from moeplan.perf.estimate import speed
from moeplan.perf.speculative import (
    Acceptance,
    acceptance_from_length,
    drafted_speed,
    mtp_token_seconds,
    snapshot_bytes,
)
from moeplan.sources.catalog import load_catalog
from validation.llamacpp import MIB, _header, bin_dir, run, run_named, write_result
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
from validation.speed import _memory, bench_model, fit_host, measure_rounds

MTP_KEY = "qwen35moe"  # hybrid recurrent target: MTP drafting also grows its recurrent state
DRAFT_PAIR = ("qwen3moe", "qwen3-0.6b")  # a MoE target and its family's smallest dense model
CTX = 4096
SPEED_TOLERANCE = 0.25
# One thread: on a shared 2-core host two threads spin at ggml's barriers whenever another
# process holds a core, which slows them by a factor that varies run to run.
THREADS = 1
FILL = 32  # tokens in the cache mid-completion: the prompt and half the generation
PROBES = (("llama", None), ("llama", "Q8_0"), ("llama-ffn", None), ("llama-deep", None))
# The MoE probe (not a target): its per-token cost at 2-8 tokens a step sets this host's dot-product
# rate on cached experts (no dense probe runs such passes: their matmuls use llamafile sgemm).
MOE_PROBE = "olmoe"  # lean: 8 experts, all 8 used per token (so no routing statistics enter the fit)
BATCHES = (1, 2, 4, 8)  # llama-bench -p: one step of k tokens from an empty cache
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
        "error": {k: round(v - mib[k], 3) for k, v in meas.items() if v is not None},
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
def server(args: Sequence[str], timeout: float = TIMEOUT, log_file: IO[bytes] | None = None) -> Iterator[int]:
    """A llama-server on a free loopback port for the duration of the block (its port); its log goes
    to `log_file` when given (read it after the block), else to a temporary file."""
    port = free_port()
    cmd = (str(bin_dir() / "llama-server"), *args, "--host", "127.0.0.1", "--port", str(port))
    with contextlib.nullcontext(log_file) if log_file is not None else tempfile.TemporaryFile() as log:
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


def _stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    speeds = [float(t["predicted_per_second"]) for t in runs]
    return {
        "tok_s": statistics.median(speeds),
        "rounds_tok_s": [round(v, 2) for v in speeds],
        "draft_n": float(sum(t.get("draft_n", 0) for t in runs)),
        "draft_n_accepted": float(sum(t.get("draft_n_accepted", 0) for t in runs)),
    }


def measure_pair(
    base: Sequence[str], drafted: Sequence[str], n_predict: int, rounds: int
) -> list[dict[str, Any]]:
    """Median decode tokens/s of both servers and the drafting counters, their completions
    interleaved (the shared host's speed drifts between minutes)."""
    with server(base) as p0, server(drafted) as p1:
        completion(p0, 8), completion(p1, 8)  # warm-up
        runs: list[list[dict[str, Any]]] = [[], []]
        for _ in range(rounds):
            for k, port in enumerate((p0, p1)):
                runs[k].append(completion(port, n_predict)["timings"])
    return [_stats(r) for r in runs]


def host_calibration(rounds: int = 2, reps: int = 1) -> tuple[Calibration, dict[str, float]]:
    """This host's speed factors, fitted on validation/speed.py's dense probe models (none of them a
    target here) as materialised, F16 like the targets (and one Q8_0), measured with llama-bench at
    THREADS threads."""
    probes = [bench_model(k, q) for k, q in PROBES]
    runs = measure_rounds(probes, rounds, reps, THREADS)
    medians = [{t: v["median_ts"] for t, v in rows.items()} for rows, _, _ in runs]
    return fit_host(list(zip(probes, medians, strict=True)), THREADS)


# ------------------------------------------------------------------------------------------------
# one step of k tokens: llama-bench pp-k against decode.step_time at batch k over one sequence


@dataclass(frozen=True)
class Stepper:
    """A model file and moeplan's memory plan of it, for steps of several tokens."""

    name: str
    path: str
    spec: ModelSpec
    mem: MemoryPlan
    cfg: CacheConfig


def bench_steps(path: str, reps: int = 5) -> tuple[dict[int, float], str]:
    """llama-bench's seconds for one step of k tokens (pp-k from an empty cache), k in BATCHES: the
    fastest repetition (the others lost time to other processes on the shared cores)."""
    args = ["-m", path, "-p", ",".join(map(str, BATCHES)), "-n", "0", "-t", str(THREADS)]
    r = run("llama-bench", [*args, "-r", str(reps), "-o", "json"], timeout=TIMEOUT)
    rows: list[dict[str, Any]] = []
    with contextlib.suppress(ValueError):
        rows = json.loads(r.stdout or "[]")
    return {int(row["n_prompt"]): min(row["samples_ns"]) / 1e9 for row in rows}, r.shell


def measure_steps(steppers: Sequence[Stepper], rounds: int) -> list[dict[int, list[float]]]:
    """Every model's pp-k once per round, the rounds one after another (the host drifts)."""
    out: list[dict[int, list[float]]] = [{k: [] for k in BATCHES} for _ in steppers]
    for _ in range(rounds):
        for i, st in enumerate(steppers):
            times, shell = bench_steps(st.path)
            if set(times) != set(BATCHES):
                raise RuntimeError(f"llama-bench failed: {shell}")
            for k, t in times.items():
                out[i][k].append(t)
    return out


def predicted_steps(st: Stepper, cal: Calibration) -> dict[int, float]:
    """moeplan's seconds for one step of k tokens of one sequence (k/2 cached on average)."""
    perf = speed(st.spec, st.mem, st.cfg, detect().node, fill=0, threads=THREADS, cal=cal)
    return {k: step_time(perf.work, perf.rates, k // 2, k, cal=cal, sequences=1).seconds for k in BATCHES}


def _growth(times: dict[int, float]) -> dict[int, float]:
    """Each step's time over the one-token step's: the host's drift between runs cancels."""
    return {k: t / times[1] for k, t in times.items() if k > 1}


def with_gemv(cal: Calibration, ratio: float) -> Calibration:
    """`cal` with a thread's dot-product pass over cached weights `ratio` times its streaming rate."""
    return dataclasses.replace(cal, cpu_core_gemv_bandwidth=cal.cpu_core_bandwidth * ratio)


def fit_gemv(cal: Calibration, probe: Stepper, measured: dict[int, float]) -> tuple[Calibration, float]:
    """The cached-pass rate that best explains the MoE probe's step growth from 1 to k tokens
    (least squares of the log errors of t_k / t_1)."""
    meas = _growth(measured)

    def sq_log(x: float) -> float:
        pred = _growth(predicted_steps(probe, with_gemv(cal, math.exp(x))))
        return sum(math.log(pred[k] / meas[k]) ** 2 for k in meas)

    x = float(minimize_scalar(sq_log, bounds=(math.log(0.1), math.log(20.0)), method="bounded").x)
    return with_gemv(cal, math.exp(x)), math.exp(x)


def steppers() -> list[Stepper]:
    """The MoE probe first, then the speed check's targets and draft model as llama-server runs them."""
    cfg = CacheConfig(n_ctx=CTX, n_seq=1, unified=True)
    m = bench_model(MOE_PROBE, None)
    out = [Stepper(m.key, m.path, m.subject.spec, _memory(m), cfg)]
    for kind in (SpecType.MTP, SpecType.SIMPLE):
        p = pair(kind)
        sm = predicted(p, cfg)
        out.append(Stepper(p.target.key, str(p.target.path), p.target.spec, sm.target, cfg))
        dm = p.drafting.model
        if dm is not None:
            dplan = plan_memory(dm.inventory, dm.weights, cfg, None, (), Frontend("llama-server", 1))
            out.append(Stepper(DRAFT_PAIR[1], p.draft_path, dm.inventory.spec, dplan, cfg))
    return out


def step_checks(cal: Calibration, rounds: int = 3) -> tuple[Calibration, float, list[dict[str, Any]]]:
    """The cached-pass rate from the MoE probe, then every target's and draft's step of k tokens
    predicted against llama-bench pp-k: the growth t_k / t_1 within 25% (medians of the rounds)."""
    sts = steppers()
    measured = measure_steps(sts, rounds)
    medians = [{k: statistics.median(v) for k, v in m.items()} for m in measured]
    cal, ratio = fit_gemv(cal, sts[0], medians[0])
    checks = []
    for i, st in enumerate(sts):
        pred = predicted_steps(st, cal)
        g_pred, g_meas = _growth(pred), _growth(medians[i])
        err = {k: round(g_pred[k] / g_meas[k] - 1, 4) for k in g_meas}
        checks.append(
            {
                "id": f"spec-steps/{st.name}",
                "model": st.spec.name,
                "what": ("probe (sets the cached-pass rate): " if i == 0 else "")
                + f"one step of k tokens, llama-bench pp-k at {THREADS} thread, growth t_k/t_1 within "
                f"{SPEED_TOLERANCE:.0%}",
                "predicted": {
                    "step_ms": {k: round(1e3 * v, 2) for k, v in pred.items()},
                    "growth": {k: round(v, 3) for k, v in g_pred.items()},
                },
                "measured": {
                    "step_ms": {k: round(1e3 * v, 2) for k, v in medians[i].items()},
                    "rounds_ms": {k: [round(1e3 * t, 2) for t in v] for k, v in measured[i].items()},
                    "growth": {k: round(v, 3) for k, v in g_meas.items()},
                },
                "error": err,
                "ok": i == 0 or all(abs(e) <= SPEED_TOLERANCE for e in err.values()),
                "command": f"llama-bench -m {st.path} -p {','.join(map(str, BATCHES))} -n 0 -t {THREADS}",
            }
        )
    return cal, ratio, checks


def speed_check(
    kind: SpecType, cal: Calibration, synth_len: float = 3.0, n_predict: int = 48, rounds: int = 5
) -> dict[str, Any]:
    """Decode tok/s without and with drafting, measured (interleaved) and predicted with the host's
    factors; the acceptance fed in is the run's own."""
    p = pair(kind)
    cfg = CacheConfig(n_ctx=CTX, n_seq=1, unified=True)
    base_args = ["-m", str(p.target.path), "-c", str(CTX), "-np", "1", "-t", str(THREADS), "--fit", "off"]
    base_args += ["--no-warmup", "--cache-ram", "0"]
    drafted = [*base_args, *spec_args(p), "--spec-synth-len", str(synth_len)]
    base, spec = measure_pair(base_args, drafted, n_predict, rounds)
    n_max = p.drafting.n_max
    steps = spec["draft_n"] / n_max  # every step drafts n_max (p_min 0, n_min 0)
    mean_len = 1 + spec["draft_n_accepted"] / steps if steps else 1.0
    acc = Acceptance(acceptance_from_length(min(mean_len, n_max + 1 - 1e-9), n_max), "measured")
    node = detect().node
    sm = predicted(p, cfg)
    fill = FILL
    perf = speed(p.target.spec, sm.target, cfg, node, fill=fill, threads=THREADS, cal=cal)
    if p.drafting.model is None:
        draft_s = mtp_token_seconds(sm, p.target.spec, perf, cfg)
    else:
        dm = p.drafting.model
        dplan = plan_memory(dm.inventory, dm.weights, cfg, None, (), Frontend("llama-server", 1))
        dspeed = speed(dm.inventory.spec, dplan, cfg, node, fill=fill, threads=THREADS, cal=cal)
        draft_s = dspeed.seconds_per_token
    ds = drafted_speed(perf, draft_s, n_max, acc, snapshot_bytes(sm, n_max, 1))
    err_base = perf.decode_tok_s / base["tok_s"] - 1
    err_spec = ds.tok_s / spec["tok_s"] - 1
    # the drafted speed from the measured host speed: what the drafting model itself predicts
    err_rel = base["tok_s"] * ds.speedup / spec["tok_s"] - 1
    return {
        "id": f"spec-speed/{kind}/{p.target.key}",
        "model": p.target.model,
        "what": f"decode tok/s without and with drafting (llama-server, {THREADS} thread), predicted "
        f"with the host's probe-fitted factors and the run's own acceptance, within {SPEED_TOLERANCE:.0%}",
        "acceptance_p": round(acc.p, 4),
        "mean_len": round(mean_len, 3),
        "measured": {
            "base_tok_s": round(base["tok_s"], 2),
            "spec_tok_s": round(spec["tok_s"], 2),
            "speedup": round(spec["tok_s"] / base["tok_s"], 3),
            # each round's drafted over undrafted speed (the two completions ran back to back)
            "rounds_speedup": [
                round(d / b, 3) for b, d in zip(base["rounds_tok_s"], spec["rounds_tok_s"], strict=True)
            ],
            "rounds_base_tok_s": base["rounds_tok_s"],
            "rounds_spec_tok_s": spec["rounds_tok_s"],
            "draft_n": spec["draft_n"],
            "draft_n_accepted": spec["draft_n_accepted"],
        },
        "predicted": {
            "base_tok_s": round(perf.decode_tok_s, 2),
            "spec_tok_s": round(ds.tok_s, 2),
            "speedup": round(ds.speedup, 3),
            "verify_ms": round(1e3 * ds.verify_s, 3),
            "draft_pass_ms": round(1e3 * draft_s, 3),
        },
        "error": {
            "base": round(err_base, 4),
            "spec": round(err_spec, 4),
            "spec_from_base": round(err_rel, 4),
        },
        "ok": abs(err_rel) <= SPEED_TOLERANCE,
        "command": " ".join(["llama-server", *drafted]),
    }


def run_speculative() -> dict[str, Any]:
    checks = [memory_check(k) for k in (SpecType.MTP, SpecType.SIMPLE)]
    cal, factors = host_calibration()
    cal, factors["gemv"], steps = step_checks(cal)
    checks += steps
    checks += [speed_check(k, cal) for k in (SpecType.MTP, SpecType.SIMPLE)]
    payload = _header(
        "speculative", "speculative decoding: draft-side buffers and speed", checks, host_factors=factors
    )
    write_result("speculative", payload)
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    return run_named({"speculative": run_speculative}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
