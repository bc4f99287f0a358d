"""Write a scaled-down GGUF with random weights from any moeplan ModelSpec.

The point is that llama.cpp's own loader checks moeplan's tensor inventory: every tensor name and
shape in the file comes from `moeplan.arch.inventory.inventory()` applied to the shrunk spec, and
llama.cpp refuses a file with a missing, extra or misshapen tensor ("wrong number of tensors",
"tensor ... has wrong shape").

What is kept from the real model: the architecture, the layer count and every layer's kind
(attention kind, dense/MoE FFN, the MTP blocks the converter keeps), the expert count and experts
per token, the GQA ratio, tied embeddings and the arch flags (biases, q/k norms, rope_freqs), the
KV-sharing layers and the per-layer embedding width (Gemma 4).
What shrinks (`shrink`):
- widths (n_embd, dense and expert FFN widths) become 256 plus the real width's remainder modulo
  256, so a width that is a multiple of 256 becomes 256 and one that is not (gpt-oss 2880,
  gemma-3-270m 640) keeps that property — llama-quantize's row-size fallbacks depend on it;
- heads: one KV head (two for MHA) with the real GQA ratio (none where the real layer has none:
  two query heads for deci's linear stand-in, else none), head size 64/128/256 so that
  n_head * head_dim is a multiple of 256 (unequal K and V head sizes stay as they are; layers with
  one real head size but different head counts keep one size, the largest they need);
  MLA: 4 heads, ranks 256, nope 64, rope 32, v 64, and a DSA indexer at most 4 heads of its real key width;
  DeepSeek-V4: 8 heads of the real (cached) head size, q and output ranks 256 in 2 output groups, the
  indexer at most 4 heads of its real key width;
  Gated DeltaNet: 2 key heads of 128 with the real value/key head ratio;
  widths llama.cpp takes from the rest of the model stay tied to it (`_tied`: Kimi's KDA heads =
  attention heads, LFM2's short convolution = n_embd, MiniMax-M3's MSA indexer heads = KV heads);
- the vocabulary becomes 512 tokens of llama.cpp's "test" tokenizer (as tests/test-llama-archs.cpp).

Size: MoE models keep all their experts (256 x 61 layers for DeepSeek, 512 x 60 for Qwen3.5-397B),
so their expert stacks alone are several GB. Expert stacks are therefore written as holes (a seek,
no bytes: the file is sparse and reads back as zeros, valid F16/MXFP4) whenever they would exceed
`EXPERT_BYTES_BUDGET`; everything else gets random values. On disk every model takes at most a few
tens of MB; `llama-fit-params` and `llama-quantize --dry-run` never read the data anyway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFValueType, GGUFWriter

from moeplan.arch.inventory import Inventory, TensorSpec, inventory
from moeplan.arch.registry import family
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec, NgramEmbedding
from moeplan.quant.ggml import GGMLType, tensor_bytes

# bump to invalidate cached files when the writer or a family's tensors change (2: glm4moe's nextn
# embedding and head copies, which the spec-keyed cache cannot see)
FORMAT_VERSION = 2
N_VOCAB = 512
WIDTH = 256
EXPERT_BYTES_BUDGET = 64 * 1024 * 1024
ALIGNMENT = 32  # GGUF default data alignment
SOURCE_TYPE = GGMLType.F16  # the "--outtype" of the materialised file


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "moeplan" / "materialized"
    return Path(os.environ.get("MOEPLAN_MATERIALIZED_CACHE", default))


# ------------------------------------------------------------------------------------------------
# shrinking


def _width(w: int, width: int = WIDTH) -> int:
    """`width` (256) plus the remainder of the real width modulo it (0 stays 0)."""
    return 0 if w == 0 else width + w % width


def _head_dim(n_head: int) -> int:
    """The smallest of 64/128/256 that makes n_head * head_dim a multiple of 256."""
    for hd in (64, 128, 256):
        if n_head * hd % WIDTH == 0:
            return hd
    return 256


def _shrink_attn(a: Attention) -> Attention:
    if a.kind is AttnKind.NONE:  # an FFN-only block stays one
        return a
    if a.kind is AttnKind.MLA:
        kv_lora, rope, nope = 256, 32, 64
        return dataclasses.replace(
            a,
            n_head=4,
            n_head_kv=1,
            head_dim_k=kv_lora + rope,
            head_dim_v=kv_lora,
            q_lora_rank=256 if a.q_lora_rank else 0,
            kv_lora_rank=kv_lora,
            qk_nope_head_dim=nope,
            qk_rope_head_dim=rope,
            mla_v_head_dim=64,
            indexer_heads=min(a.indexer_heads, 4),  # DSA: the indexer key width stays (its cache)
        )
    if a.shared_kv:  # DeepSeek-V4: the cached key width (head_dim, rope part) stays real
        return dataclasses.replace(
            a,
            n_head=8,
            q_lora_rank=256,
            o_groups=2,
            o_lora_rank=256,
            indexer_heads=min(a.indexer_heads, 4),  # the indexer key width stays (its caches)
        )
    if a.kind is AttnKind.LINEAR:
        ratio = max(1, a.linear_v_heads // max(1, a.linear_k_heads))
        return dataclasses.replace(
            a,
            linear_k_heads=2,
            linear_v_heads=2 * ratio,
            linear_k_head_dim=128,
            linear_v_head_dim=128,
        )
    if not a.n_head_kv:  # no KV heads (deci's blocks without attention, or its linear stand-in): none
        n_head = 2 if a.n_head else 0
        return dataclasses.replace(a, n_head=n_head, head_dim_k=_head_dim(2), head_dim_v=_head_dim(2))
    gqa = max(1, a.n_head // a.n_head_kv)
    n_head_kv = 1 if gqa > 1 else 2
    n_head = gqa * n_head_kv
    if a.head_dim_v != a.head_dim_k:  # unequal K and V head sizes (MiMo-V2 192/128) stay real
        return dataclasses.replace(a, n_head=n_head, n_head_kv=n_head_kv)
    hd = _head_dim(n_head)
    return dataclasses.replace(a, n_head=n_head, n_head_kv=n_head_kv, head_dim_k=hd, head_dim_v=hd)


def _shrink_ffn(f: FFN, width: int) -> FFN:
    if f.kind is FFNKind.NONE:
        return f
    if f.kind is FFNKind.DENSE:
        return dataclasses.replace(f, n_ff=_width(f.n_ff, width))
    n_ff_exp = _width(f.n_ff_exp, width)
    shexp = 0
    if f.n_ff_shexp:
        # keep "shared width = n_shared x expert width" where the real model has it
        per = f.n_ff_shexp // f.n_shared if f.n_shared and f.n_ff_shexp % f.n_shared == 0 else f.n_ff_shexp
        shexp = (n_ff_exp if per == f.n_ff_exp else _width(per, width)) * max(1, f.n_shared)
    return dataclasses.replace(
        f, n_ff=_width(f.n_ff, width), n_ff_exp=n_ff_exp, n_ff_shexp=shexp, n_latent=_width(f.n_latent, width)
    )


def _shrink_layer(la: Layer, width: int) -> Layer:
    return Layer(_shrink_attn(la.attn), _shrink_ffn(la.ffn, width))


def _tied(small: Layer, real: Layer, n_head: int, n_embd: int) -> Layer:
    """Layers whose width llama.cpp takes from the model keep that tie when shrunk: a linear layer
    with `n_head` set runs on the model's attention heads (Kimi's KDA reads `head_count`), a short
    convolution (`conv_channels`) convolves all n_embd channels (LFM2), an MSA indexer has one head
    per KV head and keeps V of head_dim_v (MiniMax-M3)."""
    a = real.attn
    if a.indexer_v_dim:  # MiniMax MSA: one indexer head per KV head, its cache's V is head_dim_v
        s = small.attn
        return Layer(dataclasses.replace(s, indexer_heads=s.n_head_kv, indexer_v_dim=s.head_dim_v), small.ffn)
    if a.kind is not AttnKind.LINEAR:
        return small
    if a.conv_channels:
        return Layer(dataclasses.replace(a, conv_channels=n_embd), small.ffn)
    if a.n_head:
        heads = {"n_head": n_head, "linear_k_heads": n_head, "linear_v_heads": n_head}
        return Layer(dataclasses.replace(small.attn, **heads), small.ffn)
    return small


def _common_head_dim(small: tuple[Layer, ...], real: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Where the real model's GQA layers share one head size but differ in head count (Laguna: 48
    query heads on full layers, 64 on sliding ones), llama.cpp reads that one size from
    `attention.key_length` for every layer: the shrunk layers keep one size too, the largest any of
    them needs (a head size that makes n_head x head_dim a multiple of 256 also does when doubled)."""

    def gqa(la: Layer) -> bool:
        a = la.attn
        return a.kind in (AttnKind.FULL, AttnKind.SWA, AttnKind.CHUNKED) and not a.shared_kv

    sizes = {(la.attn.head_dim_k, la.attn.head_dim_v) for la in real if gqa(la)}
    if len(sizes) != 1 or len({la.attn.head_dim_k for la in small if gqa(la)}) < 2:
        return small
    hd = max(la.attn.head_dim_k for la in small if gqa(la))
    return tuple(
        Layer(dataclasses.replace(la.attn, head_dim_k=hd, head_dim_v=hd), la.ffn) if gqa(la) else la
        for la in small
    )


