"""The web face: server-rendered pages (each with a JSON twin at the same path plus `.json`) and the
OpenAPI-documented `/api/...`, all answered by `web.data`, which calls the core.

Errors: a `MoeplanError` (unknown model, unreadable rig, context out of range) is the person's
mistake, so it becomes a 404 (model not found) or 400 with the error's one-line message — an HTML
page with the message for pages (and the page's form, filled in with what was sent), `{"detail": ...,
"error": ...}` for JSON. An unknown path is an HTML 404 page, or JSON under /api/ and for .json.
Nothing the core raises for bad input reaches the client as a 500.
"""

import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, GetPydanticSchema
from pydantic_core import core_schema
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.supervisors import Multiprocess

from moeplan import __version__, numbers
from moeplan.api import FitRow, MemoryReport, PlanReport
from moeplan.arch.vision import MMPROJ_TYPES
from moeplan.engines.fit import FIT_TARGET_MIB
from moeplan.engines.formats import FORMAT_NAMES
from moeplan.errors import BadInput, ModelNotFound, MoeplanError
from moeplan.memory.kv import CACHE_TYPES
from moeplan.memory.prompt_cache import DEFAULT_CACHE_RAM_MIB
from moeplan.memory.report import SizeReport
from moeplan.plan.distributed import DistributedPlan
from moeplan.plan.options import PlanOptions
from moeplan.plan.uses import USES
from moeplan.quant.recipe import FileType
from moeplan.web import data
from moeplan.web.data import MAX_MODEL_CHARS, MAX_QUERY_CHARS, MAX_RIG_CHARS, GPURow, ModelSummary
from moeplan.web.render import STATIC, Links, render

LIVE = Links(live=True)


class ErrorBody(BaseModel):
    """Every error the app answers, whatever the status: the one-line message and the error's kind."""

    detail: str
    error: str


# Declared on every endpoint that takes parameters; the 422 entry replaces FastAPI's default
# (a list of pydantic errors), which the validation handler below never sends.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "input moeplan cannot use (unreadable rig, unknown quantization, context out of "
        "range, placement ...)",
    },
    404: {"model": ErrorBody, "description": "unknown model (with a did-you-mean suggestion)"},
    422: {
        "model": ErrorBody,
        "description": "a parameter missing, unknown, repeated, not written as the document says "
        "(type, pattern, choices) or outside its bounds",
    },
}
UNKNOWN_PARAMETER: dict[int | str, dict[str, Any]] = {422: ERRORS[422]}  # endpoints that take no parameters


def one_of(names: Iterable[str]) -> GetPydanticSchema:
    """A string that must be one of `names`: one literal schema both validates the request and writes
    the parameter's enum into the OpenAPI document, so the two cannot disagree."""
    choices = list(names)
    return GetPydanticSchema(lambda _source, _handler: core_schema.literal_schema(choices))


def any_case(names: Iterable[str]) -> list[str]:
    """`names` as written and in upper case: the parsers behind the enums read either (the CLI's
    `--ctk Q8_0` is llama.cpp's q8_0)."""
    return list(dict.fromkeys([*names, *(n.upper() for n in names)]))


CacheName = Annotated[str, one_of(any_case(CACHE_TYPES))]  # `-ctk/-ctv` values llama.cpp accepts
MmprojName = Annotated[str, one_of(any_case(MMPROJ_TYPES))]  # mmproj file types (arch/vision.py)
UseName = Annotated[str, one_of(USES)]  # what a plan is for (plan/uses.py)

# Quantization and weight-format names as people type them ("Q4_K_M", "q4_k_m", "q4km", "awq_marlin"):
# no enum could hold every spelling `FileType.parse` and `parse_weight_format` read, so the document
# declares the characters (enforced here) and the names (in the description), and the parsers, the
# CLI's, answer a name they do not know with a 400 and the nearest ones.
NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]*$"
MAX_NAME_CHARS = 32  # data.quant_name's bound
FILE_TYPES = f"one of {', '.join(FileType.__members__)} (any case, underscores optional)"
WEIGHT_FORMATS = f"one of {', '.join(FORMAT_NAMES)} (any case)"
QUANT_EXAMPLES = ["Q4_K_M", "q4_k_m", "q4km"]


