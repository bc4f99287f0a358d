"""This machine as a `Rig`, for `moeplan detect` and as the default rig: NVIDIA GPUs through NVML
(`nvidia-ml-py`), RAM and cores through `psutil`.

Detection must never fail a command: no driver, no NVML library, a GPU the catalog does not know or
a container that hides things all degrade to a CPU-only or partly assumed rig, and each degradation
is said in `Rig.assumptions`. RAM speed and channels are not visible to unprivileged code (DMI
tables need root), so those stay the stated desktop defaults.
"""

import contextlib
from dataclasses import replace

import psutil  # type: ignore[import-untyped]
import pynvml  # type: ignore[import-untyped]

from moeplan.errors import UnknownHardware
from moeplan.hardware.catalog import GIB, lookup_gpu
from moeplan.hardware.host import DESKTOP, HostSpec, build_host
from moeplan.hardware.spec import GPU, Node, Rig


def nvidia_gpus() -> tuple[list[GPU], list[str]]:
    """NVIDIA GPUs seen by NVML, each matched to the catalog for bandwidth and features and given
    the memory NVML reports; ([], [why]) when NVML is absent or finds nothing."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        return [], [f"no NVIDIA GPU detected (NVML: {e})."]
    try:
        gpus: list[GPU] = []
        said: list[str] = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = _text(pynvml.nvmlDeviceGetName(handle))
            total = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            gpus.append(_as_catalog_gpu(name, total, said))
        return gpus, said
    except pynvml.NVMLError as e:
        return [], [f"NVIDIA GPUs could not be read (NVML: {e})."]
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _as_catalog_gpu(name: str, total_bytes: int, said: list[str]) -> GPU:
    """The catalog entry for an NVML name ("NVIDIA GeForce RTX 4090"), with NVML's memory size; an
    unknown name still yields a GPU, with bandwidth unknown (0) and said so."""
    words = name.split()
    # NVML adds suffixes the catalog does not use ("NVIDIA H100 80GB HBM3"): drop words from the end.
    for n in range(len(words), 0, -1):
        try:
            return replace(lookup_gpu(" ".join(words[:n])), memory_bytes=total_bytes)
        except UnknownHardware:
            continue
    said.append(f"GPU '{name}' is not in the catalog: its bandwidth and compute are unknown.")
    return GPU(name=name, vendor="NVIDIA", memory_bytes=total_bytes, bandwidth_bytes_s=0.0, fp16_tflops=None)


def detect() -> Rig:
    """This machine. Never raises: what cannot be read is assumed, and said."""
    gpus, said = nvidia_gpus()
    try:
        ram_gb = psutil.virtual_memory().total / GIB
        cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or None
    except (OSError, RuntimeError) as e:  # restricted /proc in some sandboxes
        ram_gb, cores = None, None
        said.append(f"RAM and cores could not be read ({e}).")
    stated = HostSpec(ram_gb=round(ram_gb, 1) if ram_gb else None, cpu_cores=cores)
    host, host_said = build_host(stated, DESKTOP, max(len(gpus), 1))
    # The type, speed and channel defaults are guesses for *this* machine: say how to override.
    said += host_said
    if not gpus:
        said.append("CPU-only rig: every plan runs on the CPU from system RAM.")
    said.append("to correct any of this, describe the machine with --rig, e.g. 'RTX 4090 + 64GB DDR5-6000'.")
    text = " + ".join([*(g.name for g in gpus), f"{host.ram_bytes / GIB:.0f}GB RAM"])
    node = Node(gpus=tuple(gpus), host=host, gpu_link="pcie", gpu_link_bytes_s=host.pcie_bytes_s)
    return Rig(nodes=(node,), text=f"detected: {text}", assumptions=tuple(said))
