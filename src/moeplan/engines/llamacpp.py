"""llama.cpp's runtime rules: where each tensor, KV cell and compute buffer lives, and its bytes.

From the pinned llama.cpp (build 11434), `src/llama-model.cpp load_tensors`, `common/arg.cpp`,
`src/llama-context.cpp` (see shared/reference/llamacpp-internals.md §4c–4d):
- `-ngl N` counts layers from the end, the output layer counting as one; `token_embd` stays on the CPU.
- `-ot REGEX=BUFT`: regex search over the tensor name, rules in command-line order, first match wins.
  `--cpu-moe` and `--n-cpu-moe N` are such rules for the expert stacks (of the first N layers).
- Tied embeddings: the output layer's copy of `token_embd` is a second copy when it lands off the CPU.
- KV cache and recurrent state live on their layer's device (`-nkvo`: all on the CPU).
- MTP (NextN) layers count for `-ngl` but their weights are not loaded unless MTP drafting is on
  (`--spec-type draft-mtp` sets `load_mtp`, common/common.cpp; see engines/speculative.py).
- Compute buffer: the peak of live graph tensors (ggml-alloc reuses memory): KQ masks are graph
  inputs held throughout; on top of them the larger of the logits phase (n_outputs × n_vocab F32)
  and the biggest layer's activations (attention scores without flash attention, FFN/expert outputs).
  llama-server reserves logits for its slots only; llama-completion / llama-bench / the fit dry run
  for the whole micro-batch.
- A GPU's compute buffer is laid out as ggml-alloc does (`engines/ggml_alloc.py`): its copies of the masks,
  the largest layer, the logits, in 1 GiB chunks on Vulkan. The host of a GPU run holds every graph
  input (each cache's KQ mask, the input embeddings' F32 rows) and, when op offload runs its matmuls on
  a GPU, nothing else but the expert bias adds the backend leaves on the host (Metal; Vulkan before
  ~b8650: `engines/gpu_backends.py`). Builds before #23764 hold the mask in F32 and cast it to F16
  on the GPU of its first layer (`engines/builds.py`).
- DeepSeek sparse attention (`build_attn` with top-k, llama-graph.cpp): a second (F16) KQ mask for the
  indexer cache; per sparse layer a zero-filled {1, top-k, n_tokens} F32 graph leaf that is never
  freed, and at the layer the refilled KQ mask (fill + add, or the indexer scores) and the top-k
  indices (fitted on the pinned build's CPU compute buffers, within 6 MiB of them).
- A family that describes its attention graph itself (`Family.attention_graph`, DeepSeek-V4,
  qwen4exp) gets that layer's peak by replaying its tensors through ggml-alloc's best fit
  (`engines/ggml_alloc.py`), holes included; DeepSeek-V4's compressed caches add one KQ mask each
  (CSA, HCA: F16 with flash attention) and its indexer mask covers the compressed rows
  (`llm_graph_input_dsv4`). Qwen sparse attention (qwen4exp, `Attention.indexer_kpool`) builds
  neither: its k-pool inputs are held through the graph (the family's `attention_activations`).
  Residual streams a family keeps through every phase of a block (`Family.stream_activations`,
  qwen4exp's hyper-connections) add to its FFN and recurrent peaks.
- Gated DeltaNet layers (qwen35, qwen35moe, qwen3next: `Family.recurrent_graph`) are replayed the
  same way, the states every sequence gathers and the kernel's state rows included; on the device
  that ran `build_inp_embd` (the CPU) they, and the logits (`_cpu_logits_phase`), sit on its rows.
- CPU weights in Q4_0/Q4_K/IQ4_NL/MXFP4 with rows a multiple of 8 are repacked on x86 (AVX2) into a
  separate CPU_REPACK buffer when no GPU backend takes the host buffer type.
"""

import re
import shlex
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from moeplan.arch.family import AttentionCase, GraphNode, input_rows
from moeplan.arch.inventory import Inventory, Role, TensorSpec
from moeplan.arch.registry import rules
from moeplan.arch.spec import Attention, AttnKind, FFNKind, ModelSpec
from moeplan.engines.ggml_alloc import Allocator, peak_bytes
from moeplan.engines.gpu_backends import OP_OFFLOAD_MIN_BATCH, backend_of_device
from moeplan.errors import MoeplanError
from moeplan.memo import PER_MODEL, PER_MODEL_QUANT, by_identity
from moeplan.memory.checkpoints import DEFAULT_CTX_CHECKPOINTS, checkpoints_host_bytes
from moeplan.memory.kv import (
    CacheConfig,
    LayerMemory,
    context,
    kv_widths,
    layer_memory,
    mtp_trunk_memory,
    row_bytes,
)
from moeplan.memory.prompt_cache import DEFAULT_CACHE_RAM_MIB, prompt_cache_bytes
from moeplan.memory.table import TensorLayout, TensorTable, tensor_table
from moeplan.memory.weights import Weights
from moeplan.numbers import check_cache_ram
from moeplan.quant.ggml import UNQUANTIZED, GGMLType

CPU = "CPU"
REPACK = "CPU_REPACK"
_REPACKABLE_VALUES = [t.value for t in (GGMLType.Q4_0, GGMLType.Q4_K, GGMLType.IQ4_NL, GGMLType.MXFP4)]
_EXPS = r"_(up|down|gate|gate_up)_(ch|)exps"

# A rule of `Placement.overrides`: an -ot regex (and --cpu-moe's), or for `--n-cpu-moe N` the count N,
# which stands for llama.cpp's N rules `blk\.{i}\.ffn_..._exps`, one per layer i < N
# (`llm_add_n_cpu_ffn_overrides`, common/common.h). Kept as a count, its tensors come from one scan
# of the names (`_n_cpu_moe_rank`) instead of a regex compiled per N: the planner tries dozens of N.
TensorRule = str | int


@dataclass(frozen=True)
class Placement:
    """The placement flags of one llama.cpp command line."""

    n_gpu_layers: int | None = None  # None / negative: all layers (llama.cpp's -ngl all)
    overrides: tuple[tuple[TensorRule, str], ...] = ()  # (rule, buffer type) in command-line order
    tensor_split: tuple[float, ...] = ()
    no_kv_offload: bool = False
    split_mode: str = "layer"  # -sm: none (the first GPU only), layer, row (`_row_split`)
    # -dev/--device: the GPUs the model may use, in the order given (None: all of them; (): none)
    devices: tuple[str, ...] | None = None


SPLIT_MODES = ("none", "layer", "row")


