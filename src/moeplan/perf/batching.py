"""Many sequences at once: distinct experts per MoE layer, and how many sequences the KV memory holds."""


def distinct_experts(n_expert: int, k: int, batch: int) -> float:
    """Expected distinct experts a layer runs for `batch` tokens, each picking k of E uniformly:
    each expert is missed by one token with probability 1 − k/E, by all with (1 − k/E)^B, so
    E·(1 − (1 − k/E)^B). One token: k; many: → E."""
    if n_expert <= 0 or k <= 0 or batch <= 0:
        return 0.0
    return n_expert * (1.0 - (1.0 - k / n_expert) ** batch)


def max_concurrency(free_bytes: float, kv_bytes_per_seq: float, state_bytes_per_seq: float = 0.0) -> int:
    """Sequences whose KV cache (at their full context) and recurrent state fit in `free_bytes`."""
    per_seq = kv_bytes_per_seq + state_bytes_per_seq
    if per_seq <= 0:
        return 0
    return max(int(free_bytes // per_seq), 0)