def name_query(description: str, examples: list[str], alias: str | None = None) -> Any:
    """A quantization or format parameter: `NAME_PATTERN`, at most `MAX_NAME_CHARS`."""
    return Query(
        alias=alias,
        pattern=NAME_PATTERN,
        max_length=MAX_NAME_CHARS,
        description=description,
        examples=examples,
    )


# Numbers of tokens as people type them ("32768", "32k", "128k", "1M"), read by numbers.parse_int as
# the CLI's --ctx and the home form's context are; the error names the parameter. /api/memory, like
# `moeplan memory`, also takes 0: llama.cpp's -c 0, the model's trained context.
CTX = replace(numbers.CONTEXT, what="ctx")
CTX_OR_MODEL = replace(numbers.CONTEXT_OR_MODEL, what="ctx")
TOKEN_EXAMPLES = ["32768", "32k", "128k", "1M"]


def tokens_query(description: str, field: numbers.Range = CTX) -> Any:
    """A context parameter: what numbers.parse_int reads for `field`, its range said in the description."""
    return Query(
        pattern=numbers.pattern(field),
        max_length=numbers.MAX_CHARS,
        description=f"{description}; {field.describe()}",
        examples=TOKEN_EXAMPLES,
    )


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
QuantQ = Annotated[str, name_query(f"llama.cpp file type: {FILE_TYPES}", QUANT_EXAMPLES)]
SizeQuantQ = Annotated[
    str | None,
    name_query(
        f"llama.cpp file type, {FILE_TYPES} (default: Q4_K_M, or MXFP4_MOE for models released in MXFP4)",
        QUANT_EXAMPLES,
    ),
]
MemoryCtxQ = Annotated[str, tokens_query("context in tokens", CTX_OR_MODEL)]
# llama-server's --cache-ram and llama.cpp's --fit-target as the CLI reads them (numbers.cache_ram,
# numbers.FIT_TARGET): a pattern for the characters, the range said in the description, a value out
# of range a 400 with the CLI's message.
CacheRamQ = Annotated[
    str | None,
    Query(
        pattern="^-?[0-9]+$",
        max_length=numbers.MAX_CHARS,
        description="llama-server's prompt cache (--cache-ram) in MiB, "
        f"{numbers.CACHE_RAM.describe()}, or -1 for no limit; default: the server's "
        f"{DEFAULT_CACHE_RAM_MIB}, lowered where the host cannot hold it beside the plan",
        examples=[str(DEFAULT_CACHE_RAM_MIB), "0", "-1"],
    ),
]
FitTargetQ = Annotated[
    str | None,
    Query(
        pattern=numbers.pattern(numbers.FIT_TARGET),
        max_length=numbers.MAX_CHARS,
        description=f"MiB kept free on each GPU (llama.cpp --fit-target), {numbers.FIT_TARGET.describe()}; "
        f"default {FIT_TARGET_MIB}",
        examples=[str(FIT_TARGET_MIB), "256"],
    ),
]
SEQUENCES = {"ge": int(numbers.SEQUENCES.low), "le": int(numbers.SEQUENCES.high)}  # -np, as the CLI's


