"""The contract a distributed serving engine (vLLM, SGLang) fulfils for the planner, and the memory
figures both estimate the same way (activation peak, CUDA graphs).

Each engine says: which layouts it can express on a rig, how a layout shards the model, its memory
policy per GPU (what it reserves for weights + KV, activations, CUDA graphs), how its KV cache holds
sliding-window and linear-attention layers, and how to render the commands.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

from moeplan.arch.spec import Attention, AttnKind, FFNKind, ModelSpec
from moeplan.engines.sharding import Layout, Sharding
from moeplan.hardware.spec import GPU, Rig

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class Policy:
    """The engine's memory policy on one GPU of the worst pipeline stage."""

    capacity: int  # bytes of the GPU
    fraction: float  # --gpu-memory-utilization (vLLM) / --mem-fraction-static (SGLang)
    activations: int  # peak of the forward pass at max batched tokens / chunked prefill size
    cuda_graphs: int
    other: int  # CUDA context, NCCL and cuBLAS workspaces
    max_batched_tokens: int
    max_seqs: int  # concurrent sequences the scheduler admits (KV permitting)
    kv_block: int  # tokens per KV page


@dataclass(frozen=True)
class Command:
    """One command, run on `where` (e.g. "node 0 (head)")."""

    where: str
    text: str


@dataclass(frozen=True)
class LaunchSpec:
    """What the renderers need besides the layout."""

    repo: str
    ctx: int
    fraction: float
    quantization: str | None  # --quantization value, None when the checkpoint says it
    kv_cache_dtype: str  # "auto" | "fp8"
    trust_remote_code: bool
    nodes: int
    gpus_per_node: int


