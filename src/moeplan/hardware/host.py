"""The host side of a rig: system RAM and its bandwidth, CPU cores, the PCIe link to each GPU, the
disk. People rarely say all of it, so each missing figure gets a stated default, and every default
becomes a sentence in `Rig.assumptions` (a plan that rests on a guess should say so).

Expert offload makes RAM bandwidth the speed limit of most MoE plans on consumer rigs, which is why
type, speed and channel count are read and not just the size.
"""

from dataclasses import dataclass, replace
from typing import Literal

from moeplan.hardware.spec import GPU, Host

GIB = 2**30
GB = 10**9

# JEDEC-typical speeds when only the type is given (MT/s): DDR4-3200 and DDR5-5600 are what current
# desktop boards run at stock; LPDDR figures are what APUs ship with (Strix Halo LPDDR5X-8000).
DEFAULT_MTS = {"DDR3": 1600, "DDR4": 3200, "DDR5": 5600, "LPDDR4X": 4266, "LPDDR5": 6400, "LPDDR5X": 8000}

# PCIe usable bandwidth per lane, one direction, GB/s: 2.5/5 GT/s with 8b/10b coding (gen 1-2),
# 8/16/32 GT/s with 128b/130b (gen 3-5), 64 GT/s PAM4 with FLIT coding (gen 6). PCI-SIG figures.
PCIE_GB_S_PER_LANE = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}

# Sequential read, GB/s: a PCIe 4.0 NVMe drive does 5-7; SATA SSDs cap at 0.55 (SATA III 6 Gb/s).
DISK_GB_S = {"nvme": 5.0, "ssd": 0.55, "sata": 0.55, "hdd": 0.2}

Profile = Literal["desktop", "server", "unified"]


@dataclass(frozen=True)
class HostSpec:
    """What the rig text said about the host; None = not said, a default will be assumed."""

    ram_gb: float | None = None
    ram_type: str | None = None  # DDR4, DDR5, LPDDR5X ...
    mts: int | None = None  # transfers per second, millions (DDR5-6000 -> 6000)
    channels: int | None = None
    cpu_cores: int | None = None
    cpu_name: str | None = None  # "EPYC 9654", kept for the description only
    pcie_gen: int | None = None
    pcie_lanes: int | None = None
    disk_gb_s: float | None = None
    disk_kind: str | None = None  # nvme | ssd | sata | hdd


@dataclass(frozen=True)
class Defaults:
    """What a host of one kind usually has, each with the sentence that says it was assumed."""

    ram_gb: float
    ram_type: str
    channels: int
    cpu_cores: int
    pcie_gen: int
    why: str  # what kind of machine these describe, for the assumption sentences
    mts: int | None = None  # None: the type's usual stock speed (DEFAULT_MTS)


DESKTOP = Defaults(64, "DDR5", 2, 16, 4, "a consumer desktop")
# NVIDIA DGX H100 / DGX B200 user guides: 2x Xeon Platinum (56 cores each), 2 TB DDR5-4800 in 2x8
# channels, PCIe 5.0 x16 to each GPU. AMD MI300X platforms (2x EPYC 9004) are in the same class.
SERVER = Defaults(2048, "DDR5", 16, 112, 5, "a DGX-class 8-GPU server (2 sockets)", mts=4800)
# DGX A100 user guide: 2x EPYC 7742 (64 cores each), 1 TB DDR4-3200 in 2x8 channels, PCIe 4.0.
SERVER_AMPERE = Defaults(1024, "DDR4", 16, 128, 4, "a DGX A100-class server (2 sockets)")


# The GPUs of the nodes SERVER and SERVER_AMPERE describe (HGX/DGX baseboards hold eight).
SERVER_GPUS = 8


