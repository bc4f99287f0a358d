"""llama.cpp's --fit replayed (`engines/fit.py`): cases traced by hand from `common/fit.cpp`'s
`common_params_fit_impl`, the pinned llama-fit-params' own choices on a memory-limited RPC device,
and what `explain` and `plan` make of it."""

import json
import re
from pathlib import Path

import pytest

from moeplan.api import explain, plan
from moeplan.engines.fit import FitInput, Measure, Measured, simulate_fit
from moeplan.engines.llamacpp import parse_placement
from moeplan.errors import MoeplanError
from moeplan.hardware.rig import parse_rig
from moeplan.plan.fit import UserSet, fit_command, server_cache
from moeplan.quant.recipe import FileType
from moeplan.sources.reference import resolve_model

MiB = 2**20
GiB = 2**30
RECORDED = json.loads((Path(__file__).parent / "data" / "fit_llamacpp_lines.json").read_text())


def linear(base: int, per_token: int, per_layer: int = 0, n_layer: int = 10) -> Measure:
    """A device whose memory is `base` + `per_token` x context + `per_layer` x offloaded layer."""

    def measure(n_ctx: int, flags: str) -> Measured:
        p = parse_placement(flags)
        layers = n_layer + 1 if p.n_gpu_layers is None else p.n_gpu_layers
        used = base + per_token * n_ctx + per_layer * layers
        return Measured((used,), (per_layer * layers,), 0)

    return measure


def one_gpu(free: int, margin: int = GiB, **kw: object) -> FitInput:
    base = dict(n_layer=10, n_expert=0, n_ctx_train=32768, gpus=("CUDA0",), free=(free,), margins=(margin,))
    return FitInput(**{**base, "host_total": 64 * GiB, "host_margin": GiB, **kw})  # type: ignore[arg-type]


def test_defaults_that_fit_are_left_alone() -> None:
    out = simulate_fit(one_gpu(8 * GiB), linear(4 * GiB, 64 * 1024))
    assert (out.n_ctx, out.flags, out.changed) == (32768, "", False)
    assert "no changes needed" in out.log[-2]


def test_automatic_context_is_interpolated_and_rounded() -> None:
    # target 5 GiB; 4 GiB + 64 KiB/token: 6 GiB at 32768, 4.25 GiB at 4096 ->
    # 4096 + 28672 x 0.75 / 1.75 = 16384 (a multiple of 256), and one device stops there
    out = simulate_fit(one_gpu(6 * GiB), linear(4 * GiB, 64 * 1024))
    assert (out.n_ctx, out.flags, out.stopped) == (16384, "", None)
    assert "entire model can be fit by reducing context" in out.log
    # 100 MiB less: 4096 + 28672 x 668/1792 = 14784.9 -> 14592 (rounded down to 256)
    assert simulate_fit(one_gpu(6 * GiB - 100 * MiB), linear(4 * GiB, 64 * 1024)).n_ctx == 14592
    # -fitc 8192 is the floor and the interpolation starts from it; 4 KV streams round to 1024
    assert simulate_fit(one_gpu(5 * GiB, n_ctx_min=8192), linear(4 * GiB, 64 * 1024)).n_ctx == 8192
    four = simulate_fit(one_gpu(6 * GiB + 100 * MiB, n_streams=4), linear(4 * GiB, 16 * 1024))
    assert four.n_ctx % 1024 == 0 and 4 * 4096 < four.n_ctx < 4 * 32768


def test_what_the_user_set_is_kept() -> None:
    tight = linear(4 * GiB, 64 * 1024, per_layer=200 * MiB)
    given = simulate_fit(one_gpu(6 * GiB, n_ctx=8192, ngl=99), tight)
    assert given.n_ctx == 8192 and "context size set by user to 8192 -> no change" in given.log
    assert given.stopped == "n_gpu_layers already set by user to 99, abort" and given.flags == ""
    full = simulate_fit(one_gpu(6 * GiB, n_ctx=0, overrides_set=True), tight)
    assert full.n_ctx == 32768 and "user has requested full context size of 32768 -> no change" in full.log
    assert full.stopped == "model_params::tensor_buft_overrides already set by user, abort"
    # no -c with -ngl all: on one device a lower context ends --fit before it looks at -ngl: target
    # 7168 MiB, 8344 MiB at 32768 and 6552 at 4096 -> 4096 + 28672 x 616/1792 = 13952 -> 13824 ...
    lowered = simulate_fit(one_gpu(8 * GiB, ngl=-2), tight)
    assert lowered.n_ctx == 13824 and lowered.stopped is None
    # ... and where even -fitc does not fit, it keeps -fitc and then gives up on the layers
    floor = simulate_fit(one_gpu(5 * GiB, ngl=-2), tight)
    assert floor.n_ctx == 4096 and floor.stopped == "n_gpu_layers already set by user to -2, abort"