@lru_cache(maxsize=4096)  # the planner evaluates the same few flag strings many times
def parse_placement(flags: str) -> Placement:
    """Read -ngl, -ot/--override-tensor, --cpu-moe, --n-cpu-moe, -ts, -nkvo, -sm and -dev from a
    command line."""
    try:
        args = shlex.split(flags)
    except ValueError as e:
        raise MoeplanError(f"cannot parse placement '{flags}': {e}") from None
    ngl: int | None = None
    overrides: list[tuple[TensorRule, str]] = []
    split: tuple[float, ...] = ()
    nkvo = False
    split_mode = "layer"
    devices: tuple[str, ...] | None = None
    i = 0

    def value() -> str:
        if i + 1 >= len(args):
            raise MoeplanError(f"placement flag {args[i]} needs a value")
        return args[i + 1]

    while i < len(args):
        a = args[i]
        if a in ("-ngl", "--gpu-layers", "--n-gpu-layers"):
            v = value()
            ngl = None if v in ("all", "auto", "-1") else _int(a, v)
            i += 2
        elif a in ("-ot", "--override-tensor"):
            for rule in value().split(","):
                pattern, sep, buft = rule.partition("=")
                if not sep or not pattern or not buft:
                    raise MoeplanError(
                        f"-ot rule '{rule}' must be REGEX=BUFFER_TYPE, e.g. '.ffn_.*_exps.=CPU'"
                    )
                _check_regex(pattern)
                overrides.append((pattern, buft))
            i += 2
        elif a in ("-cmoe", "--cpu-moe"):
            overrides.append((r"\.ffn" + _EXPS, CPU))
            i += 1
        elif a in ("-ncmoe", "--n-cpu-moe"):
            n = _int(a, value())
            if n:  # llama.cpp adds one rule per layer, all to CPU (TensorRule)
                overrides.append((n, CPU))
            i += 2
        elif a in ("-ts", "--tensor-split"):
            try:
                split = tuple(float(x) for x in value().replace("/", ",").split(","))
            except ValueError:
                raise MoeplanError(f"-ts expects proportions like 3,1, got '{value()}'") from None
            if any(x < 0 for x in split) or not any(split):
                raise MoeplanError(f"-ts proportions must be non-negative and not all zero, got '{value()}'")
            i += 2
        elif a in ("-nkvo", "--no-kv-offload"):
            nkvo = True
            i += 1
        elif a in ("-sm", "--split-mode"):
            split_mode = value()
            if split_mode == "tensor":
                raise MoeplanError(
                    "-sm tensor (the experimental meta-device tensor parallelism) is not modelled: "
                    "plan with -sm layer (the default)"
                )
            if split_mode not in SPLIT_MODES:
                raise MoeplanError(f"-sm must be one of none, layer, row, tensor; got '{split_mode}'")
            i += 2
        elif a in ("-dev", "--device"):
            devices = device_list(value())
            i += 2
        else:
            raise MoeplanError(
                f"unsupported placement flag '{a}' "
                "(know -ngl, -ot, --cpu-moe, --n-cpu-moe, -ts, -nkvo, -sm, -dev)"
            )
    return Placement(ngl, tuple(overrides), split, nkvo, split_mode, devices)


def device_list(value: str) -> tuple[str, ...]:
    """-dev's comma-separated GPU names; `none` alone offloads nothing (`parse_device_list`,
    common/arg.cpp). A name given twice is refused: llama.cpp would count that GPU twice in the split."""
    names = tuple(d.strip() for d in value.split(",") if d.strip())
    if not names:
        raise MoeplanError("-dev needs device names, e.g. -dev CUDA0,CUDA1 (or none)")
    if names == ("none",):
        return ()
    if twice := next((d for i, d in enumerate(names) if d in names[:i]), None):
        raise MoeplanError(f"-dev lists {twice} twice: name each GPU once")
    return names


def listed_devices(
    p: Placement, gpus: tuple[str, ...], free: tuple[int, ...] = ()
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The GPUs the model uses and their free memory (`free`, one per GPU, or none): -dev's, in its
    order, else all of them. llama.cpp's model devices are exactly -dev's list
    (`llama_prepare_model_devices`, src/llama.cpp), so the default split shares the layers by the
    listed devices' free memory only, -ts and -mg count positions in that list, and a GPU left out
    gets no weights, no cache and no backend."""
    if p.devices is None:
        return gpus, free
    if unknown := [d for d in p.devices if d not in gpus]:
        raise MoeplanError(f"-dev {unknown[0]}: the devices are {', '.join(gpus) or 'none (no GPU)'}")
    keep = [gpus.index(d) for d in p.devices]
    return p.devices, tuple(free[i] for i in keep) if free else ()


def _int(flag: str, v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise MoeplanError(f"{flag} expects an integer, got '{v}'") from None
    if n < 0:
        raise MoeplanError(f"{flag} must not be negative, got {n}")
    return n


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as e:
        raise MoeplanError(f"-ot regex '{pattern}' is invalid: {e}") from None


@dataclass(frozen=True)
class Frontend:
    """What the tool that runs the model changes: llama-server reserves logits for its slots only."""

    name: str = "llama-completion"
    n_outputs_max: int | None = None  # None: n_batch (llama-completion, llama-bench, llama-fit-params)
    ctx_checkpoints: int | None = None  # --ctx-checkpoints; None: the tool's default
    cache_ram: int | None = None  # --cache-ram MiB (-1: no limit); None: the tool's default

    def __post_init__(self) -> None:
        if self.ctx_checkpoints is not None and self.ctx_checkpoints < 0:
            raise MoeplanError(f"--ctx-checkpoints {self.ctx_checkpoints}: give 0 (none) or a positive count")
        if self.cache_ram is not None:
            check_cache_ram(self.cache_ram)

    @property
    def n_ctx_checkpoints(self) -> int:
        """Context checkpoints kept per slot: llama-server's own (`memory/checkpoints.py`), none elsewhere."""
        if self.ctx_checkpoints is not None:
            return self.ctx_checkpoints
        return DEFAULT_CTX_CHECKPOINTS if self.name == "llama-server" else 0

    @property
    def cache_ram_mib(self) -> int:
        """llama-server's prompt cache limit in MiB (`memory/prompt_cache.py`); no cache elsewhere."""
        if self.cache_ram is not None:
            return self.cache_ram
        return DEFAULT_CACHE_RAM_MIB if self.name == "llama-server" else 0


SERVER = Frontend("llama-server", n_outputs_max=4)


@dataclass
class DeviceMemory:
    device: str
    weights_bytes: int = 0
    kv_bytes: int = 0
    state_bytes: int = 0
    compute_bytes: int = 0
    output_bytes: int = 0
    offload_copy_bytes: int = 0  # of compute_bytes: the largest host weight copied in for op offload
    runtime_bytes: int = 0  # what the GPU loses outside llama.cpp's buffers (`gpu_backends.Backend`)
    checkpoint_bytes: int = 0  # llama-server's context checkpoints, host memory (`memory/checkpoints.py`)
    prompt_cache_bytes: int = 0  # llama-server's prompt cache at its limit, host (`memory/prompt_cache.py`)

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes
            + self.kv_bytes
            + self.state_bytes
            + self.compute_bytes
            + self.output_bytes
            + self.runtime_bytes
            + self.checkpoint_bytes
            + self.prompt_cache_bytes
        )

    @property
    def llamacpp_bytes(self) -> int:
        """What llama.cpp's memory breakdown calls this device's "self": model + context + compute
        (the server's checkpoints and prompt cache are plain host vectors outside it)."""
        return self.total_bytes - self.runtime_bytes - self.checkpoint_bytes - self.prompt_cache_bytes


