"""Speculative decoding: the draft side's memory (engines/speculative.py), its speed
(perf/speculative.py), the drafting options of a plan (plan/speculative.py) and the faces."""

import itertools
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from moeplan import api
from moeplan.arch.inventory import Inventory, inventory
from moeplan.cli import app
from moeplan.engines.llamacpp import CPU, Frontend, plan_memory
from moeplan.engines.speculative import (
    Drafting,
    DraftModel,
    SpecType,
    mtp_error,
    plan_speculative,
    spec_flags,
)
from moeplan.errors import MoeplanError
from moeplan.memory.kv import CacheConfig, cache_type
from moeplan.memory.weights import Weights, predict
from moeplan.perf.batching import TILED_MIN_ROWS, distinct_experts
from moeplan.perf.decode import device_time
from moeplan.perf.devices import Rates
from moeplan.perf.estimate import Speed
from moeplan.perf.prefill import prefill_time
from moeplan.perf.speculative import (
    Acceptance,
    acceptance_from_length,
    drafted_speed,
    tokens_per_step,
    verify_seconds,
)
from moeplan.perf.traffic import DeviceWork, ExpertLayer, TokenWork
from moeplan.plan.speculative import draft_candidates
from moeplan.quant.recipe import FileType
from moeplan.sources.catalog import load_catalog

RIG = "RTX 4090 + 128GB DDR5-6000"


def _qwen35() -> tuple[Inventory, Weights]:
    spec = load_catalog()["qwen3.5-35b-a3b"].spec()
    inv = inventory(spec, mtp=True)
    return inv, predict(inv, FileType.Q4_K_M)


def test_tokens_per_step_is_llamas_geometric_model() -> None:
    # common_speculative_synth_rates_resolve: per-position rates p, p^2, ..., p^n
    assert tokens_per_step(0.5, 3) == pytest.approx(1 + 0.5 + 0.25 + 0.125)
    assert tokens_per_step(0.0, 3) == 1.0
    for p in (0.3, 0.7, 0.9):
        assert acceptance_from_length(tokens_per_step(p, 3), 3) == pytest.approx(p, abs=1e-9)
    with pytest.raises(MoeplanError, match="mean accepted length"):
        acceptance_from_length(5.0, 3)


def test_mtp_draft_context_holds_the_nextn_layers_only() -> None:
    inv, w = _qwen35()
    spec = inv.spec
    cfg = CacheConfig(n_ctx=8192, n_seq=2, unified=True)
    sm = plan_speculative(inv, w, cfg, None, (), Drafting(SpecType.MTP))
    without = plan_memory(inv, w, cfg, None, (), Frontend("llama-server", n_outputs_max=2))
    draft = next(d for d in sm.draft if d.device == CPU)
    head = spec.mtp_layers
    assert len(head) == 1
    # one full-attention layer's cache at the target's context, in f16 whatever -ctk says
    k_v = head[0].attn.head_dim_k * head[0].attn.n_head_kv * 2 * 2 * 8192
    assert draft.kv_bytes == k_v
    assert draft.weights_bytes == 0  # the MTP context runs on the target's weights ...
    mtp = sum(sm.mtp_weights.values())
    assert mtp > 0  # ... which now load the NextN block
    weights = sum(d.weights_bytes for d in sm.target.devices)  # CPU and CPU_REPACK
    assert weights == sum(d.weights_bytes for d in without.devices) + mtp
    target, base = sm.target.device(CPU), without.device(CPU)
    assert target.kv_bytes == base.kv_bytes  # the trunk's cache does not change
    # qwen35moe rolls recurrent state back: n_max snapshots per sequence
    assert target.state_bytes == 4 * base.state_bytes
    assert target.compute_bytes >= base.compute_bytes  # 2 x (1 + 3) outputs reserved