def test_dense_layers_fill_back_to_front() -> None:
    # 100 MiB + 200 MiB per layer (the output layer too) against 1536 MiB: the false position
    # guesses 11 x 1436/2200 = 7 layers, which fit; 8 do not
    measure = linear(100 * MiB, 0, per_layer=200 * MiB)
    out = simulate_fit(one_gpu(2 * GiB, margin=512 * MiB, n_ctx=4096), measure)
    assert out.flags == "-ngl 7" and out.layers == [("CUDA0", 7, 0)] and out.stopped is None


def test_dense_layers_split_over_two_gpus() -> None:
    """Traced by hand: 100 MiB + 200 MiB a layer per GPU, targets 1024 MiB each. The last GPU first:
    11 layers would be 2300 MiB -> guess 11 x 924/2200 = 4 (900 MiB, fits), then 5 (1100, does not);
    the first GPU the same from the 7 left: 4. -ngl 8 -ts 4,4, layers 0-2 on the CPU."""

    def measure(n_ctx: int, flags: str) -> Measured:
        p = parse_placement(flags)
        counts = [int(x) for x in p.tensor_split] or ([6, 5] if p.n_gpu_layers is None else [0, 0])
        used = tuple(100 * MiB + 200 * MiB * c for c in counts)
        return Measured(used, tuple(200 * MiB * c for c in counts), 0)

    two = dict(n_layer=10, n_expert=0, n_ctx_train=32768, host_total=64 * GiB, host_margin=GiB, n_ctx=4096)
    inp = FitInput(gpus=("CUDA0", "CUDA1"), free=(1536 * MiB,) * 2, margins=(512 * MiB,) * 2, **two)  # type: ignore[arg-type]
    out = simulate_fit(inp, measure)
    assert out.flags == "-ngl 8 -ts 4,4" and out.layers == [("CUDA0", 4, 0), ("CUDA1", 4, 0)]
    assert "context size set by user to 4096 -> no change" in out.log
    split = simulate_fit(
        FitInput(
            gpus=("CUDA0", "CUDA1"),
            free=(1536 * MiB,) * 2,
            margins=(512 * MiB,) * 2,
            tensor_split_set=True,
            **two,
        ),
        measure,
    )  # type: ignore[arg-type]
    assert split.stopped == "model_params::tensor_split already set by user, abort"


def _first_rules(line: str, n: int = 3) -> list[str]:
    ot = re.search(r"-ot [\"']([^\"']*)", line)
    return ot.group(1).split(",")[:n] if ot else []


@pytest.mark.parametrize("case", RECORDED["cases"], ids=lambda c: f"{c['model']}-{c['mib']}")
def test_moe_choice_matches_llama_fit_params(case: dict[str, object]) -> None:
    """llama-fit-params' recorded choice (-c 4096 -fitt 1024) vs the replay on moeplan's figures:
    the same -ngl and overflow rules; qwen35moe keeps one layer more on the device (moeplan's
    figure for it is a few MiB under llama.cpp's), its first partial layer one index lower."""
    from validation.runtime import rpc_rig, subject

    from moeplan.engines.llamacpp import Frontend
    from moeplan.memory.kv import CacheConfig

    s = subject(str(case["model"]))
    out, _ = fit_command(
        s.spec,
        rpc_rig(int(str(case["mib"]))),
        FileType.F16,
        CacheConfig(n_ctx=4096),
        UserSet(n_ctx=4096),
        s.weights,
        frontend=Frontend(),
    )
    ours = f"-c {out.n_ctx} {out.flags}"
    line = str(case["line"])
    assert ours.split(" -ot ")[0] == line.split(" -ot ")[0]
    if case["model"] == "qwen35moe":
        first = int(re.findall(r"blk\\\.(\d+)", line)[0])
        assert re.findall(r"blk\\\.(\d+)", ours)[0] == str(first - 1)
    else:
        assert _first_rules(ours) == _first_rules(line)


