"""SGLang: layouts, memory policy, KV rules and commands.

Rules, each with where it comes from:
- Memory policy (`python/sglang/srt/server_args.py`, `ServerArgs.__post_init__`, mid-2025 versions):
  `--mem-fraction-static` of the GPU holds weights + the KV pool; the rest is left for activations
  and CUDA graphs. Its default reserves, with GPU memory in MiB and parallel_size = tp · pp:
  < 35 GiB: (2.8 + parallel_size/10) GiB; < 90 GiB (H100, A100): (9.5 + parallel_size/2) GiB;
  < 160 GiB (H20, H200): (12 + parallel_size/2) GiB; otherwise (B200, MI300) 32 GiB;
  + 4 GiB with DP attention; fraction = (mem − reserved) / mem rounded to 3 places.
- `--chunked-prefill-size` default: 2048 below 35 GiB, 8192 below 160 GiB, 16384 above; divided by
  dp_size with DP attention. `--cuda-graph-max-bs`: 8 (TP < 4) or 80 below 35 GiB; 160 on H100/A100,
  256 on H20/H200, 512 on B200 (comments in the same function).
- KV pool (`model_runner.profile_max_num_token`): (free memory after loading − total · (1 − fraction))
  / bytes per token; page size 1 token by default (`--page-size 1`).
- Sliding window (gpt-oss, Gemma 3, Llama 4 chunked): a separate SWA pool of
  `--swa-full-tokens-ratio` (default 0.8) × the full pool's tokens (SWAKVPool); other archs cache SWA
  layers like full ones (ratio and arch list not confirmed against the current code).
- Linear attention (Qwen3-Next / Qwen3.5): one Mamba state slot per running request, SSM state in
  float32 (`SGLANG_MAMBA_SSM_DTYPE` default), conv state in the model dtype (not confirmed).
- Parallelism (docs "Server Arguments", DeepSeek / large-scale EP guides): `--tp` is the number of GPUs
  of one server; `--ep` ≤ tp distributes experts over EP ranks (the MoE TP size is tp / ep;
  experts must divide evenly); `--dp D --enable-dp-attention` runs attention data-parallel in groups
  of tp / D ranks (one latent KV cache per group, not per rank: the MLA memory win) while MoE stays
  TP/EP over all tp ranks; `--dp D` without DP attention runs D replicas of tp GPUs each;
  `--pp-size` splits layers. Multi-node: the same command on every node with `--nnodes N
  --node-rank R --dist-init-addr HEAD:PORT`.
"""

from moeplan.arch.spec import Attention, ModelSpec
from moeplan.engines.serving import (
    Command,
    Engine,
    GiB,
    LaunchSpec,
    MiB,
    Policy,
    activation_peak,
    cuda_graph_bytes,
    divisors,
    grid,
    lws_manifest,
    process_overhead,
    window_tokens,
)
from moeplan.engines.sharding import Layout, Sharding, seq_memory
from moeplan.hardware.spec import GPU, Rig

DIST_PORT = 20000
HTTP_PORT = 30000
SWA_FULL_TOKENS_RATIO = 0.8
HYBRID_SWA_ARCHS = frozenset({"gpt-oss", "gemma3", "llama4"})
MAX_RUNNING_REQUESTS = 4096  # cap we assume when the KV pool allows more (not confirmed)


def default_mem_fraction(gpu_mem_bytes: int, tp: int, pp: int, dp_attention: bool) -> float:
    mem = gpu_mem_bytes / MiB
    parallel = tp * pp
    if mem < 35 * 1024:
        reserved = (2.8 + parallel / 10) * 1024
    elif mem < 90 * 1024:
        reserved = (9.5 + parallel / 2) * 1024
    elif mem < 160 * 1024:
        reserved = (12 + parallel / 2) * 1024
    else:
        reserved = 32 * 1024
    if dp_attention:
        reserved += 4 * 1024
    return round((mem - reserved) / mem, 3)