def server_share(defaults: Defaults, gpu_count: int) -> Defaults:
    """The host fewer than eight datacenter GPUs may count on: that share of the 8-GPU server's
    RAM, channels and cores (one H100: 256 GB, 2 channels, 14 cores), not the whole DGX. The
    conservative reading: a 1-GPU cloud instance is sold as about an eighth of such a host, and a
    plan that needs more RAM than stated should say so rather than assume 2 TB."""
    if gpu_count >= SERVER_GPUS:
        return defaults
    share = gpu_count / SERVER_GPUS
    return replace(
        defaults,
        ram_gb=defaults.ram_gb * share,
        channels=max(1, round(defaults.channels * share)),
        cpu_cores=max(1, round(defaults.cpu_cores * share)),
        why=f"a {gpu_count}-GPU share of {defaults.why} (state it, e.g. '+ 512GB DDR5 8-channel')",
    )


def ram_bandwidth_bytes_s(channels: int, mts: int) -> float:
    """Peak DRAM bandwidth = channels x 8 bytes x MT/s: each (DIMM-wide) channel is 64 bits, one
    transfer moves 8 bytes. DDR5's two 32-bit sub-channels per DIMM are still one 64-bit channel
    here, as board makers count them ("dual-channel" = two DIMM channels)."""
    return channels * 8 * mts * 1e6


def pcie_bytes_s(gen: int, lanes: int) -> float:
    """One-direction PCIe bandwidth of a link (`PCIE_GB_S_PER_LANE` x lanes)."""
    return PCIE_GB_S_PER_LANE[gen] * lanes * GB


def build_host(stated: HostSpec, defaults: Defaults, gpu_count: int = 1) -> tuple[Host, list[str]]:
    """A Host from what was stated, filling the rest from `defaults`; returns the assumption
    sentences for every filled figure. `gpu_count` matters for PCIe lanes: a desktop CPU has 16
    lanes for graphics, split x8/x8 for two cards; workstation and server CPUs give each x16."""
    said: list[str] = []
    ram_gb = stated.ram_gb
    if ram_gb is None:
        ram_gb = defaults.ram_gb
        said.append(f"RAM size not stated: assumed {ram_gb:g} GB, as in {defaults.why}.")
    ram_type = stated.ram_type
    if ram_type is None:
        ram_type = defaults.ram_type
        said.append(f"RAM type not stated: assumed {ram_type}.")
    mts = stated.mts
    if mts is None:
        mts = DEFAULT_MTS[ram_type] if stated.ram_type or defaults.mts is None else defaults.mts
        said.append(f"RAM speed not stated: assumed {ram_type}-{mts}, the usual stock speed.")
    channels = stated.channels
    if channels is None:
        channels = defaults.channels
        said.append(f"memory channels not stated: assumed {channels} ({defaults.why}).")
    cores = stated.cpu_cores
    if cores is None:
        cores = defaults.cpu_cores
        cpu = f" for the {stated.cpu_name}" if stated.cpu_name else ""
        said.append(f"CPU cores not stated{cpu}: assumed {cores}, as in {defaults.why}.")
    gen = stated.pcie_gen
    if gen is None:
        gen = defaults.pcie_gen
        said.append(f"PCIe generation not stated: assumed PCIe {gen}.0 to each GPU.")
    lanes = stated.pcie_lanes
    if lanes is None:
        workstation = defaults is not DESKTOP or channels > 2
        lanes = 16 if workstation or gpu_count <= 1 else 8 if gpu_count == 2 else 4
        split = "" if lanes == 16 else f" (a desktop CPU splits its 16 lanes across {gpu_count} cards)"
        said.append(f"PCIe lanes not stated: assumed x{lanes} to each GPU{split}.")
    disk_gb_s, disk_said = _disk(stated)
    said += disk_said

    bandwidth = ram_bandwidth_bytes_s(channels, mts)
    host = Host(
        ram_bytes=round(ram_gb * GIB),
        ram_bandwidth_bytes_s=bandwidth,
        ram_description=f"{ram_type}-{mts} {channels}-channel",
        cpu_cores=cores,
        pcie_bytes_s=pcie_bytes_s(gen, lanes),
        disk_read_bytes_s=disk_gb_s * GB,
    )
    return host, said


