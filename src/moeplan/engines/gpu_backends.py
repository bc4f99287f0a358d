"""What each ggml GPU backend adds to a llama.cpp run, one table row per backend.

Read from the pinned llama.cpp (build 11434) unless a row says otherwise:
- Op offload (`ggml/src/ggml-backend.cpp ggml_backend_sched_backend_id_from_cur`): an op whose weight
  sits in host memory runs on the first (highest-priority) backend whose `offload_op` accepts it; the
  scheduler copies the weight into that backend's compute buffer. `offload_op` accepts ops whose batch
  (MUL_MAT: ne[1], MUL_MAT_ID: ne[2]; GET_ROWS never) is at least `op_offload_min_batch_size`, 32 unless
  `GGML_OP_OFFLOAD_MIN_BATCH` says otherwise (`ggml-cuda.cu ggml_backend_cuda_device_offload_op`,
  `ggml-vulkan.cpp ggml_backend_vk_device_offload_op`, `ggml-metal.cpp` — Metal only for MUL_MAT and
  MUL_MAT_ID). RPC devices have no `offload_op`. `--no-op-offload` turns it off for every backend.
  Any other op is measured by its rows (`get_op_batch_size`'s default, `ggml_nrows`), so an expert
  bias add (ADD_ID) follows its experts' matmul to the GPU; Metal's `offload_op` takes only MUL_MAT and
  MUL_MAT_ID, so with experts in host memory the host runs their bias adds (`engines/llamacpp.py`
  host_adds; Vulkan before ~b8650 too, `engines/builds.py VULKAN_ROW_BATCH`).
  Each weight that is not on the split's backend starts a new split ("by starting a new split, the
  memory of the previously offloaded weights can be reused", `ggml_backend_sched_split_graph`), so one
  copy is live at a time: the compute buffer grows by the largest such weight, not their sum.
- Graph inputs (KQ masks, positions, token ids) are assigned to the CPU backend and copied into each
  GPU's compute buffer at the start of the first split that reads them (pass 5 of
  `ggml_backend_sched_split_graph`); a GPU's copy is freed after its last layer, so it does not
  coexist with the logits, which the CPU-only graph holds from the start. With pipeline parallelism
  (several GPUs, all layers offloaded, no -ot) split inputs are never freed: the masks stay.
- Pinned host buffers: compute and output buffers on the host use the first GPU's host buffer type
  (`CUDA_Host`, `ROCm_Host`, `Vulkan_Host`; Metal's host memory is the device's).
- Memory llama.cpp does not count (its breakdown's "unaccounted"): the runtime context, the BLAS
  library's workspace and the backend's memory pool. Estimates per backend, with their sources below;
  they are shown as their own line, never folded into the buffers.
- Buffer size limit (`engines/ggml_alloc.py`): ggml-alloc splits a compute buffer into chunks of at most the
  buffer type's `get_max_size`: Vulkan's 1 GiB suballocation blocks make a tensor over 1 GiB a chunk of
  its own; CUDA has no limit, Metal's `maxBufferLength` is far above any compute buffer.
- Metal (`ggml-metal-device.m`): the device's memory is `recommendedMaxWorkingSetSize` (Apple documents it
  as the working set the GPU can use without hurting performance); the rig already gives an Apple GPU
  that share of RAM as its memory (`hardware/host.py` gpu_share_of_unified), so it is not cut again
  here. With mmap the `MTL0_Mapped` buffer spans every
  tensor of the file from the first one the GPU holds (token_embd included): the same pages the host
  maps, counted once in unified memory.
"""

import re
from dataclasses import dataclass

from moeplan.errors import MoeplanError

MiB = 2**20
OP_OFFLOAD_MIN_BATCH = 32  # ggml-cuda.cu / ggml-vulkan.cpp / ggml-metal-device.m default


@dataclass(frozen=True)
class Backend:
    """One ggml backend: its device names and the rules above that differ between backends."""

    name: str  # as users say it: CUDA, ROCm, Vulkan, Metal, SYCL, RPC
    device_prefix: str  # llama.cpp's buffer type names: CUDA0, ROCm0, Vulkan0, MTL0, SYCL0, RPC0
    op_offload: bool  # has `offload_op` (batch >= OP_OFFLOAD_MIN_BATCH)
    host_buffer: str  # name of the pinned host buffer type compute/output buffers use ("" = none)
    runtime_bytes: int  # per device, not in llama.cpp's breakdown (see `runtime_source`)
    runtime_source: str
    graph_inputs_on_host: bool = True  # masks live in the host buffer and are copied per GPU
    maps_whole_file: bool = False  # Metal: the device's mapped buffer spans the file's tensors
    vendor: str = ""  # the only GPU vendor it runs on ("" = any: Vulkan)
    max_buffer_bytes: int = 0  # the buffer type's get_max_size: compute buffers are chunked at it (0: none)
    offloads_adds: bool = True  # `offload_op` takes non-matmul ops with host weights (expert bias adds)
    # ... but only where it measures such an op's batch by its rows (Vulkan; `CacheConfig.vk_row_batch`)
    adds_need_row_batch: bool = False

    def offloads_host_adds(self, row_batch: bool) -> bool:
        """Whether `offload_op` takes the expert bias adds of host-resident experts: never on Metal,
        on Vulkan only in builds whose batch counts an op's rows (`builds.VULKAN_ROW_BATCH`)."""
        return self.offloads_adds and (row_batch or not self.adds_need_row_batch)


