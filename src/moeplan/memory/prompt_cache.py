"""llama-server's prompt cache (`--cache-ram`, `-cram`): host copies of idle conversations' state, so
a client that comes back to one resumes it instead of reprocessing its prompt.

Rules from the pinned llama.cpp (build 11434, llama.cpp PR #16391):
- what: when a slot takes a new completion task, `server_slot::prompt_save`
  (tools/server/server-context.cpp) copies the slot's sequence state
  (`llama_state_seq_get_data_ext`, LLAMA_STATE_SEQ_FLAGS_NONE: its KV cells and recurrent state,
  plus a draft model's) into a `std::vector<uint8_t>`, with the slot's context checkpoints; idle
  slots are saved too (`--cache-idle-slots`, on by default). Host memory, outside llama.cpp's buffers.
- how much: `server_prompt_cache` (tools/server/server-task.h/.cpp) counts every entry's state and
  checkpoints; `alloc` drops the oldest entries before adding one so the total stays within
  `--cache-ram` MiB (common/common.h `cache_ram_mib`, default 8192), and skips an entry larger than
  that. It grows with use (one entry per distinct conversation) until it reaches the limit.
- `--cache-ram 0`: no cache (server-context.cpp makes none). `-1`: no size limit; `update()` then
  only holds the entries to `n_ctx` tokens in all (`limit_tokens`, the context of all slots), so the
  bound is that many tokens of sequence state: every attention layer's K and V per token (a sliding
  window saves no more cells than its tokens) and one sequence's recurrent state. Each further
  entry of a recurrent or checkpointing model also carries its own recurrent state and checkpoints,
  which no limit bounds with -1: the figure is then the least it can reach.
"""

from dataclasses import replace

from moeplan.arch.spec import AttnKind, ModelSpec
from moeplan.memory.checkpoints import KV_CELL_META
from moeplan.memory.kv import CacheConfig, context, layer_memory, mtp_trunk_memory
from moeplan.numbers import NO_CACHE_LIMIT as NO_LIMIT

DEFAULT_CACHE_RAM_MIB = 8192  # common/common.h cache_ram_mib
MiB = 2**20


def _kv_caches(spec: ModelSpec) -> int:
    """KV caches a sequence's state writes its cells to: `llama_kv_cache_iswa` has a full and a
    sliding-window one, other attention models one, recurrent-only models none."""
    attn = [la.attn for la in spec.layers if la.attn.kind not in (AttnKind.LINEAR, AttnKind.NONE)]
    sliding = [a.sliding for a in attn]
    return int(any(sliding)) + int(not all(sliding))


def token_bound_bytes(spec: ModelSpec, cfg: CacheConfig, n_mtp: int = 0) -> int:
    """Sequence state of n_ctx tokens (the -1 bound): one stream of the whole context with full-size
    sliding-window layers, 12 bytes of cell metadata per token in each KV cache
    (`llama_kv_cache::state_write_meta`: pos, n_seq_id, one seq id), one sequence's recurrent state;
    with the `n_mtp` kept MTP blocks' cells where the trunk's cache holds them (`mtp_trunk_memory`)."""
    n_ctx = context(spec, cfg).n_ctx
    whole = replace(cfg, n_ctx=n_ctx, n_seq=1, unified=False, swa_full=True)
    layers = layer_memory(spec, whole) + mtp_trunk_memory(spec, n_mtp, whole)
    return sum(la.total for la in layers) + n_ctx * KV_CELL_META * _kv_caches(spec)


def prompt_cache_bytes(spec: ModelSpec, cfg: CacheConfig, cache_ram_mib: int, n_mtp: int = 0) -> int:
    """The most host memory llama-server's prompt cache reaches with `--cache-ram cache_ram_mib`, a
    setting `Frontend` (engines/llamacpp.py) has checked (`n_mtp`: the MTP blocks the file keeps,
    for the -1 bound)."""
    if cache_ram_mib == NO_LIMIT:
        return token_bound_bytes(spec, cfg, n_mtp)
    return cache_ram_mib * MiB


DEFAULT_ORIGIN = f"llama-server's default, common/common.h cache_ram_mib = {DEFAULT_CACHE_RAM_MIB}"


def describe(cache_ram_mib: int, bound_bytes: int, origin: str = DEFAULT_ORIGIN) -> str:
    """The line each plan shows: the host memory the cache may reach, the setting, where the
    setting comes from (`origin`) and what bounds the cache."""
    setting = f"--cache-ram {cache_ram_mib} ({origin})"
    if cache_ram_mib == 0:
        return f"none: {setting}"
    reach = f"up to {bound_bytes / 2**30:,.2f} GiB of host RAM"
    if cache_ram_mib == NO_LIMIT:
        return (
            f"{reach}, at least: {setting} sets no size limit, and the cache keeps up to n_ctx tokens "
            "of saved prompts (server_prompt_cache::update), counted as that many tokens' KV plus one "
            "recurrent state; each entry's checkpoints and recurrent state come on top"
        )
    return (
        f"{reach}: {setting}; idle conversations' KV/state copies, growing with use up to the "
        "limit (server_prompt_cache::alloc drops the oldest beyond it)"
    )