def test_draft_cache_types_follow_ctkd_not_ctk() -> None:
    inv, w = _qwen35()
    a = inv.spec.mtp_layers[0].attn
    q8 = CacheConfig(n_ctx=4096, unified=True, type_k=cache_type("q8_0"), type_v=cache_type("q8_0"))
    f16_kv = a.head_dim_k * a.n_head_kv * 2 * 2 * 4096
    sm = plan_speculative(inv, w, q8, None, (), Drafting(SpecType.MTP))
    assert next(d.kv_bytes for d in sm.draft if d.device == CPU) == f16_kv  # -ctkd defaults to f16
    q8_draft = Drafting(SpecType.MTP, type_k=cache_type("q8_0"), type_v=cache_type("q8_0"))
    sm = plan_speculative(inv, w, q8, None, (), q8_draft)
    assert next(d.kv_bytes for d in sm.draft if d.device == CPU) == f16_kv * 34 // 64
    assert spec_flags(q8_draft) == "--spec-type draft-mtp -ctkd q8_0 -ctvd q8_0"


def test_draft_model_gets_its_own_plan() -> None:
    tinv = inventory(load_catalog()["qwen3-32b"].spec())
    dinv = inventory(load_catalog()["qwen3-0.6b"].spec())
    dm = DraftModel("Qwen3-0.6B-Q8_0.gguf", dinv, predict(dinv, FileType.Q8_0))
    drafting = Drafting(SpecType.SIMPLE, model=dm)
    cfg = CacheConfig(n_ctx=4096, n_seq=1, unified=True)
    sm = plan_speculative(tinv, predict(tinv, FileType.Q4_K_M), cfg, None, (), drafting)
    alone = plan_memory(dinv, dm.weights, cfg, None, (), Frontend("llama-server", n_outputs_max=1))
    assert [d.total_bytes for d in sm.draft] == [d.total_bytes for d in alone.devices]
    assert sm.mtp_weights == {}
    assert spec_flags(drafting, ngl_draft="0") == "-md Qwen3-0.6B-Q8_0.gguf --spec-type draft-simple -ngld 0"


def test_refusals() -> None:
    with pytest.raises(MoeplanError, match="EAGLE3"):
        Drafting(SpecType.EAGLE3)
    with pytest.raises(MoeplanError, match="n-max"):
        Drafting(SpecType.MTP, n_max=0)
    with pytest.raises(MoeplanError, match="needs a draft model"):
        Drafting(SpecType.SIMPLE)
    dense = load_catalog()["qwen3-32b"].spec()
    assert "no MTP layers" in (mtp_error(dense, inventory(dense)) or "")
    exaone = load_catalog()["k-exaone-236b-a23b"].spec()
    assert "no MTP draft graph" in (mtp_error(exaone, inventory(exaone, mtp=True)) or "")


def test_draft_candidates_share_family_and_vocabulary() -> None:
    c = load_catalog()
    assert draft_candidates(c["qwen3.5-35b-a3b"])[0].id == "qwen3.5-0.8b"
    assert draft_candidates(c["gemma-3-27b"])[0].id == "gemma-3-270m"
    assert draft_candidates(c["qwen3-30b-a3b"])[0].id == "qwen3-0.6b"
    assert all(e.id.startswith("qwen3.5") for e in draft_candidates(c["qwen3.5-122b-a10b"]))


def test_plan_proposes_mtp_where_it_fits_and_pays() -> None:
    r = api.plan("qwen3.5-35b-a3b", RIG, draft="auto")
    (d,) = r.drafting
    assert d.kind == "draft-mtp" and d.proposed and d.speedup > 1.2
    # the chosen plan fills the 4090 with context; MTP drafting fits beside Q4_K_M at a smaller one
    assert "Q4_K_M" in d.command and d.command.endswith("--spec-type draft-mtp")
    assert d.extra_bytes["CUDA0"] > 500 * 2**20
    assert "which the published uploads drop" in d.note
    assert any(n.id == "SPECULATIVE_DRAFTING" for n in r.notices)
    assert api.plan("qwen3.5-35b-a3b", RIG).drafting == []  # the API's default: none


