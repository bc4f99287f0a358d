"""One llama.cpp architecture as one class: how its config reads, which tensors its GGUF holds,
which GGUF keys describe it, and what its recurrent layers keep per sequence.

A family module (`arch/families/<name>.py`) subclasses `Family`, sets the class options that apply
and overrides the methods whose defaults (the common llama-style decoder) do not. The defaults
follow the pinned llama.cpp (build 11434): `convert_hf_to_gguf.py` for tensors and keys,
`llama_hparams::n_embd_r/n_embd_s` (`src/llama-hparams.cpp`) for recurrent state.
"""

from dataclasses import dataclass
from typing import ClassVar

from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.spec import Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import UnsupportedArchitecture

GGUFValue = int | float | str | bool | list[int] | list[float] | list[str] | list[bool]


@dataclass(frozen=True)
class GraphNode:
    """One node of a layer's compute graph as ggml-alloc sees it: the tensor it allocates (`nbytes`;
    0 for a node that writes into an existing tensor) and the tensors whose last use it is, freed
    after it runs (`engines/ggml_alloc.py`)."""

    name: str
    nbytes: int
    frees: tuple[str, ...] = ()


@dataclass(frozen=True)
class AttentionGraph:
    """A family's own account of one attention layer in the compute buffer, for graphs the generic
    estimate does not describe: its large tensors in graph order, and the bytes of graph leaves that
    are allocated before the first node and freed only at this layer."""

    nodes: tuple[GraphNode, ...]
    leaf_bytes: int = 0


def input_rows(row: int) -> list[GraphNode]:
    """The F32 embedding rows (`row` bytes each) `llm_graph_context::build_inp_embd` leaves before a
    model's first layer, in graph order: the embeddings input (held to the end), the token rows (the
    first layer's input) and, for mixed batches (`llm_arch_supports_mixed_batch`, every architecture
    but a few), the mixed input and the token rows gathered for it die after the copy that set_rows
    writes into, which a view keeps alive to the end, leaving two row-sized holes."""
    return [
        GraphNode("inp_mixed_embd", row),
        GraphNode("inp_embd", row),
        GraphNode("input_embed", row),
        GraphNode("mixed_rows", row),
        GraphNode("mixed_dup", row, ("inp_mixed_embd",)),
        GraphNode("set_rows", 0, ("mixed_rows",)),
    ]


@dataclass(frozen=True)
class AttentionCase:
    """One attention layer's cache and micro-batch as a family's `attention_graph` sizes them
    (engines/llamacpp.py builds one per layer)."""

    cells: int  # the layer's cache cells per stream
    comp_cells: int  # its compressed rows per stream (DeepSeek-V4's CSA/HCA), else 0
    n_ubatch: int
    n_stream: int
    flash_attn: bool
    k_cell_bytes: int  # one K cell in the -ctk type
    # A quantized -ctk / -ctv: Hadamard-rotated attention (`llama_kv_cache`'s k_rot / v_rot).
    k_quantized: bool
    v_quantized: bool
    n_seq: int  # -np, the sequences the cache is reserved for