@lru_cache(maxsize=4096)
def layer_devices(
    n_layer_all: int,
    gpus: tuple[str, ...],
    p: Placement,
    free: tuple[int, ...] = (),
    output_first: bool = True,
) -> tuple[str, ...]:
    """Device of each layer index 0..n_layer_all (the last index is the output layer). Without -ts,
    llama.cpp splits the layers in proportion to each device's free memory (`free`; equal shares
    when not given) whatever they weigh (`llama_model::load_tensors`, "default split, by free memory").
    `output_first` False: builds before ggml-org/llama.cpp#18148, where -ngl N (N <= n_layer) took the
    last N repeating layers and left the output layer on the CPU (`engines/builds.py`)."""
    n_gpu = n_layer_all + 1 if p.n_gpu_layers is None else min(p.n_gpu_layers, n_layer_all + 1)
    if not gpus:
        n_gpu = 0
    start = max(n_layer_all + (1 if output_first else 0) - n_gpu, 0)
    default = tuple(float(f) for f in free) if len(free) == len(gpus) and any(free) else (1.0,) * len(gpus)
    shares = p.tensor_split[: len(gpus)] if p.tensor_split else default
    shares = shares + (0.0,) * (len(gpus) - len(shares))
    total = sum(shares)
    cumulative, acc = [], 0.0
    for s in shares:
        acc += s / total
        cumulative.append(acc)
    out = []
    for il in range(n_layer_all + 1):
        if il < start or il - start >= n_gpu:
            out.append(CPU)
        else:
            k = min(bisect_right(cumulative, (il - start) / n_gpu), len(gpus) - 1)
            out.append(gpus[k])
    return tuple(out)


@dataclass(frozen=True, eq=False)
class _LayoutColumns:
    """llama.cpp's view of a tensor layout: where each tensor goes without -ot, whether it is
    loaded, and which tensors x86 could repack (by shape and role; the type decides)."""

    slot: NDArray[np.int64]
    loaded: NDArray[np.bool_]  # MTP layers are not loaded (but for `TensorSpec.loaded_without_mtp`)
    repack_shape: NDArray[np.bool_]
    ffn_row: NDArray[np.int64]  # per decoder layer: the tensor whose device runs its FFN (-1: none)


# Global tensors llama-arch.cpp files under LLM_TENSOR_LAYER_OUTPUT although their names do not say
# "output": the loader puts them on the output layer's device (llama_model_loader::create_tensor).
_OUTPUT_LAYER_GLOBALS = frozenset({"altup_proj.weight", "altup_unembd_proj.weight"})  # Gemma 3n AltUp


def _slot(t: TensorSpec, n_layer_all: int) -> int:
    """Where a tensor goes without -ot: its layer; n_layer_all for the output layer; n_layer_all + 1
    (the CPU) for token_embd, which llama.cpp keeps on the CPU; layer 0 for other global tensors."""
    if t.name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return n_layer_all + 1
    if t.layer is None:
        return n_layer_all if t.name.startswith("output") or t.name in _OUTPUT_LAYER_GLOBALS else 0
    return t.layer


@by_identity(maxsize=PER_MODEL)
def _layout_columns(layout: TensorLayout, n_layer: int, n_layer_all: int) -> _LayoutColumns:
    return _LayoutColumns(
        np.array([_slot(t, n_layer_all) for t in layout.specs], dtype=np.int64),
        (layout.layer < n_layer) | np.array([t.loaded_without_mtp for t in layout.specs], dtype=np.bool_),
        np.array(
            [len(t.shape) >= 2 and t.shape[1] % 8 == 0 and t.role is not Role.EMBED for t in layout.specs],
            dtype=np.bool_,
        ),
        layout.layer_rows(n_layer, "ffn_down_exps", "ffn_down"),
    )


# Where llama.cpp's rule of some layer i, `blk\.{i}\.ffn_..._exps`, matches a name: the layer's
# digits are the whole run after `blk.` (a longer run is another layer), written without leading
# zeros as `std::to_string(i)` writes them. Matches cannot overlap (no `blk.` inside one).
_N_CPU_MOE_RULE = re.compile(r"blk\.([0-9]+)\.ffn" + _EXPS)
_NO_LAYER = np.iinfo(np.int64).max


@by_identity(maxsize=PER_MODEL)
def _n_cpu_moe_rank(layout: TensorLayout) -> NDArray[np.int64]:
    """Per tensor, the least layer i whose --n-cpu-moe rule matches its name (`_NO_LAYER`: none),
    so that `--n-cpu-moe N` moves exactly the tensors ranked below N."""
    ranks = [
        min((int(d) for m in _N_CPU_MOE_RULE.finditer(n) if (d := m[1]) == str(int(d))), default=_NO_LAYER)
        for n in layout.names
    ]
    return np.array(ranks, dtype=np.int64)


@by_identity(maxsize=4096)
def _rule_mask(layout: TensorLayout, rule: TensorRule) -> NDArray[np.bool_]:
    """Which tensor names an -ot regex matches (re.search, as llama.cpp's std::regex_search), or
    for a layer count N any of --n-cpu-moe's N rules."""
    if isinstance(rule, int):
        mask = _n_cpu_moe_rank(layout) < rule
    else:
        rx = re.compile(rule)
        mask = np.array([rx.search(n) is not None for n in layout.names], dtype=np.bool_)
    mask.flags.writeable = False
    return mask


@by_identity(maxsize=PER_MODEL_QUANT)
def _repackable(table: TensorTable, cols: _LayoutColumns) -> NDArray[np.bool_]:
    """Tensors x86 repacks when they stay on the CPU: a repackable type and shape."""
    return cols.repack_shape & np.isin(table.types, _REPACKABLE_VALUES)


@dataclass(frozen=True)
class _Activations:
    """Per decoder layer: its KV cells and cache kind, and the activation bytes its attention and
    its FFN keep live in the compute buffer. Depends only on the model and the runtime config."""

    layers: tuple[LayerMemory, ...]
    index: NDArray[np.int64]  # each entry's layer
    kv: NDArray[np.int64]  # K + V bytes (+ DSA indexer keys)
    state: NDArray[np.int64]  # recurrent state bytes
    cells: NDArray[np.int64]
    swa: NDArray[np.bool_]  # a sliding-window (or chunked) cache: its own KQ mask
    attn: NDArray[np.int64]
    ffn: NDArray[np.int64]
    lid: NDArray[np.bool_] | None = None  # a DSA indexer key cache: its own KQ mask
    leaf: NDArray[np.int64] | None = None  # DSA: bytes a sparse layer holds for the whole graph
    held: NDArray[np.int64] | None = None  # `Family.attention_activations`: held once per graph
    ratio: NDArray[np.int64] | None = None  # DeepSeek-V4: the compressed cache's ratio (0: none)
    comp_cells: NDArray[np.int64] | None = None  # its rows per stream (also the indexer cache's)
    # on the device that ran `build_inp_embd`, sitting on its rows: a recurrent layer's attention
    # (`Family.recurrent_graph`; None: the same as `attn`) and the FFN (above the rows' holes)
    attn_embeds: NDArray[np.int64] | None = None
    ffn_embeds: NDArray[np.int64] | None = None


