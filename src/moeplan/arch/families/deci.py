"""NVIDIA Llama-Nemotron NAS models (DeciLMForCausalLM, model_type `nemotron-nas`): llama.cpp `deci`.

A Llama-3 decoder whose blocks were searched one by one (`block_configs`): each keeps GQA attention
with its own KV-head count (`num_attention_heads // n_heads_in_group`), replaces it with one linear
map (`replace_with_linear`: attn_output {E, E} only, no cache contents), or drops it (no attention
tensors at all); each SwiGLU FFN has its own width from `ffn_mult`, or none (`ffn_mult` null)
(conversion/deci.py `DeciModel`, src/models/deci.cpp `load_arch_tensors`). The loader tells the
kinds apart by the per-layer `head_count` / `head_count_kv` / `feed_forward_length` arrays, so a
block without attention keeps a zero-headed FULL attention here, as llama.cpp's hparams do: its KV
rows are zero-wide, except V without flash attention (memory/kv.py).
"""

from typing import Any

from moeplan.arch import config as c
from moeplan.arch import layout
from moeplan.arch.config import Config
from moeplan.arch.family import Family, GGUFValue
from moeplan.arch.from_gguf import GGUFHParams, spec_of_blocks
from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.arch.tensors import Builder, Inventory, Role
from moeplan.errors import BadConfig, BadGGUF, UnsupportedArchitecture

NO_FFN = FFN(FFNKind.NONE)


