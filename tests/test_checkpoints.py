"""llama-server's context checkpoints (memory/checkpoints.py): one checkpoint's bytes from the state
writers' layout, the worst case per plan in host memory, and `--ctx-checkpoints` in explain."""

import pytest

from moeplan import api
from moeplan.arch.spec import AttnKind, ModelSpec
from moeplan.engines.llamacpp import CPU, SERVER, Frontend, plan_memory
from moeplan.errors import MoeplanError
from moeplan.memory.checkpoints import DEFAULT_CTX_CHECKPOINTS, checkpoint_bytes, checkpoints_host_bytes
from moeplan.memory.kv import CacheConfig, layer_memory
from moeplan.memory.weights import predict
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog

RIG = "RTX 4090 + 64GB DDR5-6000"


def _spec(model: str) -> ModelSpec:
    return load_catalog()[model].spec()


def test_gemma3_checkpoint_is_its_window_of_swa_k_and_v() -> None:
    """Gemma 3 270M: 15 of 18 layers slide over 512 tokens, one KV head of 256 (F16: 512 bytes a row).
    The iswa cache writes only the SWA part: headers, 12 bytes of metadata per cell, K and V rows."""
    spec = _spec("gemma-3-270m")
    swa = [la for la in spec.layers if la.attn.kind is AttnKind.SWA]
    assert (len(swa), swa[0].attn.window) == (15, 512)
    per_layer = 2 * (12 + 512 * 512)
    expected = 8 + 4 + 4 + 512 * 12 + 16 + 15 * per_layer
    assert checkpoint_bytes(spec, CacheConfig(n_ctx=4096)) == expected
    assert (
        round(expected / 2**20, 3) == 7.506
    )  # what the pinned llama-server logs (test_llamacpp_checkpoints)


def test_a_context_shorter_than_the_window_checkpoints_only_its_cells() -> None:
    spec = _spec("gemma-3-270m")
    short, full = (
        checkpoint_bytes(spec, CacheConfig(n_ctx=256)),
        checkpoint_bytes(spec, CacheConfig(n_ctx=4096)),
    )
    assert full - short == (512 - 256) * (12 + 15 * 2 * 512)


def test_quantized_cache_rows_shrink_the_checkpoint() -> None:
    spec = _spec("gemma-3-270m")
    f16 = checkpoint_bytes(spec, CacheConfig(n_ctx=4096))
    q8 = checkpoint_bytes(
        spec, CacheConfig(n_ctx=4096, type_k=api.cache_type("q8_0"), type_v=api.cache_type("q8_0"))
    )
    assert f16 - q8 == 15 * 2 * 512 * (512 - 272)  # 256 values: 512 bytes in F16, 8 blocks of 34 in Q8_0


def test_hybrid_checkpoint_is_one_sequence_of_recurrent_state_and_headers() -> None:
    """Qwen3.5 (GDN + full attention): the hybrid memory writes only its recurrent part, whatever -c."""
    spec = _spec("qwen3.5-35b-a3b")
    cfg = CacheConfig(n_ctx=32768)
    linear = [lm for lm in layer_memory(spec, cfg) if lm.kind is AttnKind.LINEAR]
    state = sum(lm.state_bytes for lm in linear)
    assert checkpoint_bytes(spec, cfg) == 8 + 4 + 8 + 8 + 24 * len(linear) + state
    assert checkpoint_bytes(spec, CacheConfig(n_ctx=4096)) == checkpoint_bytes(spec, cfg)


def test_models_the_server_does_not_checkpoint() -> None:
    assert checkpoint_bytes(_spec("qwen3-30b-a3b"), CacheConfig(n_ctx=8192)) == 0  # full attention only
    assert checkpoint_bytes(_spec("gemma-3-270m"), CacheConfig(n_ctx=8192, swa_full=True)) == 0  # n_swa = 0