def unified_host(stated: HostSpec, gpu: GPU, cores_default: int | None) -> tuple[Host, list[str]]:
    """The host of a unified-memory machine (Apple, Strix Halo, DGX Spark): its RAM *is* the GPU's
    memory, so RAM bandwidth is the chip's memory bandwidth, and there is no PCIe hop to the GPU."""
    said: list[str] = []
    ram_gb = stated.ram_gb
    if ram_gb is None:
        ram_gb = gpu.memory_bytes / GIB
        said.append(f"memory size not stated: assumed the largest {gpu.name} configuration, {ram_gb:g} GB.")
    cores = stated.cpu_cores or cores_default
    if cores is None:
        cores = 8
        said.append("CPU cores not stated: assumed 8.")
    disk_gb_s, disk_said = _disk(stated)
    said += disk_said
    host = Host(
        ram_bytes=round(ram_gb * GIB),
        ram_bandwidth_bytes_s=gpu.bandwidth_bytes_s,
        ram_description=f"unified memory shared with the {gpu.name} GPU",
        cpu_cores=cores,
        pcie_bytes_s=gpu.bandwidth_bytes_s,  # the GPU reads host memory in place
        disk_read_bytes_s=disk_gb_s * GB,
    )
    return host, said


def gpu_share_of_unified(gpu: GPU, ram_bytes: int) -> tuple[int, str]:
    """How much of a unified-memory machine's RAM its GPU may use, and the sentence saying so.

    Apple: Metal caps GPU-wired memory at `recommendedMaxWorkingSetSize`, about 2/3 of RAM on
    machines under 64 GB and 3/4 from 64 GB (llama.cpp issue #1870: a 64 GB M2 Max loads ~47 GB;
    #2011: a 32 GB M1 Max reports 21,845 MB). Recent macOS reports more on 128 GB machines
    (107.5 GiB; antirez/ds4 #893), so 3/4 is the conservative figure. `sudo sysctl
    iogpu.wired_limit_mb=N` raises the cap until reboot.
    Strix Halo (Linux amdgpu GTT) and DGX Spark (CUDA on system memory): the GPU may map nearly
    all of RAM; we keep 8 GB for the OS and the CPU side of the runtime.
    """
    if gpu.vendor == "Apple":
        share = 0.75 if ram_bytes >= 64 * GIB else 2 / 3
        usable = int(ram_bytes * share)
        return usable, (
            f"macOS lets the GPU wire about {share:.0%} of unified memory by default "
            f"({usable / GIB:.0f} of {ram_bytes / GIB:.0f} GB); "
            "`sudo sysctl iogpu.wired_limit_mb=N` raises it."
        )
    usable = max(ram_bytes - 8 * GIB, ram_bytes // 2)
    knob = (
        " (Linux: raise the amdgpu GTT limit with `ttm.pages_limit`/`amdgpu.gttsize` if it is lower)"
        if gpu.vendor == "AMD"
        else ""
    )
    return usable, (
        f"the {gpu.name} GPU uses the system RAM: assumed {usable / GIB:.0f} of {ram_bytes / GIB:.0f} GB "
        f"usable by it, 8 GB left to the OS{knob}."
    )


def _disk(stated: HostSpec) -> tuple[float, list[str]]:
    if stated.disk_gb_s is not None:
        return stated.disk_gb_s, []
    if stated.disk_kind is not None:
        speed = DISK_GB_S[stated.disk_kind]
        return speed, [f"{stated.disk_kind.upper()} read speed not stated: assumed {speed:g} GB/s."]
    return DISK_GB_S["nvme"], ["disk not stated: assumed an NVMe SSD reading 5 GB/s."]
