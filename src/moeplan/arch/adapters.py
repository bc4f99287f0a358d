"""Adapters from a Hugging Face `config.json` to a ModelSpec, one per llama.cpp architecture.

Each adapter reads the fields llama.cpp's converter (`convert_hf_to_gguf.py` + `conversion/*.py`
of the pinned build) reads for that family, so a ModelSpec describes what the GGUF will hold.
"""

from collections.abc import Callable, Mapping
from typing import Any

from moeplan.arch.spec import FFN, Attention, AttnKind, FFNKind, Layer, ModelSpec
from moeplan.errors import BadConfig, UnsupportedArchitecture

Config = Mapping[str, Any]


def _get(cfg: Config, *keys: str, default: Any = None, required: bool = True) -> Any:
    """The first of `keys` present in `cfg`; a clear error naming them when none is and no default."""
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    if default is not None or not required:
        return default
    raise BadConfig(f"config.json of model_type '{cfg.get('model_type')}' lacks '{keys[0]}'")


def _int(cfg: Config, *keys: str, default: int | None = None) -> int:
    v = _get(cfg, *keys, default=default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise BadConfig(f"config.json field '{keys[0]}' must be a non-negative integer, got {v!r}")
    return v


def _head_dim(cfg: Config) -> int:
    return _int(cfg, "head_dim", default=_int(cfg, "hidden_size") // _int(cfg, "num_attention_heads"))


def _gqa(cfg: Config, kind: AttnKind = AttnKind.FULL, window: int = 0, rope: bool = True) -> Attention:
    hd = _head_dim(cfg)
    n_head = _int(cfg, "num_attention_heads")
    return Attention(kind, n_head, _int(cfg, "num_key_value_heads", default=n_head), hd, hd, window, rope)


def _dense(cfg: Config, key: str = "intermediate_size") -> FFN:
    return FFN(FFNKind.DENSE, n_ff=_int(cfg, key))


def _base(cfg: Config, arch: str, layers: list[Layer], **kw: Any) -> ModelSpec:
    return ModelSpec(
        name=str(cfg.get("_name_or_path") or cfg.get("model_type")),
        arch=arch,
        n_embd=_int(cfg, "hidden_size"),
        n_vocab=_int(cfg, "vocab_size"),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        layers=tuple(layers),
        context_length=_int(cfg, "max_position_embeddings", default=0),
        model_type=str(cfg.get("model_type", "")),
        **kw,
    )


def _rope_freqs_flag(cfg: Config) -> set[str]:
    """LlamaModel's converter writes a global `rope_freqs` tensor for llama3-style rope scaling."""
    rope_scaling = cfg.get("rope_scaling") or {}
    return {"rope_freqs"} if rope_scaling.get("rope_type", rope_scaling.get("type")) == "llama3" else set()


def llama(cfg: Config) -> ModelSpec:
    """Llama 2/3.x (dense) and Mixtral (llama arch with experts)."""
    n = _int(cfg, "num_hidden_layers")
    attn = _gqa(cfg)
    n_exp = _int(cfg, "num_local_experts", default=0)
    if n_exp:
        ffn = FFN(
            FFNKind.MOE,
            n_expert=n_exp,
            n_expert_used=_int(cfg, "num_experts_per_tok"),
            n_ff_exp=_int(cfg, "intermediate_size"),
        )
    else:
        ffn = _dense(cfg)
    flags = _rope_freqs_flag(cfg)
    if cfg.get("attention_bias"):
        flags.add("attn_bias")
    return _base(cfg, "llama", [Layer(attn, ffn)] * n, flags=frozenset(flags))


def qwen3(cfg: Config) -> ModelSpec:
    return _base(cfg, "qwen3", [Layer(_gqa(cfg), _dense(cfg))] * _int(cfg, "num_hidden_layers"))


def _qwen_moe_ffn(cfg: Config, shared: bool) -> FFN:
    return FFN(
        FFNKind.MOE,
        n_expert=_int(cfg, "num_experts"),
        n_expert_used=_int(cfg, "num_experts_per_tok"),
        n_ff_exp=_int(cfg, "moe_intermediate_size"),
        n_shared=1 if shared else 0,
        n_ff_shexp=_int(cfg, "shared_expert_intermediate_size") if shared else 0,
    )


def qwen3moe(cfg: Config) -> ModelSpec:
    n = _int(cfg, "num_hidden_layers")
    dense_layers = set(cfg.get("mlp_only_layers") or [])
    step = _int(cfg, "decoder_sparse_step", default=1)
    layers = [
        Layer(_gqa(cfg), _dense(cfg) if il in dense_layers or (il + 1) % step else _qwen_moe_ffn(cfg, False))
        for il in range(n)
    ]
    return _base(cfg, "qwen3moe", layers)


def _hybrid_layers(cfg: Config, ffn: FFN) -> list[Layer]:
    """Qwen3-Next / Qwen3.5: Gated DeltaNet linear attention with a gated full-attention layer
    every `full_attention_interval` layers (or as `layer_types` says)."""
    n = _int(cfg, "num_hidden_layers")
    types = cfg.get("layer_types")
    if types is None:
        interval = _int(cfg, "full_attention_interval", default=4)
        types = ["full_attention" if (il + 1) % interval == 0 else "linear_attention" for il in range(n)]
    if len(types) != n:
        raise BadConfig(f"layer_types has {len(types)} entries for {n} layers")
    linear = Attention(
        AttnKind.LINEAR,
        0,
        0,
        0,
        0,
        conv_kernel=_int(cfg, "linear_conv_kernel_dim"),
        linear_k_heads=_int(cfg, "linear_num_key_heads"),
        linear_v_heads=_int(cfg, "linear_num_value_heads"),
        linear_k_head_dim=_int(cfg, "linear_key_head_dim"),
        linear_v_head_dim=_int(cfg, "linear_value_head_dim"),
    )
    full = _gqa(cfg)
    return [Layer(full if t == "full_attention" else linear, ffn) for t in types]


def _mtp(cfg: Config, layer: Layer, default: int = 0) -> tuple[Layer, ...]:
    n_mtp = cfg.get("mtp_num_hidden_layers", cfg.get("num_nextn_predict_layers", default))
    if not isinstance(n_mtp, int) or n_mtp < 0:
        raise BadConfig(f"the MTP layer count must be a non-negative integer, got {n_mtp!r}")
    return (layer,) * n_mtp


def qwen3next(cfg: Config) -> ModelSpec:
    layers = _hybrid_layers(cfg, _qwen_moe_ffn(cfg, shared=True))
    # Qwen3-Next's config.json has no MTP count; its checkpoint carries one `mtp.layers.0` block,
    # which the converter counts (conversion/qwen.py _QwenMtpMixin).
    return _base(cfg, "qwen3next", layers, mtp_layers=_mtp(cfg, layers[-1], default=1))


def qwen35(cfg: Config) -> ModelSpec:
    layers = _hybrid_layers(cfg, _dense(cfg))
    return _base(cfg, "qwen35", layers, mtp_layers=_mtp(cfg, layers[-1]))


def qwen35moe(cfg: Config) -> ModelSpec:
    layers = _hybrid_layers(cfg, _qwen_moe_ffn(cfg, shared=True))
    return _base(cfg, "qwen35moe", layers, mtp_layers=_mtp(cfg, layers[-1]))


def _routed_and_shared_moe(cfg: Config) -> FFN:
    """DeepSeek/GLM-style MoE: `n_routed_experts` plus `n_shared_experts` of the same width."""
    n_ff_exp = _int(cfg, "moe_intermediate_size")
    n_shared = _int(cfg, "n_shared_experts", default=0)
    return FFN(
        FFNKind.MOE,
        n_expert=_int(cfg, "n_routed_experts"),
        n_expert_used=_int(cfg, "num_experts_per_tok"),
        n_ff_exp=n_ff_exp,
        n_shared=n_shared,
        n_ff_shexp=n_ff_exp * n_shared,
    )


def deepseek2(cfg: Config) -> ModelSpec:
    """DeepSeek-V2/V3/R1 and Kimi-K2/K2.5: MLA attention, leading dense layers, shared experts."""
    n = _int(cfg, "num_hidden_layers")
    n_head = _int(cfg, "num_attention_heads")
    kv_lora = _int(cfg, "kv_lora_rank")
    rope_dim = _int(cfg, "qk_rope_head_dim")
    nope = _int(cfg, "qk_nope_head_dim")
    # llama.cpp caches the compressed latent: key_length = kv_lora_rank + rope dims, value = kv_lora_rank.
    attn = Attention(
        AttnKind.MLA,
        n_head,
        1,
        kv_lora + rope_dim,
        kv_lora,
        q_lora_rank=_int(cfg, "q_lora_rank", default=0),
        kv_lora_rank=kv_lora,
        qk_nope_head_dim=nope,
        qk_rope_head_dim=rope_dim,
        mla_v_head_dim=_int(cfg, "v_head_dim"),
    )
    moe = _routed_and_shared_moe(cfg)
    k_dense = _int(cfg, "first_k_dense_replace", default=0)
    freq = _int(cfg, "moe_layer_freq", default=1)
    layers = [Layer(attn, _dense(cfg) if il < k_dense or il % freq else moe) for il in range(n)]
    return _base(cfg, "deepseek2", layers, mtp_layers=_mtp(cfg, layers[-1]))


def llama4(cfg: Config) -> ModelSpec:
    """Llama 4: chunked local attention on RoPE layers, NoPE global layers, interleaved MoE with a
    shared expert."""
    n = _int(cfg, "num_hidden_layers")
    chunk = _int(cfg, "attention_chunk_size", default=8192)
    nope = cfg.get("no_rope_layers")
    # HF's no_rope_layers holds 1 for layers that use RoPE; default: every 4th layer is NoPE.
    uses_rope = [bool(x) for x in nope] if nope else [(il + 1) % 4 != 0 for il in range(n)]
    step = _int(cfg, "interleave_moe_layer_step", default=1)
    moe = FFN(
        FFNKind.MOE,
        n_expert=_int(cfg, "num_local_experts"),
        n_expert_used=_int(cfg, "num_experts_per_tok"),
        n_ff_exp=_int(cfg, "intermediate_size"),
        n_shared=1,
        n_ff_shexp=_int(cfg, "intermediate_size"),
    )
    layers = []
    for il in range(n):
        attn = _gqa(cfg, AttnKind.CHUNKED, chunk) if uses_rope[il] else _gqa(cfg, rope=False)
        ffn = moe if (il + 1) % step == 0 else _dense(cfg, "intermediate_size_mlp")
        layers.append(Layer(attn, ffn))
    return _base(cfg, "llama4", layers, flags=frozenset(_rope_freqs_flag(cfg)))


def gpt_oss(cfg: Config) -> ModelSpec:
    n = _int(cfg, "num_hidden_layers")
    window = _int(cfg, "sliding_window", default=128)
    types = cfg.get("layer_types") or [
        "sliding_attention" if il % 2 == 0 else "full_attention" for il in range(n)
    ]
    moe = FFN(
        FFNKind.MOE,
        n_expert=_int(cfg, "num_local_experts"),
        n_expert_used=_int(cfg, "num_experts_per_tok", "experts_per_token"),
        n_ff_exp=_int(cfg, "intermediate_size"),
    )
    layers = [
        Layer(_gqa(cfg, AttnKind.SWA, window) if t == "sliding_attention" else _gqa(cfg), moe) for t in types
    ]
    return _base(cfg, "gpt-oss", layers)


def glm4moe(cfg: Config) -> ModelSpec:
    n = _int(cfg, "num_hidden_layers")
    moe = _routed_and_shared_moe(cfg)
    k_dense = _int(cfg, "first_k_dense_replace", default=0)
    layers = [Layer(_gqa(cfg), _dense(cfg) if il < k_dense else moe) for il in range(n)]
    flags = {"attn_bias"} if cfg.get("attention_bias") else set()
    if cfg.get("use_qk_norm"):
        flags.add("qk_norm")
    return _base(cfg, "glm4moe", layers, mtp_layers=_mtp(cfg, layers[-1]), flags=frozenset(flags))


def gemma3(cfg: Config) -> ModelSpec:
    """Gemma 3: 5 sliding-window layers to 1 global, tied embeddings."""
    n = _int(cfg, "num_hidden_layers")
    window = _int(cfg, "sliding_window", default=4096)
    types = cfg.get("layer_types")
    if types is None:
        pattern = _int(cfg, "sliding_window_pattern", default=6)
        types = ["sliding_attention" if (il + 1) % pattern else "full_attention" for il in range(n)]
    layers = [
        Layer(_gqa(cfg, AttnKind.SWA, window) if t == "sliding_attention" else _gqa(cfg), _dense(cfg))
        for t in types
    ]
    spec = _base(cfg, "gemma3", layers)
    return ModelSpec(**{**spec.__dict__, "tied_embeddings": True})


# HF model_type → adapter. Multimodal wrappers are unwrapped to their `text_config` first.
ADAPTERS: dict[str, Callable[[Config], ModelSpec]] = {
    "llama": llama,
    "mixtral": llama,
    "qwen3": qwen3,
    "qwen3_moe": qwen3moe,
    "qwen3_next": qwen3next,
    "qwen3_5": qwen35,
    "qwen3_5_text": qwen35,
    "qwen3_5_moe": qwen35moe,
    "qwen3_5_moe_text": qwen35moe,
    "deepseek_v3": deepseek2,
    "deepseek_v2": deepseek2,
    "kimi_k2": deepseek2,
    "kimi_k25": deepseek2,
    "llama4": llama4,
    "llama4_text": llama4,
    "gpt_oss": gpt_oss,
    "glm4_moe": glm4moe,
    "gemma3": gemma3,
    "gemma3_text": gemma3,
}


def spec_from_config(cfg: Config, name: str | None = None) -> ModelSpec:
    """ModelSpec of the text model described by an HF config.json."""
    text = cfg.get("text_config")
    if isinstance(text, Mapping):
        cfg = {**{k: v for k, v in cfg.items() if k != "text_config"}, **text}
    model_type = str(cfg.get("model_type", ""))
    adapter = ADAPTERS.get(model_type)
    if adapter is None:
        raise UnsupportedArchitecture(
            f"model_type '{model_type}' is not supported; supported: {', '.join(sorted(ADAPTERS))}"
        )
    spec = adapter(cfg)
    return ModelSpec(**{**spec.__dict__, "name": name or spec.name})
