"""A GGUF of an architecture moeplan has no family for (qwen2moe: Qwen1.5-MoE / Qwen2-57B-A14B),
written here with gguf's GGUFWriter, is inspected, described and planned from its own header alone;
the pinned llama.cpp loads it and allocates the KV cache, compute and model buffers moeplan says."""

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from validation.llamacpp import MIB, run
from validation.runtime import KV_TOLERANCE_MIB, compute_ok, parse_memory_log

from moeplan import api
from moeplan.arch.from_gguf import GGUFHParams, generic_spec
from moeplan.arch.registry import architectures
from moeplan.arch.spec import AttnKind, FFNKind
from moeplan.errors import MoeplanError, UnsupportedArchitecture
from moeplan.sources.reference import resolve_model

E, N_HEAD, N_HEAD_KV, HEAD, N_LAYER, N_EXP, N_USED, FF_EXP, FF_SHEXP, VOCAB = (
    256, 4, 2, 64, 4, 8, 2, 256, 512, 512,
)  # fmt: skip


def _qwen2moe(path: Path) -> Path:
    """The tensors `llama_model_qwen2moe::load_arch_tensors` creates, at F16 (F32 for 1-D)."""
    w = GGUFWriter(path, "qwen2moe")
    w.add_context_length(4096)
    w.add_embedding_length(E)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(FF_EXP)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_expert_count(N_EXP)
    w.add_expert_used_count(N_USED)
    w.add_expert_feed_forward_length(FF_EXP)
    w.add_expert_shared_feed_forward_length(FF_SHEXP)
    w.add_tokenizer_model("test")
    w.add_token_list([f"tok_{i}" for i in range(VOCAB)])
    w.add_token_scores([0.0] * VOCAB)
    w.add_file_type(1)
    rng = np.random.default_rng(0)
    kv = N_HEAD_KV * HEAD

    def add(name: str, *shape: int) -> None:  # numpy order: outermost first
        data = rng.normal(0, 0.02, size=shape).astype(np.float32)
        w.add_tensor(name, data if len(shape) == 1 else data.astype(np.float16))

    add("token_embd.weight", VOCAB, E)
    add("output_norm.weight", E)
    add("output.weight", VOCAB, E)
    for il in range(N_LAYER):
        p = f"blk.{il}"
        add(f"{p}.attn_norm.weight", E)
        add(f"{p}.attn_q.weight", E, E)
        add(f"{p}.attn_k.weight", kv, E)
        add(f"{p}.attn_v.weight", kv, E)
        add(f"{p}.attn_q.bias", E)
        add(f"{p}.attn_k.bias", kv)
        add(f"{p}.attn_v.bias", kv)
        add(f"{p}.attn_output.weight", E, E)
        add(f"{p}.ffn_norm.weight", E)
        add(f"{p}.ffn_gate_inp.weight", N_EXP, E)
        add(f"{p}.ffn_gate_exps.weight", N_EXP, FF_EXP, E)
        add(f"{p}.ffn_up_exps.weight", N_EXP, FF_EXP, E)
        add(f"{p}.ffn_down_exps.weight", N_EXP, E, FF_EXP)
        add(f"{p}.ffn_gate_inp_shexp.weight", E)
        add(f"{p}.ffn_gate_shexp.weight", FF_SHEXP, E)
        add(f"{p}.ffn_up_shexp.weight", FF_SHEXP, E)
        add(f"{p}.ffn_down_shexp.weight", E, FF_SHEXP)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert "qwen2moe" not in architectures()  # the point: no family, no catalog entry, no config.json
    return _qwen2moe(tmp_path_factory.mktemp("anyarch") / "Qwen1.5-MoE-tiny-F16.gguf")


def test_spec_from_the_header_alone(model: Path) -> None:
    r = resolve_model(str(model))
    spec = r.require_spec()
    assert r.spec_source == "GGUF metadata" and spec.arch == "qwen2moe" and spec.n_layer == N_LAYER
    assert {la.attn.kind for la in spec.layers} == {AttnKind.FULL}
    a, f = spec.layers[0].attn, spec.layers[0].ffn
    assert (a.n_head, a.n_head_kv, a.head_dim_k, a.head_dim_v) == (N_HEAD, N_HEAD_KV, HEAD, HEAD)
    assert f.kind is FFNKind.MOE and (f.n_expert, f.n_expert_used, f.n_ff_exp, f.n_ff_shexp) == (
        N_EXP, N_USED, FF_EXP, FF_SHEXP,
    )  # fmt: skip
    assert not spec.tied_embeddings and spec.n_vocab == VOCAB and spec.context_length == 4096
    size = api.predict_size(str(model), None)
    assert size.source == "gguf header" and size.file_bytes == model.stat().st_size
    assert r.file is not None and size.params_total == sum(t.n_elements for t in r.file.tensors)


def test_plan_names_the_file_and_uses_its_tensors(model: Path) -> None:
    p = api.plan(str(model), "RTX 4090 + 64GB DDR5-6000")
    assert p.fits and str(model) in p.command and p.quant == "F16"


@pytest.mark.llamacpp
@pytest.mark.parametrize(("ctx", "n_seq", "cache", "fa"), [(4096, 1, "f16", True), (5000, 2, "q8_0", True)])
def test_llamacpp_allocates_what_moeplan_says(
    model: Path, ctx: int, n_seq: int, cache: str, fa: bool
) -> None:
    args = ["-m", str(model), "-c", str(ctx), "-np", str(n_seq), "-ctk", cache, "-ctv", cache]
    args += ["-fa", "on" if fa else "off", "-t", "2", "-lv", "4", "--fit", "off", "-n", "1", "-p", "hi"]
    r = run("llama-completion", [*args, "-no-cnv", "--temp", "0"])
    assert r.ok, r.failure()
    log = parse_memory_log(r.stderr + "\n" + r.stdout)
    m = api.memory(
        str(model), "F16", ctx, n_seq=n_seq, ctk=cache, ctv=cache, flash_attn=fa, frontend="completion"
    )
    cpu = next(d for d in m.devices if d.device == "CPU")
    assert abs(log["caches"]["full"]["mib"] - cpu.kv_bytes / MIB) <= KV_TOLERANCE_MIB
    assert compute_ok(cpu.compute_bytes / MIB, log["compute_mib"]["CPU"])
    model_mib = float(
        next(line for line in r.stderr.splitlines() if "CPU_Mapped model buffer size" in line)
        .split("=")[1]
        .split()[0]
    )
    assert abs(model_mib - cpu.weights_bytes / MIB) < 0.01


def test_what_the_keys_cannot_express_is_refused() -> None:
    """A sliding window whose layer pattern llama.cpp sets in code, for an architecture moeplan does
    not model: a one-line error naming what is missing, not a guess."""
    meta = {
        "x.block_count": 2,
        "x.embedding_length": 64,
        "x.attention.head_count": 1,
        "x.attention.sliding_window": 128,
    }
    shapes = {"token_embd.weight": (64, 10), "blk.0.attn_k.weight": (64, 64), "blk.1.attn_k.weight": (64, 64)}
    shapes |= {f"blk.{i}.ffn_up.weight": (64, 128) for i in range(2)}
    with pytest.raises(
        UnsupportedArchitecture, match="sliding window but the file does not say which layers"
    ):
        generic_spec(GGUFHParams("x", meta, shapes, "tiny.gguf"))
    with pytest.raises(MoeplanError, match=r"lacks x\.block_count"):
        generic_spec(GGUFHParams("x", {}, shapes, "tiny.gguf"))
