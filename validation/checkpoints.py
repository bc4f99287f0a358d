"""llama-server's context checkpoints vs moeplan (`memory/checkpoints.py`): the size of one checkpoint.

The pinned llama-server, at trace verbosity (`-lv 4`), logs every checkpoint it creates with its size
(`create_checkpoint` in tools/server/server-context.cpp: "created context checkpoint i of n (...,
size = X MiB)"). A prompt longer than the sliding window plus a micro-batch makes it checkpoint
4 + n_ubatch tokens before the prompt's end, with the window full; those sizes must equal the
predicted bytes to the log's three decimals.
"""

import json
import re
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from typing import Any

from moeplan.memory.checkpoints import checkpoint_bytes
from moeplan.memory.kv import CacheConfig
from validation.llamacpp import MIB, run_server_checks
from validation.runtime import GEMMA, TIMEOUT, subject
from validation.speculative import server

SUBJECTS = (GEMMA, "gpt-oss", "laguna", "qwen35moe")  # SWA (real file, two materialised), hybrid GDN
CTX = 4096
UBATCH = 512
PROMPT = "The quick brown fox jumps over the lazy dog. " * 180  # ~1,800 tokens: past window + ubatch
_CREATED = re.compile(
    r"created context checkpoint \d+ of \d+ \(pos_min = (-?\d+), pos_max = (\d+).*?size = ([\d.]+) MiB"
)


def _complete(port: int) -> None:
    body = {"prompt": PROMPT, "n_predict": 2, "temperature": 0.0}
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/completion", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        resp.read()


def logged_sizes(args: Sequence[str]) -> list[tuple[int, float]]:
    """(pos_max, MiB) of every checkpoint llama-server logs while it processes the prompt."""
    with tempfile.TemporaryFile() as f:
        with server([*args, "-lv", "4"], log_file=f) as port:
            _complete(port)
        f.seek(0)
        log = f.read().decode(errors="replace")
    return [(int(m[1]), float(m[2])) for m in _CREATED.findall(log)]


def check(key: str) -> dict[str, Any]:
    s = subject(key, slim=True)
    cfg = CacheConfig(n_ctx=CTX, n_seq=1, n_ubatch=UBATCH)
    predicted = checkpoint_bytes(s.spec, cfg) / MIB
    args = [
        "-m",
        str(s.path),
        "-c",
        str(CTX),
        "-np",
        "1",
        "-ub",
        str(UBATCH),
        "-t",
        "1",
        "--ctx-checkpoints",
        "4",
    ]
    logged = logged_sizes(args)
    full = [mib for _, mib in logged if mib == max(mib for _, mib in logged)] if logged else []
    return {
        "id": f"checkpoint-{key}",
        "model": s.model,
        "predicted": {"checkpoint_mib": round(predicted, 3)},
        "measured": {"logged_mib_at_position": logged},
        "error": {"checkpoint_mib": round(full[0] - predicted, 3) if full else None},
        "ok": bool(full) and all(f"{mib:.3f}" == f"{predicted:.3f}" for mib in full),
        "command": " ".join(["llama-server", *args, "-lv", "4"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    keys = list(argv if argv is not None else sys.argv[1:]) or list(SUBJECTS)
    title = "llama-server context checkpoints: one checkpoint's size, predicted vs the server's log"
    return run_server_checks("checkpoints", title, keys, check)


if __name__ == "__main__":
    raise SystemExit(main())
