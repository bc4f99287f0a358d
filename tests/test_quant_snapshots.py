"""llama.cpp's own oracle: `tests/snapshots/*.schema` of the pinned sdist list, for full-size real
models and every file type, the type llama-quantize gives each quantizable tensor. moeplan's recipe,
applied to moeplan's own inventory of those models, must reproduce every line."""

import json
from pathlib import Path

import pytest

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import spec_from_config
from moeplan.memory.weights import quant_model
from moeplan.quant.ggml import GGMLType, parse_type
from moeplan.quant.recipe import FileType, QuantOptions, allows_quantization, tensor_types
from moeplan.sources.catalog import resolve

from .conftest import DATA

# snapshot file -> where moeplan gets the model's config
SNAPSHOTS = {
    "deepseek-v3.1": "catalog:deepseek-v3.1",
    "gpt-oss-120b": "catalog:gpt-oss-120b",
    "qwen3.5-397b-a17b": "catalog:qwen3.5-397b-a17b",
    "qwen3.6-27b": "catalog:qwen3.6-27b",  # the snapshot header names it Qwen3.5-27B: same architecture
    "qwen3-coder-next": "catalog:qwen3-coder-next",
    "meta-llama-3.1-70b-instruct": "catalog:llama-3.1-70b",
    "qwen3-0.6b": "catalog:qwen3-0.6b",
    "qwen3-14b": "config:qwen3-14b",
    "gemma-3-4b-it": "catalog:gemma-3-4b",
    "glm-4.6v": "catalog:glm-4.6v",
    "nvidia-nemotron-3-nano-30b-a3b": "catalog:nemotron-3-nano-30b-a3b",
    "step-3.5-flash": "catalog:step-3.5-flash",
}
# Architectures moeplan does not model yet; their snapshots are checked to exist so that a new one is noticed.
NOT_COVERED: set[str] = set()


def parse_snapshot(path: Path) -> dict[str, tuple[GGMLType, dict[str, GGMLType]]]:
    sections: dict[str, tuple[GGMLType, dict[str, GGMLType]]] = {}
    current: dict[str, GGMLType] | None = None
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            name, default = line[1:].split("]")
            current = {}
            sections[name] = (parse_type(default.strip()), current)
        else:
            tensor, ttype = line.rsplit(" ", 1)
            assert current is not None
            current[tensor] = parse_type(ttype)
    return sections


def model_spec(ref: str):  # type: ignore[no-untyped-def]
    kind, name = ref.split(":")
    if kind == "catalog":
        return resolve(name).spec()
    return spec_from_config(json.loads((DATA / "configs" / f"{name}.json").read_text()), name=name)


def test_every_snapshot_is_known(llamacpp_src: Path) -> None:
    found = {p.stem for p in (llamacpp_src / "tests" / "snapshots").glob("*.schema")}
    assert found == set(SNAPSHOTS) | NOT_COVERED


@pytest.mark.parametrize("snapshot", sorted(SNAPSHOTS))
def test_recipe_reproduces_snapshot(llamacpp_src: Path, snapshot: str) -> None:
    sections = parse_snapshot(llamacpp_src / "tests" / "snapshots" / f"{snapshot}.schema")
    inv = inventory(model_spec(SNAPSHOTS[snapshot]), mtp=False)  # published files carry no MTP block
    quantizable = [
        (t.name, t.shape, GGMLType.BF16) for t in inv.tensors if allows_quantization(t.name, t.shape)
    ]
    names = {t[0] for t in quantizable}
    mismatches: list[str] = []
    for section, (default, overrides) in sections.items():
        ft = FileType.parse(section)
        assert ft.default_type == default, section
        unknown = set(overrides) - names
        assert not unknown, f"[{section}] snapshot tensors missing from our inventory: {sorted(unknown)[:5]}"
        got = tensor_types(quant_model(inv), ft, quantizable, QuantOptions(imatrix=False))
        for (name, _, _), ty in zip(quantizable, got, strict=True):
            want = overrides.get(name, default)
            if ty != want:
                mismatches.append(f"[{section}] {name}: want {want.name}, got {ty.name}")
    assert not mismatches, f"{len(mismatches)} mismatches, e.g. {mismatches[:8]}"
    assert {FileType.parse(s) for s in sections} == set(FileType)  # every file type moeplan offers
