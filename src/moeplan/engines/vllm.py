"""vLLM (V1 engine): layouts, memory policy, KV rules and commands.

Rules, each with where it comes from:
- Memory policy: `--gpu-memory-utilization` (default 0.9) of each GPU's memory holds weights, the
  profiled activation peak, non-torch memory (CUDA context, NCCL) and the KV cache, which gets what is
  left (vLLM `Worker.determine_available_memory`; docs "Conserving memory"). CUDA graphs are
  captured after the KV cache is allocated and, in the versions read, sit outside that budget (not
  confirmed for the newest releases, which start to profile them).
- Scheduler defaults for the OpenAI server (vLLM `arg_utils.py` `get_batch_defaults`): GPUs with
  >= 70 GiB that are not A100: max_num_batched_tokens 8192, max_num_seqs 1024; >= 160 GiB
  (B200/B300, vLLM >= 0.28): 16384; others 2048 and 256. CUDA graphs are captured up to
  min(2·max_num_seqs, 512) sequences (CompilationConfig max_cudagraph_capture_size).
- Paged KV: block size 16 tokens; MLA backends use 64 (FlashMLA, Hopper) or 128 (CUTLASS MLA, Blackwell).
- Hybrid KV cache manager (docs "Hybrid KV Cache Manager"): sliding-window layers reserve only the
  most recent window (+ one block), chunked-local layers (Llama 4) one chunk; Mamba / Gated-DeltaNet
  layers keep one state per sequence (`MambaSpec`), in the model dtype unless
  `--mamba-ssm-cache-dtype` says otherwise. (vLLM also raises the attention block size so its page
  matches the state page; we do not model that rounding.)
- Parallelism (docs "Parallelism and Scaling", "Data Parallel Deployment", "Expert Parallel
  Deployment"): GPUs = TP × PP × DP; attention is TP inside each DP rank; MoE layers form one group of
  TP × DP ranks, tensor-parallel by default, expert-parallel with `--enable-expert-parallel`.
  Multi-node TP/PP runs on a Ray cluster (`ray start --head` / `ray start --address`, then
  `vllm serve … --distributed-executor-backend ray`); multi-node DP uses vLLM's own
  `--data-parallel-size-local / --data-parallel-address / --headless`.
"""

from moeplan.arch.spec import Attention, AttnKind, ModelSpec
from moeplan.engines.serving import (
    Command,
    Engine,
    GiB,
    LaunchSpec,
    Policy,
    activation_peak,
    cuda_graph_bytes,
    grid,
    lws_manifest,
    process_overhead,
    window_tokens,
)
from moeplan.engines.sharding import Layout, Sharding, ceil_div, seq_memory
from moeplan.hardware.spec import GPU, Rig

DEFAULT_UTILIZATION = 0.9
BLOCK = 16
RAY_PORT = 6379
DP_RPC_PORT = 13345
HTTP_PORT = 8000


