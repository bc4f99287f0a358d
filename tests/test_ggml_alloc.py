"""The replay of ggml-alloc's best fit (`engines/ggml_alloc.py`) against hand-traced layouts of
`ggml_dyn_tallocr_alloc` / `ggml_dyn_tallocr_free_bytes` (ggml/src/ggml-alloc.c)."""

from moeplan.arch.family import GraphNode as N
from moeplan.engines.ggml_alloc import peak_bytes as aligned_peak


def peak_bytes(nodes: list[N]) -> int:
    """The replay in units of the alignment (sizes here are counts of aligned blocks)."""
    return aligned_peak(nodes, align=1)


def test_a_freed_block_is_reused_by_a_tensor_it_holds() -> None:
    # a (4) is freed after b; c (4) takes a's block instead of growing the buffer
    assert peak_bytes([N("a", 4), N("b", 4, ("a",)), N("c", 4)]) == 8


def test_a_hole_smaller_than_the_next_tensor_stays_below_it() -> None:
    # a (4) freed, d (5) does not fit in it: it goes to the tail, above b
    assert peak_bytes([N("a", 4), N("b", 4, ("a",)), N("d", 5)]) == 13


def test_freed_neighbours_merge() -> None:
    # a and b freed side by side make one block of 8 that holds d (6)
    nodes = [N("a", 4), N("b", 4), N("c", 4, ("a", "b")), N("d", 6)]
    assert peak_bytes(nodes) == 12


def test_the_smallest_block_that_fits_wins() -> None:
    # holes of 6 (a) and 3 (c); e (3) takes c's exact hole, so f (6) still fits in a's
    nodes = [N("a", 6), N("b", 1), N("c", 3), N("d", 1, ("a", "c")), N("e", 3), N("f", 6)]
    assert peak_bytes(nodes) == 11


def test_a_block_freed_at_the_top_returns_to_the_tail() -> None:
    # b sat at the top; once freed, the next tensor grows from a's end, not from b's
    assert peak_bytes([N("a", 2), N("b", 8, ()), N("c", 0, ("b",)), N("d", 9)]) == 11
