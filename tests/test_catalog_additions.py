"""Catalog entries added from printed official checkpoints (GLM-4.7, Qwen3.5-2B, MiMo-V2.5 and
-Pro, Kimi-K2-Instruct, Qwen3-Coder-30B-A3B, Ling-flash-2.0): inventories that equal the weights the
checkpoints' own tensor lists, indexes or hub records count (sources in each YAML); their layer kinds
are checked with the other current releases in test_family_catalog_refresh."""

import pytest

from moeplan.arch.inventory import inventory
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import resolve


@pytest.mark.parametrize(
    ("model", "weights"),
    [
        # model reports' safetensors tensor lists: text weights without FP8 block scales, rotary
        # inv_freq buffers, vision/audio encoders and speech embeddings
        ("mimo-v2.5", 309_766_601_088),
        ("mimo-v2.5-pro", 1_023_182_841_600),  # 1,023,244,718,976 listed - 61,877,376 scales
        ("kimi-k2-instruct", 1_026_408_232_448),  # 1,026,470,731,056 - 62,495,192 scales - 3,416 inv_freq
        # model.safetensors.index.json metadata.total_parameters
        ("qwen3-coder-30b-a3b", 30_532_122_624),
        # the HF API's safetensors.total (no MTP weights in the checkpoint)
        ("ling-flash-2.0", 102_889_705_216),
    ],
)
def test_inventory_with_mtp_equals_checkpoint_weights(model: str, weights: int) -> None:
    """Exact: the GGUF inventory with the MTP blocks the pinned converter keeps (MiMo: 3)."""
    assert sum(t.n_elements for t in inventory(resolve(model).spec(), mtp=True).tensors) == weights


def test_kimi_k2_tensors_match_the_published_gguf() -> None:
    """unsloth/Kimi-K2-Instruct-GGUF UD-Q4_K_XL holds 1,096 tensors, 365 of them F32 (norms, router
    biases): the converter's tensor list for this config, whatever the per-tensor recipe."""
    w = predict(inventory(resolve("kimi-k2-instruct").spec()), FileType.Q4_K_M)
    assert len(w.tensors) == 1096
    assert w.type_histogram()["f32"] == 365
