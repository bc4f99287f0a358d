"""vLLM / SGLang distributed plans: known deployment facts, divisibility rules, KV rules for MLA,
sliding-window and linear-attention layers, commands and the LeaderWorkerSet manifest."""

import re

import pytest
import yaml

from moeplan.engines import sglang, vllm
from moeplan.engines.serving import GiB
from moeplan.engines.sharding import Layout, check_divisibility, kv_values_per_token, stage_layers
from moeplan.hardware.rig import parse_rig
from moeplan.plan.distributed import plan_distributed
from moeplan.sources.catalog import resolve

# ---- acceptance facts ------------------------------------------------------------------------


def test_deepseek_v3_fp8_fits_8x_h200_not_8x_h100() -> None:
    # DeepSeek-V3 README / vLLM & SGLang DeepSeek recipes: the 671B FP8 checkpoint (~640 GiB) is served
    # on one 8x H200 node; 8x H100 80 GB needs two nodes (SGLang "DeepSeek V3: 2 nodes of 8x H100").
    h200 = plan_distributed("deepseek-v3", parse_rig("8x H200"), "vllm")
    assert h200.fits and h200.kv_capacity_sequences >= 8
    for engine in ("vllm", "sglang"):
        h100 = plan_distributed("deepseek-v3", parse_rig("8x H100-SXM"), engine)  # type: ignore[arg-type]
        assert not h100.fits
        assert any(n.id == "DOES_NOT_FIT" for n in h100.notices)
    two = plan_distributed("deepseek-v3", parse_rig("2 nodes x 8x H100-SXM, 400Gb IB"), "sglang")
    assert two.fits


def test_qwen3_235b_fp8_fits_4x_h100_with_room_for_kv() -> None:
    # Qwen3 model card / Qwen deployment docs: Qwen3-235B-A22B-FP8 served with TP4 on 4x H100 80 GB.
    p = plan_distributed("qwen3-235b-a22b", parse_rig("4x H100-SXM"), "vllm", weight_format="fp8")
    assert p.fits and p.hf_repo == "Qwen/Qwen3-235B-A22B-FP8"
    assert p.memory.kv_cache > 8 * GiB
    assert p.kv_capacity_sequences >= 4  # 32k-token sequences


def test_gpt_oss_120b_fits_one_h100() -> None:
    # OpenAI gpt-oss model card: "gpt-oss-120b … fits into a single 80GB GPU (like NVIDIA H100)".
    p = plan_distributed("gpt-oss-120b", parse_rig("1x H100-SXM"), "vllm")
    assert p.fits and p.layout == Layout(1)
    assert p.weight_format == "mxfp4" and p.memory.weights < 64 * GiB
    assert any(n.id == "FORMAT_NOT_NATIVE" and n.severity == "warning" for n in p.notices)  # Marlin/triton


def test_kimi_k25_int4_fits_8x_h200() -> None:
    # Moonshot Kimi-K2.5 deployment guide / vLLM recipe: the INT4 (compressed-tensors) release on 8x H200.
    for engine in ("vllm", "sglang"):
        p = plan_distributed("kimi-k2.5", parse_rig("8x H200"), engine)  # type: ignore[arg-type]
        assert p.fits, engine
        assert "--trust-remote-code" in p.commands[-1].text


@pytest.mark.parametrize(
    "model", ["nemotron-nano-9b-v2", "nemotron-3-nano-30b-a3b", "llama-3.3-nemotron-super-49b-v1"]
)
def test_nemotron_repositories_load_their_own_code(model: str) -> None:
    # vllm-project/recipes models/nvidia/*Nemotron*.yaml base_args; the NAS config's auto_map (DeciLMConfig)
    p = plan_distributed(model, parse_rig("2x H100-SXM"), "vllm")
    assert p.fits and "--trust-remote-code" in p.commands[-1].text


# ---- sharding rules --------------------------------------------------------------------------


def test_kv_heads_replicated_and_mla_latent_per_rank() -> None:
    # vLLM QKVParallelLinear: fewer KV heads than ranks -> one replicated head per rank.
    qwen = resolve("qwen3-235b-a22b").spec()  # 4 KV heads, head dim 128
    a = qwen.layers[0].attn
    assert kv_values_per_token(a, vllm.ENGINE.sharding(Layout(4))) == 256
    assert kv_values_per_token(a, vllm.ENGINE.sharding(Layout(8))) == 256  # replicated, not 128
    assert kv_values_per_token(a, vllm.ENGINE.sharding(Layout(2))) == 512
    # MLA: the 512 + 64 latent is cached whole on every TP rank.
    ds = resolve("deepseek-v3").spec().layers[0].attn
    assert kv_values_per_token(ds, vllm.ENGINE.sharding(Layout(8))) == 576