def test_plan_says_when_a_draft_model_does_not_pay() -> None:
    r = api.plan("qwen3-30b-a3b", "RTX 4090 + 64GB DDR5-6000", draft="qwen3-0.6b")
    (d,) = r.drafting
    assert d.kind == "draft-simple" and d.draft_model == "qwen3-0.6b"
    assert not d.proposed and "does not pay" in d.note
    with pytest.raises(MoeplanError, match="no MTP layers"):
        api.plan("qwen3-32b", RIG, draft="mtp")
    with pytest.raises(MoeplanError, match="vocabulary"):
        api.plan("qwen3-32b", RIG, draft="gemma-3-270m")
    with pytest.raises(MoeplanError, match="acceptance"):
        api.plan("qwen3.5-35b-a3b", RIG, draft="mtp", acceptance=1.5)


def test_higher_acceptance_is_faster() -> None:
    lo = api.plan("qwen3.5-35b-a3b", "64GB DDR5-6000", draft="mtp", acceptance=0.3).drafting[0]
    hi = api.plan("qwen3.5-35b-a3b", "64GB DDR5-6000", draft="mtp", acceptance=0.9).drafting[0]
    assert hi.tokens_per_step > lo.tokens_per_step and hi.decode_tok_s > lo.decode_tok_s
    assert hi.acceptance_source.startswith("as given")


def test_explain_reads_the_spec_flags() -> None:
    cmd = "llama-server -m Qwen3.5-35B-A3B-Q4_K_M.gguf -c 8192 -ngl 99 --spec-type draft-mtp"
    cmd += " --spec-draft-n-max 2"
    r = api.explain(cmd, RIG)
    assert r.drafting is not None and r.drafting.kind == "draft-mtp" and r.drafting.n_max == 2
    assert r.ignored_flags == []
    assert r.decode_tok_s == r.drafting.decode_tok_s
    md = api.explain("llama-server -m Qwen3-32B-Q4_K_M.gguf -c 8192 -ngl 99 -md Qwen3-0.6B-Q8_0.gguf", RIG)
    assert md.drafting is not None and md.drafting.kind == "none" and "never drafts" in md.drafting.note
    assert md.drafting.extra_bytes  # loaded all the same
    with pytest.raises(MoeplanError, match="removed"):
        api.explain("llama-server -m Qwen3-32B-Q4_K_M.gguf --draft-max 4", RIG)
    with pytest.raises(MoeplanError, match="unknown --spec-type"):
        api.explain("llama-server -m Qwen3-32B-Q4_K_M.gguf --spec-type medusa", RIG)


def test_cli_plan_prints_drafting() -> None:
    res = CliRunner().invoke(app, ["plan", "qwen3.5-35b-a3b", "--rig", RIG])
    assert res.exit_code == 0, res.output
    assert "drafting (draft-mtp)" in res.output and "--spec-type draft-mtp" in res.output
    res = CliRunner().invoke(app, ["plan", "qwen3.5-35b-a3b", "--rig", RIG, "--draft", "none", "--json"])
    assert json.loads(res.output)["drafting"] == []


def test_api_and_deploy_page_show_drafting() -> None:
    from fastapi.testclient import TestClient

    from moeplan.web.app import create_app

    client = TestClient(create_app())
    r = client.get("/api/plan", params={"model": "qwen3.5-35b-a3b", "rig": RIG})
    assert r.status_code == 200
    assert r.json()["drafting"][0]["kind"] == "draft-mtp"
    r = client.get("/api/plan", params={"model": "qwen3.5-35b-a3b", "rig": RIG, "draft": "none"})
    assert r.json()["drafting"] == []
    r = client.get("/api/plan", params={"model": "qwen3.5-35b-a3b", "rig": RIG, "acceptance": 2})
    assert r.status_code == 422
    page = client.get("/", params={"model": "qwen3.5-35b-a3b", "rig": RIG})
    assert "speculative decoding (draft-mtp)" in page.text


