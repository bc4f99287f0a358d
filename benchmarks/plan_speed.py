"""Planning speed: one plan, and the whole catalog x 20 GPU presets x every quantization.

    python -m benchmarks.plan_speed     # writes benchmarks/plan_speed.json

Wall-clock times from one run on this machine (time.perf_counter); the targets are one plan under
50 ms, the whole sweep under 5 s and `moeplan fit` for one rig under 2 s. Ratios between runs in
the same process are what to compare.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moeplan.hardware.presets import PRESETS
from moeplan.hardware.rig import parse_rig
from moeplan.plan.llamacpp import QUANT_LADDER, plan
from moeplan.sources.catalog import load_catalog

OUT = Path(__file__).resolve().parent / "plan_speed.json"


def main() -> None:
    catalog = load_catalog()
    presets = list(PRESETS)[:20]
    rigs = [parse_rig(p) for p in presets]
    spec = catalog["qwen3.5-35b-a3b"].spec()
    plan(spec, rigs[0])  # warm caches (inventory, weights)
    t0 = time.perf_counter()
    plan(spec, parse_rig("rtx-5080-64gb"))
    one_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    for entry in catalog.values():
        s = entry.spec()
        for rig in rigs:
            r = plan(s, rig)  # every quantization on the ladder is searched
            _ = r.chosen.decode_tok_s
            n += 1
    sweep = time.perf_counter() - t0
    t0 = time.perf_counter()
    for rig in rigs:  # the hardware checker's workload: winners only, no alternatives
        for entry in catalog.values():
            _ = plan(entry.spec(), rig, alternatives=False).chosen.decode_tok_s
    checker = time.perf_counter() - t0
    fit_cli, fit_in_process = _fit_times("rtx-4090-64gb")
    result = {
        "one_plan_s": round(one_plan, 4),
        "sweep_s": round(sweep, 2),
        "sweep_plans": n,
        "checker_sweep_s": round(checker, 2),  # the same plans without alternatives, caches warm
        # `moeplan fit` over the catalog for one rig (median of 5): a fresh CLI process (imports,
        # GPU database, every prediction cold), and the same call in a fresh interpreter via the API.
        "fit_cli_s": round(fit_cli, 2),
        "fit_api_s": round(fit_in_process, 2),
        "quants_on_ladder": len(QUANT_LADDER),
        "models": len(catalog),
        "presets": presets,
        "targets": {"one_plan_s": 0.05, "sweep_s": 5.0, "fit_cli_s": 2.0},
        "met": {"one_plan": one_plan < 0.05, "sweep": sweep < 5.0, "fit_cli": fit_cli < 2.0},
    }
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def _fit_times(rig: str, runs: int = 5) -> tuple[float, float]:
    """Median wall time of `moeplan fit --rig RIG` as a new process, and of api.fit in a new
    interpreter (so neither finds anything cached); the median of `runs`, as this VM's speed
    drifts between seconds."""
    cli = Path(sys.executable).with_name("moeplan")
    code = (
        "import time; from moeplan.api import fit; from moeplan.hardware.rig import parse_rig;"
        f"parse_rig({rig!r}); t = time.perf_counter(); fit({rig!r}); print(time.perf_counter() - t)"
    )
    cli_s: list[float] = []
    api_s: list[float] = []
    with tempfile.TemporaryDirectory() as pycache:
        # As installed by pip: modules load from compiled bytecode (a warm-up run writes it; this
        # machine's environment sets PYTHONDONTWRITEBYTECODE, which would recompile every run).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        subprocess.run([str(cli), "fit", "--rig", rig], check=True, capture_output=True, env=env)
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run([str(cli), "fit", "--rig", rig], check=True, capture_output=True, env=env)
            cli_s.append(time.perf_counter() - t0)
            out = subprocess.run(
                [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
            )
            api_s.append(float(out.stdout.strip()))
    return statistics.median(cli_s), statistics.median(api_s)


if __name__ == "__main__":
    main()