def test_divisibility_messages() -> None:
    qwen = resolve("qwen3-235b-a22b").spec()
    # vLLM error for Qwen3-235B-A22B-FP8 at TP8: 1536 / 8 = 192 is not a multiple of block_n 128.
    bad = check_divisibility(qwen, vllm.ENGINE.sharding(Layout(8)), "fp8", experts_must_divide=False)
    assert not bad.valid and "192" in bad.problems[0].message and "128" in bad.problems[0].message
    ok = check_divisibility(qwen, vllm.ENGINE.sharding(Layout(8, ep=8)), "fp8", experts_must_divide=False)
    assert ok.valid
    heads = check_divisibility(
        resolve("qwen3-8b").spec(), vllm.ENGINE.sharding(Layout(3)), "bf16", experts_must_divide=False
    )
    assert not heads.valid and "32 attention heads" in heads.problems[0].message
    # SGLang requires experts divisible by EP; vLLM gives some ranks one more.
    oss = resolve("gpt-oss-120b").spec()
    sh = sglang.ENGINE.sharding(Layout(6, ep=6))
    assert not check_divisibility(oss, sh, "bf16", experts_must_divide=True).valid
    assert check_divisibility(oss, sh, "bf16", experts_must_divide=False).problems[-1].blocking is False


def test_divisibility_notice_names_nearest_valid_layout() -> None:
    p = plan_distributed("qwen3-235b-a22b", parse_rig("8x H200"), "vllm", weight_format="fp8")
    n = next(n for n in p.notices if n.id == "DIVISIBILITY")
    assert "TP8 is not valid" in n.message and p.layout.label() in n.message
    assert p.layout.ep > 1 and "--enable-expert-parallel" in p.commands[0].text


def test_pipeline_stages_split_layers() -> None:
    assert [len(r) for r in stage_layers(61, 4)] == [15, 16, 15, 15]
    assert sum(len(r) for r in stage_layers(94, 8)) == 94


# ---- KV rules per engine ---------------------------------------------------------------------


def test_vllm_swa_layers_hold_only_the_window() -> None:
    # vLLM hybrid KV cache manager: sliding-window layers reserve only the last window of tokens.
    spec = resolve("gpt-oss-120b").spec()  # 18 full + 18 SWA (window 128) layers
    sh = vllm.ENGINE.sharding(Layout(1))
    layers = range(spec.n_layer)
    short = vllm.ENGINE.seq_bytes(spec, layers, sh, 1024, 2.0)
    long = vllm.ENGINE.seq_bytes(spec, layers, sh, 32768, 2.0)
    per_token_full = 18 * kv_values_per_token(spec.layers[0].attn, sh) * 2
    # growing the context by 31744 tokens grows only the full layers
    assert long - short == per_token_full * (32768 - 1024)
    # SGLang sizes its SWA pool at 0.8 x the full pool: more than vLLM's window-only rule
    assert sglang.ENGINE.seq_bytes(spec, layers, sh, 32768, 2.0) > long


def test_linear_attention_state_is_per_sequence() -> None:
    # Qwen3-Next: 36 Gated-DeltaNet layers keep a fixed state per sequence, 12 full layers grow with ctx.
    spec = resolve("qwen3-next-80b-a3b").spec()
    sh = vllm.ENGINE.sharding(Layout(4))
    layers = range(spec.n_layer)
    a = vllm.ENGINE.seq_bytes(spec, layers, sh, 16, 2.0)
    b = vllm.ENGINE.seq_bytes(spec, layers, sh, 32, 2.0)
    c = vllm.ENGINE.seq_bytes(spec, layers, sh, 48, 2.0)
    assert b - a == c - b  # linear in ctx: only the full layers grow
    assert a > 12 * 16 * kv_values_per_token(spec.layers[3].attn, sh) * 2  # plus the recurrent state


# ---- commands, manifests, notices ------------------------------------------------------------


def test_vllm_multinode_ray_commands_and_lws() -> None:
    p = plan_distributed("deepseek-v3", parse_rig("2 nodes x 8x H100-SXM, 400Gb IB"), "vllm")
    assert p.fits
    texts = [c.text for c in p.commands]
    assert texts[0] == "ray start --head --port=6379"
    assert texts[1].startswith("ray start --address=")
    assert texts[-1].startswith("vllm serve deepseek-ai/DeepSeek-V3 --tensor-parallel-size ")
    assert "--distributed-executor-backend ray" in texts[-1]
    assert any(n.id == "MULTI_NODE" for n in p.notices)
    doc = yaml.safe_load(p.manifest)
    assert doc["kind"] == "LeaderWorkerSet" and doc["spec"]["leaderWorkerTemplate"]["size"] == 2