def test_cli_explain_prints_drafting() -> None:
    cmd = "llama-server -m Qwen3.5-35B-A3B-Q4_K_M.gguf -c 8192 -ngl 99 --spec-type draft-mtp"
    res = CliRunner().invoke(app, ["explain", cmd, "--rig", RIG])
    assert res.exit_code == 0, res.output
    assert "drafting (draft-mtp)" in res.output and "flags that do not change" not in res.output


def test_drafting_is_planned_for_the_plans_own_llama_cpp() -> None:
    """The drafting rows use the plan's backend (device names) and margin, not the pinned defaults."""
    rig = "RX 7900 XTX (Vulkan) + 64GB DDR5-6000"
    r = api.plan("qwen3.5-35b-a3b", rig, draft="mtp")
    (d,) = r.drafting
    gpu_rows = [x for x in d.devices if x.name != "CPU"]
    assert gpu_rows and all(x.name.startswith("Vulkan") for x in gpu_rows)
    assert {x.name for x in gpu_rows} <= {x.name for x in r.devices}
    loose = api.plan("qwen3.5-35b-a3b", rig, draft="mtp", fit_target_mib=256)
    (dl,) = loose.drafting
    assert all(x.margin_bytes == 256 * 2**20 for x in dl.devices if x.name != "CPU")


def test_distinct_experts_is_exact_for_uniform_top_k() -> None:
    # brute force: every token picks one of the C(E, k) expert sets, all equally likely
    n_expert, k, batch = 6, 2, 3
    sets = list(itertools.combinations(range(n_expert), k))
    union = [len(set().union(*combo)) for combo in itertools.product(sets, repeat=batch)]
    assert distinct_experts(n_expert, k, batch) == pytest.approx(sum(union) / len(union), rel=1e-12)
    # Monte Carlo at a real model's routing (128 experts, 8 used), fixed seed
    rng = np.random.default_rng(18)
    n_expert, k, batch, trials = 128, 8, 5, 4000
    picks = rng.random((trials, batch, n_expert)).argsort(axis=-1)[..., :k].reshape(trials, -1)
    counts = np.array([len(np.unique(row)) for row in picks])
    sem = counts.std() / math.sqrt(trials)
    assert abs(distinct_experts(n_expert, k, batch) - counts.mean()) < 4 * sem
    # limits and monotonicity: k for one token, all experts for many, never more than k per token
    assert distinct_experts(128, 8, 1) == 8
    assert distinct_experts(8, 8, 3) == 8
    grown = [distinct_experts(128, 8, b) for b in range(1, 64)]
    assert all(a < b for a, b in itertools.pairwise(grown))
    assert all(d <= min(128, 8 * b) for b, d in enumerate(grown, start=1))
    assert distinct_experts(128, 8, 10_000) == pytest.approx(128)


def _cpu(bandwidth: float = 10e9, cached: float = 25e9, flops: float = 50e9) -> Rates:
    return Rates(
        CPU, "RAM bandwidth", bandwidth, flops, math.inf, 0.0, False, bandwidth, cached_gemv_bandwidth=cached
    )


def _moe(n_expert: int = 8, n_used: int = 8, tiled: float = 0.0) -> DeviceWork:
    """One MoE layer: 1 MB of dense weights, experts of 1 MB (1 MFLOP per token)."""
    w = DeviceWork(CPU, dense_bytes=1e6, dense_flops=1e6, layers=1)
    w.experts.append(ExpertLayer(0, CPU, n_expert, n_used, 1e6, 1e6, tiled * 1e6, tiled * 1e6))
    return w


