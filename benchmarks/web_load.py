"""Loopback load on the web app: requests/s and latency percentiles under concurrency.

    python -m benchmarks.web_load              # writes benchmarks/web_load.json
    python -m benchmarks.web_load --workers 1  # one server process

Starts `moeplan serve` on 127.0.0.1 (a free port). First the responsiveness case: a cheap endpoint
asked in a loop while four deploy pages of models never rendered are computed; its p95 is the one
to keep under 50 ms. Then httpx at concurrency 1, 8 and 32 for: a cached page, /api/plan with
queries it has not seen (each one planned), and checker pages for rigs it has not seen (each one a
sweep over the catalog). Every run is bounded by a request count and a time limit.
"""

import argparse
import asyncio
import itertools
import json
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from moeplan.web.app import usable_cores

OUT = Path(__file__).resolve().parent / "web_load.json"
CONCURRENCY = (1, 8, 32)
CHEAP = "/api/presets"
CHEAP_P95_TARGET_MS = 50.0
# Models whose deploy pages the responsiveness case renders (none is rendered before it).
HEAVY_MODELS = ("qwen3-30b-a3b", "gpt-oss-20b", "llama-3.1-8b", "deepseek-v3.1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(ms: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank, of a non-empty list."""
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(ms: list[float], seconds: float, errors: int) -> dict[str, Any]:
    return {
        "requests": len(ms),
        "errors": errors,
        "seconds": round(seconds, 2),
        "req_s": round(len(ms) / seconds, 2) if seconds else 0.0,
        "p50_ms": round(percentile(ms, 50), 1) if ms else None,
        "p95_ms": round(percentile(ms, 95), 1) if ms else None,
        "p99_ms": round(percentile(ms, 99), 1) if ms else None,
    }


async def load(
    client: httpx.AsyncClient, url: Callable[[], str], concurrency: int, max_requests: int, max_s: float
) -> dict[str, Any]:
    """`concurrency` clients, each asking for `url()` as soon as its last answer came, until
    max_requests were sent or max_s passed."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + max_s

    async def one_client() -> None:
        nonlocal errors, sent
        while sent < max_requests and time.perf_counter() < deadline:
            sent += 1
            t0 = time.perf_counter()
            r = await client.get(url())
            latencies.append((time.perf_counter() - t0) * 1000)
            errors += r.status_code != 200

    start = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return summary(latencies, time.perf_counter() - start, errors)


async def responsiveness(client: httpx.AsyncClient, max_s: float) -> dict[str, Any]:
    """The cheap endpoint's latency alone, then while four heavy deploy pages render."""
    idle = await load(client, lambda: CHEAP, 1, 100, max_s)
    heavy = [asyncio.create_task(client.get(f"/models/{m}")) for m in HEAVY_MODELS]
    latencies: list[float] = []
    start = time.perf_counter()
    while not all(t.done() for t in heavy) and time.perf_counter() - start < max_s:
        t0 = time.perf_counter()
        await client.get(CHEAP)
        latencies.append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.01)
    heavy_s = time.perf_counter() - start
    statuses = [t.result().status_code if t.done() else None for t in heavy]
    for t in heavy:
        t.cancel()
    busy = summary(latencies, heavy_s, 0)
    return {
        "cheap_endpoint": CHEAP,
        "heavy_pages": [f"/models/{m}" for m in HEAVY_MODELS],
        "heavy_statuses": statuses,
        "heavy_seconds": round(heavy_s, 2),
        "idle": idle,
        "while_heavy": busy,
        "target_p95_ms": CHEAP_P95_TARGET_MS,
        "meets_target": busy["p95_ms"] is not None and busy["p95_ms"] < CHEAP_P95_TARGET_MS,
    }


async def warm(client: httpx.AsyncClient, url: str) -> None:
    """Ask for `url` on as many connections at once as the load below keeps open: each connection
    stays with the worker process that accepted it, so every one of them then has the page cached."""
    for _ in range(2):
        await asyncio.gather(*(client.get(url) for _ in range(max(CONCURRENCY))))


async def drive(base: str, max_requests: int, max_s: float) -> dict[str, Any]:
    limits = httpx.Limits(
        max_connections=max(CONCURRENCY) + 8, max_keepalive_connections=max(CONCURRENCY) + 8
    )
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        cached = "/models/qwen3.5-35b-a3b"
        await warm(client, cached)
        await warm(client, CHEAP)
        unseen = itertools.count()  # every query below is one the server has not answered yet
        scenarios: dict[str, Callable[[], str]] = {
            "cached page": lambda: cached,
            "/api/plan, unseen queries": lambda: (
                f"/api/plan?model=qwen3.5-35b-a3b&rig=RTX 4090 %2B 64GB DDR5&ctx={4096 + next(unseen)}"
            ),
            "checker page, unseen rigs": lambda: (
                f"/hardware?rig=RTX 4090 %2B {16 + next(unseen)}GB DDR5-6000"
            ),
        }
        resp = await responsiveness(client, max_s * 3)  # first: the four models' caches are cold
        print(f"responsiveness: {resp}", flush=True)
        results = []
        for name, url in scenarios.items():
            for c in CONCURRENCY:
                stats = await load(client, url, c, max_requests, max_s)
                results.append({"scenario": name, "concurrency": c, **stats})
                print(f"{name:28} c={c:<3} {stats}", flush=True)
        return {"load": results, "responsiveness": resp}


def wait_ready(base: str, server: subprocess.Popen[bytes], max_s: float) -> None:
    deadline = time.perf_counter() + max_s
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"moeplan serve exited with {server.returncode}")
        try:
            if httpx.get(base + CHEAP, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"moeplan serve did not answer within {max_s:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=usable_cores(), help="server processes (default: cores)")
    ap.add_argument("--max-requests", type=int, default=200, help="requests per scenario and concurrency")
    ap.add_argument("--max-seconds", type=float, default=10.0, help="time per scenario and concurrency")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-c", "from moeplan.cli import app; app()", "serve", "--port", str(port)]
    cmd += ["--workers", str(args.workers)]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_ready(base, server, 120)
            measured = asyncio.run(drive(base, args.max_requests, args.max_seconds))
        finally:
            server.terminate()
            server.wait(30)
        log.seek(0)
        # uvicorn's supervisor restarts a worker that misses its health check (5 s): a cold start
        restarts = sum(b"] died" in line for line in log)
    report = {
        "machine": {
            "cores": usable_cores(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "server_workers": args.workers,
        "worker_restarts": restarts,
        "bounds": {"max_requests": args.max_requests, "max_seconds": args.max_seconds},
        "note": "client and server share this machine's cores; compare runs on one machine",
        **measured,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"wrote {args.out}; cheap p95 while heavy: {measured['responsiveness']['while_heavy']['p95_ms']} ms"
    )


if __name__ == "__main__":
    main()