def _distinct_mla(small: tuple[Layer, ...], real: tuple[Layer, ...]) -> tuple[Layer, ...]:
    """Where the real model's MLA layers come in two geometries (dots3note: full DSA layers and
    sliding ones), llama.cpp reads each from its own keys (`kv_lora_rank` / `_swa`, `key_length_mla`
    / `_swa`, per-layer `head_count`): the shrunk layers keep them apart, the wider real latent, nope,
    value and head count each getting twice the shrunk width, so a swapped key cannot load."""
    mla = [i for i, la in enumerate(real) if la.attn.kind is AttnKind.MLA]
    fields = ("kv_lora_rank", "qk_nope_head_dim", "mla_v_head_dim", "n_head")
    if len({tuple(getattr(real[i].attn, f) for f in fields) for i in mla}) < 2:
        return small
    narrowest = {f: min(getattr(real[i].attn, f) for i in mla) for f in fields}
    out = list(small)
    for i in mla:
        r, s = real[i].attn, small[i].attn
        w = {f: getattr(s, f) * (2 if getattr(r, f) > narrowest[f] else 1) for f in fields}
        kv = w["kv_lora_rank"]
        a = dataclasses.replace(s, **w, head_dim_k=kv + s.qk_rope_head_dim, head_dim_v=kv)
        out[i] = Layer(a, small[i].ffn)
    return tuple(out)