def ffn_width(ffn_mult: float, n_embd: int) -> int:
    """`DeciModel._ffn_mult_to_intermediate_size`: int(2·mult·E/3) rounded up to a multiple of 256."""
    n = int(2 * ffn_mult * n_embd / 3)
    return -(-n // 256) * 256


def _block(cfg: Config, il: int, block: Any, n_head: int, hd: int) -> Layer:
    """One `block_configs` entry as the converter reads it (`DeciModel.__init__`)."""
    if not isinstance(block, dict) or not all(isinstance(block.get(k), dict) for k in ("attention", "ffn")):
        raise BadConfig(f"block_configs[{il}] needs an 'attention' and an 'ffn' object")
    attn, ffn = block["attention"], block["ffn"]
    if attn.get("window_length") or attn.get("sparsify") or ffn.get("sparsify"):
        raise UnsupportedArchitecture(f"block_configs[{il}]: llama.cpp ignores window_length and sparsify")
    if ffn.get("replace_with_linear"):
        raise UnsupportedArchitecture(f"block_configs[{il}]: llama.cpp's deci has no linear FFN replacement")
    group = attn.get("n_heads_in_group")
    if group is None:  # linear replacement keeps n_head (for wo), a dropped block has none
        a = Attention(AttnKind.FULL, n_head if attn.get("replace_with_linear") else 0, 0, hd, hd)
    elif isinstance(group, bool) or not isinstance(group, int) or group < 1 or n_head % group:
        raise BadConfig(f"block_configs[{il}]: n_heads_in_group {group!r} must divide {n_head} heads")
    else:
        a = Attention(AttnKind.FULL, n_head, n_head // group, hd, hd)
    mult = ffn.get("ffn_mult")
    if mult is None:
        return Layer(a, NO_FFN)
    if isinstance(mult, bool) or not isinstance(mult, int | float) or mult <= 0:
        raise BadConfig(f"block_configs[{il}]: ffn_mult must be a positive number, got {mult!r}")
    return Layer(a, FFN(FFNKind.DENSE, n_ff=ffn_width(mult, c.integer(cfg, "hidden_size"))))


class Deci(Family):
    arch = "deci"
    model_types = ("nemotron-nas",)

    def spec_from_config(self, cfg: Config) -> ModelSpec:
        blocks = cfg.get("block_configs")
        if not isinstance(blocks, list):
            raise UnsupportedArchitecture(
                "only DeciLM configs with block_configs (Llama-Nemotron NAS) are modelled"
            )
        n = c.integer(cfg, "num_hidden_layers")
        if len(blocks) != n:
            raise BadConfig(f"{len(blocks)} block_configs for {n} layers")
        if cfg.get("attention_bias") or cfg.get("mlp_bias"):
            raise BadConfig("only Llama-Nemotron without attention or MLP biases is modelled")
        n_head = c.integer(cfg, "num_attention_heads")
        hd = c.integer(cfg, "hidden_size") // n_head  # the converter writes key_length = E / n_head
        layers = [_block(cfg, il, b, n_head, hd) for il, b in enumerate(blocks)]
        if layers[0].attn.n_head == 0:
            # llama_model::load_hparams sizes every head from layer 0's head_count (n_embd / n_head())
            raise UnsupportedArchitecture("llama.cpp's deci loader needs attention heads on layer 0")
        return c.base(cfg, self.arch, layers, flags=frozenset(c.rope_freqs_flag(cfg)))

    def spec_from_gguf(self, hp: GGUFHParams) -> ModelSpec:
        """deci.cpp: attention where head_count_kv[il] > 0, the linear replacement where only
        head_count[il] > 0, no attention where both are 0; an FFN where feed_forward_length[il] > 0."""
        n, e = hp.n_layer_all, hp.integer("embedding_length")
        n_head = hp.per_layer("attention.head_count", n, [0] * n)
        n_head_kv = hp.per_layer("attention.head_count_kv", n, n_head)
        n_ff = hp.per_layer("feed_forward_length", n, [0] * n)
        if not n_head[0]:
            raise BadGGUF(f"{hp.name}: deci needs attention heads on blk.0 (head_count[0] is 0)")
        hd = hp.integer("attention.key_length", e // n_head[0])
        layers = [
            Layer(
                Attention(AttnKind.FULL, n_head[il], n_head_kv[il], hd, hd),
                FFN(FFNKind.DENSE, n_ff=n_ff[il]) if n_ff[il] else NO_FFN,
            )
            for il in range(n)
        ]
        spec = spec_of_blocks(hp, layers)
        if hp.has("rope_freqs.weight"):
            return ModelSpec(**{**spec.__dict__, "flags": frozenset({"rope_freqs"})})
        return spec

    def block(self, b: Builder, spec: ModelSpec, il: int, layer: Layer, mtp: bool, own_head: bool) -> None:
        p, e, a = f"blk.{il}", spec.n_embd, layer.attn
        if a.n_head:
            b.add(f"{p}.attn_norm.weight", (e,), Role.NORM, il)
        if a.n_head_kv:
            layout.gqa(b, p, il, a, e, Role.ATTN)
        elif a.n_head:  # the linear replacement: one {E, E} map
            b.add(f"{p}.attn_output.weight", (e, e), Role.ATTN, il)
        if layer.ffn.kind is FFNKind.DENSE:
            b.add(f"{p}.ffn_norm.weight", (e,), Role.NORM, il)
            layout.dense_ffn(b, p, il, layer.ffn, e, Role.DENSE_FFN)

    def gguf_metadata(self, inv: Inventory) -> dict[str, GGUFValue]:
        """DeciModel `set_gguf_parameters` (block_configs branch): per-layer head counts and FFN
        widths, key/value length E / n_head, rope dimension = head size (the loader requires it)."""
        spec = inv.spec
        hd = spec.layers[0].attn.head_dim_k
        return {
            ".context_length": spec.context_length,
            ".embedding_length": spec.n_embd,
            ".block_count": inv.block_count,
            ".vocab_size": spec.n_vocab,
            ".feed_forward_length": [la.ffn.n_ff for la in spec.layers],
            ".attention.head_count": [la.attn.n_head for la in spec.layers],
            ".attention.head_count_kv": [la.attn.n_head_kv for la in spec.layers],
            ".attention.key_length": hd,
            ".attention.value_length": hd,
            ".attention.layer_norm_rms_epsilon": 1e-5,
            ".rope.freq_base": 10000.0,
            ".rope.dimension_count": hd,
        }
