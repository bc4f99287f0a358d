"""Reading a Hugging Face `config.json`: the helpers every family's adapter shares.

Each adapter reads the fields llama.cpp's converter (`convert_hf_to_gguf.py` + `conversion/*.py`
of the pinned build) reads for that family, so a ModelSpec describes what the GGUF will hold.
"""

from collections.abc import Mapping
from typing import Any

from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.errors import BadConfig, UnsupportedArchitecture

Config = Mapping[str, Any]


def get(cfg: Config, *keys: str, default: Any = None, required: bool = True) -> Any:
    """The first of `keys` present in `cfg`; a clear error naming them when none is and no default."""
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    if default is not None or not required:
        return default
    raise BadConfig(f"config.json of model_type '{cfg.get('model_type')}' lacks '{keys[0]}'")


def integer(cfg: Config, *keys: str, default: int | None = None) -> int:
    v = get(cfg, *keys, default=default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise BadConfig(f"config.json field '{keys[0]}' must be a non-negative integer, got {v!r}")
    return v


def number(cfg: Config, *keys: str, default: float | None = None) -> float:
    v = get(cfg, *keys, default=default)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadConfig(f"config.json field '{keys[0]}' must be a number, got {v!r}")
    return float(v)


def head_dim(cfg: Config) -> int:
    return integer(
        cfg, "head_dim", default=integer(cfg, "hidden_size") // integer(cfg, "num_attention_heads")
    )


def gqa(cfg: Config, kind: AttnKind = AttnKind.FULL, window: int = 0, rope: bool = True) -> Attention:
    hd = head_dim(cfg)
    n_head = integer(cfg, "num_attention_heads")
    return Attention(kind, n_head, integer(cfg, "num_key_value_heads", default=n_head), hd, hd, window, rope)


def check_rotary_dim(cfg: Config, attn: Attention, fraction: float) -> None:
    """Refuse a `rotary_dim` other than the share of the head the family's GGUF keys write."""
    rotary = integer(cfg, "rotary_dim", default=attn.head_dim_k)
    if rotary != int(attn.head_dim_k * fraction):
        raise BadConfig(
            f"{cfg.get('model_type')} with rotary_dim {rotary} of head_dim {attn.head_dim_k} is not modelled"
        )


def check_query_width(cfg: Config, attn: Attention) -> None:
    """Refuse heads whose query width differs from hidden_size where the loader sizes the query rows
    and attn_output as n_embd (phi3.cpp, olmo2.cpp)."""
    if attn.n_head * attn.head_dim_k != integer(cfg, "hidden_size"):
        raise UnsupportedArchitecture(
            f"{cfg.get('model_type')}: llama.cpp needs num_attention_heads x head_dim = hidden_size"
        )


def dense(cfg: Config, key: str = "intermediate_size") -> FFN:
    return FFN(FFNKind.DENSE, n_ff=integer(cfg, key))


def base(cfg: Config, arch: str, layers: list[Layer], **kw: Any) -> ModelSpec:
    return ModelSpec(
        name=str(cfg.get("_name_or_path") or cfg.get("model_type")),
        arch=arch,
        n_embd=integer(cfg, "hidden_size"),
        n_vocab=integer(cfg, "vocab_size"),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        layers=tuple(layers),
        context_length=integer(cfg, "max_position_embeddings", default=0),
        model_type=str(cfg.get("model_type", "")),
        **kw,
    )


def rope_freqs_flag(cfg: Config) -> set[str]:
    """LlamaModel's converter writes a global `rope_freqs` tensor for llama3-style rope scaling."""
    rope_scaling = cfg.get("rope_scaling") or {}
    return {"rope_freqs"} if rope_scaling.get("rope_type", rope_scaling.get("type")) == "llama3" else set()


def longrope(cfg: Config) -> bool:
    """Whether the Phi converters (conversion/phi.py Phi3MiniModel.generate_extra_tensors) write the
    LongRoPE factor tensors: a `long_factor` list, which a LongRoPE ("longrope" / "su") config always
    carries (transformers' rope validation requires both factor lists)."""
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    return bool(rope.get("long_factor")) or rope.get("rope_type", rope.get("type")) in ("longrope", "su")


def mtp(cfg: Config, layer: Layer, default: int = 0) -> tuple[Layer, ...]:
    """The MTP (NextN) blocks the checkpoint carries, each shaped like `layer`."""
    n_mtp = cfg.get("mtp_num_hidden_layers", cfg.get("num_nextn_predict_layers", default))
    if not isinstance(n_mtp, int) or n_mtp < 0:
        raise BadConfig(f"the MTP layer count must be a non-negative integer, got {n_mtp!r}")
    return (layer,) * n_mtp


def routed_and_shared_moe(
    cfg: Config,
    experts: tuple[str, ...] = ("n_routed_experts",),
    shared: str = "n_shared_experts",
    width: str = "moe_intermediate_size",
    used: tuple[str, ...] = ("num_experts_per_tok",),
) -> FFN:
    """DeepSeek-style MoE: routed experts plus `shared` shared experts of the same width (the loaders
    size the shared FFN n_ff_exp x n_expert_shared). The key names differ by family."""
    n_ff_exp = integer(cfg, width)
    n_shared = integer(cfg, shared, default=0)
    return FFN(
        FFNKind.MOE,
        n_expert=integer(cfg, *experts),
        n_expert_used=integer(cfg, *used),
        n_ff_exp=n_ff_exp,
        n_shared=n_shared,
        n_ff_shexp=n_ff_exp * n_shared,
    )


def layer_types(cfg: Config, n: int, default: list[str]) -> list[str]:
    """`layer_types` from the config (checked against the layer count), else `default`."""
    types = cfg.get("layer_types")
    if types is None:
        return default
    if not isinstance(types, list):
        raise BadConfig(f"layer_types must be a list of {n} layer types, got {types!r}")
    if len(types) != n:
        raise BadConfig(f"layer_types has {len(types)} entries for {n} layers")
    return [str(t) for t in types]
