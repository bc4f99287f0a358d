"""The planning policy: what moeplan chooses where a person leaves a choice open, in the order it decides.

1. A usable context first. The target is `--ctx` when given (then planned exactly; above the
   model's maximum it is planned with the rope scaling the model's card documents, with the flags
   and a notice, or refused: `context_bounds`), else the context of the use (`--use`, default
   `chat`), never above the model's own maximum:

   | use   | context (-c) | -np | for                                                          |
   |-------|--------------|-----|--------------------------------------------------------------|
   | chat  | 32,768       | 1   | one conversation with room for long answers and pasted text  |
   | code  | 131,072      | 1   | agents and code assistants that read whole files and logs    |
   | batch | 131,072      | 4   | four sequences in flight sharing one unified cache (32k each) |

   A use's context is a floor, not a cap: once a plan is chosen, its context grows along
   CONTEXT_LADDER to the most the memory holds with the same placement flags (decode speed is
   quoted at the same fill, so growing costs nothing the plan reports). Only when nothing fits at
   the target does the context drop to MIN_CONTEXT and grow back to the most that fits (the notice
   CONTEXT_REDUCED says so).
2. Then quality at or above the floor, QUALITY_FLOOR = Q4_K_M (MXFP4_MOE where the experts were
   released in MXFP4: it loses nothing). Below the floor routed experts lose noticeably; such a
   quantization is planned only when nothing at or above the floor fits at the target context
   (notice QUANT_BELOW_MOE_FLOOR / QUANT_BELOW_FLOOR). Above the floor a better quantization wins
   when it keeps at least SPEED_GUARD of the decode speed of the fastest plan at or above the
   floor, and keeps the weights where that plan keeps them: when the fastest runs entirely on the
   GPUs, only plans entirely on the GPUs compete (a bit more per weight is not worth moving
   experts to the CPU, where decode then hangs on RAM bandwidth and prefill on PCIe).
3. Then speed: for the chosen quantization, the fastest placement llama.cpp can express
   (`plan/llamacpp.py`: all on the GPUs, --n-cpu-moe N, --cpu-moe, -ngl N, CPU, disk).
4. Then the fewest GPUs: a plan entirely on the GPUs of a machine with several, once its
   quantization and context are settled on all of them, runs on the fewest that hold it at that
   context as fast (`-sm none` for the first GPU alone, else `-dev CUDA0,CUDA1`; notice GPUS_FREE),
   so the others stay free for replicas or other work. llama.cpp's layer split runs a token's
   layers one device after another, so more GPUs of one kind add memory, not speed
   (perf/decode.py); the fastest GPUs (then the largest) are taken first, and a subset is kept
   only where the speed model finds it no slower than all of them.

Levers the policy sets and the command shows:
- KV cache type: f16 up to LONG_CONTEXT tokens, q8_0 (`-ctk q8_0 -ctv q8_0`) above, for the target
  and for growing: half the bytes of f16 (llama.cpp PR #4312 added quantized caches; q8_0 measured
  "basically lossless" in ik_llama.cpp PR #173's perplexity runs). `--ctk/--ctv` fix the type.
- -np: the use's (or `--np`); llama-server's slots share one unified cache of `-c` cells.
- -ub: llama.cpp's 512 unless a larger micro-batch (UBATCH_OFFLOAD) fits with the same flags where
  weights sit in host memory: the CUDA backend copies CPU-resident weights to the GPU once per
  micro-batch (op offload, perf/prefill.py), so a larger one divides that PCIe traffic per token.
- Context checkpoints: llama-server's default, 32 per slot in host memory for SWA and recurrent
  models (`memory/checkpoints.py`), unless they are what keeps a plan from fitting or above the
  floor: then the plan is made without them and keeps the most (up to 32) that still fit beside it,
  `--ctx-checkpoints N` in the command (notice CTX_CHECKPOINTS_REDUCED). `--ctx-checkpoints` in a
  pasted command is the user's and is kept.
- Prompt cache: llama-server's default `--cache-ram 8192`, up to 8 GiB of idle conversations'
  KV/state in host memory (`memory/prompt_cache.py`), unless it is what keeps a plan from fitting
  or above the floor: then the plan is made without it and keeps the most (in 256 MiB steps) that
  still fits, `--cache-ram N` in the command (notice PROMPT_CACHE_REDUCED). Lowered before the
  checkpoints: it holds other conversations, they the live one. The user's `--cache-ram` is kept.

The checker's verdicts (`verdict`), best first: runs well; runs only below the quality floor; runs
too slowly to use (decode below TOO_SLOW_TOK_S); does not fit (including plans that stream weights
from disk).
"""