def _sparse_attention(a: Attention, cells: int, ub: int, flash_attn: bool) -> tuple[int, int]:
    """DSA top-k attention (`llm_graph_context::build_attn` with top_k, `ggml_lightning_indexer`):
    (extra activation bytes at the layer, bytes of its never-freed zero leaf {1, k, n_tokens} F32)."""
    k = min(a.indexer_top_k, cells)
    mask_bytes = 2 if flash_attn else 4
    refill = max(4 if a.indexer_heads else 0, 2 * mask_bytes) * cells * ub  # scores F32 / mask fill + add
    return refill + 8 * k * ub, 4 * k * ub  # top-k I32 + its cont copy


@by_identity(maxsize=PER_MODEL_QUANT)
def _activations(spec: ModelSpec, cfg: CacheConfig) -> _Activations:
    layers = layer_memory(spec, cfg)
    ub = context(spec, cfg).n_ubatch
    e = spec.n_embd
    attn, attn_embeds, ffn, ffn_embeds, swa, leaf, held, lid = [], [], [], [], [], [], [], []
    holes = _input_row_holes(spec, cfg)
    n_stream = context(spec, cfg).n_stream
    family = rules(spec.arch)
    for lm, layer in zip(layers, spec.layers, strict=True):
        a, f = layer.attn, layer.ffn
        extra, graph_wide = family.attention_activations(
            a, lm.cells, ub, n_stream, cfg.n_seq, cfg.flash_attn, cfg.unified
        )
        held.append(graph_wide)
        swa.append(a.sliding)
        graph = (
            None
            if a.kind in (AttnKind.LINEAR, AttnKind.NONE)
            else family.attention_graph(
                spec,
                a,
                AttentionCase(
                    lm.cells,
                    lm.comp_cells,
                    ub,
                    lm.n_stream,  # DeepSeek-V4's caches keep a stream per sequence under -kvu too
                    cfg.flash_attn,
                    row_bytes(cfg.type_k, kv_widths(a)[0]),  # one K cell, as the cache stores it
                    cfg.type_k not in UNQUANTIZED,
                    cfg.type_v not in UNQUANTIZED,
                    cfg.n_seq,
                ),
            )
        )
        sparse, zeros = (0, 0)
        if graph is not None:
            zeros = graph.leaf_bytes
        elif a.indexer_top_k and not a.indexer_kpool:  # QSA's pooled selection: the family's
            sparse, zeros = _sparse_attention(a, lm.cells, ub, cfg.flash_attn)
        lid.append(lm.index_bytes > 0 and not a.indexer_kpool)
        leaf.append(zeros)
        streams = family.stream_activations(spec, ub)
        on_embedding_device = act = 0
        if a.kind is AttnKind.LINEAR:
            mixer = family.recurrent_graph(spec, a, ub, cfg.n_seq, embeds=False)
            if mixer is None:
                act = family.recurrent_activations(a, ub, e, cfg.n_seq) + streams
            else:  # the family's own graph, replayed through ggml-alloc, with and without the rows
                act = peak_bytes(mixer.nodes) + streams
                rows = family.recurrent_graph(spec, a, ub, cfg.n_seq, embeds=True)
                on_embedding_device = peak_bytes(rows.nodes) + streams if rows is not None else 0
        elif graph is not None:  # the family's own graph, replayed through ggml-alloc
            act = peak_bytes(graph.nodes)
        else:
            q = a.n_head * max(a.head_dim_k, a.qk_nope_head_dim + a.qk_rope_head_dim)
            act = 4 * ub * (2 * q + 3 * e)
            if not cfg.flash_attn:
                act += 4 * lm.cells * ub * a.n_head  # KQ scores, F32 (n_stream splits the tokens)
            act += sparse + extra + streams + family.residual_activations(spec, lm.layer, ub)
        inputs = family.embedding_activations(spec, lm.layer, ub)  # wide input embeddings
        attn.append(act + inputs)
        attn_embeds.append((on_embedding_device or act) + inputs)
        if f.kind is FFNKind.MOE:
            # the shared expert runs after the routed experts' tensors die (`build_moe_ffn`, then the
            # shared FFN beside its summed output): the larger of the two phases
            shared = 4 * ub * (3 * f.n_ff_shexp + e) if f.n_ff_shexp else 0
            moe = max(_routed_experts(f.n_expert_used * f.n_ff_exp, f.n_expert_used * e, ub), shared)
            router = 4 * ub * 2 * f.n_expert  # the router's logits and probabilities, F32
            ffn.append(moe + router + 4 * ub * 3 * e + inputs + streams)
        else:
            router = 0
            ffn.append(4 * ub * (3 * f.n_ff + 3 * e) + inputs + streams)
        # where `build_inp_embd` ran, the FFN's tensors wider than a row sit above its rows' holes,
        # which take the router's narrow tensors
        ffn_embeds.append(ffn[-1] + max(holes - router, 0))
    compressed = any(lm.comp_cells for lm in layers)
    return _Activations(
        tuple(layers),
        np.array([lm.layer for lm in layers], dtype=np.int64),
        np.array([lm.cache_bytes for lm in layers], dtype=np.int64),
        np.array([lm.state_bytes for lm in layers], dtype=np.int64),
        np.array([lm.cells for lm in layers], dtype=np.int64),
        np.array(swa, dtype=np.bool_),
        np.array(attn, dtype=np.int64),
        np.array(ffn, dtype=np.int64),
        np.array(lid, dtype=np.bool_) if any(leaf) else None,
        np.array(leaf, dtype=np.int64) if any(leaf) else None,
        np.array(held, dtype=np.int64) if any(held) else None,
        np.array([la.attn.compress_ratio for la in spec.layers], dtype=np.int64) if compressed else None,
        np.array([lm.comp_cells for lm in layers], dtype=np.int64) if compressed else None,
        np.array(attn_embeds, dtype=np.int64) if attn_embeds != attn else None,
        np.array(ffn_embeds, dtype=np.int64) if ffn_embeds != ffn else None,
    )


def _routed_experts(width: int, down_width: int, n_ubatch: int) -> int:
    """The routed experts of `build_moe_ffn` (llama-graph.cpp) replayed through ggml-alloc: the gate
    and up projections {n_ff_exp, n_expert_used, T} die into their SwiGLU, which dies into the down
    projection {n_embd, n_expert_used, T}; wider than the two it takes their hole's place above the
    SwiGLU (full-size qwen3-30b-a3b, -ub 512: 32 MiB down over a 12 MiB SwiGLU)."""
    up = 4 * n_ubatch * width
    nodes = [
        GraphNode("ffn_moe_gate", up),
        GraphNode("ffn_moe_up", up),
        GraphNode("ffn_moe_swiglu", up, ("ffn_moe_gate", "ffn_moe_up")),
        GraphNode("ffn_moe_down", 4 * n_ubatch * down_width, ("ffn_moe_swiglu",)),
    ]
    return peak_bytes(nodes)


