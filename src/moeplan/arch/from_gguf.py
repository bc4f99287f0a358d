"""A ModelSpec rebuilt from a GGUF file's own metadata and tensor shapes, as llama.cpp's loader
reads them (`llama_model_base::load_hparams` in src/llama-model.cpp of build 11434, then each
architecture's `load_arch_hparams` in src/models/<arch>.cpp).

The generic reading (`generic_spec`) covers what the keys say for every architecture: block and
NextN counts, per-layer head counts (`get_key_or_arr`), key/value lengths (also for SWA layers),
sliding window and its per-layer pattern array, MLA ranks, expert counts, `ssm.*` sizes. Widths are
taken from the tensors themselves (`attn_k` rows, `ffn_up(_exps)` columns), which is what the file
holds whatever the keys claim. What llama.cpp decides in code rather than from keys (Gemma 3's
5:1 sliding pattern, gpt-oss's alternation, Llama 4's chunked layers …) is each family's
`spec_from_gguf` override; an architecture whose cache rules the file cannot express is refused with
a one-line error naming what is missing.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.errors import BadGGUF, UnsupportedArchitecture

MetaValue = object


@dataclass(frozen=True)
class GGUFHParams:
    """The `{arch}.*` keys and tensor shapes of one GGUF model (all shards)."""

    arch: str
    meta: Mapping[str, MetaValue]
    shapes: Mapping[str, tuple[int, ...]]
    name: str

    def value(self, key: str) -> MetaValue:
        return self.meta.get(f"{self.arch}.{key}")

    def integer(self, key: str, default: int | None = None) -> int:
        v = self.value(key)
        if v is None:
            if default is None:
                raise BadGGUF(f"{self.name}: the header lacks {self.arch}.{key}, which llama.cpp requires")
            return default
        if isinstance(v, list):  # an array where one value is usual: the loader takes the first layer's
            v = v[0] if v else default
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise BadGGUF(f"{self.name}: {self.arch}.{key} must be a non-negative integer, got {v!r}")
        return v

    def per_layer(self, key: str, n: int, default: Sequence[int]) -> list[int]:
        """`llama_model_loader::get_key_or_arr`: one value for every layer, or an array of n."""
        v = self.value(key)
        if v is None:
            return list(default)
        if isinstance(v, list):
            if len(v) != n or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                raise BadGGUF(f"{self.name}: {self.arch}.{key} must hold {n} integers, one per layer")
            return [int(x) for x in v]
        return [self.integer(key)] * n

    def flags(self, key: str, n: int) -> list[bool] | None:
        """A per-layer boolean array (`sliding_window_pattern`), or None when absent."""
        v = self.value(key)
        if v is None:
            return None
        if not isinstance(v, list) or len(v) < n:
            raise BadGGUF(f"{self.name}: {self.arch}.{key} must be an array of at least {n} flags")
        return [bool(x) for x in v[:n]]

    def shape(self, tensor: str) -> tuple[int, ...] | None:
        return self.shapes.get(tensor)

    def has(self, tensor: str) -> bool:
        return tensor in self.shapes

    @property
    def n_layer_all(self) -> int:
        n = self.integer("block_count")
        if n == 0:
            raise BadGGUF(f"{self.name}: {self.arch}.block_count is 0")
        return n

    @property
    def n_nextn(self) -> int:
        n = self.integer("nextn_predict_layers", 0)
        if n > self.n_layer_all:
            raise BadGGUF(f"{self.name}: more NextN layers ({n}) than blocks ({self.n_layer_all})")
        return n


def swa_pattern(hp: GGUFHParams, n: int, period: int, dense_first: bool = False) -> list[bool]:
    """`llama_model_base::load_swa_pattern`: the per-layer array if the file has one, else the period
    from `attention.sliding_window_pattern` or the architecture's default, then
    `llama_hparams::set_swa_pattern` (layer il slides unless it is the last of each period)."""
    pattern = hp.flags("attention.sliding_window_pattern", n)
    if pattern is not None:
        return pattern
    period = hp.integer("attention.sliding_window_pattern", period)
    if dense_first:
        return [period == 0 or il % period != 0 for il in range(n)]
    return [period == 0 or il % period < period - 1 for il in range(n)]


def full_layers_without_rope(spec: ModelSpec) -> ModelSpec:
    """`spec` with its full-attention layers marked NoPE: for the architectures that rotate exactly the
    sliding layers in code (`if (is_swa)` around ggml_rope_ext), which no GGUF key says."""
    layers = tuple(
        la if la.attn.kind is not AttnKind.FULL else Layer(replace(la.attn, rope=False), la.ffn)
        for la in spec.layers
    )
    return replace(spec, layers=layers)


def _swa_from_keys(hp: GGUFHParams, n: int) -> list[bool]:
    """Which layers slide, as far as the keys say: a pattern array or period, else none when no
    window is set. A window without a pattern is set in llama.cpp's code for that architecture."""
    if hp.value("attention.sliding_window_pattern") is not None:
        return swa_pattern(hp, n, 0)
    if hp.integer("attention.sliding_window", 0):
        raise UnsupportedArchitecture(
            f"{hp.name}: architecture '{hp.arch}' has a sliding window but the file does not say which "
            "layers use it (llama.cpp sets that in code for this architecture, which moeplan does not model)"
        )
    return [False] * n


