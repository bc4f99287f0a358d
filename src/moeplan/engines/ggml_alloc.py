"""The size of a compute buffer as ggml's graph allocator lays it out, chunks included.

llama.cpp sizes its compute buffer by reserving the worst-case graph with ggml-alloc
(`ggml/src/ggml-alloc.c`, `ggml_dyn_tallocr_alloc`, `ggml_dyn_tallocr_free_tensor`, pinned build):
nodes are allocated in graph order and each parent is freed after its last child. A tensor goes into
the best-fitting free block that is not the last block of its chunk (among equals the last one);
failing that, into the last block of the chunk where it wastes least (or grows the chunk least);
failing that, into a new chunk whose capacity is the backend's maximum buffer size, or the tensor's
size when it is larger. Freed blocks merge with their free neighbours. The buffer is the sum of every
chunk's high-water mark, so a freed block too small for the next large tensor stays a hole below it.

Since ggml-org/llama.cpp#15815 ("split graph allocations according to backend max buffer size",
September 2025) the maximum is the buffer type's `get_max_size`: unlimited for CUDA (SIZE_MAX), the
Metal device's `maxBufferLength`, and for Vulkan `suballocation_block_size`, 1 GiB by default
(`ggml-vulkan.cpp`, #11551). A tensor over 1 GiB (the logits of 2048 outputs of a 200k vocabulary, an
F32 KQ mask at 131072 cells x 2048 tokens) therefore takes a chunk of its own on Vulkan, and what was
freed in the other chunks cannot be reused for it.

Two users: `engines/llamacpp.py compute_bytes` replays a device's few large allocations (masks, the
layer peak, the logits) in graph order; `peak_bytes` replays the large tensors of one layer that a
family lists in graph order (`Family.attention_graph`, DeepSeek-V4 and qwen4exp) to get that layer's
peak, holes included.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field

from moeplan.arch.family import GraphNode

UNLIMITED = 0  # no maximum buffer size (CUDA's SIZE_MAX)
# no GPU backend aligns compute tensors to more (CUDA 128, Vulkan minStorageBufferOffsetAlignment)
GPU_ALIGN = 256
CPU_ALIGN = 32  # the CPU buffer's alignment (TENSOR_ALIGNMENT)


@dataclass
class _Chunk:
    capacity: int
    high: int = 0
    free: list[tuple[int, int]] = field(default_factory=list)  # (offset, size), sorted; the last is the tail

    def __post_init__(self) -> None:
        self.free = [(0, self.capacity)]


@dataclass
class Allocator:
    """Replays allocations and frees; `size` is the buffer llama.cpp would reserve."""

    max_chunk: int = UNLIMITED
    align: int = GPU_ALIGN
    chunks: list[_Chunk] = field(default_factory=list)
    live: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # name: (chunk, offset, size)

    def alloc(self, name: str, size: int) -> None:
        size = -(-size // self.align) * self.align
        if size == 0:
            return
        cap = self.max_chunk or 1 << 62
        best: tuple[int, int] | None = None
        best_size = None
        for c, ch in enumerate(self.chunks):  # best fit among the blocks that are not a chunk's tail
            for i, (_, s) in enumerate(ch.free[:-1]):
                if s >= size and (best_size is None or s <= best_size):
                    best, best_size = (c, i), s
        if best is None:  # the tail that wastes least, else grows its chunk least
            best_reuse: int | None = None
            for c, ch in enumerate(self.chunks):
                off, s = ch.free[-1]
                reuse = ch.high - off - size
                better = best_reuse is None or (best_reuse < 0 and reuse > best_reuse)
                better = better or (reuse >= 0 and best_reuse is not None and reuse < best_reuse)
                if s >= size and better:
                    best, best_reuse = (c, len(ch.free) - 1), reuse
        if best is None:
            self.chunks.append(_Chunk(max(size, cap)))
            best = (len(self.chunks) - 1, 0)
        c, i = best
        ch = self.chunks[c]
        off, s = ch.free[i]
        if s == size and i < len(ch.free) - 1:
            del ch.free[i]
        else:
            ch.free[i] = (off + size, s - size)
        ch.high = max(ch.high, off + size)
        self.live[name] = (c, off, size)

    def free(self, name: str) -> None:
        if name not in self.live:
            return
        c, off, size = self.live.pop(name)
        blocks = sorted([*self.chunks[c].free, (off, size)])
        merged: list[tuple[int, int]] = []
        for o, s in blocks:
            if merged and merged[-1][0] + merged[-1][1] == o:
                merged[-1] = (merged[-1][0], merged[-1][1] + s)
            else:
                merged.append((o, s))
        self.chunks[c].free = merged

    @property
    def size(self) -> int:
        return sum(ch.high for ch in self.chunks)


def peak_bytes(nodes: Iterable[GraphNode], align: int = CPU_ALIGN) -> int:
    """The buffer the allocator reaches while it allocates `nodes` in order, freeing after each node
    the tensors whose last use it is."""
    allocator = Allocator(align=align)
    for node in nodes:
        allocator.alloc(node.name, node.nbytes)
        for name in node.frees:
            allocator.free(name)
    return allocator.size