def test_sglang_multinode_commands_and_lws() -> None:
    p = plan_distributed("deepseek-v3", parse_rig("2 nodes x 8x H100-SXM, 400Gb IB"), "sglang")
    assert len(p.commands) == 2
    for rank, c in enumerate(p.commands):
        assert c.text.startswith("python -m sglang.launch_server --model-path deepseek-ai/DeepSeek-V3 --tp ")
        assert f"--nnodes 2 --node-rank {rank} --dist-init-addr $HEAD_IP:20000" in c.text
        assert "--context-length 32768 --mem-fraction-static " in c.text
    doc = yaml.safe_load(p.manifest)
    leader = doc["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    assert "--node-rank 0" in leader["command"][-1]
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == 8


def test_single_node_command_shape() -> None:
    p = plan_distributed("qwen3-30b-a3b", parse_rig("1x H100-SXM"), "vllm", ctx=8192, kv_cache_dtype="fp8")
    assert p.commands[0].text == (
        "vllm serve Qwen/Qwen3-30B-A3B --tensor-parallel-size 1 --max-model-len 8192 "
        "--gpu-memory-utilization 0.9 --kv-cache-dtype fp8"
    )
    s = plan_distributed("qwen3-30b-a3b", parse_rig("1x H100-SXM"), "sglang", ctx=8192)
    # SGLang default for an 80 GiB GPU at TP1: (80·1024 − (9.5 + 0.5)·1024) / (80·1024) = 0.875
    assert s.commands[0].text.endswith("--tp 1 --context-length 8192 --mem-fraction-static 0.875")
    assert yaml.safe_load(s.manifest)["spec"]["leaderWorkerTemplate"]["size"] == 1


def test_format_and_link_notices() -> None:
    nv = plan_distributed("qwen3-30b-a3b", parse_rig("1x H100-SXM"), "vllm", weight_format="nvfp4")
    assert any(n.id == "FORMAT_NOT_NATIVE" and "NVFP4" in n.message for n in nv.notices)
    a100 = plan_distributed("qwen3-30b-a3b", parse_rig("2x A100-SXM"), "vllm", weight_format="fp8")
    assert any(n.id == "FORMAT_NOT_NATIVE" and "Marlin" in n.message for n in a100.notices)
    pcie = plan_distributed("qwen3-32b", parse_rig("4x RTX 4090"), "vllm", ctx=8192)
    assert pcie.fits and pcie.layout.tp > 1
    assert any(n.id == "PCIE_ONLY_TP" for n in pcie.notices)
    moe = plan_distributed("qwen3-30b-a3b", parse_rig("2x H100-SXM"), "sglang")
    assert any(n.id == "TP_PREFERRED_OVER_EP" for n in moe.notices)


def test_data_parallel_alone_is_not_credited_to_a_cheap_all_reduce() -> None:
    """Was: "TP1 DP8 (94,992 tok/s) beats expert parallel TP1 DP8 EP8 (94,992 tok/s): on nvlink the
    all-reduce is cheap and TP splits every expert evenly" - a tie, and TP1 has no all-reduce."""
    p = plan_distributed("laguna-xs.2", parse_rig("8x H100"), "vllm")
    msg = next(n.message for n in p.notices if n.id == "TP_PREFERRED_OVER_EP")
    assert p.layout.tp == 1 and "all-reduce" not in msg and "whole replica" in msg
    t, e = (int(x.replace(",", "")) for x in re.findall(r"\(([\d,]+) tok/s\)", msg))
    assert (" matches " in msg) == (t == e) and (" beats " in msg) == (t > e)


def test_alternatives_say_why_they_lost() -> None:
    p = plan_distributed("qwen3-235b-a22b", parse_rig("8x H200"), "sglang", weight_format="fp8")
    assert p.alternatives and all(a.why for a in p.alternatives)
    assert any("block 128" in a.why for a in p.alternatives if not a.fits)


def test_unknown_engine_and_format() -> None:
    from moeplan.errors import MoeplanError

    with pytest.raises(MoeplanError):
        plan_distributed("qwen3-8b", parse_rig("1x H100-SXM"), "tgi")  # type: ignore[arg-type]
    with pytest.raises(MoeplanError):
        plan_distributed("qwen3-8b", parse_rig("1x H100-SXM"), "vllm", weight_format="q4_k_m")