@dataclass(frozen=True)
class DeviceRole:
    """How a device sits in a run with GPUs (`engines/gpu_backends.py`); the default is a CPU-only run.
    `gpu`: a GPU beside the host, whose copies of the graph inputs (KQ masks) are freed after its last
    layer unless `inputs_kept` (pipeline parallelism); `max_chunk`: its buffer type's maximum size
    (`engines/ggml_alloc.py`); `host`: the host of such a run, which holds every graph input; `host_idle`:
    the GPUs run the host's matmuls (op offload at this micro-batch), so the host computes nothing
    but the input embeddings and `host_adds`, the bytes of the expert bias adds the GPU backend does
    not take (`_host_adds`); `embeds`: it runs `build_inp_embd` (the CPU, where token_embd stays), so
    its logits sit above the input rows (`_cpu_logits_phase`)."""

    gpu: bool = False
    embeds: bool = True
    inputs_kept: bool = False
    max_chunk: int = 0
    host: bool = False
    host_idle: bool = False
    host_adds: int = 0


CPU_ONLY = DeviceRole()


def compute_bytes(
    spec: ModelSpec,
    cfg: CacheConfig,
    n_outputs: int,
    has_output: bool,
    attn_layers: NDArray[np.bool_],
    ffn_layers: NDArray[np.bool_],
    role: DeviceRole = CPU_ONLY,
    copy_phase: int = 0,
) -> int:
    """Compute buffer of one device whose decoder layers run their attention where `attn_layers`
    and their FFN where `ffn_layers` is set (see the module docstring for the model of the peak).
    `copy_phase`: the bytes live while it runs the largest op it offloads from the host (the weight's
    copy and that op's activations)."""
    return _compute_bytes(
        spec, cfg, n_outputs, has_output, attn_layers.tobytes(), ffn_layers.tobytes(), role, copy_phase
    )


def _masks(acts: "_Activations", with_cache: NDArray[np.bool_], ub: int, elem: int) -> list[tuple[int, int]]:
    """One KQ mask per cache (full, SWA; the DSA indexer's is F16), n_kv x n_tokens/n_stream x
    n_stream (llama-graph.cpp build_attn_inp_kq_mask), so streams do not multiply it. Two caches of
    equal size are still two tensors. Each as (bytes, the first layer that reads it)."""
    # (layers, their cells, bytes per mask element): DeepSeek-V4's indexer masks its compressed rows,
    # and each of its compressed caches (CSA, HCA) has a mask of its own (llm_graph_input_dsv4).
    kinds = [(~acts.swa, acts.cells, elem), (acts.swa, acts.cells, elem)]
    if acts.lid is not None:
        kinds.append((acts.lid, acts.cells if acts.comp_cells is None else acts.comp_cells, 2))
    if acts.ratio is not None and acts.comp_cells is not None:
        kinds += [(acts.ratio == r, acts.comp_cells, elem) for r in np.unique(acts.ratio[acts.ratio > 0])]
    out = []
    for kind, cells, size in kinds:
        hit = np.flatnonzero(with_cache & kind)
        if hit.size:
            first = int(np.flatnonzero((acts.cells > 0) & kind)[0])
            out.append((int(cells[hit[-1]]) * ub * size, first))
    return out


@by_identity(maxsize=4096)  # placements of every quantization share a handful of layer masks
def _compute_bytes(
    spec: ModelSpec,
    cfg: CacheConfig,
    n_outputs: int,
    has_output: bool,
    attn_mask: bytes,
    ffn_mask: bytes,
    role: DeviceRole,
    copy_phase: int,
) -> int:
    attn_layers = np.frombuffer(attn_mask, dtype=np.bool_)
    ffn_layers = np.frombuffer(ffn_mask, dtype=np.bool_)
    acts = _activations(spec, cfg)
    ub = context(spec, cfg).n_ubatch
    e = spec.n_embd
    mask_bytes = 2 if cfg.flash_attn else 4
    # The mask as the graph input holds it: F32 without flash attention, and with it before #23764
    # (then cast to F16 where the first layer runs, `engines/builds.py F16_MASK`).
    input_bytes = 4 if cfg.f32_mask or not cfg.flash_attn else 2
    has_layers = bool(attn_layers.any() or ffn_layers.any())
    inputs_only = not has_layers and not has_output  # the host when every layer is offloaded
    if inputs_only and role.gpu:
        return copy_phase  # a GPU that holds no layer runs only what the host offloads to it
    logits = 4 * n_outputs * spec.n_vocab + 8 * n_outputs * e if has_output else 0
    embd_rows = 4 * cfg.embd_rows * ub * e  # the input embeddings (`build_inp_embd`)
    if role.host:
        # The host of a GPU run holds every graph input: each cache's mask and the input embeddings,
        # whichever layers it runs (the real logs' host compute lines; gpu_logs.py).
        held_inputs = sum(m for m, _ in _masks(acts, acts.cells > 0, ub, input_bytes)) + embd_rows
        if inputs_only or role.host_idle:
            return held_inputs + max(logits, role.host_adds)
        return held_inputs + max(_layers_peak(spec, cfg, acts, attn_layers, ffn_layers, copy_phase), logits)
    # The masks are graph inputs: the host buffer holds them (and the token-embedding rows) even with
    # no layer on the CPU.
    with_cache = (acts.cells > 0) & (True if inputs_only else attn_layers)
    masks = _masks(acts, with_cache, ub, mask_bytes)
    if inputs_only:
        return sum(m for m, _ in masks) + embd_rows
    peak = _layers_peak(spec, cfg, acts, attn_layers, ffn_layers, copy_phase, embeds=role.embeds)
    inputs = 4 * ub * e if not has_layers else 0
    leaves = int(acts.leaf.sum(where=attn_layers)) if acts.leaf is not None else 0
    held = int(acts.held.max(initial=0, where=attn_layers)) if acts.held is not None else 0
    if role.gpu:
        f32 = cfg.f32_mask and cfg.flash_attn
        return _gpu_layout(acts, attn_layers, masks, role, f32, peak, logits, n_outputs * e) + (
            inputs + leaves + held
        )
    if has_output and role.embeds:
        logits = _cpu_logits_phase(spec, cfg, n_outputs, logits)
    return sum(m for m, _ in masks) + max(peak, logits) + inputs + leaves + held


def _mixed_rows(spec: ModelSpec, cfg: CacheConfig) -> bool:
    """Whether `build_inp_embd` builds the mixed-batch path (the pinned build's four embedding rows,
    `engines/builds.py`, in an architecture that has it)."""
    return cfg.embd_rows >= 4 and rules(spec.arch).mixed_batch


def _input_row_holes(spec: ModelSpec, cfg: CacheConfig) -> int:
    """Bytes of the rows `build_inp_embd` frees below the mixed copy that stays live (the mixed input
    and the token rows gathered for it, `family.input_rows`): holes that no tensor wider than a row
    can take, so on the device that ran it the generic FFN sits above them (measured: full-size
    llama-3.1-8b and qwen3.5-9b llama-server -np 4, 16 MiB each at -ub 512;
    tests/data/fullsize-server-compute.json)."""
    if not _mixed_rows(spec, cfg):
        return 0
    rows = input_rows(4 * context(spec, cfg).n_ubatch * spec.n_embd)
    dead = {name for node in rows for name in node.frees}
    return sum(node.nbytes for node in rows if node.name in dead)


