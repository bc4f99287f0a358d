"""The harness's own pieces that need no llama.cpp binary: shrinking and parsing."""

import pytest
from validation.llamacpp import Run, parse_breakdown_table, parse_fit_print, parse_quantize
from validation.materialize import shrink

from moeplan.arch.inventory import inventory
from moeplan.arch.spec import AttnKind
from moeplan.sources.catalog import load_catalog


@pytest.mark.parametrize("model_id", sorted(load_catalog()))
def test_shrink_keeps_the_model_shape(model_id: str) -> None:
    spec = load_catalog()[model_id].spec()
    small = shrink(spec)
    assert small.arch == spec.arch and small.n_layer == spec.n_layer
    assert len(small.mtp_layers) == len(spec.mtp_layers)
    for big, little in zip(spec.layers + spec.mtp_layers, small.layers + small.mtp_layers, strict=True):
        assert little.attn.kind is big.attn.kind and little.ffn.kind is big.ffn.kind
        assert (little.ffn.n_expert, little.ffn.n_expert_used) == (big.ffn.n_expert, big.ffn.n_expert_used)
        if big.attn.shared_kv:  # one shared K=V head (DeepSeek-V4): it stays one, queries shrink
            assert little.attn.n_head_kv == big.attn.n_head_kv == 1 and little.attn.n_head <= big.attn.n_head
        elif big.attn.kind not in (AttnKind.LINEAR, AttnKind.MLA, AttnKind.NONE):  # NONE: no heads at all
            if not big.attn.n_head_kv:  # deci's blocks without attention or with its linear stand-in
                assert not little.attn.n_head_kv and bool(little.attn.n_head) == bool(big.attn.n_head)
                continue
            assert little.attn.n_head // little.attn.n_head_kv == big.attn.n_head // big.attn.n_head_kv
    full_rows = {t.name: t.shape[0] for t in inventory(spec).tensors}
    for t in inventory(small).tensors:  # quantizable rows stay whole 32-blocks, or as narrow as they are
        assert t.stored is not None or t.shape[0] % 32 == 0 or t.shape[0] == full_rows.get(t.name), t


def test_parse_quantize_dry_run() -> None:
    log = (
        "[   5/ 459] blk.0.attn_k.weight                  - [   320,     64,      1,      1], type =    f16,"
        " size =     0.04 MiB ->     0.01 MiB (q5_0)\n"
        "[   6/ 459] blk.0.attn_norm.weight               - [   320,      1,      1,      1], type =    f32,"
        " size =    0.001 MiB\n"
        "llama_model_quantize_impl: quant size  =   178.34 MiB (6.08 BPW)\n"
    )
    d = parse_quantize(Run(("llama-quantize",), 0, "", log, 0.0))
    assert {k: v.name for k, v in d.types.items()} == {
        "blk.0.attn_k.weight": "Q5_0",
        "blk.0.attn_norm.weight": "F32",
    }
    assert d.shapes["blk.0.attn_norm.weight"] == (320,) and d.quant_mib == 178.34


def test_parse_fit_outputs() -> None:
    assert parse_fit_print("Host 222 27 524\n") == {"Host": {"model": 222, "context": 27, "compute": 524}}
    log = (
        "0.00.876 I common_memory_breakdown_print: |   - Host               |"
        "                  774 =   222 +      27 +     524                |\n"
        "0.00.876 I common_memory_breakdown_print: |   - CPU_REPACK         |"
        "                   12 =    12 +       0 +       0                |\n"
    )
    table = parse_breakdown_table(log)
    assert table["Host"]["model"] == 222 and table["CPU_REPACK"]["model"] == 12
