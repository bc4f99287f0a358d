"""Named rigs for the common cases, so `--rig rtx-4090-64gb` and a web page's dropdown need no
typing. Each preset is just a rig string read by the same grammar as user input (`rig.py`), so a
preset can never describe something a person could not have written."""

from moeplan.errors import UnknownHardware, did_you_mean
from moeplan.hardware.spec import Rig

PRESETS: dict[str, str] = {
    # consumer GPUs with the RAM they are usually paired with
    "rtx-4090-64gb": "RTX 4090 + 64GB DDR5-6000 dual-channel",
    "rtx-4090-128gb": "RTX 4090 + 128GB DDR5-5600 dual-channel",
    "rtx-5090-64gb": "RTX 5090 + 64GB DDR5-6000 dual-channel",
    "rtx-5090-128gb": "RTX 5090 + 128GB DDR5-5600 dual-channel",
    "rtx-5080-64gb": "RTX 5080 + 64GB DDR5-6000 dual-channel",
    "rtx-5060ti-16gb-64gb": "RTX 5060 Ti 16GB + 64GB DDR5-5600 dual-channel",
    "rtx-3090-64gb": "RTX 3090 + 64GB DDR4-3200 dual-channel",
    "rtx-3090x2-128gb": "2x RTX 3090 + 128GB DDR4-3200 dual-channel",
    "rtx-pro-6000-256gb": "RTX PRO 6000 + 256GB DDR5-5600 8-channel",
    # generic sizes, for "what can a 16 GB card do": a typical card of that size
    "8gb-gpu-32gb": "RTX 5060 Ti 8GB + 32GB DDR5-5600 dual-channel",
    "12gb-gpu-32gb": "RTX 4070 Ti + 32GB DDR5-5600 dual-channel",
    "16gb-gpu-64gb": "RTX 5070 Ti + 64GB DDR5-5600 dual-channel",
    "24gb-gpu-64gb": "RTX 4090 + 64GB DDR5-5600 dual-channel",
    "32gb-gpu-128gb": "RTX 5090 + 128GB DDR5-5600 dual-channel",
    # unified memory
    "mac-64gb": "M4 Pro 64GB",
    "mac-128gb": "M4 Max 128GB",
    "mac-studio-m2-ultra-192gb": "Mac Studio M2 Ultra 192GB",
    "mac-studio-m3-ultra-256gb": "Mac Studio M3 Ultra 256GB",
    "mac-studio-m3-ultra-512gb": "Mac Studio M3 Ultra 512GB",
    "strix-halo-128gb": "Ryzen AI Max+ 395 128GB",
    "dgx-spark": "DGX Spark 128GB",
    # datacenter nodes
    "8x-a100": "8x A100 80GB",
    "8x-h100": "8x H100-SXM",
    "8x-h200": "8x H200",
    "8x-b200": "8x B200",
    "8x-mi300x": "8x MI300X",
    "2x-8x-h200": "2 nodes x 8x H200, 400Gb IB",
}


def preset_text(name: str) -> str | None:
    """The rig string of preset `name` (any case, '_' or '-'), or None if it is not a preset."""
    return PRESETS.get(name.strip().lower().replace("_", "-"))


def preset(name: str) -> Rig:
    """The rig a preset names; unknown names raise UnknownHardware with "did you mean"."""
    # Imported here: rig.py imports preset_text from this module, to accept preset names.
    from moeplan.hardware.rig import parse_rig

    if preset_text(name) is None:
        known = ", ".join(PRESETS)
        raise UnknownHardware(f"unknown preset '{name}'{did_you_mean(name, PRESETS)} (presets: {known})")
    return parse_rig(name)
