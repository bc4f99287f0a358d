"""The architecture registry: llama.cpp arch name and HF model_type → the family that handles it."""

from collections.abc import Mapping
from functools import cache

from moeplan.arch.config import Config
from moeplan.arch.families import FAMILIES
from moeplan.arch.family import Family
from moeplan.arch.spec import ModelSpec
from moeplan.errors import BadConfig, UnsupportedArchitecture


@cache
def _by_arch() -> dict[str, Family]:
    out: dict[str, Family] = {}
    for cls in FAMILIES:
        if cls.arch in out:
            raise BadConfig(f"two families claim the architecture '{cls.arch}'")
        out[cls.arch] = cls()
    return out


@cache
def by_model_type() -> dict[str, Family]:
    out: dict[str, Family] = {}
    for fam in _by_arch().values():
        for mt in fam.model_types:
            if mt in out:
                raise BadConfig(f"two families claim the model_type '{mt}'")
            out[mt] = fam
    return out


def architectures() -> list[str]:
    return sorted(_by_arch())


def family(arch: str) -> Family:
    fam = _by_arch().get(arch)
    if fam is None:
        raise UnsupportedArchitecture(
            f"llama.cpp architecture '{arch}' is not modelled; modelled: {', '.join(architectures())}"
        )
    return fam


_GENERIC = Family()


def rules(arch: str) -> Family:
    """The runtime rules (recurrent state, activations) of `arch`: its family's, or the defaults
    (llama-style layers, Mamba-style state) for a GGUF of an architecture moeplan has no family for,
    whose spec the generic reader accepted (`arch/from_gguf.py`)."""
    return _by_arch().get(arch, _GENERIC)


def spec_from_config(cfg: Config, name: str | None = None) -> ModelSpec:
    """ModelSpec of the text model described by an HF config.json (multimodal wrappers are
    unwrapped to their `text_config` first)."""
    text = cfg.get("text_config")
    if isinstance(text, Mapping):
        cfg = {**{k: v for k, v in cfg.items() if k != "text_config"}, **text}
    model_type = str(cfg.get("model_type", ""))
    fam = by_model_type().get(model_type)
    if fam is None:
        raise UnsupportedArchitecture(
            f"model_type '{model_type}' is not supported; supported: {', '.join(sorted(by_model_type()))}"
        )
    spec = fam.spec_from_config(cfg)
    return ModelSpec(**{**spec.__dict__, "name": name or spec.name})