def known_parameters(request: Request) -> None:
    """Refuses a query parameter the endpoint does not take, or one given twice (every parameter
    takes one value): a misspelt `qaunt=Q8_0` would otherwise be ignored, and of `q=a&q=b` one
    silently dropped, the answer being for something else with nothing to say so."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    taken = {p.alias for p in route.dependant.query_params}
    takes = f"it takes {', '.join(sorted(taken))}" if taken else "it takes none"
    errors = [
        {
            "type": "extra_forbidden",
            "loc": ("query", name),
            "msg": f"not a parameter of {route.path} ({takes})",
        }
        if name not in taken
        else {"type": "repeated", "loc": ("query", name), "msg": "given more than once; give it one value"}
        for name in dict.fromkeys(request.query_params)
        if name not in taken or len(request.query_params.getlist(name)) > 1
    ]
    if errors:
        raise RequestValidationError(errors)


API: dict[str, Any] = {"tags": ["api"], "dependencies": [Depends(known_parameters)]}


def _written_like(request: Request, name: str) -> str | None:
    """How to write parameter `name` of the request's endpoint, from its documented examples: a
    pattern ("String should match pattern '^[0-9]+...$'") says what the value may not be, not how
    a person writes it."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return None
    for p in route.dependant.query_params:
        if p.alias == name and p.field_info.examples:
            *first, last = (str(x) for x in p.field_info.examples)
            return f"write it like {', '.join(first)} or {last}" if first else f"write it like {last}"
    return None


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path.endswith(".json") or path.startswith("/openapi")


def _status(e: MoeplanError) -> int:
    return 404 if isinstance(e, ModelNotFound) else 400


# The page whose form an error page shows again, filled in with what was sent (templates/forms.html).
FORM_OF_PATH = {
    "/": "plan",
    "/hardware": "checker",
    "/compare": "compare",
    "/models": "models",
    "/gpus": "gpus",
}


def _error_form(request: Request) -> dict[str, Any]:
    form = FORM_OF_PATH.get(request.url.path)
    if form is None:
        return {"form": None}
    models = list(data.summaries().values()) if form in ("plan", "compare") else []
    return {"form": form, "query": dict(request.query_params), "presets": data.presets(), "models": models}


def _error_response(request: Request, status: int, message: str, kind: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message, "error": kind}, status_code=status)
    html = render(
        "error.html",
        LIVE,
        status=status,
        message=message,
        kind=kind,
        json_url=None,
        title="Not found" if status == 404 else "Error",
        **_error_form(request),
    )
    return HTMLResponse(html, status_code=status)


def _page(template: str, json_url: str | None, title: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, LIVE, json_url=json_url, title=title, **context))


def _json(obj: BaseModel | list[Any]) -> JSONResponse:
    return JSONResponse(data.dump(obj))


