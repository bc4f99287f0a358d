"""Chart.js configurations built from page objects (JSON only: no callbacks, so a config can sit in a
`<script type="application/json">` block and the same numbers stay readable in the tables beside it).
Values are converted for display (bytes to GiB), never recomputed."""

from typing import Any

from moeplan.web.data import ComparePage, DeployPage, RigPlan

GIB = 2**30
PALETTE = ("#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#4b5563")


def _options(
    x_title: str, y_title: str, *, stacked: bool = False, horizontal: bool = False
) -> dict[str, Any]:
    x = {"title": {"display": True, "text": x_title}, "stacked": stacked}
    y = {"title": {"display": True, "text": y_title}, "stacked": stacked, "beginAtZero": True}
    return {
        "animation": False,
        "responsive": True,
        "maintainAspectRatio": False,
        "indexAxis": "y" if horizontal else "x",
        "scales": {"x": x, "y": y},
        "plugins": {"legend": {"position": "bottom"}},
    }


def roles(page: DeployPage) -> dict[str, Any]:
    """Resident bytes by role (stacked) beside the bytes one token reads (active parameters only)."""
    labels = ["resident (whole file)", "read per token (active only)"]
    datasets: list[dict[str, Any]] = [
        {
            "label": r.role,
            "data": [round(r.bytes / GIB, 2), None],
            "backgroundColor": PALETTE[i % len(PALETTE)],
            "stack": "s",
        }
        for i, r in enumerate(page.roles)
    ]
    datasets.append(
        {
            "label": "active parameters",
            "data": [None, round(page.size.active_bytes / GIB, 2)],
            "backgroundColor": "#111827",
            "stack": "s",
        }
    )
    return {
        "type": "bar",
        "data": {"labels": labels, "datasets": datasets},
        "options": _options(f"GiB at {page.size.quant}", "", stacked=True, horizontal=True),
    }


def memory_curve(page: DeployPage) -> dict[str, Any]:
    """GPU memory with every layer on the GPU, by context, one line per quantization."""
    contexts = sorted({p.ctx for pts in page.memory_curve.values() for p in pts})
    datasets = [
        {
            "label": quant,
            "data": [round(p.gpu_bytes / GIB, 2) for p in pts],
            "borderColor": PALETTE[i],
            "backgroundColor": PALETTE[i],
        }
        for i, (quant, pts) in enumerate(page.memory_curve.items())
    ]
    return {
        "type": "line",
        "data": {"labels": [f"{c // 1024}k" for c in contexts], "datasets": datasets},
        "options": _options("context (tokens)", "GPU memory (GiB)"),
    }


def _speed_dataset(name: str, plans: list[RigPlan], color: str) -> dict[str, Any]:
    return {
        "label": name,
        "data": [p.plan.decode_tok_s if p.plan.fits else 0 for p in plans],
        "backgroundColor": color,
    }


def speed(page: DeployPage) -> dict[str, Any]:
    """Predicted decode speed of the best plan on each common rig."""
    return {
        "type": "bar",
        "data": {
            "labels": [p.label for p in page.plans],
            "datasets": [_speed_dataset(page.model.name, page.plans, PALETTE[0])],
        },
        "options": _options("", "decode tokens/s"),
    }


def compare_speed(page: ComparePage) -> dict[str, Any]:
    return {
        "type": "bar",
        "data": {
            "labels": [p.label for p in page.a.plans],
            "datasets": [
                _speed_dataset(page.a.model.name, page.a.plans, PALETTE[0]),
                _speed_dataset(page.b.model.name, page.b.plans, PALETTE[1]),
            ],
        },
        "options": _options("", "decode tokens/s"),
    }


def compare_memory(page: ComparePage) -> dict[str, Any]:
    labels = list(page.a.vram_bytes)
    return {
        "type": "bar",
        "data": {
            "labels": [f"{k} context" for k in labels],
            "datasets": [
                {
                    "label": side.model.name,
                    "data": [round(v / GIB, 2) if v else None for v in side.vram_bytes.values()],
                    "backgroundColor": PALETTE[i],
                }
                for i, side in enumerate((page.a, page.b))
            ],
        },
        "options": _options("", "GPU memory at Q4_K_M (GiB)"),
    }