def test_bare_server_on_a_real_rig() -> None:
    spec = resolve_model("gpt-oss-120b").require_spec()
    rig = parse_rig("2x RTX 3090 + 128GB DDR4-3200")
    out, cand = fit_command(spec, rig, FileType.MXFP4_MOE, server_cache(11434))
    p = parse_placement(out.flags)
    assert out.n_ctx == 4096 and p.n_gpu_layers == spec.n_layer + 1
    assert sum(p.tensor_split) == p.n_gpu_layers  # -ts: whole layers per GPU
    assert cand.fits and not any(d != "CPU" for d in cand.overflow)
    assert [n for _, n, _ in out.layers] == [int(x) for x in p.tensor_split]


def test_explain_says_what_fit_chooses() -> None:
    rig = "RTX 4090 + 64GB DDR5-6000"
    r = explain("llama-server -m gpt-oss-120b-mxfp4-00001-of-00003.gguf", rig)
    assert r.fit is not None and r.fit.changed and r.ctx == r.fit.ctx == 4096
    assert r.placement.startswith("-ngl 37 -ot ") and r.placement.endswith("(llama.cpp --fit)")
    assert any(n.startswith("llama.cpp --fit: -c 4,096 (lowered from 131,072)") for n in r.notes)
    pinned = explain("llama-server -m gpt-oss-120b-mxfp4-00001-of-00003.gguf -ngl 99 -fitc 8192", rig)
    assert pinned.fit is not None and pinned.fit.stopped == "n_gpu_layers already set by user to 99, abort"
    assert pinned.ctx == 8192 and not pinned.fits  # --fit lowered -c to -fitc, the layers stay as written
    off = explain("llama-server -m gpt-oss-120b-mxfp4-00001-of-00003.gguf -fit off -ngl 99", rig)
    assert off.fit is None and off.ctx == 131072


def test_plan_sets_the_bare_server_beside_its_flags() -> None:
    r = plan("qwen3.5-35b-a3b", "RTX 4090 + 64GB DDR5-6000", alternatives=False)
    assert r.bare is not None and r.bare.command.startswith("llama-server -m Qwen3.5-35B-A3B")
    assert r.bare.ctx < 262144 and r.bare.ctx % 256 == 0 and r.bare.flags == ""
    told = (
        f"{r.bare.command} alone: ~{r.bare.decode_tok_s:.1f} tokens/s at -c {r.bare.ctx:,}; moeplan's flags: "
    )
    assert r.bare.comparison.startswith(told) and f"at -c {r.ctx:,}" in r.bare.comparison


@pytest.mark.llamacpp
@pytest.mark.parametrize("case", RECORDED["auto_context"]["cases"], ids=lambda c: f"{c['model']}-{c['mib']}")
def test_automatic_context_matches_llama_fit_params(case: dict[str, object]) -> None:
    """No -c: llama-fit-params on the RPC device now vs the replay (qwen3moe exact; the Gemma file
    within one layer and 4% of context: moeplan predicts its stock Q4_K_M recipe)."""
    from validation.runtime import GEMMA, TIMEOUT, parse_fit_choice, rpc_rig, rpc_server, run, subject

    from moeplan.engines.llamacpp import Frontend
    from moeplan.memory.kv import CacheConfig

    s = subject(GEMMA if case["model"] == "gemma" else str(case["model"]))
    mib = int(str(case["mib"]))
    with rpc_server(mib) as addr:
        r = run("llama-fit-params", ["-m", str(s.path), "--rpc", addr, "-fitt", "256"], timeout=TIMEOUT)
    line = parse_fit_choice(r.stdout)["line"]
    assert line == case["line"], r.failure() if not r.ok else line
    out, _ = fit_command(
        s.spec,
        rpc_rig(mib),
        FileType.F16,
        CacheConfig(n_ctx=0),
        UserSet(margin_mib=(256,)),
        s.weights,
        frontend=Frontend(),
    )
    ngl = parse_placement(out.flags).n_gpu_layers if out.flags else -1
    got_ctx, got_ngl = (int(x) for x in re.findall(r"-?\d+", line)[:2])
    if case["model"] == "qwen3moe":
        assert (out.n_ctx, ngl) == (got_ctx, got_ngl)
    else:
        assert abs(out.n_ctx - got_ctx) <= 0.04 * got_ctx and abs((ngl or 0) - got_ngl) <= 1