def _whole_heads(n_embd: int, small: tuple[Layer, ...]) -> int:
    """Where the query rows are n_embd wide, n_embd must split into whole heads: the smallest multiple
    of the shrunk width that every layer's query head count divides (OLMo-2-32B: 5 query heads per KV
    head, so 256 becomes 1280, heads of 256); a multiple keeps the width's remainder modulo 256."""
    heads = {la.attn.n_head for la in small if la.attn.kind is not AttnKind.NONE and la.attn.n_head}
    k = 1
    while any(n_embd * k % h for h in heads):
        k += 1
    return n_embd * k


def _query_width(small: Layer, n_embd: int) -> Layer:
    """Where llama.cpp sizes the query rows as n_embd (bailingmoe2's fused QKV), a shrunk attention
    layer keeps n_head x head_dim = n_embd: its heads narrow to n_embd / n_head (Ling-1T: 8 x 32)."""
    a = small.attn
    if a.kind is AttnKind.NONE or a.n_head * a.head_dim_k == n_embd:
        return small
    hd = n_embd // a.n_head
    return Layer(dataclasses.replace(a, head_dim_k=hd, head_dim_v=hd), small.ffn)


def _ssm_inner(small: Layer, ratio: int, n_embd: int) -> Layer:
    """Where llama.cpp requires d_inner = ratio x n_embd (Granite-4.0-H), a shrunk Mamba-2 layer
    keeps that tie: as many value heads of its (shrunk) head size as the width needs."""
    a = small.attn
    if not ratio or a.kind is not AttnKind.LINEAR:
        return small
    return Layer(dataclasses.replace(a, linear_v_heads=ratio * n_embd // a.linear_v_head_dim), small.ffn)


def _shrink_ngram(ple: NgramEmbedding | None, n_embd: int) -> NgramEmbedding | None:
    """The n-gram heads keep their count; their rows narrow so that together they stay n_embd wide
    (qwen4exp's `ple_value` is n_embd x n_embd), 64 rows a head, the hash ids inside the vocabulary."""
    if ple is None:
        return None
    return dataclasses.replace(
        ple,
        head_dim=n_embd // ple.n_heads,
        rows=64 * ple.n_heads,
        eos_token_id=N_VOCAB - 1,
        image_token_id=-1,
    )


def shrink(spec: ModelSpec, width: int = WIDTH, ffn_width: int | None = None) -> ModelSpec:
    """The same model, narrow: see the module docstring for what is kept and what shrinks.
    `width`: the base of the embedding and FFN widths (a wider model outgrows the CPU caches);
    `ffn_width`: a different base for the FFN widths alone (many short rows per layer)."""
    ffn = ffn_width or width
    n_embd = _width(spec.n_embd, width)
    if spec.ngram_embedding is not None:  # each n-gram head keeps whole 32-blocks per row (qwen4exp)
        n_embd = max(n_embd, 32 * spec.ngram_embedding.n_heads)
    real = spec.layers + spec.mtp_layers
    blocks = _distinct_mla(_common_head_dim(tuple(_shrink_layer(la, ffn) for la in real), real), real)
    layers, mtp = blocks[: spec.n_layer], blocks[spec.n_layer :]
    n_head = next((la.attn.n_head for la in layers if la.attn.kind is not AttnKind.LINEAR), 0)
    ratio = family(spec.arch).ssm_inner_per_embd
    layers, mtp = (tuple(_ssm_inner(la, ratio, n_embd) for la in group) for group in (layers, mtp))
    if family(spec.arch).query_width_is_embd:
        n_embd = _whole_heads(n_embd, layers + mtp)
        layers, mtp = (tuple(_query_width(la, n_embd) for la in group) for group in (layers, mtp))
    return dataclasses.replace(
        spec,
        name=f"{spec.name} (materialised)",
        n_embd=n_embd,
        n_vocab=N_VOCAB,
        ngram_embedding=_shrink_ngram(spec.ngram_embedding, n_embd),
        layers=tuple(_tied(s, r, n_head, n_embd) for s, r in zip(layers, spec.layers, strict=True)),
        mtp_layers=tuple(_tied(s, r, n_head, n_embd) for s, r in zip(mtp, spec.mtp_layers, strict=True)),
        context_length=min(spec.context_length or 4096, 131072),
    )


# ------------------------------------------------------------------------------------------------
# metadata


def metadata(inv: Inventory) -> dict[str, object]:
    """The GGUF key/values llama.cpp reads for the spec's architecture (`<arch>.` keys abbreviated
    with a leading dot): the family's own keys, then the test tokenizer and general keys."""
    spec = inv.spec
    kv: dict[str, object] = dict(family(spec.arch).gguf_metadata(inv))
    kv["tokenizer.ggml.model"] = "test"
    kv["tokenizer.ggml.tokens"] = [f"tok_{i}" for i in range(spec.n_vocab)]
    kv["tokenizer.ggml.scores"] = [0.0] * spec.n_vocab
    kv["general.name"] = _vocab_safe_name(spec.name, spec.arch)
    kv["general.file_type"] = 1  # LLAMA_FTYPE_MOSTLY_F16
    return kv


# llama_vocab::impl::load sets token attributes by general.name: a name containing one of these
# looks up tokens ("</s>", "<unk>", "<s>", "<|endoftext|>", "[MASK]") that the test vocabulary lacks
# and aborts ("unordered_map::at"); such a model's file is named after its architecture instead.
_NAME_KEYED_VOCAB_RULES = ("phi-3", "phi3", "modern-bert")


def _vocab_safe_name(name: str, arch: str) -> str:
    lowered = name.lower()
    return f"{arch} (materialised)" if any(r in lowered for r in _NAME_KEYED_VOCAB_RULES) else name


def _add_kv(w: GGUFWriter, arch: str, key: str, value: object, *, u64: bool = False) -> None:
    """`u64`: an integer array the loader reads as uint64 (the family's `u64_keys`)."""
    k = arch + key if key.startswith(".") else key
    if u64 and isinstance(value, list):
        w.add_key_value(k, value, GGUFValueType.ARRAY, GGUFValueType.UINT64)
    elif isinstance(value, bool):
        w.add_bool(k, value)
    elif isinstance(value, int):
        w.add_uint32(k, value)
    elif isinstance(value, float):
        w.add_float32(k, value)
    elif isinstance(value, str):
        w.add_string(k, value)
    elif isinstance(value, list):
        w.add_array(k, value)
    else:
        raise TypeError(f"unsupported metadata value for {k}: {value!r}")


# ------------------------------------------------------------------------------------------------
# tensor data


def stored_type(t: TensorSpec) -> GGMLType:
    return t.stored if t.stored is not None else SOURCE_TYPE  # F32 is 0: not `or`


def _is_hole(t: TensorSpec, holes: bool) -> bool:
    """Routed-expert stacks (also those of MTP blocks) are the tensors that may be holes."""
    return holes and len(t.shape) == 3 and "_exps." in t.name


def _data(t: TensorSpec, rng: np.random.Generator) -> bytes:
    ty = stored_type(t)
    n = t.n_elements
    if ty is GGMLType.MXFP4:
        # 17-byte blocks of 32 values: one E8M0 scale (2^(122-127)) and 16 bytes of FP4 nibbles
        blocks = rng.integers(0, 256, size=(n // 32, 17), dtype=np.uint8)
        blocks[:, 0] = 122
        return blocks.tobytes()
    if ty is GGMLType.I32:  # DeepSeek-V4's token -> expert table: ids below experts per token are valid
        return rng.integers(0, t.shape[0], size=n, dtype=np.int32).tobytes()
    if ty is GGMLType.Q8_0:  # 34-byte blocks of 32 values: an F16 scale and 32 int8
        q8 = np.zeros(n // 32, dtype=[("d", np.float16), ("qs", np.int8, 32)])
        q8["d"] = 0.02 / 64
        q8["qs"] = rng.integers(-64, 64, size=(n // 32, 32), dtype=np.int8)
        return q8.tobytes()
    if t.name.endswith("_norm.weight") or ".nextn.enorm" in t.name or ".nextn.hnorm" in t.name:
        values = np.ones(n, dtype=np.float32)
    else:
        values = rng.normal(0.0, 0.02, size=n).astype(np.float32)
        if t.name.endswith(".ssm_a"):
            values = (-np.abs(values) - 0.5).astype(np.float32)  # state decay must be negative
    if ty is GGMLType.F32:
        return values.tobytes()
    if ty is GGMLType.F16:
        return values.astype(np.float16).tobytes()
    if ty is GGMLType.BF16:
        return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    raise ValueError(f"cannot write random data of type {ty.name} for {t.name}")


def _pad(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


@dataclass(frozen=True)
class Materialized:
    path: Path
    spec: ModelSpec  # the shrunk spec the file was written from
    inventory: Inventory
    holes: bool  # expert stacks written as sparse zeros
    apparent_bytes: int


def spec_key(spec: ModelSpec, mtp: bool | None) -> str:
    """The cache key of a materialised file: the same in every process (a frozenset's repr follows
    the per-process string hash seed, so the flags are keyed sorted)."""
    stable = dataclasses.replace(spec, flags=frozenset())
    h = hashlib.sha256(f"{FORMAT_VERSION}|{mtp}|{stable!r}|{sorted(spec.flags)}".encode()).hexdigest()
    return h[:16]


def write_gguf(
    inv: Inventory,
    path: Path,
    *,
    seed: int = 0,
    expert_budget: int = EXPERT_BYTES_BUDGET,
    header_only: bool = False,
) -> bool:
    """Write `inv` as a GGUF at `path` (atomically). Returns whether expert stacks are holes.
    `header_only`: every tensor a hole (a full-size model's header for tools that never read data)."""
    spec = inv.spec
    expert_bytes = sum(tensor_bytes(stored_type(t), t.shape) for t in inv.tensors if _is_hole(t, holes=True))
    holes = expert_bytes > expert_budget
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    w = GGUFWriter(tmp, spec.arch)
    wide = family(spec.arch).u64_keys
    for key, value in metadata(inv).items():
        _add_kv(w, spec.arch, key, value, u64=key in wide)
    sizes = []
    for t in inv.tensors:
        ty = stored_type(t)
        nbytes = tensor_bytes(ty, t.shape)
        sizes.append(nbytes)
        # gguf-py takes numpy order (outermost first) and writes it reversed (ne0 first)
        w.add_tensor_info(t.name, tuple(reversed(t.shape)), np.dtype(np.float16), nbytes, raw_dtype=ty)
    w.write_header_to_file(tmp)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    data_start = _pad(w.fout[0].tell())
    w.close()
    rng = np.random.default_rng(seed)
    with open(tmp, "r+b") as f:
        offset = data_start
        for t, nbytes in zip(inv.tensors, sizes, strict=True):
            if not header_only and not _is_hole(t, holes):
                f.seek(offset)
                f.write(_data(t, rng))
            offset += _pad(nbytes)
        f.truncate(offset)
    tmp.replace(path)
    return holes


def materialize(
    spec: ModelSpec,
    *,
    mtp: bool | None = None,
    seed: int = 0,
    expert_budget: int = EXPERT_BYTES_BUDGET,
    width: int = WIDTH,
    ffn_width: int | None = None,
) -> Materialized:
    """The materialised GGUF of `spec` (shrunk to `width`, FFNs to `ffn_width` if given), from the
    cache when already written. `expert_budget`: expert stacks larger than this (bytes, all
    layers) are written as holes."""
    small = shrink(spec, width, ffn_width)
    inv = inventory(small, mtp=mtp)
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    expert_bytes = sum(tensor_bytes(stored_type(t), t.shape) for t in inv.tensors if _is_hole(t, True))
    holes = expert_bytes > expert_budget
    tag = "" if expert_budget == EXPERT_BYTES_BUDGET else ("-holes" if holes else "-dense")
    path = folder / f"{spec.arch}-{spec_key(small, mtp)}-s{seed}{tag}.gguf"
    if not path.exists():
        holes = write_gguf(inv, path, seed=seed, expert_budget=expert_budget)
    return Materialized(path, small, inv, holes, path.stat().st_size)
