"""The web face: server-rendered pages (each with a JSON twin at the same path plus `.json`) and the
OpenAPI-documented `/api/...`, all answered by `web.data`, which calls the core.

Errors: a `MoeplanError` (unknown model, unreadable rig, context out of range) is the person's
mistake, so it becomes a 404 (model not found) or 400 with the error's one-line message — an HTML
page with the message for pages, `{"detail": ..., "error": ...}` for JSON. Nothing the core raises
for bad input reaches the client as a 500.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from moeplan import __version__
from moeplan.api import FitRow, MemoryReport, PlanReport
from moeplan.errors import ModelNotFound, MoeplanError
from moeplan.memory.report import SizeReport
from moeplan.web import data
from moeplan.web.data import (
    MAX_CTX,
    MAX_MODEL_CHARS,
    MAX_QUERY_CHARS,
    MAX_RIG_CHARS,
    MIN_CTX,
    BadInput,
    GPURow,
    ModelSummary,
)
from moeplan.web.render import STATIC, Links, render

LIVE = Links(live=True)


class ErrorBody(BaseModel):
    detail: str
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad input (unreadable rig, unknown quantization ...)"},
    404: {"model": ErrorBody, "description": "unknown model (with a did-you-mean suggestion)"},
}

ModelQ = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_MODEL_CHARS,
        description="catalog id, display name or Hugging Face repo",
        examples=["qwen3.5-35b-a3b", "Qwen/Qwen3.5-35B-A3B"],
    ),
]
RigQ = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_RIG_CHARS,
        description="rig in the CLI's grammar, or a preset name",
        examples=["RTX 4090 + 64GB DDR5-6000", "2x RTX 3090 + 128GB DDR4-3200", "mac-128gb"],
    ),
]
QuantQ = Annotated[
    str, Query(min_length=1, max_length=32, description="llama.cpp file type", examples=["Q4_K_M"])
]
SizeQuantQ = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=32,
        description="llama.cpp file type (default: Q4_K_M, or MXFP4_MOE for models released in MXFP4)",
        examples=["Q4_K_M"],
    ),
]
CtxQ = Annotated[int, Query(ge=MIN_CTX, le=MAX_CTX, description="context length in tokens")]
SeqQ = Annotated[int, Query(ge=1, le=256, description="parallel sequences (llama-server -np)")]
CacheQ = Annotated[str, Query(min_length=1, max_length=16, description="KV cache type (f16, q8_0, q4_0 ...)")]


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path.endswith(".json") or path.startswith("/openapi")


def _status(e: MoeplanError) -> int:
    return 404 if isinstance(e, ModelNotFound) else 400


def _error_response(request: Request, status: int, message: str, kind: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message, "error": kind}, status_code=status)
    html = render("error.html", LIVE, status=status, message=message, kind=kind, json_url=None, title="Error")
    return HTMLResponse(html, status_code=status)


def _opt_int(value: str, what: str) -> int | None:
    """An optional integer from a form field ('' means not given)."""
    value = value.strip()
    if not value:
        return None
    if len(value) > 12 or not value.lstrip("-").isdigit():
        raise BadInput(f"{what} must be a whole number, not '{value[:20]}'")
    return int(value)


def _opt_float(value: str, what: str) -> float | None:
    value = value.strip()
    if not value:
        return None
    try:
        x = float(value[:20])
    except ValueError:
        raise BadInput(f"{what} must be a number, not '{value[:20]}'") from None
    if not 0 <= x <= 1e7:
        raise BadInput(f"{what} must be between 0 and 10,000,000")
    return x


def _page(template: str, json_url: str | None, title: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, LIVE, json_url=json_url, title=title, **context))


def _json(obj: BaseModel | list[Any]) -> JSONResponse:
    return JSONResponse(data.dump(obj))


def create_app() -> FastAPI:
    app = FastAPI(
        title="moeplan",
        version=__version__,
        description=(
            "Will this dense or MoE model fit, how should I run it, how fast: exact llama.cpp memory "
            "planning. Every HTML page also has a JSON twin (same path plus `.json`)."
        ),
        # FastAPI's /docs and /redoc load their JavaScript from a CDN; /api is rendered here instead.
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.middleware("http")
    async def timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
        return response

    @app.exception_handler(MoeplanError)
    async def moeplan_error(request: Request, e: MoeplanError) -> Response:
        return _error_response(request, _status(e), str(e), type(e).__name__)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> Response:
        parts = []
        for err in e.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "query")
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error_response(request, 422, "; ".join(parts) or "invalid request", "RequestValidationError")

    # ------------------------------------------------------------------------------------ pages

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/index.json", include_in_schema=False)
    def home(
        request: Request,
        model: str = "",
        rig: str = "",
        preset: str = "",
        ctx: str = "",
        quant: str = "",
    ) -> Response:
        rig = rig.strip() or preset.strip()
        page = data.home_page(model, rig, _opt_int(ctx, "context"), quant.strip() or None)
        if request.url.path.endswith(".json"):
            return _json(page)
        query = {"model": model, "rig": rig, "ctx": ctx, "quant": quant}
        return _page(
            "home.html",
            LIVE._q("/index.json", query),
            "Plan a model on your hardware",
            page=page,
            models=list(data.summaries().values()),
            presets=data.presets(),
        )

    @app.get("/models", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/models.json", include_in_schema=False)
    def models(
        request: Request, kind: str = "all", q: str = "", sort: str = "name", desc: str = "", max_gb: str = ""
    ) -> Response:
        page = data.models_page(kind, q, sort, desc in ("1", "true", "on"), _opt_float(max_gb, "max_gb"))
        if request.url.path.endswith(".json"):
            return _json(page)
        query = {"kind": kind, "q": q, "sort": sort, "desc": desc, "max_gb": max_gb}
        return _page("models.html", LIVE._q("/models.json", query), "Models", page=page)

    @app.get("/models/{name:path}", response_class=HTMLResponse, include_in_schema=False)
    def model(name: str) -> Response:
        if name.endswith(".json"):
            return _json(data.deploy_page(name.removesuffix(".json")))
        page = data.deploy_page(name)
        if page.model.id != name:  # an HF repo or display name: the canonical address
            return Response(status_code=307, headers={"Location": LIVE.model(page.model.id)})
        return _page("model.html", LIVE.model(page.model.id, json=True), page.model.name, page=page)

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/compare.json", include_in_schema=False)
    def compare(request: Request, a: str = "", b: str = "") -> Response:
        page = data.compare_page(a or None, b or None)
        if request.url.path.endswith(".json"):
            return _json(page)
        return _page(
            "compare.html",
            LIVE.compare(page.a.model.id, page.b.model.id, json=True),
            f"{page.a.model.name} vs {page.b.model.name}",
            page=page,
            models=list(data.summaries().values()),
        )

    @app.get("/hardware", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/hardware.json", include_in_schema=False)
    def hardware(
        request: Request,
        rig: str = "",
        preset: str = "",
        gpu: str = "",
        count: str = "",
        ram_gb: str = "",
        ram_type: str = "",
        channels: str = "",
        backend: str = "",
        show: str = "all",
        kind: str = "all",
        sort: str = "speed",
    ) -> Response:
        rig = rig.strip() or preset.strip()
        if not rig and gpu.strip():
            rig = data.compose_rig(
                gpu,
                _opt_int(count, "GPU count") or 1,
                _opt_int(ram_gb, "RAM size") or 0,
                ram_type,
                _opt_int(channels, "channels") or 0,
            )
        rig = rig or data.DEFAULT_PRESET
        if backend not in ("", "vulkan"):
            raise BadInput(f"backend must be empty (the GPUs' own) or vulkan, not '{backend[:20]}'")
        if backend == "vulkan" and "vulkan" not in rig.lower():
            rig = f"{rig} (Vulkan)"  # the rig grammar's way of saying it (engines/gpu_backends.split_backend)
        page = data.checker_page(rig, show, kind, sort)
        if request.url.path.endswith(".json"):
            return _json(page)
        return _page(
            "hardware.html",
            LIVE.hardware(page.rig, json=True, show=show, kind=kind, sort=sort),
            f"What runs on {page.rig_text}",
            page=page,
            presets=data.presets(),
        )

    @app.get("/gpus", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/gpus.json", include_in_schema=False)
    def gpus(request: Request, q: str = "") -> Response:
        page = data.gpus_page(q)
        if request.url.path.endswith(".json"):
            return _json(page)
        return _page("gpus.html", LIVE._q("/gpus.json", {"q": q}), "GPUs", page=page)

    @app.get("/api", response_class=HTMLResponse, include_in_schema=False)
    def api_docs() -> Response:
        """The API reference, rendered from the OpenAPI document (works offline)."""
        spec = app.openapi()
        return _page("api.html", "/openapi.json", "API", spec=spec)

    # -------------------------------------------------------------------------------------- API

    @app.get("/api/plan", response_model=PlanReport, responses=ERRORS, tags=["api"])
    def api_plan(
        model: ModelQ,
        rig: RigQ,
        ctx: Annotated[
            int | None, Query(ge=MIN_CTX, le=MAX_CTX, description="context; default: the most that fits")
        ] = None,
        quant: Annotated[
            str | None, Query(max_length=32, description="file type; default: the best that fits")
        ] = None,
        n_seq: SeqQ = 1,
        ctk: CacheQ = "f16",
        ctv: CacheQ = "f16",
    ) -> PlanReport:
        """The best llama.cpp plan for a model on a rig: quantization, placement, context, decode
        speed, per-device memory, the exact command and the notices."""
        return data.plan(model, rig, ctx=ctx, quant=quant or None, n_seq=n_seq, ctk=ctk, ctv=ctv)

    @app.get("/api/fit", response_model=list[FitRow], responses=ERRORS, tags=["api"])
    def api_fit(rig: RigQ) -> list[FitRow]:
        """The hardware compatibility checker: every catalog model's best plan on the rig, fastest first."""
        return data.fit(rig)

    @app.get("/api/size", response_model=SizeReport, responses=ERRORS, tags=["api"])
    def api_size(
        model: ModelQ,
        quant: SizeQuantQ = None,
        mtp: Annotated[
            bool | None, Query(description="keep MTP layers; default: what the published GGUFs hold")
        ] = None,
    ) -> SizeReport:
        """Predicted GGUF file size (default quantization: Q4_K_M, or MXFP4_MOE for models released with
        MXFP4 experts), bits per weight, bytes by role and the active-parameter bytes."""
        return data.size(data.model_id(model), data.quant_name(quant), mtp)

    @app.get("/api/memory", response_model=MemoryReport, responses=ERRORS, tags=["api"])
    def api_memory(
        model: ModelQ,
        ctx: CtxQ,
        quant: QuantQ = "Q4_K_M",
        placement: Annotated[
            str, Query(max_length=MAX_RIG_CHARS, description="llama.cpp flags, e.g. '-ngl 99 --n-cpu-moe 20'")
        ] = "",
        gpus: Annotated[
            int | None, Query(ge=0, le=64, description="GPUs; default: 1 with a placement")
        ] = None,
        n_seq: Annotated[int | None, Query(ge=1, le=256, description="parallel sequences")] = None,
    ) -> MemoryReport:
        """Bytes per device llama.cpp allocates for the model, context and placement."""
        return data.memory(model, quant, ctx, placement=placement, gpus=gpus, n_seq=n_seq)

    @app.get("/api/models", response_model=list[ModelSummary], tags=["api"])
    def api_models() -> list[ModelSummary]:
        """The built-in catalog: parameters total/active, experts, attention kinds, context."""
        return list(data.summaries().values())

    @app.get("/api/gpus", response_model=list[GPURow], responses=ERRORS, tags=["api"])
    def api_gpus(
        q: Annotated[
            str, Query(max_length=MAX_QUERY_CHARS, description="name contains; empty: curated list")
        ] = "",
    ) -> list[GPURow]:
        """The GPU catalog (curated entries, or every card whose name contains q; at most 300)."""
        return data.gpus_page(q).gpus

    @app.get("/api/presets", response_model=dict[str, str], tags=["api"])
    def api_presets() -> dict[str, str]:
        """Named rigs and the rig string each stands for."""
        return data.presets()

    return app


def run_server(host: str, port: int) -> None:
    uvicorn.run(create_app(), host=host, port=port, log_level="info")