def test_cpu_step_of_k_tokens_reads_weights_once_and_passes_experts_per_token() -> None:
    r, w = _cpu(), _moe()
    # one token: the weights streamed once, bandwidth-bound
    assert device_time(w, r, 0, 1)[0] == pytest.approx(9e6 / r.bandwidth)
    for k in (2, 4, 7):
        t, kind = device_time(w, r, 0, k, sequences=1)
        # all 8 experts are read once; each further token is one pass over its 8 experts from cache
        assert t == pytest.approx(9e6 / r.bandwidth + (k - 1) * 8e6 / r.cached_gemv_bandwidth)
        passes_bound = (k - 1) * 8e6 / r.cached_gemv_bandwidth > 9e6 / r.bandwidth
        assert kind == ("compute" if passes_bound else "bandwidth")
    # K-quant experts (tiled-eligible): from 8 rows per expert on they are one matmul, not passes
    tiled = _moe(tiled=1.0)
    below = device_time(tiled, r, 0, TILED_MIN_ROWS - 1, sequences=1)[0]
    at = device_time(tiled, r, 0, TILED_MIN_ROWS, sequences=1)[0]
    assert at < below and at == pytest.approx(max(9e6 / r.bandwidth, 8 * 9e6 / r.flops))
    # prefill takes the same rule: 512 tokens over K-quant experts are tiled matmuls, over F16 (or
    # repacked) experts 512 x 8 passes
    work = {True: TokenWork({CPU: tiled}, 0, 1), False: TokenWork({CPU: w}, 0, 1)}
    as_gemm, per_token = (prefill_time(work[t], {CPU: r}, 512).seconds for t in (True, False))
    assert per_token == pytest.approx(512 * 1e6 / r.flops + 512 * 8 * 1e6 / r.cached_gemv_bandwidth)
    assert as_gemm == pytest.approx(max(512 * 9e6 / r.flops, 9e6 / r.stream_bandwidth))
    # a GPU runs the k tokens as one matmul: no per-token passes
    gpu = Rates("CUDA0", "CUDA0", 1e12, 1e14, 1e14, 0.0, True, 1e12)
    assert device_time(w, gpu, 0, 4, sequences=1)[0] == pytest.approx(9e6 / gpu.bandwidth)


def test_verification_cost_and_where_drafting_pays() -> None:
    sparse = _moe(n_expert=128, n_used=8)
    perf = Speed(TokenWork({CPU: sparse}, 0, 1), {CPU: _cpu()}, math.inf, 0, 512)
    steps = [verify_seconds(perf, k) for k in range(1, 9)]
    assert steps[0] == pytest.approx(perf.seconds_per_token)
    assert all(a < b for a, b in itertools.pairwise(steps))
    # k tokens over 128 experts read E(1 - (1 - 8/128)^k) of them from RAM, the rest from cache
    k = 4
    d = distinct_experts(128, 8, k)
    want = (1e6 + d * 1e6) / 10e9 + (k * 8 - d) * 1e6 / 25e9
    assert verify_seconds(perf, k) == pytest.approx(want)
    # on the CPU alone the 4 tokens read 3.6x the experts of one: even 90% acceptance loses
    high = Acceptance(0.9, "test")
    assert not drafted_speed(perf, 1e-5, 3, high).pays
    # every expert read anyway (k = E): the further tokens cost only their passes, drafting pays ...
    dense = Speed(TokenWork({CPU: _moe()}, 0, 1), {CPU: _cpu()}, math.inf, 0, 512)
    assert drafted_speed(dense, 1e-5, 3, high).pays
    # ... unless nothing is accepted, or less where the passes cost as much as streaming
    assert not drafted_speed(dense, 1e-5, 3, Acceptance(0.0, "test")).pays
    slow = Speed(TokenWork({CPU: _moe()}, 0, 1), {CPU: _cpu(cached=10e9)}, math.inf, 0, 512)
    assert drafted_speed(slow, 1e-5, 3, high).speedup < drafted_speed(dense, 1e-5, 3, high).speedup


def test_draft_model_follows_the_main_models_one_gpu() -> None:
    """llama.cpp starts the draft's parameters from the main model's (common_base_params_to_speculative):
    with -sm none the draft loads on the main GPU too, not split over the free ones."""
    r = api.plan("qwen3.5-9b", "2x RTX 3090", draft="qwen3.5-0.8b")
    assert " -sm none " in r.command
    assert set(r.drafting[0].extra_bytes) == {"CPU", "CUDA0"}
