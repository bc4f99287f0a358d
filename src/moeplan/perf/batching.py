"""Many tokens at once: distinct experts per MoE layer, which expert matmuls the CPU runs one token
at a time, and how many sequences the KV memory holds."""

from moeplan.perf.traffic import ExpertLayer

# ggml-cpu's tiled K-quant matmul takes an expert once at least this many rows route to it
# (`ggml_tiled_min_batch`, ggml-cpu/tiled/tiled.cpp); below it MUL_MAT_ID falls back to one
# `vec_dot` per (token, weight row) (`ggml_compute_forward_mul_mat_id_one_chunk`, ggml-cpu.c).
TILED_MIN_ROWS = 8


def distinct_experts(n_expert: int, k: int, batch: int) -> float:
    """Expected distinct experts a layer runs for `batch` tokens, each picking k of E uniformly:
    each expert is missed by one token with probability 1 − k/E, by all with (1 − k/E)^B, so
    E·(1 − (1 − k/E)^B). One token: k; many: → E."""
    if n_expert <= 0 or k <= 0 or batch <= 0:
        return 0.0
    return n_expert * (1.0 - (1.0 - k / n_expert) ** batch)


def per_token_part(e: ExpertLayer, rows: float) -> tuple[float, float]:
    """Bytes and FLOPs (per token) of one expert that the CPU backend multiplies one routed token
    at a time when `rows` tokens route to it. Its MUL_MAT_ID has no llamafile sgemm path:
    x86-repacked tensors run one `gemv` per routed row (`forward_mul_mat_id`, ggml-cpu/repack.cpp),
    the others one `vec_dot` per weight row and token, except K-/I-quants from TILED_MIN_ROWS rows
    on. Each such token after the first re-reads the expert from cache."""
    if rows >= TILED_MIN_ROWS:
        return e.bytes_per_expert - e.tiled_bytes_per_expert, e.flops_per_expert - e.tiled_flops_per_expert
    return e.bytes_per_expert, e.flops_per_expert


def max_concurrency(free_bytes: float, kv_bytes_per_seq: float, state_bytes_per_seq: float = 0.0) -> int:
    """Sequences whose KV cache (at their full context) and recurrent state fit in `free_bytes`."""
    per_seq = kv_bytes_per_seq + state_bytes_per_seq
    if per_seq <= 0:
        return 0
    return max(int(free_bytes // per_seq), 0)