def recurrent_by_interval(hp: GGUFHParams, il: int) -> bool:
    """Qwen3-Next / Qwen3.5 (`load_arch_hparams`): `attention.recurrent_layers` if present, else every
    layer but each `full_attention_interval`-th (default 4) is recurrent; NextN blocks never are."""
    n = hp.n_layer_all - hp.n_nextn
    flags = hp.flags("attention.recurrent_layers", hp.n_layer_all)
    if flags is not None:
        return flags[il]
    interval = hp.integer("full_attention_interval", 4)
    return il < n and (il + 1) % interval != 0


def attention_of(hp: GGUFHParams, il: int, n_head: int, n_head_kv: int, swa: bool, window: int) -> Attention:
    p = f"blk.{il}"
    e = hp.integer("embedding_length")
    if hp.has(f"{p}.attn_kv_a_mqa.weight"):  # MLA: llama.cpp caches the latent (kv_lora + rope)
        kv_lora = hp.integer("attention.kv_lora_rank")
        rope = hp.integer("rope.dimension_count")
        key_mla = hp.integer("attention.key_length_mla", hp.integer("attention.key_length"))
        value_mla = hp.integer("attention.value_length_mla", hp.integer("attention.value_length"))
        return Attention(
            AttnKind.MLA,
            n_head,
            1,
            kv_lora + rope,
            kv_lora,
            q_lora_rank=hp.integer("attention.q_lora_rank", 0),
            kv_lora_rank=kv_lora,
            qk_nope_head_dim=key_mla - rope,
            qk_rope_head_dim=rope,
            mla_v_head_dim=value_mla,
        )
    suffix = "_swa" if swa else ""
    hd_k = hp.integer(f"attention.key_length{suffix}", hp.integer("attention.key_length", e // n_head))
    hd_v = hp.integer(f"attention.value_length{suffix}", hp.integer("attention.value_length", e // n_head))
    k = hp.shape(f"{p}.attn_k.weight")
    if k is not None and len(k) == 2 and k[1] != n_head_kv * hd_k:
        raise BadGGUF(
            f"{hp.name}: blk.{il}.attn_k has {k[1]} rows, not head_count_kv {n_head_kv} x key_length {hd_k}"
        )
    if swa:
        return Attention(AttnKind.SWA, n_head, n_head_kv, hd_k, hd_v, window)
    return Attention(AttnKind.FULL, n_head, n_head_kv, hd_k, hd_v)


def _recurrent(hp: GGUFHParams, il: int) -> Attention:
    """A recurrent layer by llama.cpp's generic state rule (`n_embd_r`/`n_embd_s` of Mamba-style
    `ssm.*` keys); other recurrent kinds (RWKV, short convolutions, KDA) need their family."""
    for key in ("wkv.head_size", "shortconv.l_cache", "kda.head_dim"):
        if hp.value(key) is not None:
            raise UnsupportedArchitecture(
                f"{hp.name}: architecture '{hp.arch}' keeps a recurrent state ({hp.arch}.{key}) "
                "whose size moeplan does not model for this architecture"
            )
    d_conv, d_inner = hp.integer("ssm.conv_kernel"), hp.integer("ssm.inner_size")
    d_state, n_group = hp.integer("ssm.state_size"), hp.integer("ssm.group_count", 1)
    dt_rank = hp.integer("ssm.time_step_rank", 1) or 1
    if d_inner % dt_rank:
        raise BadGGUF(f"{hp.name}: ssm.inner_size {d_inner} is not a multiple of time_step_rank {dt_rank}")
    return Attention(
        AttnKind.LINEAR,
        0,
        0,
        0,
        0,
        conv_kernel=d_conv,
        linear_k_heads=n_group,
        linear_v_heads=dt_rank,
        linear_k_head_dim=d_state,
        linear_v_head_dim=d_inner // dt_rank,
    )


def ffn_of(hp: GGUFHParams, il: int, n_used: int) -> FFN:
    p = f"blk.{il}"
    up_exps = hp.shape(f"{p}.ffn_up_exps.weight") or hp.shape(f"{p}.ffn_gate_up_exps.weight")
    if up_exps is not None:
        n_ff_exp = up_exps[1] if hp.has(f"{p}.ffn_up_exps.weight") else up_exps[1] // 2
        shexp = hp.shape(f"{p}.ffn_up_shexp.weight")
        n_shared = hp.integer("expert_shared_count", 1) if shexp else 0
        return FFN(
            FFNKind.MOE,
            n_expert=up_exps[2],
            n_expert_used=n_used,
            n_ff_exp=n_ff_exp,
            n_shared=n_shared,
            n_ff_shexp=shexp[1] if shexp else 0,
        )
    up = hp.shape(f"{p}.ffn_up.weight")
    if up is None:
        raise BadGGUF(f"{hp.name}: blk.{il} has neither ffn_up nor expert stacks")
    return FFN(FFNKind.DENSE, n_ff=up[1])


def fused_up_layers(layers: Sequence[Layer]) -> tuple[Layer, ...]:
    """Dense layers whose ffn_up holds gate and up fused (2·n_ff rows), with their real n_ff."""
    return tuple(Layer(la.attn, FFN(FFNKind.DENSE, n_ff=la.ffn.n_ff // 2)) for la in layers)


def rope_fraction_of(hp: GGUFHParams, head_dim: int) -> float:
    """The rotated share of each head: rope.dimension_count over the head width."""
    return hp.integer("rope.dimension_count", head_dim) / head_dim


def generic_spec(
    hp: GGUFHParams,
    *,
    swa: Callable[[GGUFHParams, int], list[bool]] = _swa_from_keys,
    window: int | None = None,
    recurrent: Callable[[GGUFHParams, int], bool] | None = None,
) -> ModelSpec:
    """The spec the keys and shapes describe. `swa(hp, n)`: which of the n decoder layers slide;
    `window`: their window when the architecture fixes it in code (else `attention.sliding_window`);
    `recurrent(hp, il)`: whether a layer is recurrent (default: it has `ssm_*` tensors and no attn_k)."""
    n_all, n_nextn = hp.n_layer_all, hp.n_nextn
    n = n_all - n_nextn
    n_head = hp.per_layer("attention.head_count", n_all, [0] * n_all)
    n_head_kv = hp.per_layer("attention.head_count_kv", n_all, n_head)
    n_used = hp.per_layer("expert_used_count", n_all, [0] * n_all)
    sliding = swa(hp, n) + [False] * n_nextn
    window = hp.integer("attention.sliding_window", 0) if window is None else window

    def is_recurrent(il: int) -> bool:
        if recurrent is not None:
            return recurrent(hp, il)
        p = f"blk.{il}."
        return not hp.has(f"{p}attn_k.weight") and any(t.startswith(p + "ssm_") for t in hp.shapes)

    layers = []
    for il in range(n_all):
        if is_recurrent(il):
            attn = _recurrent(hp, il)
        else:
            if not n_head[il]:
                raise BadGGUF(f"{hp.name}: blk.{il} has attention but {hp.arch}.attention.head_count is 0")
            attn = attention_of(hp, il, n_head[il], n_head_kv[il], sliding[il], window)
        layers.append(Layer(attn, ffn_of(hp, il, n_used[il])))
    return spec_of_blocks(hp, layers)


def spec_of_blocks(hp: GGUFHParams, blocks: Sequence[Layer]) -> ModelSpec:
    """The spec of a file whose `block_count` blocks are `blocks` (the last `nextn_predict_layers`
    of them MTP): vocabulary from token_embd, tied unless the file has output.weight."""
    n = hp.n_layer_all - hp.n_nextn
    embd = hp.shape("token_embd.weight")
    if embd is None or len(embd) != 2:
        raise BadGGUF(f"{hp.name}: no 2-D token_embd.weight tensor")
    return ModelSpec(
        name=hp.name,
        arch=hp.arch,
        n_embd=hp.integer("embedding_length"),
        n_vocab=embd[1],
        tied_embeddings=not hp.has("output.weight"),
        layers=tuple(blocks[:n]),
        context_length=hp.integer("context_length", 0),
        mtp_layers=tuple(blocks[n:]),
    )
