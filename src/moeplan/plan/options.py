"""What a person asks of a plan, as one frozen value every face passes on.

The CLI's options, the web's query parameters and `api.plan`'s keywords are the same request; one
`PlanOptions` carries it from the face through `api.plan` to the planner, is the web cache's key
(frozen, so hashable and equal by value), and says in one place which options apply to which
engine (`applicable`) and why the others are refused (`check`). The web's bounds on what a query
string may hold (`bounded`) are here too, so the deploy page, the home page and `/api/plan` cut the
same way.

Light on purpose (dataclasses and moeplan.errors/numbers only): the CLI builds one before the
planner is imported.
"""

from dataclasses import dataclass, fields, replace
from typing import Any

from moeplan import numbers
from moeplan.errors import BadInput, MoeplanError

ENGINES = ("llamacpp", "vllm", "sglang")
MIN_CTX = int(numbers.CONTEXT.low)
MAX_CTX = int(numbers.CONTEXT.high)
MAX_SEQUENCES = 256


def check_text(value: str, what: str, limit: int) -> str:
    """`value` trimmed, or BadInput when it is longer than a person would type for `what`."""
    value = value.strip()
    if len(value) > limit:
        raise BadInput(f"{what} is too long ({len(value)} characters; at most {limit})")
    return value


def check_ctx(ctx: int | None) -> int | None:
    if ctx is not None and not MIN_CTX <= ctx <= MAX_CTX:
        raise BadInput(f"context must be between {MIN_CTX} and {MAX_CTX:,} tokens, not {ctx}")
    return ctx


def check_n_seq(n_seq: int | None) -> int | None:
    if n_seq is not None and not 1 <= n_seq <= MAX_SEQUENCES:
        raise BadInput(f"parallel sequences must be between 1 and {MAX_SEQUENCES}, not {n_seq}")
    return n_seq


@dataclass(frozen=True)
class PlanOptions:
    """A plan request beside its model and rig; None (or the default) leaves a choice to the
    engine's policy (plan/policy.py for llama.cpp)."""

    engine: str = "llamacpp"  # llamacpp, vllm or sglang
    ctx: int | None = None
    quant: str | None = None  # llama.cpp: a GGUF file type; vLLM/SGLang: the weight format
    weight_format: str | None = None  # vLLM/SGLang only: the same as quant (the CLI's --format)
    n_seq: int | None = None  # -np
    ctk: str | None = None
    ctv: str | None = None
    use: str | None = None  # chat, code, batch (plan/uses.py)
    draft: str | None = None  # speculative decoding: none (None: the same), auto, mtp or a model id
    acceptance: float | None = None
    n_draft: int | None = None  # --spec-draft-n-max; None: the planner's default
    vision: str | None = None  # the mmproj file type of the vision projector to load beside it
    mmproj_offload: bool = True
    backend: str | None = None  # the llama.cpp runtime (api.runtime): backend, build, op offload,
    llamacpp_build: int | None = None  # fit margin
    op_offload: bool = True
    fit_target_mib: int | None = None
    flash_attn: bool = True
    cache_ram: int | None = None  # llama-server's --cache-ram MiB (-1: no limit); None: its default
    alternatives: bool = True  # list the plans that lost (the checker asks for winners only)

    def given(self) -> frozenset[str]:
        """The options set away from their defaults."""
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) != f.default)

    def check(self) -> None:
        """Refuse an option its engine cannot apply (never ignore it), and options that contradict."""
        if self.engine not in ENGINES:
            raise MoeplanError(f"unknown engine '{self.engine}': use llamacpp, vllm or sglang")
        if self.engine == "llamacpp":
            if self.weight_format:
                raise MoeplanError(
                    "--format names vLLM/SGLang weights: add --engine vllm or --engine sglang "
                    "(llama.cpp takes --quant, a GGUF type such as Q4_K_M)"
                )
            if self.vision is None and not self.mmproj_offload:
                raise MoeplanError(
                    "--no-mmproj-offload places the vision projector: add --vision f16|bf16|q8_0"
                )
            return
        if self.quant and self.weight_format:
            raise MoeplanError("--quant and --format both name the weight format: give one")
        given = self.given()
        for names, why in LLAMACPP_ONLY:
            if given & names:
                raise MoeplanError(why.format(engine=self.engine, vision=_vision_engines()))

    def bounded(self) -> "PlanOptions":
        """The options as a query string or form gave them, cut to what a person types: each text
        trimmed and bounded (empty: left open), the vision type in lower case, the context and -np
        in range; so spellings of one request share one cache entry."""
        texts: dict[str, Any] = {}
        for name, what, limit in _TEXT_LIMITS:
            value = getattr(self, name)
            texts[name] = (check_text(value, what, limit) or None) if value else None
        if texts["vision"]:
            texts["vision"] = texts["vision"].lower()
        return replace(self, ctx=check_ctx(self.ctx), n_seq=check_n_seq(self.n_seq), **texts)


def applicable(engine: str) -> frozenset[str]:
    """The options `engine` plans with (the rest are refused by `PlanOptions.check`)."""
    every = frozenset(f.name for f in fields(PlanOptions))
    if engine == "llamacpp":
        return every - {"weight_format"}
    return every.difference(*(names for names, _ in LLAMACPP_ONLY))


# What only llama.cpp plans take, in the groups vLLM and SGLang refuse together (each with why).
LLAMACPP_ONLY: tuple[tuple[frozenset[str], str], ...] = (
    (
        frozenset({"backend", "llamacpp_build", "op_offload", "fit_target_mib"}),
        "--backend, --llamacpp-build, --no-op-offload and --fit-target describe llama.cpp: "
        "leave them out for {engine}",
    ),
    (
        frozenset({"n_seq", "ctk", "ctv", "use"}),
        "--np, --ctk, --ctv and --use are llama.cpp settings ({engine} sizes its own batches and KV "
        "cache): leave them out",
    ),
    (
        frozenset({"draft", "acceptance", "n_draft"}),
        "--draft, --acceptance and --draft-n plan llama.cpp's speculative decoding: leave them out "
        "for {engine}",
    ),
    (frozenset({"vision", "mmproj_offload"}), "--vision, --no-mmproj-offload: {vision}"),
    (frozenset({"cache_ram"}), "--cache-ram sizes llama-server's prompt cache: leave it out for {engine}"),
    (
        frozenset({"flash_attn", "alternatives"}),
        "flash attention and the losing alternatives are llama.cpp's plan search: leave them out "
        "for {engine}",
    ),
)

# (option, what an error calls it, the most characters a person types for it)
_TEXT_LIMITS = (
    ("quant", "quantization", 32),
    ("weight_format", "weight format", 32),
    ("ctk", "K cache type", 16),
    ("ctv", "V cache type", 16),
    ("use", "use", 16),
    ("draft", "draft", 64),
    ("vision", "vision", 8),
)


def _vision_engines() -> str:
    """Why vLLM/SGLang plans take no vision projector (worded by engines/vision.py, loaded only to
    refuse: it brings the vision tower's arithmetic)."""
    from moeplan.engines.vision import VISION_ENGINES

    return VISION_ENGINES
