"""llama-server's context checkpoints: host copies of the part of a sequence's state that cannot be
rolled back, so a later prompt sharing a prefix can resume instead of reprocessing it.

Rules from the pinned llama.cpp (build 11434):
- when: `tools/server/server-context.cpp` makes checkpoints for completion tasks when the model has
  sliding-window layers (`n_swa > 0`; `--swa-full` sets it to 0) or recurrent state (the context's
  seq_rm type FULL / RS), near the end of each prompt (4 + n_ubatch and 4 tokens before it) and at
  user-message starts; `create_checkpoint` keeps at most `--ctx-checkpoints` (common.h
  `n_ctx_checkpoints`, default 32) per slot, dropping the oldest. Each is a `std::vector<uint8_t>`
  in host memory, so the worst case is slots x n_ctx_checkpoints x one checkpoint.
- what: `llama_state_seq_get_data_ext(..., LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY)`: magic + seq id
  (`llama_context::state_seq_get_size`), then the memory's partial state: `llama_kv_cache_iswa`
  writes only its SWA cache, `llama_memory_hybrid` only its recurrent part, `llama_memory_hybrid_iswa`
  both of those.
- SWA cache (`llama_kv_cache::state_write`): n_stream, then per stream a cell count; the sequence's
  stream writes its cells not masked by the window (`is_masked_swa`: at most `window` cells, fewer
  on a shorter sequence), 12 bytes of metadata each (pos, n_seq_id, seq id), a 16-byte header
  (v_trans, n_layer, n_rot_k, n_rot_v), and per cached layer a 12-byte type/row header and the
  cells' K rows, likewise V (transposed V writes the same bytes: 12-byte header, cells x width).
- recurrent (`llama_memory_recurrent::state_write`): the sequence's one cell (8 bytes: pos, 0 seq
  ids), an 8-byte header, per recurrent layer 12 bytes + the F32 conv row (+ 8 bytes + the PLE row on
  that layer), then per layer 12 bytes + the F32 state row.
Not modelled: DeepSeek-V4's cache (`llama_kv_cache_dsv4` writes its own partial state), the cell
extension of M-RoPE SWA caches, and a draft model's share (`data_dft`).
"""

from moeplan.arch.spec import AttnKind, ModelSpec
from moeplan.memo import PER_MODEL_QUANT, by_identity
from moeplan.memory.kv import (
    CacheConfig,
    context,
    kv_widths,
    ple_conv_state,
    recurrent_state_values,
    row_bytes,
)

DEFAULT_CTX_CHECKPOINTS = 32  # common/common.h n_ctx_checkpoints

_SEQ_HEADER = 8  # io_magic + seq_id
KV_CELL_META = 12  # pos + n_seq_id + one seq id
_KV_DATA_HEADER = 16  # v_trans, n_layer, n_rot_k, n_rot_v
_ROW_HEADER = 12  # a tensor's type (int32) and row size (uint64)
_RS_CELL_META = 8  # pos + n_seq_id (0 for one sequence)
_RS_DATA_HEADER = 8  # s_trans, n_layer
_PLE_HEADER = 8  # the PLE row's size (uint64)


def _swa(spec: ModelSpec) -> bool:
    return any(la.attn.sliding for la in spec.layers)


def _recurrent(spec: ModelSpec) -> bool:
    return any(la.attn.kind is AttnKind.LINEAR for la in spec.layers)


def makes_checkpoints(spec: ModelSpec, cfg: CacheConfig) -> bool:
    """Whether llama-server checkpoints this model at all (`do_checkpoint` in server-context.cpp)."""
    if any(la.attn.shared_kv for la in spec.layers):
        return False  # DeepSeek-V4: not modelled (module docstring)
    return _recurrent(spec) or (_swa(spec) and not cfg.swa_full)


def _swa_bytes(spec: ModelSpec, cfg: CacheConfig) -> int:
    ctx = context(spec, cfg)
    size = 4 + 4 * ctx.n_stream  # n_stream, then each stream's cell count
    layers = [la.attn for la in spec.layers if la.attn.sliding and la.attn.kv_reuse < 0]
    cells = min(max(a.window for a in layers), ctx.n_ctx_seq)
    size += cells * KV_CELL_META + _KV_DATA_HEADER
    for a in layers:
        k_w, v_w = kv_widths(a)
        size += _ROW_HEADER + cells * row_bytes(cfg.type_k, k_w)
        if v_w:
            size += _ROW_HEADER + cells * row_bytes(cfg.type_v, v_w)
    return size


def _recurrent_bytes(spec: ModelSpec) -> int:
    size = 4 + _RS_CELL_META + _RS_DATA_HEADER  # cell count, the one cell, the header
    for il, la in enumerate(spec.layers):
        if la.attn.kind is not AttnKind.LINEAR:
            continue
        size += 2 * _ROW_HEADER + 4 * recurrent_state_values(spec, la.attn)
        ple = ple_conv_state(spec, il)
        if ple:
            size += _PLE_HEADER + 4 * ple
    return size


@by_identity(maxsize=PER_MODEL_QUANT)  # every placement the planner tries asks again
def checkpoint_bytes(spec: ModelSpec, cfg: CacheConfig) -> int:
    """Bytes of one full-window context checkpoint of one slot (0: the server makes none)."""
    if not makes_checkpoints(spec, cfg):
        return 0
    size = _SEQ_HEADER
    if _swa(spec):
        size += _swa_bytes(spec, cfg)
    if _recurrent(spec):
        size += _recurrent_bytes(spec)
    return size


def checkpoints_host_bytes(spec: ModelSpec, cfg: CacheConfig, n_ctx_checkpoints: int) -> int:
    """Worst-case host memory of all slots' checkpoints: every slot holding its maximum."""
    return cfg.n_seq * n_ctx_checkpoints * checkpoint_bytes(spec, cfg)
