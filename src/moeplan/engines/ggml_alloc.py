"""The peak of ggml's graph allocator over a sequence of graph nodes.

llama.cpp sizes its compute buffer by reserving the worst-case graph with ggml-alloc
(`ggml/src/ggml-alloc.c`): nodes are allocated in graph order, each parent is freed after its last
child, and a freed block is reused only by a later tensor it can hold. The buffer is the highest
address ever reached, so a freed block too small for the next large tensor stays a hole below it.
Where a family describes a layer's large tensors in graph order (`Family.attention_graph`), this
replays them through the same allocator to get that layer's peak, holes included.

`ggml_dyn_tallocr_alloc`: the best fit among the free blocks other than the last one (the tail of
the buffer, which grows it), else the tail; `ggml_dyn_tallocr_free_bytes`: a freed block merges with
its free neighbours. Tensor sizes here are multiples of the CPU buffer's 32-byte alignment.
"""

from collections.abc import Iterable

from moeplan.arch.family import GraphNode


def peak_bytes(nodes: Iterable[GraphNode]) -> int:
    """Highest address the allocator reaches while it allocates `nodes` in order, freeing after each
    node the tensors whose last use it is."""
    free: list[list[int]] = [[0, 1 << 62]]  # [offset, size], sorted by offset; the last is the tail
    placed: dict[str, tuple[int, int]] = {}
    top = 0
    for node in nodes:
        if node.nbytes:
            fits = [i for i, (_, size) in enumerate(free[:-1]) if size >= node.nbytes]
            # the smallest block that fits; among equals the last one (`<=` in ggml_dyn_tallocr_alloc)
            i = min(fits, key=lambda k: (free[k][1], -k)) if fits else len(free) - 1
            offset = free[i][0]
            free[i][0] += node.nbytes
            free[i][1] -= node.nbytes
            if not free[i][1]:
                del free[i]
            placed[node.name] = (offset, node.nbytes)
            top = max(top, offset + node.nbytes)
        for name in node.frees:
            free = _release(free, *placed.pop(name))
    return top


def _release(free: list[list[int]], offset: int, size: int) -> list[list[int]]:
    merged: list[list[int]] = []
    for block in sorted([*free, [offset, size]]):
        if merged and merged[-1][0] + merged[-1][1] == block[0]:
            merged[-1][1] += block[1]
        else:
            merged.append(list(block))
    return merged