class ServerTiming:
    """`Server-Timing: app;dur=<ms>` on every answer (the time until its headers). Plain ASGI:
    Starlette's BaseHTTPMiddleware passes each request through extra tasks and streams, and every
    extra turn of the event loop waits for the GIL while planning threads run."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - start) * 1000
                MutableHeaders(scope=message).append("Server-Timing", f"app;dur={ms:.1f}")
            await send(message)

        await self.app(scope, receive, timed)


# How often a thread waiting for the GIL makes the running one hand it over (CPython's default is
# 5 ms). Heavy pages plan in the threadpool, CPU-bound; a cheap request needs the GIL several times
# (accept, parse, answer) and would wait up to that long each time, behind every planning thread.
GIL_SWITCH_S = 0.0005


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[None]:
    """The server process's settings, applied when it starts serving."""
    sys.setswitchinterval(GIL_SWITCH_S)
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=serving,
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

    app.add_middleware(ServerTiming)

    @app.exception_handler(MoeplanError)
    async def moeplan_error(request: Request, e: MoeplanError) -> Response:
        return _error_response(request, _status(e), str(e), type(e).__name__)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> Response:
        """No route (404) or method (405): an HTML page under the site, JSON under /api and for .json."""
        message = f"no page at {request.url.path}" if e.status_code == 404 else str(e.detail)
        kind = "NotFound" if e.status_code == 404 else "HTTPError"
        response = _error_response(request, e.status_code, message, kind)
        response.headers.update(e.headers or {})  # a 405's Allow header (RFC 9110)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, e: RequestValidationError) -> Response:
        parts = []
        for err in e.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "query")
            given = err.get("input")
            got = f", not '{given[:40]}'" if isinstance(given, str) else ""
            msg = err.get("msg", "invalid")
            if err.get("type") == "string_pattern_mismatch":
                msg = _written_like(request, where) or msg
            parts.append(f"{where}: {msg}{got}")
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
        vision: str = "",
        cache_ram: str = "",
        fit_target: str = "",
    ) -> Response:
        rig = preset.strip() or rig.strip()  # a preset picked in the menu wins (no JavaScript needed)
        page = data.home_page(
            model,
            rig,
            numbers.optional_int(ctx, numbers.CONTEXT),
            quant.strip() or None,
            vision.strip() or None,
            numbers.cache_ram(cache_ram),
            numbers.optional_int(fit_target, numbers.FIT_TARGET),
        )
        if request.url.path.endswith(".json"):
            return _json(page)
        query = {
            "model": model,
            "rig": rig,
            "ctx": ctx,
            "quant": quant,
            "vision": vision,
            "cache_ram": cache_ram,
            "fit_target": fit_target,
        }
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
        max_size = numbers.optional_float(max_gb, numbers.MODEL_GB)
        page = data.models_page(kind, q, sort, desc in ("1", "true", "on"), max_size)
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
        sort: str = "best",
    ) -> Response:
        rig = preset.strip() or rig.strip()  # a preset picked in the menu wins (no JavaScript needed)
        if not rig and gpu.strip():
            rig = data.compose_rig(
                gpu,
                numbers.optional_int(count, numbers.GPU_COUNT) or 1,
                numbers.optional_int(ram_gb, numbers.RAM_GB) or 0,
                ram_type,
                numbers.optional_int(channels, numbers.CHANNELS) or 0,
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

    @app.get("/api/plan", response_model=PlanReport | DistributedPlan, responses=ERRORS, **API)
    def api_plan(
        model: ModelQ,
        rig: RigQ,
        ctx: Annotated[
            str | None,
            tokens_query(
                "context in tokens, planned exactly; default: the use's (32,768 for chat), raised to "
                "the largest power-of-two step that fits"
            ),
        ] = None,
        quant: Annotated[
            str | None,
            name_query(
                f"llama.cpp: file type, {FILE_TYPES}; vLLM/SGLang: weight format, {WEIGHT_FORMATS}; "
                "default: the best that fits / the release's",
                [*QUANT_EXAMPLES, "fp8", "awq"],
            ),
        ] = None,
        n_seq: Annotated[
            int | None, Query(**SEQUENCES, description="llama-server -np; default: the use's")
        ] = None,
        ctk: Annotated[CacheName | None, Query(description="K cache type; default: the policy's")] = None,
        ctv: Annotated[CacheName | None, Query(description="V cache type; default: the policy's")] = None,
        use: Annotated[UseName | None, Query(description="chat, code or batch (plan/policy.py)")] = None,
        engine: Annotated[
            Literal["llamacpp", "vllm", "sglang"], Query(description="the serving engine")
        ] = "llamacpp",
        weight_format: Annotated[
            str | None,
            name_query(
                f"vLLM/SGLang only: the same as quant, {WEIGHT_FORMATS}",
                ["fp8", "FP8", "awq"],
                alias="format",
            ),
        ] = None,
        draft: Annotated[
            str,
            Query(max_length=64, description="speculative decoding: auto, none, mtp or a draft model id"),
        ] = "auto",
        acceptance: Annotated[
            float | None, Query(ge=0.0, lt=1.0, description="drafted-token acceptance rate")
        ] = None,
        vision: Annotated[
            MmprojName | None,
            Query(description="llama.cpp: load the model's vision projector (--mmproj) of this file type"),
        ] = None,
        cache_ram: CacheRamQ = None,
        fit_target: FitTargetQ = None,
    ) -> PlanReport | DistributedPlan:
        """The best plan for a model on a rig. llama.cpp: quantization, placement, context, decode
        speed, per-device memory, the exact command and the notices. vLLM / SGLang: the parallel
        layout, per-GPU memory, KV capacity, throughput, the commands (pointing at a published
        checkpoint in the asked format) and the notices; llama.cpp plans add speculative decoding
        where it applies (`drafting`: its memory per device, speed and command)."""
        return data.engine_plan(
            model,
            rig,
            PlanOptions(
                engine=engine,
                ctx=numbers.optional_int(ctx, CTX),
                quant=quant or None,
                weight_format=weight_format or None,
                n_seq=n_seq,
                ctk=ctk,
                ctv=ctv,
                use=use,
                draft=draft,
                acceptance=acceptance,
                vision=vision,
                cache_ram=numbers.cache_ram(cache_ram),
                fit_target_mib=numbers.optional_int(fit_target, numbers.FIT_TARGET),
            ),
        )

    @app.get("/api/fit", response_model=list[FitRow], responses=ERRORS, **API)
    def api_fit(rig: RigQ) -> list[FitRow]:
        """The hardware compatibility checker: every catalog model's best plan on the rig, fastest first."""
        return data.fit(rig)

    @app.get("/api/size", response_model=SizeReport, responses=ERRORS, **API)
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

    @app.get("/api/memory", response_model=MemoryReport, responses=ERRORS, **API)
    def api_memory(
        model: ModelQ,
        ctx: MemoryCtxQ,
        quant: QuantQ = "Q4_K_M",
        placement: Annotated[
            str, Query(max_length=MAX_RIG_CHARS, description="llama.cpp flags, e.g. '-ngl 99 --n-cpu-moe 20'")
        ] = "",
        gpus: Annotated[
            int | None, Query(ge=0, le=64, description="GPUs; default: 1 with a placement")
        ] = None,
        n_seq: Annotated[int | None, Query(**SEQUENCES, description="parallel sequences")] = None,
    ) -> MemoryReport:
        """Bytes per device llama.cpp allocates for the model, context and placement."""
        return data.memory(
            model, quant, numbers.parse_int(ctx, CTX_OR_MODEL), placement=placement, gpus=gpus, n_seq=n_seq
        )

    @app.get("/api/models", response_model=list[ModelSummary], responses=UNKNOWN_PARAMETER, **API)
    def api_models() -> list[ModelSummary]:
        """The built-in catalog: parameters total/active, experts, attention kinds, context."""
        return list(data.summaries().values())

    @app.get("/api/gpus", response_model=list[GPURow], responses=ERRORS, **API)
    def api_gpus(
        q: Annotated[
            str, Query(max_length=MAX_QUERY_CHARS, description="name contains; empty: curated list")
        ] = "",
    ) -> list[GPURow]:
        """The GPU catalog (curated entries, or every card whose name contains q; at most 300)."""
        return data.gpus_page(q).gpus

    @app.get("/api/presets", response_model=dict[str, str], responses=UNKNOWN_PARAMETER, **API)
    async def api_presets() -> dict[str, str]:
        """Named rigs and the rig string each stands for."""
        # async: nothing to compute, so answered on the event loop without a thread hand-over
        return data.presets()

    return app


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ServerConfig(uvicorn.Config):
    """uvicorn's settings, with a listening socket that says it is TCP.

    For worker processes uvicorn binds the socket itself and leaves its `proto` at 0; accepted
    sockets inherit it, and asyncio turns TCP_NODELAY on only where proto is IPPROTO_TCP. With
    --workers > 1 Nagle's algorithm stayed on and every keep-alive answer waited about 40 ms for the
    client's delayed ACK (uvicorn issue #3149, open for the pinned 0.54.0)."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return sock
        tcp = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        tcp.set_inheritable(True)
        return tcp


def server_config(host: str, port: int, workers: int | None = None) -> ServerConfig:
    """`workers` processes (default: the usable cores): planning is CPU-bound Python, so only
    processes render heavy pages side by side; each keeps its own caches. uvicorn starts its workers
    from the import string of the app factory."""
    return ServerConfig(
        "moeplan.web.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers or usable_cores(),
        log_level="info",
    )


def run_server(host: str, port: int, workers: int | None = None) -> None:
    config = server_config(host, port, workers)
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise MoeplanError(f"could not serve on {host}:{port} (the reason is logged above)")