class VLLM(Engine):
    name = "vllm"
    experts_must_divide = False  # determine_expert_map gives the first n % EP ranks one more expert

    def layouts(self, spec: ModelSpec, rig: Rig) -> list[Layout]:
        out = []
        for tp, pp, dp in grid(rig.gpu_count):
            out.append(Layout(tp, pp, dp))
            if spec.is_moe and tp * dp > 1:
                out.append(Layout(tp, pp, dp, ep=tp * dp))
        return out

    def world(self, layout: Layout) -> int:
        return layout.tp * layout.pp * layout.dp

    def sharding(self, layout: Layout) -> Sharding:
        group = layout.tp * layout.dp
        ep = layout.ep if layout.ep > 1 else 1
        return Sharding(
            gpus=group,
            attn_tp=layout.tp,
            attn_dp=layout.dp,
            moe_tp=group // ep,
            moe_ep=ep,
            dense_tp=layout.tp,
            embed_tp=layout.tp,
            lm_tp=layout.tp,
            pp=layout.pp,
        )

    def policy(self, spec: ModelSpec, gpu: GPU, layout: Layout, sh: Sharding, layers: int) -> Policy:
        mem = gpu.memory_bytes
        big = mem >= 70 * GiB and "A100" not in gpu.name
        tokens = 16384 if mem >= 160 * GiB else 8192 if big else 2048
        seqs = 1024 if big else 256
        graph_bs = min(2 * seqs, 512)
        if any(la.attn.kind is AttnKind.MLA for la in spec.layers):
            block = 128 if gpu.mxfp4 else 64 if gpu.fp8 else BLOCK
        else:
            block = BLOCK
        return Policy(
            capacity=mem,
            fraction=DEFAULT_UTILIZATION,
            activations=activation_peak(spec, sh, tokens, seqs),
            cuda_graphs=cuda_graph_bytes(layers, graph_bs),
            other=process_overhead(sh),
            max_batched_tokens=tokens,
            max_seqs=seqs,
            kv_block=block,
        )

    def kv_pool(self, policy: Policy, weights: int) -> int:
        budget = policy.fraction * policy.capacity
        return max(0, round(budget - weights - policy.activations - policy.other))

    def seq_bytes(self, spec: ModelSpec, layers: range, sh: Sharding, ctx: int, kv_bytes: float) -> int:
        block = BLOCK
        if any(spec.layers[i].attn.kind is AttnKind.MLA for i in layers):
            block = 64
        padded = ceil_div(ctx, block) * block

        def tokens(a: Attention, n: int) -> int:
            return ceil_div(window_tokens(a, n, block), block) * block

        # Mamba/GDN state in the model dtype (bf16) for conv and SSM state (mamba_ssm_cache_dtype auto)
        return seq_memory(spec, layers, sh, padded, kv_bytes, tokens, 2, 2).total

    def _serve(self, layout: Layout, launch: LaunchSpec, ray: bool) -> str:
        parts = [f"vllm serve {launch.repo}", f"--tensor-parallel-size {layout.tp}"]
        if layout.pp > 1:
            parts.append(f"--pipeline-parallel-size {layout.pp}")
        if layout.ep > 1:
            parts.append("--enable-expert-parallel")
        if layout.dp > 1:
            parts.append(f"--data-parallel-size {layout.dp}")
        parts += [f"--max-model-len {launch.ctx}", f"--gpu-memory-utilization {launch.fraction:g}"]
        if launch.quantization:
            parts.append(f"--quantization {launch.quantization}")
        if launch.kv_cache_dtype != "auto":
            parts.append(f"--kv-cache-dtype {launch.kv_cache_dtype}")
        if launch.trust_remote_code:
            parts.append("--trust-remote-code")
        if ray:
            parts.append("--distributed-executor-backend ray")
        return " ".join(parts)

    def _dp_multinode(self, layout: Layout, launch: LaunchSpec, rank: int, head: str) -> str:
        local = launch.gpus_per_node // layout.tp
        base = self._serve(layout, launch, ray=False)
        base += f" --data-parallel-size-local {local} --data-parallel-address {head}"
        base += f" --data-parallel-rpc-port {DP_RPC_PORT}"
        if rank:
            base += f" --headless --data-parallel-start-rank {rank * local}"
        return base

    def commands(self, layout: Layout, launch: LaunchSpec) -> list[Command]:
        if launch.nodes == 1:
            return [Command("node 0", self._serve(layout, launch, ray=False))]
        head = "$HEAD_IP"
        if layout.dp > 1 and launch.gpus_per_node % layout.tp == 0:
            return [
                Command(
                    f"node {r}" + (" (head)" if r == 0 else ""), self._dp_multinode(layout, launch, r, head)
                )
                for r in range(launch.nodes)
            ]
        out = [Command("node 0 (head)", f"ray start --head --port={RAY_PORT}")]
        out += [
            Command(f"node {r}", f"ray start --address={head}:{RAY_PORT}") for r in range(1, launch.nodes)
        ]
        out.append(Command("node 0 (head), after all nodes joined", self._serve(layout, launch, ray=True)))
        return out

    def manifest(self, layout: Layout, launch: LaunchSpec) -> str:
        if launch.nodes > 1 and layout.dp > 1 and launch.gpus_per_node % layout.tp == 0:
            leader = self._dp_multinode(layout, launch, 0, "$(LWS_LEADER_ADDRESS)")
            local = launch.gpus_per_node // layout.tp
            worker = self._serve(layout, launch, ray=False) + (
                f" --data-parallel-size-local {local} --data-parallel-address $(LWS_LEADER_ADDRESS)"
                f" --data-parallel-rpc-port {DP_RPC_PORT} --headless"
                f" --data-parallel-start-rank $(( LWS_WORKER_INDEX * {local} ))"
            )
        elif launch.nodes > 1:
            leader = (
                f"ray start --head --port={RAY_PORT} && "
                f"until [ $(ray status 2>/dev/null | grep -c node_) -ge {launch.nodes} ]; do sleep 5; done"
                " && " + self._serve(layout, launch, ray=True)
            )
            worker = f"ray start --address=$(LWS_LEADER_ADDRESS):{RAY_PORT} --block"
        else:
            leader = self._serve(layout, launch, ray=False)
            worker = "sleep infinity"
        return lws_manifest(
            "vllm", "vllm/vllm-openai:latest", launch.nodes, launch.gpus_per_node, leader, worker, HTTP_PORT
        )


ENGINE = VLLM()
