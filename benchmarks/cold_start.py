"""Cold start of the CLI: `moeplan plan <catalog model> --rig ...`, `--version`, `models` and `fit` as
new processes, against a bare `python -c pass` timed in the same run.

    python -m benchmarks.cold_start     # writes benchmarks/cold_start.json

This machine is shared and its speed drifts by a factor of two within minutes, so the commands are
run in interleaved rounds and each is reported by its fastest round (the least disturbed) and its
median; the ratio to `python -c pass` of the same rounds is what to compare between runs. CPU
seconds (user + system of the child) are given beside wall seconds: they move less with the load.
Where valgrind is installed, the instructions each of the quick commands executes are counted too
(cachegrind's "I refs"): that count does not depend on the load at all, so its ratio to
`python -c pass` is the figure to compare between runs on a shared machine.
The target is a plan in at most 0.25 s of wall time (issue 16). "imports plan cannot avoid" is the
floor under it: the libraries `plan` runs on (typer, which builds a pydantic TypeAdapter per option;
pydantic for the report models; rich for the tables; numpy for the memory tables), imported alone.
"""

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moeplan.data_files import CACHE_ENV

OUT = Path(__file__).resolve().parent / "cold_start.json"
ROUNDS = 9  # `fit` plans the whole catalog: a round takes seconds
TARGET_PLAN_S = 0.25
CLI = [sys.executable, "-m", "moeplan"]
RIG = "RTX 4090 + 64GB DDR5-6000"
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "imports plan cannot avoid": [
        sys.executable,
        "-c",
        "import typer, typer._adapters, pydantic, rich.console, rich.table, numpy",
    ],
    "moeplan --version": [*CLI, "--version"],
    "moeplan plan": [*CLI, "plan", "qwen3.5-35b-a3b", "--rig", RIG],
    "moeplan models": [*CLI, "models"],
    "moeplan fit": [*CLI, "fit", "--rig", RIG],
}


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `cmd` as a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


# Counted under valgrind (some fifty times slower than a normal run): the commands that start quickly.
COUNTED = ("python -c pass", "imports plan cannot avoid", "moeplan --version", "moeplan plan")


def _instructions(cmd: list[str], env: dict[str, str]) -> int:
    """Instructions one run of `cmd` executes in user space (valgrind cachegrind, no cache model)."""
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", *cmd],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output for {cmd}")
    return int(found.group(1).replace(",", ""))


def main() -> None:
    with tempfile.TemporaryDirectory() as pycache, tempfile.TemporaryDirectory() as data_cache:
        # As installed by pip: modules load from compiled bytecode (a warm-up run writes it; this
        # machine's environment sets PYTHONDONTWRITEBYTECODE, which would recompile every run).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        env[CACHE_ENV] = data_cache  # the parsed data files, as a first run leaves them
        for cmd in COMMANDS.values():
            _run(cmd, env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in COMMANDS}
        load_before = os.getloadavg()[0]
        for _ in range(ROUNDS):
            for name, cmd in COMMANDS.items():
                times[name].append(_run(cmd, env))
        load_after = os.getloadavg()[0]
        counts = {n: _instructions(COMMANDS[n], env) for n in COUNTED} if shutil.which("valgrind") else {}
    base_wall = min(w for w, _ in times["python -c pass"])
    base_cpu = min(c for _, c in times["python -c pass"])
    result: dict[str, object] = {
        name: {
            "wall_s_min": round(min(w for w, _ in runs), 3),
            "wall_s_median": round(statistics.median(w for w, _ in runs), 3),
            "cpu_s_min": round(min(c for _, c in runs), 3),
            "wall_ratio_to_python": round(min(w for w, _ in runs) / base_wall, 1),
            "cpu_ratio_to_python": round(min(c for _, c in runs) / base_cpu, 1),
        }
        for name, runs in times.items()
    }
    for name, n in counts.items():
        entry = result[name]
        assert isinstance(entry, dict)
        entry["instructions"] = n
        entry["instructions_ratio_to_python"] = round(n / counts["python -c pass"], 1)
    plan_s = min(w for w, _ in times["moeplan plan"])
    result["rounds"] = ROUNDS
    result["load_average_1min"] = [round(load_before, 2), round(load_after, 2)]
    result["cpus"] = os.cpu_count()
    result["target"] = {"moeplan_plan_wall_s": TARGET_PLAN_S, "met": plan_s <= TARGET_PLAN_S}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