import math
from dataclasses import dataclass
from enum import Enum

from moeplan.errors import MoeplanError
from moeplan.plan.uses import DEFAULT_CONTEXT as DEFAULT_CONTEXT
from moeplan.plan.uses import DEFAULT_USE as DEFAULT_USE
from moeplan.plan.uses import LONG_CONTEXT as LONG_CONTEXT
from moeplan.plan.uses import TOO_SLOW_TOK_S as TOO_SLOW_TOK_S
from moeplan.plan.uses import USES as USES
from moeplan.plan.uses import Use as Use
from moeplan.plan.uses import use_named as use_named
from moeplan.quant.recipe import FileType

QUALITY_FLOOR = FileType.Q4_K_M
# A higher quality must keep at least this fraction of the fastest plan's decode speed at the floor:
# one K-quant step (Q4_K_M -> Q5_K_M -> Q6_K) is worth at most a quarter of the speed, not half.
SPEED_GUARD = 0.75
MIN_CONTEXT = 4096
CONTEXT_LADDER = (1 << 20, 524288, 262144, 131072, 65536, 32768, 16384, 8192, 4096)
LONG_CONTEXT_CACHE = "q8_0"
UBATCH_OFFLOAD = 2048  # -ub tried where weights sit in host memory (at most llama.cpp's -b 2048)


def target_context(model_ctx: int, use: Use = DEFAULT_USE) -> int:
    """The context a plan must reach unless nothing fits: the use's, or the model's own if smaller."""
    return min(model_ctx, use.ctx) if model_ctx else use.ctx


def cache_type_for(ctx: int) -> str:
    """The KV cache type the policy picks for a context when the user did not pick one."""
    return LONG_CONTEXT_CACHE if ctx > LONG_CONTEXT else "f16"


@dataclass(frozen=True)
class RopeScaling:
    """Rope scaling llama.cpp applies at load time (common/arg.cpp: --rope-scaling, --rope-scale N
    sets freq_scale 1/N, --yarn-orig-ctx), reaching factor x original_context tokens."""

    method: str
    factor: float
    original_context: int
    source: str = ""

    @property
    def max_context(self) -> int:
        return int(self.factor * self.original_context)

    @property
    def flags(self) -> str:
        scale = f"--rope-scale {self.factor:g}"
        return f"--rope-scaling {self.method} {scale} --yarn-orig-ctx {self.original_context}"


def context_bounds(
    ctx: int | None, model_ctx: int, model: str, extension: RopeScaling | None
) -> RopeScaling | None:
    """The rope scaling a context needs: None within the model's maximum; above it, the documented
    extension with the smallest factor that reaches `ctx` (quarter steps: the model cards advise a
    factor no larger than the contexts used need); beyond that, a one-line refusal."""
    if ctx is None or not model_ctx or ctx <= model_ctx:
        return None
    if extension is None or ctx > extension.max_context:
        most = max(model_ctx, extension.max_context if extension else 0)
        how = f" ({extension.max_context:,} with {extension.method} rope scaling)" if extension else ""
        raise MoeplanError(
            f"context {ctx:,} is above the most {model} supports, {model_ctx:,} tokens{how}: "
            f"ask for at most {most:,} with --ctx"
        )
    factor = min(extension.factor, math.ceil(4 * ctx / extension.original_context) / 4)
    return RopeScaling(extension.method, factor, extension.original_context, extension.source)


class Verdict(Enum):
    """Checker levels, best first (the value is the rank)."""

    RUNS_WELL = 0
    BELOW_FLOOR = 1
    TOO_SLOW = 2
    DOES_NOT_FIT = 3

    @property
    def label(self) -> str:
        return {
            Verdict.RUNS_WELL: "runs well",
            Verdict.BELOW_FLOOR: "below quality floor",
            Verdict.TOO_SLOW: "too slow",
            Verdict.DOES_NOT_FIT: "does not fit",
        }[self]


def verdict(fits: bool, below_floor: bool, decode_tok_s: float) -> Verdict:
    """The checker's level for a plan: `fits` false for plans that stream from disk or overflow."""
    if not fits:
        return Verdict.DOES_NOT_FIT
    if decode_tok_s < TOO_SLOW_TOK_S:
        return Verdict.TOO_SLOW
    if below_floor:
        return Verdict.BELOW_FLOOR
    return Verdict.RUNS_WELL