def test_two_devices_match_llama_fit_params() -> None:
    """Two RPC devices, -c 4096 (recorded): the same -ts and the same first overflow (layer 18's
    gate and down to the next device); the last device keeps one projection more of layer 30 than
    llama.cpp does (moeplan's figure is a few MiB lower). Without -c the replay is the same, but
    moeplan projects 2925 MiB at the trained context where llama.cpp projects 3175 (the default
    split of two devices), so the interpolated context comes out larger (14336 vs 9472)."""
    from validation.runtime import rpc_rig_of, subject

    from moeplan.engines.llamacpp import Frontend
    from moeplan.memory.kv import CacheConfig

    s = subject("qwen3moe")
    fixed, auto = RECORDED["two_devices"]["cases"]

    def run(case: dict[str, object]) -> str:
        ctx = case["ctx"]
        cache = CacheConfig(n_ctx=int(str(ctx)) if ctx else 0)
        user = UserSet(n_ctx=int(str(ctx)) if ctx else None, margin_mib=(256,))
        devices = tuple(int(m) for m in case["mib"])  # type: ignore[attr-defined]
        out, _ = fit_command(
            s.spec, rpc_rig_of(devices), FileType.F16, cache, user, s.weights, frontend=Frontend()
        )
        return f"-c {out.n_ctx} {out.flags}".replace("'", '"').replace("=RPC1", "=RPC0[B]")

    ours, line = run(fixed), str(fixed["line"])
    assert ours.split(" -ot ")[0] == line.split(" -ot ")[0] == "-c 4096 -ngl 49 -ts 19,30"
    assert _first_rules(ours, 1) == _first_rules(line, 1)
    assert _first_rules(ours)[1] == r"blk\.30\.ffn_(gate|gate_up|down).*=CPU"  # llama.cpp: (gate|up|...)
    assert run(auto).startswith("-c 14336 -ngl 49 -ts 26,23 -ot ")


@pytest.mark.llamacpp
@pytest.mark.parametrize(
    ("mib", "line"), [(2600, None), (2800, "-c 15104 -ngl -1"), (3200, "-c 40960 -ngl -1")]
)
def test_host_only_matches_llama_fit_params(mib: int, line: str | None) -> None:
    """No GPU: --fit budgets the host's total memory (here faked by validation/fakemem.c for
    llama-fit-params itself), lowers the context the same way, and gives up where -fitc does not fit."""
    import os
    import subprocess

    from validation.runtime import TIMEOUT, bin_dir, fakemem_lib, rpc_rig_of, subject

    from moeplan.engines.llamacpp import Frontend
    from moeplan.memory.kv import CacheConfig

    s = subject("qwen3moe")
    env = {**os.environ, "FAKE_PHYS_MIB": str(mib), "LD_PRELOAD": str(fakemem_lib())}
    args = [str(bin_dir() / "llama-fit-params"), "-m", str(s.path), "-fitt", "256"]
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    printed = next((ln for ln in r.stdout.splitlines() if ln.startswith("-c ")), None)
    assert printed == line and (r.returncode == 0) == (line is not None)
    rig = rpc_rig_of((), host_mib=mib)
    cache, user = CacheConfig(n_ctx=0), UserSet(margin_mib=(256,))
    out, _ = fit_command(s.spec, rig, FileType.F16, cache, user, s.weights, frontend=Frontend())
    if line is None:
        assert out.stopped == "was unable to fit model into system memory by reducing context, abort"
    else:
        assert f"-c {out.n_ctx} -ngl -1" == line and out.stopped is None


def test_explain_keeps_what_the_command_says() -> None:
    rig = "2x RTX 3090 + 128GB DDR4-3200"
    given = explain("llama-server -m gpt-oss-120b-mxfp4-00001-of-00003.gguf -c 32768", rig)
    assert given.fit is not None and given.ctx == 32768 and "-c 32,768 (as given)" in given.fit.summary
    assert " -ts " in given.placement and given.fits
    tight = explain("llama-server -m gpt-oss-120b-mxfp4-00001-of-00003.gguf -fitt 512", rig)
    assert tight.fits and all(d.margin_bytes == 512 * MiB for d in tight.devices if d.name != "CPU")
    with pytest.raises(MoeplanError, match="-fitt gives 3 margins for 2 GPUs"):
        explain("llama-server -m gpt-oss-120b-mxfp4-00001-of-00003.gguf -fitt 1,2,3", rig)
    split = explain("llama-server -m gpt-oss-120b-mxfp4-00001-of-00003.gguf -ts 1,1", rig)
    assert (
        split.fit is not None and split.fit.stopped == "model_params::tensor_split already set by user, abort"
    )