class SGLang(Engine):
    name = "sglang"
    experts_must_divide = True

    def layouts(self, spec: ModelSpec, rig: Rig) -> list[Layout]:
        out = []
        for tp, pp, dp in grid(rig.gpu_count):
            eps = [1, tp] if spec.is_moe and tp > 1 else [1]
            for ep in eps:
                out.append(Layout(tp, pp, dp, ep))
                if dp == 1 and pp == 1 and tp > 1:
                    for d in divisors(tp)[1:]:
                        out.append(Layout(tp, pp, d, ep, dp_attention=True))
        return out

    def world(self, layout: Layout) -> int:
        return layout.tp * layout.pp * (1 if layout.dp_attention else layout.dp)

    def sharding(self, layout: Layout) -> Sharding:
        d = layout.dp if layout.dp_attention else 1
        return Sharding(
            gpus=layout.tp,
            attn_tp=layout.tp // d,
            attn_dp=d,
            moe_tp=layout.tp // layout.ep,
            moe_ep=layout.ep,
            dense_tp=layout.tp,
            # with DP attention the embedding is replicated per attention group (enable_tp=False)
            embed_tp=layout.tp // d,
            lm_tp=layout.tp,
            pp=layout.pp,
        )

    def policy(self, spec: ModelSpec, gpu: GPU, layout: Layout, sh: Sharding, layers: int) -> Policy:
        mem = gpu.memory_bytes
        fraction = default_mem_fraction(mem, layout.tp, layout.pp, layout.dp_attention)
        chunk = 2048 if mem < 35 * GiB else 8192 if mem < 160 * GiB else 16384
        if mem < 35 * GiB:
            graph_bs = 8 if layout.tp < 4 else 80
        else:
            graph_bs = 160 if mem < 90 * GiB else 256 if mem < 160 * GiB else 512
        return Policy(
            capacity=mem,
            fraction=fraction,
            activations=activation_peak(spec, sh, chunk, graph_bs),
            cuda_graphs=cuda_graph_bytes(layers, graph_bs),
            other=process_overhead(sh),
            max_batched_tokens=chunk,
            max_seqs=MAX_RUNNING_REQUESTS,
            kv_block=1,
        )

    def kv_pool(self, policy: Policy, weights: int) -> int:
        return max(0, round(policy.fraction * policy.capacity - weights - policy.other))

    def seq_bytes(self, spec: ModelSpec, layers: range, sh: Sharding, ctx: int, kv_bytes: float) -> int:
        hybrid = spec.arch in HYBRID_SWA_ARCHS

        def tokens(a: Attention, n: int) -> int:
            return window_tokens(a, n, 0) if hybrid else n

        # conv state bf16, SSM state float32
        m = seq_memory(spec, layers, sh, ctx, kv_bytes, tokens, 2, 4)
        if not hybrid or not m.window_bytes:
            return m.total
        # SWA pool = ratio × full pool tokens: a sequence needs max(ctx, window/ratio) full-pool tokens
        # and, with them, ratio × as many SWA-pool tokens of every SWA layer.
        swa_layer_ctx = next(
            window_tokens(spec.layers[i].attn, ctx, 0) for i in layers if spec.layers[i].attn.sliding
        )
        swa_per_token = m.window_bytes / swa_layer_ctx
        full_per_token = m.full_bytes / ctx if ctx else 0.0
        full_tokens = max(ctx, swa_layer_ctx / SWA_FULL_TOKENS_RATIO)
        return round(full_tokens * (full_per_token + SWA_FULL_TOKENS_RATIO * swa_per_token)) + m.state_bytes

    def _launch(self, layout: Layout, launch: LaunchSpec) -> str:
        parts = [f"python -m sglang.launch_server --model-path {launch.repo}", f"--tp {layout.tp}"]
        if layout.ep > 1:
            parts.append(f"--ep {layout.ep}")
        if layout.dp > 1:
            parts.append(f"--dp {layout.dp}")
            if layout.dp_attention:
                parts.append("--enable-dp-attention")
        if layout.pp > 1:
            parts.append(f"--pp-size {layout.pp}")
        parts += [f"--context-length {launch.ctx}", f"--mem-fraction-static {launch.fraction:g}"]
        if launch.quantization:
            parts.append(f"--quantization {launch.quantization}")
        if launch.kv_cache_dtype != "auto":
            parts.append("--kv-cache-dtype fp8_e4m3")
        if launch.trust_remote_code:
            parts.append("--trust-remote-code")
        return " ".join(parts)

    def _node(self, layout: Layout, launch: LaunchSpec, rank: str, head: str) -> str:
        return (
            self._launch(layout, launch)
            + f" --nnodes {launch.nodes} --node-rank {rank} --dist-init-addr {head}:{DIST_PORT}"
        )

    def commands(self, layout: Layout, launch: LaunchSpec) -> list[Command]:
        if launch.nodes == 1:
            return [Command("node 0", self._launch(layout, launch))]
        return [
            Command(
                f"node {r}" + (" (head)" if r == 0 else ""), self._node(layout, launch, str(r), "$HEAD_IP")
            )
            for r in range(launch.nodes)
        ]

    def manifest(self, layout: Layout, launch: LaunchSpec) -> str:
        if launch.nodes > 1:
            leader = (
                self._node(layout, launch, "0", "$(LWS_LEADER_ADDRESS)")
                + f" --host 0.0.0.0 --port {HTTP_PORT}"
            )
            worker = self._node(layout, launch, "$(LWS_WORKER_INDEX)", "$(LWS_LEADER_ADDRESS)")
        else:
            leader = self._launch(layout, launch) + f" --host 0.0.0.0 --port {HTTP_PORT}"
            worker = "sleep infinity"
        return lws_manifest(
            "sglang", "lmsysorg/sglang:latest", launch.nodes, launch.gpus_per_node, leader, worker, HTTP_PORT
        )


ENGINE = SGLang()