class Family:
    arch: ClassVar[str]  # llama.cpp's `general.architecture`
    model_types: ClassVar[tuple[str, ...]]  # HF `model_type` values this family reads
    # The pinned converter keeps the checkpoint's MTP blocks unless `--no-mtp` (False: it drops them).
    mtp_kept: ClassVar[bool] = False
    # The HF checkpoint's MTP module has its own embedding and head copies (counted with `checkpoint`).
    mtp_own_head: ClassVar[bool] = False
    # The trunk context's KV cache also holds the kept MTP blocks' attention: the architecture's
    # memory has no layer filter for them (`llama_model::create_memory`), so it caches every
    # non-recurrent block of n_layer_all although the trunk graph never runs them.
    mtp_in_trunk_cache: ClassVar[bool] = False
    # The norm before the FFN: "ffn_norm" or "post_attention_norm" (HF's post_attention_layernorm).
    ffn_norm: ClassVar[str] = "ffn_norm"
    qk_norm: ClassVar[bool] = False  # per-head q/k RMS norms on every attention layer
    probs_bias: ClassVar[bool] = False  # DeepSeek-style `exp_probs_b` router bias
    rope_fraction: ClassVar[float] = 1.0  # share of the head that is rotated (partial_rotary_factor)
    # The recurrent inner width llama.cpp's loader requires as a multiple of n_embd (0 = free).
    ssm_inner_per_embd: ClassVar[int] = 0
    # `{arch}` keys (leading dot) whose integer arrays the loader reads as uint64 (qwen4exp's PLE hash)
    u64_keys: ClassVar[frozenset[str]] = frozenset()
    # llama.cpp's loader sizes the query rows as n_embd, so n_head x head_dim must equal it.
    query_width_is_embd: ClassVar[bool] = False
    # `build_inp_embd` builds the mixed-batch path (`llm_arch_supports_mixed_batch`, llama-arch.cpp:
    # every architecture but CogVLM, DeepSeek-V4, Granite-Switch and the draft heads).
    mixed_batch: ClassVar[bool] = True

    # ---- config.json ---------------------------------------------------------------------------

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        raise NotImplementedError

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """The spec a GGUF file of this architecture describes (its keys and tensor shapes), as
        llama.cpp's `load_hparams` reads them; override where `load_arch_hparams` decides in code."""
        return generic_spec(hp)

    # ---- tensors -------------------------------------------------------------------------------

    def keeps_mtp(self, spec: ModelSpec) -> bool:
        """Whether the pinned converter writes `spec`'s MTP blocks (unless `--no-mtp`): `mtp_kept`,
        unless the architecture's converter classes differ by HF model (see DeepSeek2)."""
        return self.mtp_kept

    def mtp_head_written(self, spec: ModelSpec) -> bool:
        """Whether a kept MTP block also carries the checkpoint's own embedding and head copies
        (`nextn.embed_tokens`, `nextn.shared_head_head`) in the GGUF."""
        return False

    def head(self, b: Builder, spec: ModelSpec) -> None:
        if spec.has("rope_freqs"):
            b.add("rope_freqs.weight", (spec.layers[0].attn.head_dim_k // 2,), Role.ATTN)
        b.add("token_embd.weight", (spec.n_embd, spec.n_vocab), Role.EMBED)

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        p, e = f"blk.{il}", spec.n_embd
        b.add(f"{p}.attn_norm.weight", (e,), layout.mtp_or(Role.NORM, mtp), il)
        self.attention(b, spec, p, il, layer.attn, layout.mtp_or(Role.ATTN, mtp))
        self.ffn_norms(b, p, il, e, layout.mtp_or(Role.NORM, mtp))
        self.ffn(b, spec, p, il, layer, mtp)
        if mtp:
            layout.nextn(b, p, il, e, spec.n_vocab, own_head=own_head)

    def attention(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        if a.kind is AttnKind.MLA:
            layout.mla(b, p, il, a, spec.n_embd, role)
        elif a.kind is AttnKind.LINEAR:
            self.recurrent(b, spec, p, il, a, Role.MTP if role is Role.MTP else Role.SSM)
        else:
            layout.gqa(
                b,
                p,
                il,
                a,
                spec.n_embd,
                role,
                bias=spec.has("attn_bias"),
                qk_norm=self.qk_norm or spec.has("qk_norm"),
            )

    def recurrent(self, b: Builder, spec: ModelSpec, p: str, il: int, a: Attention, role: Role) -> None:
        raise UnsupportedArchitecture(f"{self.arch} has no recurrent layers")

    def ffn_norms(self, b: Builder, p: str, il: int, e: int, role: Role) -> None:
        b.add(f"{p}.{self.ffn_norm}.weight", (e,), role, il)

    def ffn(self, b: Builder, spec: ModelSpec, p: str, il: int, layer: Layer, mtp: bool) -> None:
        layout.ffn(b, p, il, layer.ffn, spec.n_embd, mtp, probs_bias=self.probs_bias)

    def tail(self, b: Builder, spec: ModelSpec) -> None:
        b.add("output_norm.weight", (spec.n_embd,), Role.NORM)
        if not spec.tied_embeddings:
            b.add("output.weight", (spec.n_embd, spec.n_vocab), Role.OUTPUT)

    # ---- recurrent state -----------------------------------------------------------------------

    def recurrent_state(self, a: Attention) -> tuple[int, int]:
        """Values of (conv state r, recurrent state s) one sequence keeps for a recurrent layer:
        Mamba's `(d_conv−1)·(d_inner + 2·n_group·d_state)` and `d_state·d_inner` (n_embd_r/n_embd_s)."""
        d_inner = a.linear_v_heads * a.linear_v_head_dim
        d_state, n_group = a.linear_k_head_dim, a.linear_k_heads
        return (a.conv_kernel - 1) * (d_inner + 2 * n_group * d_state), d_state * d_inner

    def recurrent_activations(self, a: Attention, n_ubatch: int, n_embd: int, n_seq: int) -> int:
        """Compute-buffer bytes a recurrent layer's mixer keeps live at its peak (engines/llamacpp.py):
        by default a Gated DeltaNet's two conv-width activations plus three residual rows per token."""
        width = a.linear_v_heads * a.linear_v_head_dim
        return 4 * n_ubatch * (2 * (2 * a.linear_k_heads * a.linear_k_head_dim + width) + 3 * n_embd)

    def embedding_activations(self, spec: ModelSpec, il: int, n_ubatch: int) -> int:
        """Compute-buffer bytes the input embeddings add to decoder layer `il`'s peak beyond what every
        model keeps (engines/llamacpp.py); 0 unless the input is wider than n_embd
        (`llama_hparams::n_embd_inp`, e.g. Qwen3-VL's DeepStack)."""
        return 0

    def residual_activations(self, spec: ModelSpec, il: int, n_ubatch: int) -> int:
        """Compute-buffer bytes that full-attention layer `il`'s peak (engines/llamacpp.py) sits on
        beyond the generic model because of residual tensors the architecture keeps across layers;
        0 by default (Kimi-K3's attention-residual stack uses it)."""
        return 0

    def stream_activations(self, spec: ModelSpec, n_ubatch: int) -> int:
        """Compute-buffer bytes of residual streams that every phase of a block sits on beyond the
        generic model (engines/llamacpp.py: the recurrent mixer, the FFN, the generic attention); 0 by
        default (qwen4exp's hyper-connections use it)."""
        return 0

    def attention_activations(
        self,
        a: Attention,
        cells: int,
        n_ubatch: int,
        n_stream: int,
        n_seq: int,
        flash_attn: bool,
        unified: bool,
    ) -> tuple[int, int]:
        """Compute-buffer bytes an attention layer of this architecture adds beyond the generic model
        (engines/llamacpp.py): (at the layer's own peak, held once through the whole graph when any
        such layer runs on the device). None by default (MiniMax-M3's block-sparse masks use it)."""
        return 0, 0

    def compute_gap(self, spec: ModelSpec, n_seq: int) -> str:
        """How far the compute-buffer estimate was measured short for this model with `n_seq`
        sequences ("" = it was not); the plan then says so (notice COMPUTE_BUFFER_UNDERESTIMATED) instead of
        presenting the figure as exact."""
        return ""

    def attention_graph(
        self,
        spec: ModelSpec,
        a: Attention,
        case: AttentionCase,
    ) -> AttentionGraph | None:
        """The layer's attention phase node by node (engines/llamacpp.py replays it through ggml-alloc
        instead of the generic estimate), or None for the generic estimate."""
        return None

    def recurrent_graph(
        self, spec: ModelSpec, a: Attention, n_ubatch: int, n_seq: int, embeds: bool
    ) -> AttentionGraph | None:
        """The recurrent layer's mixer node by node (engines/llamacpp.py replays it through ggml-alloc
        instead of `recurrent_activations`), or None for that estimate. `n_seq`: -np, the states the
        recurrent cache holds and the sequences the graph is reserved for (with -kvu too); `embeds`:
        on the device that also ran `build_inp_embd`, whose rows (`input_rows`) the layer sits on
        (elsewhere, only on its input row)."""
        return None

    # ---- GGUF metadata -------------------------------------------------------------------------

    def rope_dims(self, spec: ModelSpec, a: Attention) -> int:
        if a.kind is AttnKind.MLA:
            return a.qk_rope_head_dim
        return int(a.head_dim_k * self.rope_fraction)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """The `{arch}.*` keys llama.cpp's loader reads for this model (keys abbreviated with a
        leading dot), as the converter writes them; tokenizer and general keys are the caller's."""
        spec = inv.spec
        a = next(la.attn for la in spec.layers if la.attn.kind is not AttnKind.LINEAR)
        moe = spec.moe_ffn
        dense = next((la.ffn for la in spec.layers if la.ffn.kind is FFNKind.DENSE), None)
        kv: dict[str, GGUFValue] = {
            ".context_length": spec.context_length,
            ".embedding_length": spec.n_embd,
            ".block_count": inv.block_count,
            ".feed_forward_length": dense.n_ff if dense else (moe.n_ff_exp if moe else 0),
            ".vocab_size": spec.n_vocab,
            ".attention.head_count": a.n_head,
            ".attention.head_count_kv": a.n_head_kv,
            ".attention.key_length": a.head_dim_k,
            ".attention.value_length": a.head_dim_v,
            ".attention.layer_norm_rms_epsilon": 1e-6,
            ".rope.freq_base": 10000.0,
            ".rope.dimension_count": self.rope_dims(spec, a),
        }
        if inv.mtp_kept:
            kv[".nextn_predict_layers"] = inv.mtp_kept
        windows = [la.attn.window for la in spec.layers if la.attn.kind is AttnKind.SWA]
        if windows:
            kv[".attention.sliding_window"] = windows[0]
        if moe is not None:
            kv[".expert_count"] = moe.n_expert
            kv[".expert_used_count"] = moe.n_expert_used
            kv[".expert_feed_forward_length"] = moe.n_ff_exp
            if moe.n_shared:
                kv[".expert_shared_count"] = moe.n_shared
            if moe.n_ff_shexp:
                kv[".expert_shared_feed_forward_length"] = moe.n_ff_shexp
        return kv


class PostNormFamily(Family):
    """A decoder with no norm before the attention or the FFN: each output is normed before its
    residual add (post_attention_norm, post_ffw_norm), as olmo2.cpp and exaone4.cpp load it."""

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        p, e = f"blk.{il}", spec.n_embd
        self.attention(b, spec, p, il, layer.attn, Role.ATTN)
        b.add(f"{p}.post_attention_norm.weight", (e,), Role.NORM, il)
        self.ffn(b, spec, p, il, layer, mtp)
        b.add(f"{p}.post_ffw_norm.weight", (e,), Role.NORM, il)


def mamba_metadata(a: Attention) -> dict[str, GGUFValue]:
    """The `ssm.*` keys of a Mamba-style recurrent layer (Gated DeltaNet and Mamba-2 alike), read by
    `load_arch_hparams` into ssm_d_conv / d_state / n_group / dt_rank / d_inner."""
    return {
        ".ssm.conv_kernel": a.conv_kernel,
        ".ssm.state_size": a.linear_k_head_dim,
        ".ssm.group_count": a.linear_k_heads,
        ".ssm.time_step_rank": a.linear_v_heads,
        ".ssm.inner_size": a.linear_v_head_dim * a.linear_v_heads,
    }


def first_moe_layer(spec: ModelSpec) -> int:
    """Index of the first MoE layer (the count of leading dense blocks)."""
    return next(i for i, la in enumerate(spec.layers) if la.ffn.kind is FFNKind.MOE)
