"""HF config.json adapters: every supported architecture, and the errors for the others."""

import pytest

from moeplan.arch.registry import by_model_type, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.sources.catalog import load_catalog, resolve


def kinds(model: str) -> tuple[dict[AttnKind, int], dict[FFNKind, int]]:
    spec = resolve(model).spec()
    attn: dict[AttnKind, int] = {}
    ffn: dict[FFNKind, int] = {}
    for layer in spec.layers:
        attn[layer.attn.kind] = attn.get(layer.attn.kind, 0) + 1
        ffn[layer.ffn.kind] = ffn.get(layer.ffn.kind, 0) + 1
    return attn, ffn


@pytest.mark.parametrize(
    ("model", "arch", "attn", "ffn"),
    [
        ("llama-3.1-8b", "llama", {AttnKind.FULL: 32}, {FFNKind.DENSE: 32}),
        ("mixtral-8x7b", "llama", {AttnKind.FULL: 32}, {FFNKind.MOE: 32}),
        ("qwen3-8b", "qwen3", {AttnKind.FULL: 36}, {FFNKind.DENSE: 36}),
        ("qwen3-30b-a3b", "qwen3moe", {AttnKind.FULL: 48}, {FFNKind.MOE: 48}),
        ("qwen3-next-80b-a3b", "qwen3next", {AttnKind.LINEAR: 36, AttnKind.FULL: 12}, {FFNKind.MOE: 48}),
        ("qwen3.5-27b", "qwen35", {AttnKind.LINEAR: 48, AttnKind.FULL: 16}, {FFNKind.DENSE: 64}),
        ("qwen3.5-35b-a3b", "qwen35moe", {AttnKind.LINEAR: 30, AttnKind.FULL: 10}, {FFNKind.MOE: 40}),
        ("deepseek-v3.1", "deepseek2", {AttnKind.MLA: 61}, {FFNKind.DENSE: 3, FFNKind.MOE: 58}),
        ("kimi-k2.5", "deepseek2", {AttnKind.MLA: 61}, {FFNKind.DENSE: 1, FFNKind.MOE: 60}),
        ("llama-4-scout-17b-16e", "llama4", {AttnKind.CHUNKED: 36, AttnKind.FULL: 12}, {FFNKind.MOE: 48}),
        (
            "llama-4-maverick-17b-128e",
            "llama4",
            {AttnKind.CHUNKED: 36, AttnKind.FULL: 12},
            {FFNKind.DENSE: 24, FFNKind.MOE: 24},
        ),
        ("gpt-oss-120b", "gpt-oss", {AttnKind.SWA: 18, AttnKind.FULL: 18}, {FFNKind.MOE: 36}),
        ("glm-4.5-air", "glm4moe", {AttnKind.FULL: 46}, {FFNKind.DENSE: 1, FFNKind.MOE: 45}),
        ("gemma-3-27b", "gemma3", {AttnKind.SWA: 52, AttnKind.FULL: 10}, {FFNKind.DENSE: 62}),
        ("gemma-3-270m", "gemma3", {AttnKind.SWA: 15, AttnKind.FULL: 3}, {FFNKind.DENSE: 18}),
    ],
)
def test_layer_kinds(model: str, arch: str, attn: dict[AttnKind, int], ffn: dict[FFNKind, int]) -> None:
    assert resolve(model).spec().arch == arch
    assert kinds(model) == (attn, ffn)


def test_every_catalog_model_builds() -> None:
    for entry in load_catalog().values():
        spec = entry.spec()
        assert spec.n_layer == entry.config["num_hidden_layers"]
        assert spec.context_length == entry.context_length
        # the config's positions may only exceed the documented window, never fall short of it
        assert entry.context_length <= spec_from_config(entry.config).context_length


def test_moe_details() -> None:
    ds = resolve("deepseek-r1").spec()
    assert ds.moe_ffn is not None and (
        ds.moe_ffn.n_expert,
        ds.moe_ffn.n_expert_used,
        ds.moe_ffn.n_ff_shexp,
    ) == (256, 8, 2048)
    mla = ds.layers[0].attn
    assert (mla.head_dim_k, mla.head_dim_v, mla.n_head_kv) == (576, 512, 1)  # latent cache: K only
    gemma = resolve("gemma-3-270m").spec()
    assert [la.attn.kind is AttnKind.FULL for la in gemma.layers].count(True) == 3
    assert gemma.layers[5].attn.kind is AttnKind.FULL and gemma.layers[0].attn.window == 512
    assert resolve("qwen3.5-35b-a3b").spec().mtp_layers and not resolve("kimi-k2.5").spec().mtp_layers


def test_text_config_is_unwrapped() -> None:
    cfg = {
        "model_type": "llama4",
        "architectures": ["Llama4ForConditionalGeneration"],
        "text_config": {**resolve("llama-4-scout-17b-16e").config, "model_type": "llama4_text"},
    }
    assert spec_from_config(cfg).n_layer == 48


def test_unknown_model_type_lists_the_supported_ones() -> None:
    with pytest.raises(UnsupportedArchitecture) as e:
        spec_from_config({"model_type": "mamba"})
    msg = str(e.value)
    assert "'mamba' is not supported" in msg and all(k in msg for k in by_model_type())


def test_missing_or_bad_fields_are_named() -> None:
    cfg = dict(resolve("qwen3-8b").config)
    del cfg["hidden_size"]
    with pytest.raises(BadConfig, match="lacks 'hidden_size'"):
        spec_from_config(cfg)
    with pytest.raises(BadConfig, match="num_hidden_layers"):
        spec_from_config({**resolve("qwen3-8b").config, "num_hidden_layers": -3})
    with pytest.raises(BadConfig, match="layer_types has 3 entries"):
        spec_from_config({**resolve("qwen3.5-9b").config, "layer_types": ["full_attention"] * 3})
