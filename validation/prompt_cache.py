"""llama-server's prompt cache vs moeplan (`memory/prompt_cache.py`): the bound in host RAM.

The pinned llama-server, at trace verbosity (`-lv 4`), logs the limit it starts with ("prompt cache
is enabled, size limit: N MiB" in server-context.cpp) and, after every update, the cache's entries
and size (`server_prompt_cache::update`: "cache state: K prompts, X MiB (limits: Y MiB, T tokens
...)" then one "prompt ...: N tokens, checkpoints: C, M MiB" line per entry). Distinct prompts sent
one after another to one slot each save the previous one (`prompt_save`), so the cache grows with
use. Three runs on the real Gemma 3 270M file:
- the default: the logged limit is moeplan's DEFAULT_CACHE_RAM_MIB;
- `--cache-ram 32`: the entries (state and checkpoints) outgrow 32 MiB, the oldest are dropped, and
  the logged size never exceeds moeplan's bound of 32 MiB;
- `--cache-ram -1 -c 1024 --ctx-checkpoints 0`: no size limit; the entries stay within n_ctx tokens
  and the logged size within moeplan's bound of n_ctx tokens of state (`token_bound_bytes`).
"""

import json
import re
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from typing import Any

from moeplan.memory.kv import CacheConfig
from moeplan.memory.prompt_cache import DEFAULT_CACHE_RAM_MIB, prompt_cache_bytes, token_bound_bytes
from validation.llamacpp import MIB, run_server_checks
from validation.runtime import GEMMA, TIMEOUT, subject
from validation.speculative import server

# Distinct openings, so no prompt is a prefix of another (each is saved, none replaces another).
TOPICS = ("rivers", "mountains", "deserts", "forests", "glaciers", "islands", "volcanoes", "canyons")
_LIMIT = re.compile(r"prompt cache is enabled, size limit: (\d+ MiB|no limit)")
_STATE = re.compile(r"cache state: (\d+) prompts, ([\d.]+) MiB \(limits: ([\d.]+) MiB, (\d+) tokens")
_ENTRY = re.compile(r"- prompt 0x[0-9a-f]+: +(\d+) tokens, checkpoints: +(\d+), +([\d.]+) MiB")
_DROPPED = "removing oldest entry"


def _prompt(topic: str, words: int) -> str:
    return f"A note on {topic}. " + " ".join(f"{topic}{i % 7}" for i in range(words))


def _complete(port: int, prompt: str) -> None:
    body = {"prompt": prompt, "n_predict": 1, "temperature": 0.0}
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/completion", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        resp.read()


def _log(args: Sequence[str], prompts: Sequence[str]) -> str:
    with tempfile.TemporaryFile() as f:
        with server([*args, "-lv", "4"], log_file=f) as port:
            for p in prompts:
                _complete(port, p)
        f.seek(0)
        return f.read().decode(errors="replace")


def measure(args: Sequence[str], prompts: Sequence[str]) -> dict[str, Any]:
    """What the server logs of its prompt cache: the limit, the largest size any update reached,
    the most tokens its entries held at once, entries dropped."""
    log = _log(args, prompts)
    limit = _LIMIT.search(log)
    states = [(int(m[1]), float(m[2])) for m in _STATE.finditer(log)]
    held: list[int] = []  # tokens of each update's entries (the lines after its state line)
    entries: set[tuple[int, int, float]] = set()  # (tokens, checkpoints, MiB) of every entry listed
    for line in log.splitlines():
        if _STATE.search(line):
            held.append(0)
        elif held and (m := _ENTRY.search(line)):
            held[-1] += int(m[1])
            entries.add((int(m[1]), int(m[2]), float(m[3])))
    return {
        "logged_limit": limit[1] if limit else None,
        "updates": len(states),
        "most_prompts": max((n for n, _ in states), default=0),
        "largest_mib": max((mib for _, mib in states), default=0.0),
        "most_tokens": max(held, default=0),
        "entries_dropped": log.count(_DROPPED),
        "entries": sorted(entries),
    }


def _args(path: str, ctx: int, *extra: str) -> list[str]:
    return ["-m", path, "-c", str(ctx), "-np", "1", "-t", "1", *extra]


def check(case: str) -> dict[str, Any]:
    s = subject(GEMMA)
    path = str(s.path)
    if case == "default":
        args, prompts, ctx, cram = _args(path, 2048), [_prompt("rivers", 20)], 2048, DEFAULT_CACHE_RAM_MIB
    elif case == "limit-32":
        args = _args(path, 2048, "--cache-ram", "32")
        prompts, ctx, cram = [_prompt(t, 100) for t in TOPICS], 2048, 32
    else:  # no-limit
        args = _args(path, 1024, "--cache-ram", "-1", "--ctx-checkpoints", "0")
        prompts, ctx, cram = [_prompt(t, 150) for t in TOPICS], 1024, -1
    cfg = CacheConfig(n_ctx=ctx, n_seq=1)
    bound = prompt_cache_bytes(s.spec, cfg, cram) / MIB
    got = measure(args, prompts)
    expected_limit = "no limit" if cram < 0 else f"{cram} MiB"
    ok = got["logged_limit"] == expected_limit and got["largest_mib"] <= bound
    if case == "limit-32":  # the cache filled up and made room: the bound was reached, not idle
        ok = ok and got["entries_dropped"] > 0 and got["largest_mib"] > bound / 2
    # each entry without checkpoints is one sequence's state: its tokens' KV and cell metadata
    states = {
        t: round(token_bound_bytes(s.spec, CacheConfig(n_ctx=t, kv_pad=1)) / MIB, 3)
        for t, _, _ in got["entries"]
    }
    entry_error = max((abs(mib - states[t]) for t, c, mib in got["entries"] if not c), default=None)
    if case == "no-limit":  # entries outgrew n_ctx tokens in all, and the token limit held them
        ok = ok and got["entries_dropped"] > 0 and got["most_tokens"] <= ctx
        ok = ok and entry_error is not None and entry_error <= 0.001
    return {
        "id": f"prompt-cache-{case}",
        "model": s.model,
        "predicted": {"bound_mib": round(bound, 3), "limit": expected_limit, "entry_state_mib": states},
        "measured": got,
        "error": {
            "over_bound_mib": round(max(0.0, got["largest_mib"] - bound), 3),
            "entry_state_mib": None if entry_error is None else round(entry_error, 3),
        },
        "ok": ok,
        "command": " ".join(["llama-server", *args, "-lv", "4"]) + f"  ({len(prompts)} distinct prompts)",
    }


CASES = ("default", "limit-32", "no-limit")


def main(argv: Sequence[str] | None = None) -> int:
    cases = list(argv if argv is not None else sys.argv[1:]) or list(CASES)
    title = "llama-server prompt cache: the --cache-ram bound, predicted vs the server's log"
    return run_server_checks("prompt_cache", title, cases, check)


if __name__ == "__main__":
    raise SystemExit(main())