def _cpu_logits_phase(spec: ModelSpec, cfg: CacheConfig, n_outputs: int, logits: int) -> int:
    """The logits phase of a device that also ran `build_inp_embd` (the CPU of a CPU-only run): with
    the mixed-batch path (the pinned build's four embedding rows, `engines/builds.py`) the output norm
    rows and the logits are placed above the five rows of n_ubatch tokens the input phase left, the
    highest of which (the mixed copy a set_rows view keeps alive) is never freed, so logits larger
    than the holes below it start above it (`family.input_rows`, replayed through ggml-alloc).
    Measured on full-size dry runs of llama, qwen3moe, gemma3, qwen35, qwen35moe and qwen3next
    (tests/data/logits-phase-compute.json); otherwise `logits`."""
    if not _mixed_rows(spec, cfg):
        return logits
    row = 4 * context(spec, cfg).n_ubatch * spec.n_embd
    out = [
        GraphNode("result_norm", 4 * n_outputs * spec.n_embd),
        GraphNode("logits", 4 * n_outputs * spec.n_vocab),
    ]
    return peak_bytes([*input_rows(row), *out])


def _layers_peak(
    spec: ModelSpec,
    cfg: CacheConfig,
    acts: "_Activations",
    attn_layers: NDArray[np.bool_],
    ffn_layers: NDArray[np.bool_],
    copy_phase: int,
    embeds: bool = False,
) -> int:
    """The largest layer's live activations on this device (module docstring); `embeds`: the device
    ran `build_inp_embd` and holds its rows in the same buffer (not the host of a GPU run, which
    counts them among its held inputs)."""
    ub = context(spec, cfg).n_ubatch
    e = spec.n_embd
    attn = acts.attn_embeds if embeds and acts.attn_embeds is not None else acts.attn
    ffn = acts.ffn_embeds if embeds and acts.ffn_embeds is not None else acts.ffn
    layers_peak = max(
        4 * ub * e,
        int(attn.max(initial=0, where=attn_layers)),
        int(ffn.max(initial=0, where=ffn_layers)),
        copy_phase,
    )
    peak = layers_peak
    if spec.n_embd_per_layer and bool(attn_layers.any() or ffn_layers.any()):
        # Gemma 3n/4 per-layer inputs, F32 {ple * n_layer, n_tokens}: held through every layer, and
        # about four of them live while layer 0's device projects them (per_layer_model_proj sits with
        # layer 0); measured on CPU: 4 of them + 5 F32 rows of n_embd per token.
        ple = 4 * ub * spec.n_embd_per_layer * spec.n_layer
        peak = max(peak, layers_peak + ple, 4 * ple + 20 * ub * e if attn_layers[0] else 0)
    return peak


def _gpu_layout(
    acts: "_Activations",
    attn_layers: NDArray[np.bool_],
    masks: list[tuple[int, int]],
    role: DeviceRole,
    f32_mask: bool,
    peak: int,
    logits: int,
    out_rows: int,
) -> int:
    """A GPU's compute buffer as ggml-alloc lays out its graph (`engines/ggml_alloc.py`): the masks'
    copies at the start of its first split, the largest layer, the masks freed after its last layer
    (kept with pipeline parallelism), then the output rows and the logits. Before #23764 a mask is
    copied in as F32 to the GPU of the first layer that reads it and cast to F16 there, inside that
    layer (whose activations are live then); the other GPUs receive the F16 cast."""
    a = Allocator(role.max_chunk)
    casts = [i for i, (_, first) in enumerate(masks) if f32_mask and attn_layers[first]]
    for i in casts:
        a.alloc(f"f32_{i}", 2 * masks[i][0])  # the F16-sized mask's F32 input, copied in
    if casts:
        a.alloc("cast_acts", int(acts.attn[masks[casts[0]][1]]))
    for i, (m, _) in enumerate(masks):
        a.alloc(f"mask{i}", m)
    a.free("cast_acts")
    for i in casts:
        a.free(f"f32_{i}")
    a.alloc("layer", peak)
    a.free("layer")
    if not role.inputs_kept:
        for i in range(len(masks)):
            a.free(f"mask{i}")
    if logits:
        a.alloc("rows", 8 * out_rows)  # the output rows' get_rows and norm, F32
        a.alloc("logits", logits - 8 * out_rows)
    return a.size


@dataclass(frozen=True, eq=False)
class MemoryPlan:
    devices: tuple[DeviceMemory, ...]
    n_ctx: int
    n_ubatch: int
    repack: bool
    table: TensorTable
    assignment: NDArray[np.int64]  # per tensor row: index into `devices`; len(devices) = not loaded
    # The output layer's device, which runs the output matmul (its tied copy of token_embd included):
    # found by layer index, since not every architecture names its output norm `output_norm` (LFM2
    # writes `token_embd_norm`, qwen4exp has none).
    output_device: str

    def device(self, name: str) -> DeviceMemory:
        return next(d for d in self.devices if d.device == name)

    def tensors_on(self, name: str) -> list[str]:
        i = next(k for k, d in enumerate(self.devices) if d.device == name)
        return [self.table.names[r] for r in np.flatnonzero(self.assignment == i)]