# CUDA: the primary context on a CUDA 12 driver with lazy module loading (CUDA_MODULE_LOADING=LAZY, the
# default since CUDA 12.2; CUDA C++ Programming Guide, "Lazy Loading") takes about 300 MiB of device
# memory on current GPUs; cuBLAS allocates a 32 MiB workspace per handle on Hopper/Blackwell and 4 MiB
# before (cuBLAS docs, cublasSetWorkspace); ggml-cuda's VMM pool (ggml-cuda.cu ggml_cuda_pool_vmm) keeps
# the largest temporary it ever needed (dequantised src1 rows, FA partial results: tens of MiB at -ub 512).
_CUDA = 300 * MiB + 32 * MiB + 64 * MiB
# ROCm: the HIP runtime context and rocBLAS/hipBLASLt workspace are of the same order (ROCm docs,
# "HIP programming model"; hipBLASLt allocates a 32 MiB workspace by default); the same pool code.
_ROCM = _CUDA
# Vulkan: no runtime context on the device; the driver's own allocations (descriptor pools, pipeline
# caches) and ggml-vulkan's preallocated staging/dequant buffers (ggml-vulkan.cpp prealloc_x/y, sized
# on demand to the largest dequantised operand) are of the order of 100-200 MiB.
_VULKAN = 160 * MiB

BACKENDS: dict[str, Backend] = {
    b.name.lower(): b
    for b in (
        Backend(
            "CUDA",
            "CUDA",
            True,
            "CUDA_Host",
            _CUDA,
            "CUDA context ~300 MiB + cuBLAS 32 MiB + pool ~64 MiB",
            vendor="NVIDIA",
        ),
        Backend(
            "ROCm",
            "ROCm",
            True,
            "ROCm_Host",
            _ROCM,
            "HIP context ~300 MiB + hipBLASLt 32 MiB + pool",
            vendor="AMD",
        ),
        Backend(
            "Vulkan",
            "Vulkan",
            True,
            "Vulkan_Host",
            _VULKAN,
            "driver + ggml-vulkan staging ~160 MiB",
            # suballocation_block_size: 1 GiB unless GGML_VK_SUBALLOCATION_BLOCK_SIZE says otherwise,
            # and never above maxMemoryAllocationSize (ggml-vulkan.cpp ggml_vk_get_device, #11551)
            max_buffer_bytes=2**30,
            adds_need_row_batch=True,
        ),
        Backend(
            "Metal",
            "MTL",
            True,
            "",
            0,
            "unified memory: the limit is recommendedMaxWorkingSetSize",
            maps_whole_file=True,
            offloads_adds=False,  # ggml-metal.cpp ggml_backend_metal_device_offload_op: MUL_MAT(_ID) only
            vendor="Apple",
        ),
        Backend(
            "SYCL",
            "SYCL",
            True,
            "SYCL_Host",
            _ROCM,
            "Level Zero context + oneMKL workspace (as ROCm)",
            vendor="Intel",
        ),
        Backend(
            "RPC",
            "RPC",
            False,
            "",
            0,
            "the remote server's own process",
            graph_inputs_on_host=False,
            vendor="RPC",
        ),
    )
}


def backend(name: str) -> Backend:
    """The backend a user names (case-insensitive): cuda, rocm, vulkan, metal, sycl, rpc."""
    b = BACKENDS.get(name.strip().lower())
    if b is None:
        known = ", ".join(x.name for x in BACKENDS.values())
        raise MoeplanError(f"unknown backend '{name}': use one of {known}")
    return b


def vendor_backend(vendor: str) -> Backend:
    """The backend llama.cpp builds use for a vendor's GPUs by default."""
    return BACKENDS[{"RPC": "rpc", "Apple": "metal", "AMD": "rocm", "Intel": "sycl"}.get(vendor, "cuda")]


def backend_of_device(device: str) -> Backend | None:
    """The backend of a llama.cpp device name (CUDA0, Vulkan1, MTL0, RPC0 ...); None for the host."""
    for b in BACKENDS.values():
        if device.startswith(b.device_prefix) and device[len(b.device_prefix) :].isdigit():
            return b
    return None


_SAID = re.compile(r"\s*\(\s*(vulkan)\s*\)|\s+(?:on\s+|with\s+)?(vulkan)\b\s*$", re.IGNORECASE)


def split_backend(rig_text: str) -> tuple[str, Backend | None]:
    """A backend said in a rig's text ("RX 7900 XTX (Vulkan)", "2x Arc A770 vulkan"), and the text
    without it. Only Vulkan needs saying: CUDA, ROCm and Metal follow from the GPUs' vendor."""
    m = _SAID.search(rig_text)
    if m is None:
        return rig_text, None
    return (rig_text[: m.start()] + rig_text[m.end() :]).strip(), BACKENDS["vulkan"]
