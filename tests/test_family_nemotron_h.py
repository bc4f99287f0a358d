"""Dense Nemotron-H (llama.cpp `nemotron_h`): Nemotron-H-56B-Base-8K, Nemotron-Nano-9B-v2 and
Nemotron-3-Nano-4B. The block kinds from hybrid_override_pattern (M / * / '-'), the tensors the
pinned converter writes and nemotron-h.cpp loads (the MLP is up/down only), parameter counts against
the audited and published figures, the per-layer arrays the loader tells the kinds from, the KV of
the attention blocks and the Mamba-2 state, and the split from the MoE architecture."""

from collections import Counter
from typing import Any

import pytest
from validation.materialize import materialize

from moeplan.arch.inventory import inventory
from moeplan.arch.registry import family, spec_from_config
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import BadConfig, UnsupportedArchitecture
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.sources.catalog import load_catalog
from moeplan.sources.gguf_header import read_local
from moeplan.sources.gguf_spec import spec_from_gguf
from tests.catalog_specs import config, shapes, spec

H56, NANO9, NANO4 = "nemotron-h-56b-base-8k", "nemotron-nano-9b-v2", "nemotron-3-nano-4b"
# (Mamba-2 blocks, MLP blocks, attention blocks at) from hybrid_override_pattern
BLOCKS = {
    H56: (54, 54, [7, 18, 29, 40, 51, 62, 73, 84, 95, 106]),
    NANO9: (27, 25, [14, 21, 30, 39]),
    NANO4: (21, 17, [12, 17, 24, 32]),
}
# (parameters, tensors); the 4B's are the Megatron-Bridge conversion audit of its BF16 checkpoint
PARAMS = {
    H56: (56_324_350_464, 701),
    NANO9: (8_888_227_328, 341),
    NANO4: (3_973_556_832, 263),
}
# (d_inner, d_state) of the Mamba-2 blocks: heads x head_dim, 8 groups, conv 4
MAMBA = {H56: (16384, 256), NANO9: (10240, 128), NANO4: (7680, 128)}


@pytest.mark.parametrize("model", sorted(BLOCKS))
def test_blocks_are_exactly_one_kind(model: str) -> None:
    s = spec(model)
    n_ssm, n_mlp, attn_at = BLOCKS[model]
    assert s.arch == "nemotron_h" and not s.is_moe and not s.mtp_layers and not s.tied_embeddings
    assert Counter((la.attn.kind, la.ffn.kind) for la in s.layers) == {
        (AttnKind.LINEAR, FFNKind.NONE): n_ssm,
        (AttnKind.NONE, FFNKind.DENSE): n_mlp,
        (AttnKind.FULL, FFNKind.NONE): len(attn_at),
    }
    assert [i for i, la in enumerate(s.layers) if la.attn.kind is AttnKind.FULL] == attn_at


@pytest.mark.parametrize("model", sorted(PARAMS))
def test_parameters_against_audited_and_published(model: str) -> None:
    n_params, n_tensors = PARAMS[model]
    inv = inventory(spec(model))
    assert sum(t.n_elements for t in inv.tensors) == n_params and len(inv.tensors) == n_tensors
    published = load_catalog()[model].params_published.total
    assert abs(n_params - published) / published < 0.02


def test_mlp_block_is_up_and_down_only() -> None:
    t = shapes(spec(NANO9))
    assert {n.removeprefix("blk.1.") for n in t if n.startswith("blk.1.")} == {
        "attn_norm.weight",  # every block's one norm
        "ffn_up.weight",
        "ffn_down.weight",
    }
    assert t["blk.1.ffn_up.weight"] == (4480, 15680) and t["blk.1.ffn_down.weight"] == (15680, 4480)
    # Mamba-2: in_proj 2 x 10240 + 2 x 8 x 128 + 128 heads; 40 q / 8 kv heads of 128 on attention blocks
    assert t["blk.0.ssm_in.weight"] == (4480, 2 * 10240 + 2 * 8 * 128 + 128)
    assert t["blk.0.ssm_norm.weight"] == (10240 // 8, 8)
    assert t["blk.14.attn_q.weight"] == (4480, 5120) and t["blk.14.attn_k.weight"] == (4480, 1024)
    assert not any(n.endswith(("ffn_gate.weight", "ffn_norm.weight")) for n in t)


def test_gguf_arrays_the_loader_reads() -> None:
    """nemotron-h.cpp: recurrent where head_count_kv and feed_forward_length are both 0, attention
    where only n_ff is 0, the MLP where n_ff is set; no expert keys, no RoPE context."""
    s = spec(NANO4)
    kv = family("nemotron_h").gguf_metadata(inventory(s))
    pattern = config(NANO4)["hybrid_override_pattern"]
    assert kv[".feed_forward_length"] == [12544 if t == "-" else 0 for t in pattern]
    assert kv[".attention.head_count_kv"] == [8 if t == "*" else 0 for t in pattern]
    assert kv[".ssm.inner_size"] == 7680 and kv[".ssm.time_step_rank"] == 96
    assert kv[".context_length"] == 2**20 and not any(k.startswith(".expert") for k in kv)


@pytest.mark.parametrize("model", sorted(MAMBA))
def test_kv_on_attention_blocks_and_mamba2_state(model: str) -> None:
    s = spec(model)
    n_ssm, _, attn_at = BLOCKS[model]
    d_inner, d_state = MAMBA[model]
    mem = layer_memory(s, CacheConfig(n_ctx=8192, n_seq=2))
    assert sum(m.k_bytes + m.v_bytes for m in mem) == 8192 * len(attn_at) * 2 * 8 * 128 * 2
    per_seq = 4 * (3 * (d_inner + 2 * 8 * d_state) + d_state * d_inner)  # F32 conv + SSM state
    assert sum(m.state_bytes for m in mem) == n_ssm * 2 * per_seq


@pytest.mark.parametrize("model", [NANO4, H56])
def test_file_reads_back_as_materialised(model: str) -> None:
    m = materialize(spec(model))
    got = spec_from_gguf(read_local(m.path))
    assert got.arch == "nemotron_h" and got.layers == m.spec.layers
    assert shapes(got) == shapes(m.spec)


def test_moe_configs_stay_nemotron_h_moe() -> None:
    """One reader: a config with num_experts_per_tok is the MoE architecture (NemotronHModel)."""
    s = spec("nemotron-3-nano-30b-a3b")
    assert s.arch == "nemotron_h_moe" and family(s.arch).mtp_kept
    assert not family("nemotron_h").mtp_kept


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"hybrid_override_pattern": "M-M*" + "E" * 38}, BadConfig),  # E without the MoE fields
        (
            {"layers_block_type": ["mamba", "attention"] * 21, "hybrid_override_pattern": None},
            UnsupportedArchitecture,
        ),
        ({"mlp_bias": True}, BadConfig),
        ({"num_hidden_layers": 41}, BadConfig),
        ({"hybrid_override_pattern": "M-M*" + "x" * 38}, BadConfig),
    ],
)
def test_dense_guards(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        spec_from_config(config(NANO4, **changes))