def plan_memory(
    inv: Inventory,
    w: Weights,
    cfg: CacheConfig,
    placement: Placement | None = None,
    gpus: tuple[str, ...] = (),
    frontend: Frontend | None = None,
    repack: bool | None = None,
    load_mtp: bool = False,
    *,
    op_offload: bool = True,
    free: tuple[int, ...] = (),
    output_first: bool = True,
    cuda_row_split: bool = False,
) -> MemoryPlan:
    """Bytes per device for this model, runtime config and placement. `load_mtp`: the MTP layers'
    weights are loaded too (MTP drafting). The GPUs' backend comes from their names (CUDA0, Vulkan0,
    MTL0, RPC0 ...; `gpu_backends.py`); `op_offload` False is `--no-op-offload`; `free`: each GPU's
    free memory, which splits the layers when -ts is absent; `output_first`: see `layer_devices`;
    `cuda_row_split`: the build still has CUDA's split buffer type (`-sm row`, `engines/builds.py`)."""
    p = placement or Placement()
    fe = frontend or Frontend()
    spec = inv.spec
    gpus, free = listed_devices(p, gpus, free)
    # -sm none: the main GPU only (llama.cpp's model loader drops the other devices, `llama.cpp`
    # llama_model_load_from_splits); the others stay in the table with nothing on them.
    layer_gpus = gpus[:1] if p.split_mode == "none" else gpus
    if p.split_mode == "row":
        _check_row_split(gpus, cuda_row_split)
    devs = layer_devices(inv.block_count, layer_gpus, p, free[: len(layer_gpus)], output_first)
    backends = [backend_of_device(g) for g in gpus]
    gpu_backend = backends[0] if backends and backends[0] is not None and backends[0].name != "RPC" else None
    # A GPU backend's pinned host buffer type takes precedence over CPU_REPACK; RPC devices have none.
    repack = all(g.startswith("RPC") for g in gpus) if repack is None else repack
    names = [CPU, *gpus, REPACK] if repack else [CPU, *gpus]
    index = {n: i for i, n in enumerate(names)}
    for _, buft in p.overrides:
        if buft not in index or buft == REPACK:
            raise MoeplanError(f"-ot buffer type '{buft}' is unknown; available: {', '.join([CPU, *gpus])}")
    table = tensor_table(w)
    cols = _layout_columns(table.layout, spec.n_layer, inv.block_count)
    slot_device = np.array([index[d] for d in [*devs, CPU]], dtype=np.int64)
    assign = slot_device[cols.slot]
    for rule, buft in reversed(p.overrides):  # applied last to first: the first match wins
        assign = np.where(_rule_mask(table.layout, rule), index[buft], assign)
    if repack:
        assign = np.where((assign == index[CPU]) & _repackable(table, cols), index[REPACK], assign)
    assign = np.where(cols.loaded | load_mtp, assign, len(names))
    weights: NDArray[np.float64] = np.bincount(assign, weights=table.nbytes, minlength=len(names) + 1).astype(
        np.float64
    )
    if p.split_mode == "row" and len(gpus) > 1:
        weights = _row_split(table, assign, weights, [index[g] for g in gpus], p.tensor_split or free)
    mem = {n: DeviceMemory(n, weights_bytes=round(weights[i])) for i, n in enumerate(names)}
    output_dev = devs[-1]
    if spec.tied_embeddings and output_dev != CPU:
        embd = table.row("token_embd.weight")
        mem[output_dev].weights_bytes += round(table.nbytes[embd])  # the output layer's tied copy
    acts = _activations(spec, cfg)
    layer_dev = slot_device[acts.index]
    kv_dev = np.where(acts.state == 0, index[CPU], layer_dev) if p.no_kv_offload else layer_dev
    state_dev = np.full_like(layer_dev, index[CPU]) if p.no_kv_offload else layer_dev
    kv = np.bincount(kv_dev, weights=acts.kv, minlength=len(names)).tolist()
    state = np.bincount(state_dev, weights=acts.state, minlength=len(names)).tolist()
    for i, n in enumerate(names):
        mem[n].kv_bytes += round(kv[i])
        mem[n].state_bytes += round(state[i])
    for lm in mtp_trunk_memory(spec, inv.mtp_kept, cfg):  # on its block's device, like a layer's
        mem[CPU if p.no_kv_offload else names[slot_device[lm.layer]]].kv_bytes += lm.k_bytes + lm.v_bytes
    ctx = context(spec, cfg)
    n_out = min(ctx.n_ubatch, fe.n_outputs_max or ctx.n_batch)
    # Attention runs on its layer's device; the FFN where its down projection lives (a repacked
    # one on the CPU).
    attn_dev = slot_device[: spec.n_layer]
    ffn_dev = np.where(cols.ffn_row >= 0, assign[cols.ffn_row], -1)
    if repack:
        ffn_dev = np.where(ffn_dev == index[REPACK], index[CPU], ffn_dev)
    offload = _Offload()
    if gpu_backend is not None and gpu_backend.op_offload and op_offload:
        offload = _offload(spec, table, assign, index[CPU], acts, ctx.n_ubatch, n_out, output_dev == CPU)
    main = gpus[0] if gpus else CPU
    # Pipeline parallelism (`llama_context` ctor: several devices, every layer offloaded, split mode
    # layer, KV offloaded, no -ot): split inputs are flagged outputs (`ggml_backend_sched_split_graph`,
    # n_copies > 1), so a GPU's mask copies live to the end of the graph, beside the logits.
    layered = p.split_mode == "layer"
    pipeline = len(gpus) > 1 and layered and CPU not in devs and not p.overrides and not p.no_kv_offload
    inputs_on_host = gpu_backend is not None and gpu_backend.graph_inputs_on_host
    gpu_role = DeviceRole(
        gpu=inputs_on_host,
        embeds=False,
        inputs_kept=pipeline,
        max_chunk=gpu_backend.max_buffer_bytes if gpu_backend is not None and cfg.galloc_chunks else 0,
    )
    # With op offload at this micro-batch the GPUs run the host's matmuls; a host without attention
    # layers then computes only the input embeddings, and the expert bias adds a backend's offload_op
    # does not take (`_host_adds`).
    offloading = gpu_backend is not None and gpu_backend.op_offload and op_offload
    host_idle = (
        bool(offloading and ctx.n_ubatch >= OP_OFFLOAD_MIN_BATCH and not (attn_dev == index[CPU]).any())
        and inputs_on_host
    )
    adds_stay = gpu_backend is not None and not gpu_backend.offloads_host_adds(cfg.vk_row_batch)
    host_adds = _host_adds(spec, table, assign == index[CPU], ctx.n_ubatch) if host_idle and adds_stay else 0
    host_role = DeviceRole(host=inputs_on_host, host_idle=host_idle, host_adds=host_adds)
    for name in [CPU, *gpus]:
        i = index[name]
        on_main = name == main and gpu_backend is not None
        logits_here = output_dev == name and not (name == CPU and offload.logits)
        mem[name].compute_bytes = compute_bytes(
            spec,
            cfg,
            n_out,
            logits_here,
            attn_dev == i,
            ffn_dev == i,
            gpu_role if name != CPU else host_role,
            copy_phase=offload.phase if on_main else 0,
        )
        if on_main and offload.logits:  # the host's output matmul, its weight copied in
            logits = 4 * n_out * spec.n_vocab + 8 * n_out * spec.n_embd
            mem[name].compute_bytes = max(mem[name].compute_bytes, offload.logits + logits)
        if on_main:
            mem[name].offload_copy_bytes = max(offload.copy, offload.logits)
    if gpu_backend is not None:
        for name in layer_gpus:  # -sm none: llama_context makes a backend for the model's devices only
            mem[name].runtime_bytes = gpu_backend.runtime_bytes
        if gpu_backend.maps_whole_file and mem[main].weights_bytes:
            # Metal: the mapped buffer spans the file's tensors, the host's included (module docstring
            # of gpu_backends.py); unified memory holds those pages once.
            mem[main].weights_bytes += round(weights[index[CPU]])
    mem[CPU].output_bytes = 4 * spec.n_vocab * cfg.n_seq  # logits of one output per sequence, host memory
    mem[CPU].checkpoint_bytes = checkpoints_host_bytes(spec, cfg, fe.n_ctx_checkpoints)
    mem[CPU].prompt_cache_bytes = prompt_cache_bytes(spec, cfg, fe.cache_ram_mib, inv.mtp_kept)
    return MemoryPlan(tuple(mem.values()), ctx.n_ctx, ctx.n_ubatch, repack, table, assign, output_dev)


# Backends whose registry still offers `ggml_backend_split_buffer_type` in the pinned build (grep of
# ggml/src: ggml-sycl.cpp; ggml-cuda.cu dropped it in #24216, Vulkan and Metal never had one).
_ROW_SPLIT_ALWAYS = ("SYCL",)
_ROW_SPLIT_UNTIL_24216 = ("CUDA", "ROCm")


