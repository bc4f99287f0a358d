"""The July 2025 Qwen3 re-releases (-Instruct-2507 / -Thinking-2507): the originals' tensors with a
262,144-token native context, so entries of their own rather than aliases of the originals."""

import pytest

from moeplan.arch.inventory import inventory
from moeplan.errors import MoeplanError
from moeplan.plan.policy import RopeScaling, context_bounds
from moeplan.sources.catalog import CatalogEntry, resolve

RELEASES = [
    ("qwen3-4b-instruct-2507", "qwen3-4b"),
    ("qwen3-30b-a3b-instruct-2507", "qwen3-30b-a3b"),
    ("qwen3-235b-a22b-instruct-2507", "qwen3-235b-a22b"),
]


def n_params(model: str) -> int:
    return sum(t.n_elements for t in inventory(resolve(model).spec()).tensors)


@pytest.mark.parametrize(("release", "original"), RELEASES)
def test_same_tensors_as_the_original(release: str, original: str) -> None:
    a = inventory(resolve(release).spec()).tensors
    b = inventory(resolve(original).spec()).tensors
    assert [(t.name, t.shape) for t in a] == [(t.name, t.shape) for t in b]


@pytest.mark.parametrize(
    ("model", "published"),
    [
        # ggml-org/Llama-macOS LlamaBarn catalog parameterCount of the 2507 GGUFs
        ("qwen3-4b-instruct-2507", 4_022_468_096),
        ("qwen3-30b-a3b-instruct-2507", 30_532_122_624),
    ],
)
def test_parameters_equal_the_published_gguf(model: str, published: int) -> None:
    assert n_params(model) == published


def extension(entry: CatalogEntry) -> RopeScaling | None:
    ext = entry.rope_extension
    return RopeScaling(ext.method, ext.factor, ext.original_context, ext.source) if ext else None


@pytest.mark.parametrize(("release", "original"), RELEASES)
def test_262k_context_is_native_for_the_release_only(release: str, original: str) -> None:
    new, old = resolve(release), resolve(original)
    assert new.context_length == new.spec().context_length == 262_144
    assert context_bounds(262_144, new.spec().context_length, new.name, extension(new)) is None
    with pytest.raises(MoeplanError, match="above the most"):  # YaRN takes the original to 131,072
        context_bounds(262_144, old.spec().context_length, old.name, extension(old))


@pytest.mark.parametrize(
    ("thinking", "model_id"),
    [
        ("Qwen3-4B-Thinking-2507", "qwen3-4b-instruct-2507"),
        ("Qwen3-30B-A3B-Thinking-2507", "qwen3-30b-a3b-instruct-2507"),
        ("Qwen/Qwen3-235B-A22B-Thinking-2507", "qwen3-235b-a22b-instruct-2507"),
    ],
)
def test_thinking_release_shares_the_instruct_config(thinking: str, model_id: str) -> None:
    assert resolve(thinking).id == model_id
