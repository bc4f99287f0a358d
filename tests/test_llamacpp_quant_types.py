"""llama-quantize --dry-run on every materialised catalog model, for every file type moeplan
supports, gives each tensor the type moeplan's recipe predicts (100%, tensor for tensor)."""

from typing import Any

import pytest
from validation.llamacpp import quantize_dry_run, run_types
from validation.materialize import SOURCE_TYPE, materialize

from moeplan.memory.weights import llama_quantize
from moeplan.quant.recipe import FileType, QuantOptions
from moeplan.sources.catalog import load_catalog

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def type_results() -> dict[str, list[dict[str, Any]]]:
    payload = run_types()  # writes validation/results/quant_types.json
    by_model: dict[str, list[dict[str, Any]]] = {}
    for c in payload["comparisons"]:
        by_model.setdefault(c["model"], []).append(c)
    return by_model


@pytest.mark.parametrize("model_id", sorted(load_catalog()))
def test_types_agree_for_every_file_type(
    type_results: dict[str, list[dict[str, Any]]], model_id: str
) -> None:
    comparisons = type_results[model_id]
    assert {c["ftype"] for c in comparisons} == {ft.name for ft in FileType}
    failures = [
        f"{c['ftype']}: {c['error']} {c['mismatches'][:3]} {c.get('failure', '')}"
        for c in comparisons
        if not c["ok"]
    ]
    assert not failures, f"{model_id}: {len(failures)} file types disagree:\n" + "\n".join(failures)


def test_a_wrong_prediction_is_caught() -> None:
    """Negative control: predicting IQ3_XXS as if an imatrix were given (llama-quantize gets none)
    must disagree on the attn_v / ffn_down tensors whose rule reads it."""
    m = materialize(load_catalog()["qwen3-8b"].spec())
    dry = quantize_dry_run(m.path, FileType.IQ3_XXS)
    wrong = llama_quantize(m.inventory, FileType.IQ3_XXS, QuantOptions(imatrix=True), source_type=SOURCE_TYPE)
    differ = [t.spec.name for t in wrong.tensors if dry.types[t.spec.name] != t.type]
    assert differ and all("attn_v" in n or "ffn_down" in n for n in differ)