def _check_row_split(gpus: tuple[str, ...], cuda_row_split: bool) -> None:
    """-sm row needs a split buffer type on every GPU (`make_gpu_buft_list` in llama-model.cpp throws
    "device ... does not support split buffers" otherwise)."""
    for g in gpus:
        b = backend_of_device(g)
        name = b.name if b is not None else g
        if name in _ROW_SPLIT_ALWAYS or (name in _ROW_SPLIT_UNTIL_24216 and cuda_row_split):
            continue
        why = (
            "CUDA/ROCm lost it in ggml-org/llama.cpp#24216 ('CUDA: remove -sm row', June 2026; give "
            "--llamacpp-build of an older build to plan one)"
            if name in _ROW_SPLIT_UNTIL_24216
            else f"the {name} backend has none"
        )
        raise MoeplanError(
            f"-sm row needs a split buffer type on {g} and {why}: llama.cpp stops with 'device {g} does "
            "not support split buffers'; use -sm layer (the default)"
        )


def _row_split(
    table: TensorTable,
    assign: NDArray[np.int64],
    weights: NDArray[np.float64],
    gpu_index: list[int],
    shares: tuple[float, ...] | tuple[int, ...],
) -> NDArray[np.float64]:
    """-sm row (`make_gpu_buft_list`, CUDA's split buffer type before #24216): every 2-D weight matrix
    of a layer on a GPU goes to the split buffer, whose rows are spread over all GPUs by -ts (the
    free memory without it); 3-D expert stacks cannot be split (#13919) and stay with their layer, as do
    norms, biases and the KV cache (#10026: split by layer). Rows are split at multiples of the
    matmul tile (ggml-cuda get_row_rounding), which moves at most a tile of rows per tensor."""
    share = np.array([float(x) for x in shares][: len(gpu_index)] or [1.0] * len(gpu_index))
    if share.size < len(gpu_index) or not share.sum():
        share = np.ones(len(gpu_index))
    share = share / share.sum()
    two_d = np.array([len(t.shape) == 2 and t.role is not Role.EMBED for t in table.layout.specs])
    split = two_d & np.isin(assign, gpu_index)
    out = weights.copy()
    moved = np.bincount(assign[split], weights=table.nbytes[split], minlength=weights.size)
    out -= moved
    total = float(table.nbytes[split].sum())
    for k, i in enumerate(gpu_index):
        out[i] += total * share[k]
    return out


_EXPERT_BIAS = re.compile(r"\.ffn_(gate_up|gate|up|down)_exps\.bias$")


def _host_adds(spec: ModelSpec, table: TensorTable, on_host: NDArray[np.bool_], n_ubatch: int) -> int:
    """The host's bytes while it adds the expert biases its GPU backend does not take (`gpu_backends.py`):
    each ADD_ID ({width, n_expert_used, n_tokens} F32, `build_moe_ffn`) runs in place on the host's
    copy of its matmul's output (ggml-alloc `ggml_op_can_inplace`), and the biased up projection waits
    there for the gate's before both go back for the activation: gate + up widths, or down's alone."""
    kinds: dict[int, set[str]] = {}
    for i in np.flatnonzero(on_host & (table.layer >= 0) & (table.layer < spec.n_layer)):
        m = _EXPERT_BIAS.search(table.names[i])
        if m:
            kinds.setdefault(int(table.layer[i]), set()).add(m.group(1))
    peak = 0
    for il, ks in kinds.items():
        ffn = spec.layers[il].ffn
        width = {"gate_up": 2 * ffn.n_ff_exp, "gate": ffn.n_ff_exp, "up": ffn.n_ff_exp}
        down = (ffn.n_latent or spec.n_embd) if "down" in ks else 0
        per_token = max(sum(width.get(k, 0) for k in ks), down)
        peak = max(peak, 4 * per_token * ffn.n_expert_used * n_ubatch)
    return peak


@dataclass(frozen=True)
class _Offload:
    copy: int = 0  # the largest host weight a GPU runs its op with (a layer's)
    phase: int = 0  # that copy plus the activations of its op
    logits: int = 0  # the host's output weight, when its matmul is offloaded too (0: it is not)


def _offload(
    spec: ModelSpec,
    table: TensorTable,
    assign: NDArray[np.int64],
    cpu: int,
    acts: _Activations,
    n_ubatch: int,
    n_out: int,
    output_on_cpu: bool,
) -> _Offload:
    """Op offload to the main GPU (`gpu_backends.py`): every matmul whose weight is in host memory and
    whose batch reaches OP_OFFLOAD_MIN_BATCH runs there, one weight copy at a time. Layer weights see
    the micro-batch; the output matmul sees the reserved outputs; token_embd is read by GET_ROWS."""
    on_host = (assign == cpu) & table.layout.matrix & ~table.role_is(Role.EMBED)
    copy = phase = logits = 0
    if n_ubatch >= OP_OFFLOAD_MIN_BATCH:
        rows = np.flatnonzero(on_host & (table.layer >= 0) & (table.layer < spec.n_layer))
        if rows.size:
            layer = table.layer[rows]
            ffn = table.role_is(Role.EXPERT, Role.SHARED_EXPERT, Role.DENSE_FFN, Role.ROUTER)[rows]
            act_of = np.where(ffn, acts.ffn[layer], acts.attn[layer])
            k = int(np.argmax(table.nbytes[rows] + act_of))
            copy, phase = round(table.nbytes[rows[k]]), round(table.nbytes[rows[k]] + act_of[k])
    if output_on_cpu and n_out >= OP_OFFLOAD_MIN_BATCH:
        out = table.row("output.weight", "token_embd.weight")  # tied: the output matmul reads token_embd
        logits = round(table.nbytes[out]) if out >= 0 else 0
    return _Offload(copy, phase, logits)


def render_command(
    model_file: str,
    ctx: int,
    placement_flags: str,
    *,
    n_seq: int = 1,
    flash_attn: bool = True,
    cache_k: str = "f16",
    cache_v: str = "f16",
    n_ubatch: int = 512,
    binary: str = "llama-server",
    op_offload: bool = True,
    ctx_checkpoints: int | None = None,
    cache_ram: int | None = None,
) -> str:
    """The exact command line for a plan (llama-server unless told otherwise); `ctx_checkpoints`,
    `cache_ram`: llama-server's --ctx-checkpoints and --cache-ram where the plan sets them (None:
    the server's default)."""
    parts = [binary, "-m", shlex.quote(model_file), "-c", str(ctx), placement_flags.strip()]
    parts += ["-fa", "on" if flash_attn else "off"]
    if not op_offload:
        parts.append("--no-op-offload")
    if (cache_k, cache_v) != ("f16", "f16"):
        parts += ["-ctk", cache_k, "-ctv", cache_v]
    if n_ubatch != 512:  # llama.cpp's default micro-batch (common/common.h n_ubatch)
        parts += ["-ub", str(n_ubatch)]
    if binary == "llama-server":
        parts += ["-np", str(n_seq), "--jinja"]
        parts += ["--ctx-checkpoints", str(ctx_checkpoints)] if ctx_checkpoints is not None else []
        parts += ["--cache-ram", str(cache_ram)] if cache_ram is not None else []
    return " ".join(p for p in parts if p)
