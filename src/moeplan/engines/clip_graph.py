"""clip.cpp's Qwen3-VL graph (`qwen3vl_merger`) as ggml-alloc lays it out: the projector's compute
buffer is the high-water mark of that layout, holes included, not a sum of live tensors.

The nodes follow the pinned `tools/mtmd/models/qwen3vl.cpp` (`clip_graph_qwen3vl::build`) in the
order ggml builds them, with ggml-alloc's rules (`ggml/src/ggml-alloc.c`): the graph inputs (the
image and the M-RoPE position ids) are allocated first; ADD / MUL / GELU / bias adds reuse their
only consumer-free parent in place (`ggml_op_can_inplace`), NORM, CONT, MUL_MAT, ROPE of a view,
CPY and FLASH_ATTN_EXT take new memory; a tensor is freed after its last consumer. Sizes are F32 but
the two Conv2D `im2col`s, F16 for an F16 or F32 kernel (`ggml_conv_2d`), and flash attention's F16
copies of K and V (`build_attn`).

Why the old "six widths" rule broke at 768: the freed image (3·p² floats a patch) leaves a hole at
the bottom of the buffer. A tower no wider than 3·p² puts its roped Q there, and the peak becomes
attention's: that hole, the positions, the residual, QKV (3 widths), roped K and its F16 copy
(5.5 widths above the hole, 5 when the copy fits beside Q in the hole too). A wider tower cannot
reuse the hole, and the input stage's conv outputs stack above it (the old six widths).
"""

from moeplan.arch.family import GraphNode
from moeplan.arch.vision import VisionTower
from moeplan.engines.ggml_alloc import CPU_ALIGN, peak_bytes

F32, F16 = 4, 2


class _Graph:
    """Nodes in graph order; an in-place node allocates nothing and keeps its parent's name."""

    def __init__(self) -> None:
        self.nodes: list[GraphNode] = []

    def new(self, name: str, nbytes: int, *frees: str) -> str:
        self.nodes.append(GraphNode(name, nbytes, frees))
        return name

    def free(self, *names: str) -> None:
        self.nodes.append(GraphNode("", 0, names))


def _input_stage(g: _Graph, t: VisionTower, patches: int) -> str:
    """The two Conv2Ds of the temporal slices and their sum, the spatial-merge reorder, the patch
    bias and the resized learned positions (`build_inp_with_temporal_merge`,
    `resize_position_embeddings`): the embedded patches, n_embd wide."""
    width = F32 * patches * t.n_embd
    pixels = patches * 3 * t.patch_size**2
    g.new("inp_raw", F32 * pixels)
    g.new("positions", F32 * 4 * patches)
    g.new("im2col.0", F16 * pixels)
    g.new("conv.0", width, "im2col.0")
    g.new("conv.0.cont", width, "conv.0")
    g.new("im2col.1", F16 * pixels, "inp_raw")
    g.new("conv.1", width, "im2col.1")
    g.new("conv.1.cont", width, "conv.1")
    g.free("conv.1.cont")  # the sum reuses conv.0.cont in place
    g.new("merge.0", width, "conv.0.cont")
    g.new("inp", width, "merge.0")  # + patch bias in place
    side = t.image_size // t.patch_size
    chain = ["pos.cont_4d", "pos.cont_3d"]
    if patches != side * side:  # resized: ggml_interpolate and its cont_2d come first
        chain = ["pos.interpolate", "pos.cont_2d", *chain]
    prev = None
    for name in chain:
        g.new(name, width, *([prev] if prev else []))
        prev = name
    g.free(chain[-1])  # inp + positions in place
    return "inp"


def _block(g: _Graph, t: VisionTower, patches: int, il: int, residual: str) -> str:
    """One encoder block (flash attention). A deepstack block's output is not freed by the next
    block: its merger reads it at the end of the graph."""
    width = F32 * patches * t.n_embd
    b = f"blk.{il}."
    g.new(b + "ln1", width)  # NORM; the weight and bias in place
    g.new(b + "qkv", 3 * width, b + "ln1")  # + bias in place
    g.new(b + "q_rope", width)
    g.new(b + "k_rope", width, *(["positions"] if il == t.n_layer - 1 else []))
    g.new(b + "k_f16", F16 * patches * t.n_embd, b + "k_rope")
    g.new(b + "v_f16", F16 * patches * t.n_embd, b + "qkv")
    g.new(b + "attn", width, b + "q_rope", b + "k_f16", b + "v_f16")
    g.new(b + "attn_out", width, b + "attn")  # + bias, + residual in place
    if il - 1 not in t.deepstack:
        g.free(residual)
    g.new(b + "ln2", width)
    g.new(b + "ffn_up", F32 * patches * t.n_ff, b + "ln2")  # + bias, GELU in place
    g.new(b + "ffn_down", width, b + "ffn_up")  # + bias in place
    g.free(b + "ffn_down")  # the residual add writes into attn_out
    return b + "attn_out"


def qwen3vl_compute_bytes(t: VisionTower, patches: int, align: int = CPU_ALIGN) -> int:
    """The compute buffer clip.cpp reserves for a warmup image of `patches` patches. ggml orders
    the graph depth-first from its output, the concat of the merger's output and the deepstack
    features, so the blocks and the merger come first and the deepstack mergers last."""
    g = _Graph()
    x = _input_stage(g, t, patches)
    for il in range(t.n_layer):
        x = _block(g, t, patches, il, x)
    width = F32 * patches * t.n_embd
    merged = patches // t.n_merge**2
    g.new("post_ln", width, *([] if t.n_layer - 1 in t.deepstack else [x]))
    g.new("mm.0", width, "post_ln")
    out = g.new("mm.2", F32 * merged * t.n_embd_text, "mm.0")
    features = None
    for k, il in enumerate(t.deepstack):  # norm and 2-layer MLP on merged patches, concatenated
        b = f"blk.{il}."
        g.new(b + "ds_norm", width, b + "attn_out")
        g.new(b + "ds_fc1", width, b + "ds_norm")
        fc2 = g.new(b + "ds_fc2", F32 * merged * t.n_embd_text, b + "ds_fc1")
        if features is None:
            features = fc2
        else:
            features = g.new(b + "ds_concat", F32 * merged * t.n_embd_text * (k + 1), features, fc2)
    if features is not None:
        g.new("out", F32 * merged * t.n_embd_text * (1 + len(t.deepstack)), out, features)
    return peak_bytes(g.nodes, align)
