"""`moeplan site build OUT/`: the web app's pages as static files (HTML + JSON twins) that any static
host or CDN can serve, with relative links so the folder works from any path (even `file://`).

Layout:  index.html · models.html/.json · models/ID.html/.json (every deploy page) ·
compare.html (Qwen3.5-9B vs 35B-A3B) · compare/A-vs-B.html/.json (each dense/MoE sibling pair) ·
hardware.html (the default preset) · hardware/PRESET.html/.json (the checker for each preset) ·
gpus.html/.json · static/ (CSS, JS, vendored Chart.js).

The pages are the same objects the live app renders (`web.data`), so the numbers are identical."""

import json
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from moeplan.errors import BadInput
from moeplan.web import data
from moeplan.web.render import STATIC, Links, render


def _write(path: Path, text: str) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return 1


def _page(out: Path, rel: str, template: str, links: Links, title: str, obj: BaseModel, **ctx: Any) -> int:
    """Write REL.html (rendered) and REL.json (the page object); returns files written."""
    json_name = Path(rel).name + ".json"
    html = render(template, links, json_url=json_name, title=title, page=obj, **ctx)
    n = _write(out / f"{rel}.html", html)
    return n + _write(out / f"{rel}.json", json.dumps(data.dump(obj), indent=1))


def _copy_static(out: Path) -> int:
    n = 0
    for item in STATIC.iterdir():
        if item.is_dir():
            for sub in item.iterdir():
                dest = out / "static" / item.name / sub.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(sub.read_bytes())
                n += 1
        else:
            dest = out / "static" / item.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(item.read_bytes())
            n += 1
    return n


def _compute(job: tuple[str, tuple[str, ...]]) -> BaseModel:
    """One page object (run in a worker process: the pages are independent)."""
    kind, args = job
    makers: dict[str, Callable[..., BaseModel]] = {
        "deploy": data.deploy_page,
        "compare": data.compare_page,
        "checker": data.checker_page,
    }
    return makers[kind](*args)


def build_site(
    out_dir: str,
    *,
    models: Iterable[str] | None = None,
    presets: Iterable[str] | None = None,
    jobs: int | None = None,
) -> int:
    """Write the site into out_dir; returns the number of files written. `models` and `presets`
    narrow it (tests); by default every catalog model, sibling pair and preset. The page objects are
    computed in `jobs` processes (default: one per CPU)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out_dir} exists and is not a folder")
    if (out / "static").is_dir():
        shutil.rmtree(out / "static")
    out.mkdir(parents=True, exist_ok=True)
    summaries = data.summaries()
    model_ids = [data.model_id(m) for m in models] if models is not None else list(summaries)
    rigs = [data.rig_key(p) for p in presets] if presets is not None else list(data.presets())
    pairs = [(a, b) for a, b in data.sibling_pairs() if a in model_ids and b in model_ids]
    if data.DEFAULT_PRESET not in rigs:
        rigs.append(data.DEFAULT_PRESET)

    def links(depth: int) -> Links:
        return Links(
            live=False, prefix="../" * depth, compare_pairs=pairs, checker_rigs=rigs, models=model_ids
        )

    work = [("deploy", (m,)) for m in model_ids] + [("compare", p) for p in pairs]
    work += [("checker", (r,)) for r in rigs]
    workers = max(1, min(jobs or os.cpu_count() or 1, len(work)))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            computed = dict(zip(work, pool.map(_compute, work), strict=True))
    else:
        computed = {job: _compute(job) for job in work}
    everything = list(summaries.values())
    n = _copy_static(out)
    home = data.home_page()
    n += _page(
        out,
        "index",
        "home.html",
        links(0),
        "Plan a model on your hardware",
        home,
        models=everything,
        presets=data.presets(),
    )
    n += _page(out, "models", "models.html", links(0), "Models", data.models_page())
    n += _page(out, "gpus", "gpus.html", links(0), "GPUs", data.gpus_page())
    for mid in model_ids:
        page = computed[("deploy", (mid,))]
        assert isinstance(page, data.DeployPage)
        n += _page(out, f"models/{mid}", "model.html", links(1), page.model.name, page)
    for a, b in pairs:
        cmp = computed[("compare", (a, b))]
        assert isinstance(cmp, data.ComparePage)
        title = f"{cmp.a.model.name} vs {cmp.b.model.name}"
        n += _page(out, f"compare/{a}-vs-{b}", "compare.html", links(1), title, cmp, models=everything)
    if data.DEFAULT_PAIR in pairs:
        cmp = computed[("compare", data.DEFAULT_PAIR)]
        assert isinstance(cmp, data.ComparePage)
        title = f"{cmp.a.model.name} vs {cmp.b.model.name}"
        n += _page(out, "compare", "compare.html", links(0), title, cmp, models=everything)
    for rig in rigs:
        chk = computed[("checker", (rig,))]
        assert isinstance(chk, data.CheckerPage)
        n += _page(
            out,
            f"hardware/{rig}",
            "hardware.html",
            links(1),
            f"What runs on {chk.rig_text}",
            chk,
            presets={r: data.presets()[r] for r in rigs if r in data.presets()},
        )
    chk = computed[("checker", (data.DEFAULT_PRESET,))]
    assert isinstance(chk, data.CheckerPage)
    n += _page(
        out,
        "hardware",
        "hardware.html",
        links(0),
        f"What runs on {chk.rig_text}",
        chk,
        presets={r: data.presets()[r] for r in rigs if r in data.presets()},
    )
    return n