def activation_peak(spec: ModelSpec, sh: Sharding, tokens: int, seqs: int) -> int:
    """Peak of the dummy forward pass both engines profile with `tokens` tokens (vLLM
    `profile_run` with max_num_batched_tokens; SGLang's chunked prefill size) plus the sampler's
    float32 logits for `seqs` sequences. Largest live set per layer: residual + normed input +
    attention output (3·E), the QKV projection, and the FFN intermediates (fused-MoE caches
    T·k·(2N + N + E) in vLLM `fused_experts_impl`; dense gate/up 3·F/TP), 2 bytes each.
    An estimate: the engines measure it, we cannot (not confirmed against logs)."""
    e = spec.n_embd
    widest = 0
    for layer in spec.layers:
        a, f = layer.attn, layer.ffn
        if a.kind is AttnKind.LINEAR:
            q = 2 * (a.linear_k_heads * a.linear_k_head_dim) + 2 * a.linear_v_heads * a.linear_v_head_dim
            q //= sh.attn_tp
        elif a.kind is AttnKind.MLA:
            q = a.n_head * (a.qk_nope_head_dim + a.qk_rope_head_dim) // sh.attn_tp + a.kv_lora_rank
        else:
            q = (a.n_head + 2 * max(1, a.n_head_kv // sh.attn_tp)) * a.head_dim_k // sh.attn_tp
        if f.kind is FFNKind.MOE:
            n = f.n_ff_exp // sh.moe_tp
            ffn = f.n_expert_used * (3 * n + e) + 3 * f.n_ff_shexp // sh.dense_tp
        else:
            ffn = 3 * f.n_ff // sh.dense_tp
        widest = max(widest, 3 * e + q + ffn)
    per_attn_rank_tokens = max(1, tokens // sh.attn_dp) if sh.attn_dp > 1 else tokens
    logits = 2 * seqs * (spec.n_vocab // sh.lm_tp) * 4
    return 2 * per_attn_rank_tokens * widest + logits


def cuda_graph_bytes(layers: int, max_bs: int) -> int:
    """Memory of the captured decode graphs: a fixed pool plus per-layer intermediate buffers that
    grow with the largest captured batch. Fitted to typical capture logs ("Graph capturing finished
    … took 0.5-2 GiB"); neither engine documents a formula (not confirmed)."""
    return round(256 * MiB + layers * max_bs * 24 * 1024)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def grid(world: int) -> Iterator[tuple[int, int, int]]:
    """Every (tp, pp, dp) with tp·pp·dp = `world` GPUs, PP outermost: the layouts both engines start
    from. DP together with PP is left out (not a combination vLLM documents)."""
    for pp in divisors(world):
        for tp in divisors(world // pp):
            dp = world // (pp * tp)
            if dp == 1 or pp == 1:
                yield tp, pp, dp


def process_overhead(sh: Sharding) -> int:
    """Policy.other, the same in both engines: each GPU process's CUDA context and cuBLAS
    workspaces (0.75 GiB), and NCCL's buffers as well once the model is split over GPUs or stages
    (1.25 GiB in all). An estimate, as `cuda_graph_bytes` (not confirmed against logs)."""
    return round((0.75 if sh.gpus * sh.pp == 1 else 1.25) * GiB)


def window_tokens(a: Attention, ctx: int, extra: int) -> int:
    """Tokens a sliding-window / chunked layer must hold for one sequence when the engine frees the
    tokens that fell out of the window: the window plus one more page or prefill chunk."""
    if a.sliding:
        return min(ctx, a.window + extra)
    return ctx


class Engine(ABC):
    name: str
    experts_must_divide: bool  # EP must divide the experts (SGLang) or ranks take an extra one (vLLM)

    @abstractmethod
    def layouts(self, spec: ModelSpec, rig: Rig) -> list[Layout]: ...

    @abstractmethod
    def world(self, layout: Layout) -> int: ...

    @abstractmethod
    def sharding(self, layout: Layout) -> Sharding: ...

    @abstractmethod
    def policy(self, spec: ModelSpec, gpu: GPU, layout: Layout, sh: Sharding, layers: int) -> Policy: ...

    @abstractmethod
    def kv_pool(self, policy: Policy, weights: int) -> int:
        """Bytes left for the KV cache on one GPU after the weights."""

    @abstractmethod
    def seq_bytes(self, spec: ModelSpec, layers: range, sh: Sharding, ctx: int, kv_bytes: float) -> int:
        """KV + state one sequence of `ctx` tokens takes from the pool of one GPU."""

    @abstractmethod
    def commands(self, layout: Layout, launch: LaunchSpec) -> list[Command]: ...

    @abstractmethod
    def manifest(self, layout: Layout, launch: LaunchSpec) -> str:
        """A Kubernetes LeaderWorkerSet (YAML text) running the commands, one pod per node."""


def lws_manifest(
    name: str, image: str, nodes: int, gpus: int, leader_cmd: str, worker_cmd: str, port: int
) -> str:
    """A LeaderWorkerSet (leaderworkerset.x-k8s.io/v1): one group of `nodes` pods, the leader runs the
    server, workers join it; LWS_LEADER_ADDRESS / LWS_WORKER_INDEX / LWS_GROUP_SIZE are set by LWS
    (kubernetes-sigs/lws docs, vLLM and SGLang multi-node examples)."""
    import yaml

    def container(role: str, cmd: str) -> dict[str, object]:
        c: dict[str, object] = {
            "name": role,
            "image": image,
            "command": ["/bin/bash", "-c", cmd],
            "resources": {"limits": {"nvidia.com/gpu": gpus}},
            "env": [
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
            ],
            "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
        }
        if role == "leader":
            c["ports"] = [{"containerPort": port}]
            c["readinessProbe"] = {
                "tcpSocket": {"port": port},
                "initialDelaySeconds": 60,
                "periodSeconds": 10,
            }
        return c

    def pod(role: str, cmd: str) -> dict[str, object]:
        return {
            "metadata": {"labels": {"role": role}},
            "spec": {
                "containers": [container(role, cmd)],
                "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}}],
            },
        }

    doc: dict[str, object] = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod("leader", leader_cmd),
                "workerTemplate": pod("worker", worker_cmd),
            },
        },
    }
    return yaml.safe_dump(doc, sort_keys=False, width=1000)