def test_the_server_keeps_32_per_slot_and_other_tools_none() -> None:
    assert SERVER.n_ctx_checkpoints == DEFAULT_CTX_CHECKPOINTS == 32
    assert Frontend().n_ctx_checkpoints == 0
    assert Frontend("llama-server", ctx_checkpoints=3).n_ctx_checkpoints == 3
    with pytest.raises(MoeplanError, match="--ctx-checkpoints -1"):
        Frontend("llama-server", ctx_checkpoints=-1)


def test_plan_memory_puts_every_slots_checkpoints_on_the_host() -> None:
    spec = _spec("gemma-3-270m")
    inv = api.inventory(spec)
    w = predict(inv, FileType.Q4_K_M)
    cfg = CacheConfig(n_ctx=8192, n_seq=4, unified=True)
    plan = plan_memory(inv, w, cfg, None, ("CUDA0",), SERVER)
    host = plan.device(CPU)
    assert (
        host.checkpoint_bytes == checkpoints_host_bytes(spec, cfg, 32) == 4 * 32 * checkpoint_bytes(spec, cfg)
    )
    # outside llama.cpp's breakdown, as the prompt cache (memory/prompt_cache.py)
    assert host.llamacpp_bytes == host.total_bytes - host.checkpoint_bytes - host.prompt_cache_bytes
    assert plan.device("CUDA0").checkpoint_bytes == 0
    assert plan_memory(inv, w, cfg, None, ("CUDA0",)).device(CPU).checkpoint_bytes == 0  # llama-completion


def test_explain_reads_ctx_checkpoints_into_the_host_fit() -> None:
    cmd = "llama-server -m gemma-3-27b-it-Q4_K_M.gguf -ngl 99 -c 32768"
    default, two, none = (
        api.explain(cmd + extra, RIG) for extra in ("", " -ctxcp 2", " --ctx-checkpoints 0")
    )
    per_slot = checkpoint_bytes(_spec("gemma-3-27b"), CacheConfig(n_ctx=32768, n_seq=4, unified=True))
    host = [r.devices[0] for r in (default, two, none)]
    assert [h.checkpoint_bytes for h in host] == [4 * 32 * per_slot, 4 * 2 * per_slot, 0]
    assert host[0].total_bytes - host[2].total_bytes == 4 * 32 * per_slot
    assert (
        api.explain("llama-completion -m gemma-3-27b-it-Q4_K_M.gguf -ngl 99 -c 32768", RIG)
        .devices[0]
        .checkpoint_bytes
        == 0
    )
    with pytest.raises(MoeplanError, match="--ctx-checkpoints -2"):
        api.explain(cmd + " -ctxcp -2", RIG)


def test_the_policy_keeps_fewer_checkpoints_where_they_crowd_the_host() -> None:
    """Llama 4 Maverick on a 4090 + 64 GB: with llama-server's 32 checkpoints of its chunked cache
    nothing fits without disk; without them IQ1_S does, and the policy keeps the most that still
    fit beside it, says so in the command and in a notice."""
    r = api.plan("llama-4-maverick-17b-128e", RIG)
    n = int(r.command.split("--ctx-checkpoints ")[1].split()[0])
    assert 0 <= n < DEFAULT_CTX_CHECKPOINTS and r.fits
    assert "CTX_CHECKPOINTS_REDUCED" in {x.id for x in r.notices}
    host = next(d for d in r.devices if d.name == CPU)
    assert host.checkpoint_bytes > 0 and host.total_bytes <= host.capacity_bytes
    more = api.plan("llama-4-maverick-17b-128e", "RTX 4090 + 512GB DDR5-6000")
    assert "--ctx-checkpoints" not in more.command
    assert "CTX_CHECKPOINTS_REDUCED" not in {x.id for x in more.notices}


def test_a_plan_that_fits_keeps_the_servers_checkpoints() -> None:
    r = api.plan("gemma-3-27b", RIG)
    assert "--ctx-checkpoints" not in r.command
    assert next(d for d in r.devices if d.name == CPU).checkpoint_bytes > 0
