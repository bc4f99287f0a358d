"""Vision as an option of a llama.cpp plan: the projector file of the model's tower on the device
llama-server loads it to, held back from that device before the placement search, as llama-server
itself adds the projector's memory to that device's fit target (server-context.cpp, "[mtmd] adding
... to fit_params_target"), so the plan chosen leaves room for it."""

import dataclasses

from moeplan.arch.vision import VisionTower, mmproj_type, mmproj_type_of_file
from moeplan.engines.llamacpp import CPU
from moeplan.engines.llamacpp_args import Command
from moeplan.engines.vision import VisionMemory, check_vision, plan_vision
from moeplan.errors import MoeplanError
from moeplan.hardware.spec import Rig
from moeplan.plan.llamacpp import Runtime, device_slots


def vision_memory(
    model: str,
    tower: VisionTower | None,
    ftype_name: str,
    rig: Rig,
    rt: Runtime,
    *,
    offload: bool = True,
    engine: str = "llamacpp",
    file_stem: str | None = None,
) -> VisionMemory:
    """The projector of `model` as an mmproj file of type `ftype_name` (f16, bf16, q8_0) on `rig`,
    named mmproj-`file_stem` (default: the model's name)-TYPE.gguf."""
    t = check_vision(model, tower, engine)
    ftype = mmproj_type(ftype_name)
    _, gpus = device_slots(rig, rt)
    names = tuple(g.name for g in gpus)
    return plan_vision(
        t, ftype, names, offload=offload, file=f"mmproj-{file_stem or model}-{ftype.name}.gguf"
    )


def holding(rt: Runtime, v: VisionMemory) -> Runtime:
    """`rt` with the projector's memory held on its device (and its input buffer on the host)."""
    held = dict(rt.reserved)
    held[v.device] = held.get(v.device, 0) + v.total_bytes
    if v.host_compute_bytes:
        held[CPU] = held.get(CPU, 0) + v.host_compute_bytes
    return dataclasses.replace(rt, reserved=tuple(held.items()))


def device_bytes(v: VisionMemory) -> dict[str, int]:
    """What the projector takes on each device."""
    out = {v.device: v.total_bytes}
    if v.host_compute_bytes:
        out[CPU] = out.get(CPU, 0) + v.host_compute_bytes
    return out


_NEEDS_MMPROJ = {
    "no_mmproj_offload": "--no-mmproj-offload",
    "mmproj_offload": "--mmproj-offload",
    "mmproj_device": "-mmdev",
    "image_max_tokens": "--image-max-tokens",
}


def vision_of_command(
    cmd: Command, model: str, tower: VisionTower | None, rig: Rig, rt: Runtime
) -> tuple[VisionMemory | None, str | None]:
    """The projector a pasted command loads (`--mmproj FILE`, its type read from the file's name),
    placed as its -mmdev / --no-mmproj-offload say, at its --image-max-tokens; and a note where -hf
    may bring one that the command does not name."""
    path = cmd.get("mmproj")
    if path is None:
        given = [flag for key, flag in _NEEDS_MMPROJ.items() if cmd.has(key)]
        if cmd.has("hf_repo") and not cmd.has("no_mmproj") and tower is not None:
            return None, (
                "-hf also downloads the repository's vision projector when it has one (llama-server's "
                "mmproj auto-download, off with --no-mmproj); add --mmproj FILE to count its memory"
            )
        if given:
            raise MoeplanError(f"{', '.join(given)} has no effect without --mmproj FILE")
        return None, None
    t = check_vision(model, tower, "llamacpp", "--mmproj")
    name = path.rsplit("/", 1)[-1]
    ftype = mmproj_type_of_file(name)
    if ftype is None:
        raise MoeplanError(f"cannot tell the mmproj type from '{name}': name it like mmproj-F16.gguf")
    _, gpus = device_slots(rig, rt)
    names = tuple(g.name for g in gpus)
    asked = cmd.get("mmproj_device")
    offload = not cmd.has("no_mmproj_offload") and asked != "none"
    device = None
    if asked not in (None, "none"):
        if asked not in names:
            raise MoeplanError(
                f"-mmdev {asked}: the rig's devices are {', '.join(names) or 'none (CPU only)'}"
            )
        device = asked
    tokens = cmd.integer("image_max_tokens") or 0
    if tokens < 0:
        raise MoeplanError(f"--image-max-tokens must be positive, got {tokens}")
    v = plan_vision(t, ftype, names, offload=offload, file=name, device=device, image_max_tokens=tokens)
    return v, None
