"""Rule branches of the llama-quantize port that the snapshot models do not reach: options,
8-expert (Mixtral) models, Falcon, imatrix-dependent rules and the row-size fallbacks."""

from moeplan.arch.inventory import inventory
from moeplan.memory.weights import predict
from moeplan.quant.ggml import GGMLType as T
from moeplan.quant.recipe import FileType as F
from moeplan.quant.recipe import QuantModel, QuantOptions, category, fallback, tensor_types, visit_order
from moeplan.sources.catalog import resolve

DENSE = QuantModel("llama", n_layer=16, n_head=32, n_head_kv=8)
E = 4096


def dense_tensors(n_layer: int = 16) -> list[tuple[str, tuple[int, ...], T]]:
    out = [("token_embd.weight", (E, 32000), T.F16), ("output.weight", (E, 32000), T.F16)]
    for i in range(n_layer):
        out += [
            (f"blk.{i}.attn_v.weight", (E, 1024), T.F16),
            (f"blk.{i}.attn_k.weight", (E, 1024), T.F16),
            (f"blk.{i}.attn_output.weight", (E, E), T.F16),
            (f"blk.{i}.ffn_down.weight", (14336, E), T.F16),
            (f"blk.{i}.ffn_up.weight", (E, 14336), T.F16),
            (f"blk.{i}.attn_norm.weight", (E,), T.F32),
        ]
    return out


def types(ft: F, opts: QuantOptions | None = None, model: QuantModel = DENSE) -> dict[str, T]:
    ts = dense_tensors(model.n_layer)
    return {t[0]: ty for t, ty in zip(ts, tensor_types(model, ft, ts, opts), strict=True)}


def test_q4_k_m_use_more_bits_on_dense_running_counters() -> None:
    got = types(F.Q4_K_M)
    more = {i for i in range(16) if got[f"blk.{i}.ffn_down.weight"] is T.Q6_K}
    assert more == {0, 1, 4, 7, 10, 13, 14, 15}  # use_more_bits(i, 16)
    assert got["output.weight"] is T.Q6_K and got["token_embd.weight"] is T.Q4_K
    assert got["blk.0.attn_norm.weight"] is T.F32


def test_options_pure_overrides_and_output() -> None:
    pure = types(F.Q4_K_M, QuantOptions(pure=True))
    assert {pure[f"blk.{i}.ffn_down.weight"] for i in range(16)} == {T.Q4_K}
    assert pure["output.weight"] is T.Q4_K
    manual = types(F.Q4_K_M, QuantOptions(tensor_types=((r"ffn_down", T.Q8_0), (r"blk\.1\.", T.Q2_K))))
    assert manual["blk.1.ffn_down.weight"] is T.Q8_0  # first matching pattern wins
    assert manual["blk.1.attn_v.weight"] is T.Q2_K
    kept = types(F.Q4_K_M, QuantOptions(leave_output_tensor=True, token_embedding_type=T.Q8_0))
    assert kept["output.weight"] is T.F16 and kept["token_embd.weight"] is T.Q8_0
    assert types(F.Q4_K_M, QuantOptions(output_tensor_type=T.BF16))["output.weight"] is T.BF16


def test_imatrix_dependent_rules() -> None:
    assert types(F.IQ3_XXS, QuantOptions(imatrix=False))["blk.0.ffn_down.weight"] is T.Q4_K
    assert types(F.IQ3_XXS, QuantOptions(imatrix=True))["blk.0.ffn_down.weight"] is T.IQ3_XXS
    assert types(F.Q4_0, QuantOptions(imatrix=True))["blk.0.ffn_down.weight"] is T.Q4_1
    assert types(F.Q4_0, QuantOptions(imatrix=False))["blk.0.ffn_down.weight"] is T.Q4_0
    assert types(F.IQ4_XS, QuantOptions(imatrix=False))["blk.0.ffn_down.weight"] is T.Q5_K
    assert types(F.IQ4_XS, QuantOptions(imatrix=True))["blk.0.ffn_down.weight"] is T.IQ4_XS


def test_70b_and_falcon_special_cases() -> None:
    l70 = QuantModel("llama", n_layer=80, n_head=64, n_head_kv=8)
    assert l70.is_70b and types(F.Q3_K_S, model=l70)["blk.5.attn_v.weight"] is T.Q5_K
    falcon = QuantModel("falcon", n_layer=16, n_head=32, n_head_kv=8)
    got = types(F.Q4_K_M, model=falcon)
    assert got["output.weight"] is T.Q8_0
    assert got["blk.0.ffn_down.weight"] is T.Q6_K and got["blk.1.ffn_down.weight"] is T.Q5_K
    assert types(F.Q3_K_L, model=falcon)["blk.3.attn_output.weight"] is T.Q4_K


def test_mixtral_eight_experts() -> None:
    w = {t.spec.name: t.type for t in predict(inventory(resolve("mixtral-8x7b").spec()), F.Q4_K_M).tensors}
    assert w["blk.0.attn_v.weight"] is T.Q8_0 and w["blk.0.attn_k.weight"] is T.Q8_0
    assert w["blk.0.attn_output.weight"] is T.Q5_K
    iq2 = {t.spec.name: t.type for t in predict(inventory(resolve("mixtral-8x7b").spec()), F.IQ2_XXS).tensors}
    assert iq2["blk.0.attn_k.weight"] is T.Q4_K and iq2["blk.0.attn_output.weight"] is T.Q5_K
    assert iq2["output.weight"] is T.Q5_K and iq2["token_embd.weight"] is T.Q2_K


def test_fallbacks() -> None:
    assert fallback(T.Q4_K, 640) is T.Q5_0 and fallback(T.Q6_K, 640) is T.Q8_0
    assert fallback(T.IQ2_XXS, 128 + 32) is T.IQ4_NL
    assert fallback(T.Q4_K, 100) is T.F16 and fallback(T.Q8_0, 100) is T.F16
    assert fallback(T.Q4_K, 4096) is T.Q4_K


def test_categories_and_visit_order() -> None:
    assert category("blk.0.ffn_gate_up_exps.weight").value == "ffn_gate"
    assert category("blk.0.ffn_down_shexp.weight").value == "ffn_down"
    assert category("blk.0.attn_kv_a_mqa.weight").value == "other"
    names = ["blk.10.a", "output.weight", "blk.2.b", "blk.2.a", "token_embd.weight"]
    assert [names[i] for i in visit_order(names)] == [
        "output.weight",
        "token_embd.weight",
        "blk.2.a",
        "blk.2.b",
        "blk.10.a",
    ]
