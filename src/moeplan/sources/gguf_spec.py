"""The ModelSpec of a real GGUF file, from its own header: what llama.cpp loads, with no config.json.

The family of the file's architecture reads it (`Family.spec_from_gguf`); an architecture moeplan
has no family for is read by the generic rules (`arch/from_gguf.py`), which refuse what the keys
cannot express.
"""

from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.registry import architectures, family
from moeplan.arch.spec import ModelSpec
from moeplan.sources.gguf_header import GGUFModel
from moeplan.sources.gguf_weights import arch_of


def hparams(model: GGUFModel) -> GGUFHParams:
    name = str(model.metadata.get("general.name") or model.shards[0].source)
    shapes = {t.name: t.shape for t in model.tensors}
    return GGUFHParams(arch_of(model), model.metadata, shapes, name)


def spec_from_gguf(model: GGUFModel) -> ModelSpec:
    hp = hparams(model)
    if hp.arch in architectures():
        return family(hp.arch).spec_from_gguf(hp)
    return generic_spec(hp)
