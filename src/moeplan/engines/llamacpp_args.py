"""A llama.cpp command line read the way llama.cpp reads it, so that `explain` can say what it does
and suggest the same command with only the placement changed.

The flags moeplan understands are one table (names and arity as `common/arg.cpp` of the pinned build
declares them); a new setting is one more row. Every other word is kept as written and listed as
ignored: it changes neither memory nor speed in moeplan's model (`--port`, `-t`, `--jinja` ...).
"""

import shlex
from dataclasses import dataclass
from typing import Literal

from moeplan.errors import MoeplanError

Kind = Literal["model", "setting", "placement"]


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]  # every spelling llama.cpp accepts, short first
    key: str  # the setting it sets
    kind: Kind  # placement flags are what `explain` may replace
    meaning: str
    takes_value: bool = True
    bare: str | None = None  # the value when written without one (older builds' bare `-fa`)


FLAGS: tuple[Flag, ...] = (
    Flag(("-m", "--model"), "model", "model", "GGUF file to load (the first shard of a split file)"),
    Flag(
        ("-hf", "-hfr", "--hf-repo"), "hf_repo", "model", "Hub repository to download, <user>/<model>[:quant]"
    ),
    Flag(("-c", "--ctx-size"), "ctx_size", "setting", "KV cache cells; 0 = the model's trained context"),
    Flag(("-np", "--parallel"), "parallel", "setting", "server slots (default: auto = 4, unified KV)"),
    Flag(("-kvu", "--kv-unified"), "kv_unified", "setting", "one KV buffer shared by all slots", False),
    Flag(("-no-kvu", "--no-kv-unified"), "no_kv_unified", "setting", "one KV stream per slot", False),
    Flag(("--swa-full",), "swa_full", "setting", "sliding-window layers cache the whole context", False),
    Flag(
        ("-ctxcp", "--ctx-checkpoints", "--swa-checkpoints"),
        "ctx_checkpoints",
        "setting",
        "context checkpoints per server slot, host memory (default 32)",
    ),
    Flag(
        ("-cram", "--cache-ram"),
        "cache_ram",
        "setting",
        "server prompt cache in host memory, MiB (default 8192, -1: no limit, 0: off)",
    ),
    Flag(("-ctk", "--cache-type-k"), "cache_type_k", "setting", "K cache type (default f16)"),
    Flag(("-ctv", "--cache-type-v"), "cache_type_v", "setting", "V cache type (default f16)"),
    Flag(("-fa", "--flash-attn"), "flash_attn", "setting", "flash attention: on, off or auto", bare="on"),
    Flag(("-fit", "--fit"), "fit", "setting", "fit unset arguments to device memory: on (default) or off"),
    Flag(("-fitt", "--fit-target"), "fit_target", "setting", "MiB --fit keeps free per GPU (default 1024)"),
    Flag(("-fitc", "--fit-ctx"), "fit_ctx", "setting", "the least context --fit lowers to (default 4096)"),
    Flag(("-ub", "--ubatch-size"), "ubatch_size", "setting", "physical batch (default 512)"),
    Flag(("-b", "--batch-size"), "batch_size", "setting", "logical batch (default 2048)"),
    Flag(("-dev", "--device"), "device", "setting", "GPUs to offload to, e.g. CUDA0,CUDA1 (none: CPU only)"),
    Flag(("-sm", "--split-mode"), "split_mode", "setting", "GPUs used: none, layer (default), row, tensor"),
    Flag(("-mg", "--main-gpu"), "main_gpu", "setting", "the one GPU of -sm none (default 0)"),
    Flag(("-ngl", "--gpu-layers", "--n-gpu-layers"), "gpu_layers", "placement", "layers on the GPUs"),
    Flag(("-ot", "--override-tensor"), "override_tensor", "placement", "tensors to a buffer type"),
    Flag(("-ncmoe", "--n-cpu-moe"), "n_cpu_moe", "placement", "experts of the first N layers on the CPU"),
    Flag(("-cmoe", "--cpu-moe"), "cpu_moe", "placement", "every expert on the CPU", False),
    Flag(("-ts", "--tensor-split"), "tensor_split", "placement", "share of layers per GPU"),
    Flag(("-nkvo", "--no-kv-offload"), "no_kv_offload", "placement", "KV cache in host memory", False),
    Flag(("-sm", "--split-mode"), "split_mode", "placement", "none, layer (default) or row"),
    Flag(("--spec-type",), "spec_type", "setting", "speculative decoding: draft-mtp, draft-simple (-md) ..."),
    Flag(("-md", "--spec-draft-model", "--model-draft"), "model_draft", "setting", "draft model GGUF"),
    Flag(("--spec-draft-n-max",), "spec_draft_n_max", "setting", "tokens drafted per step"),
    Flag(
        ("-ngld", "--spec-draft-ngl", "--gpu-layers-draft", "--n-gpu-layers-draft"),
        "gpu_layers_draft",
        "setting",
        "draft model layers on the GPUs",
    ),
    Flag(
        ("-ctkd", "--spec-draft-type-k", "--cache-type-k-draft"),
        "cache_type_k_draft",
        "setting",
        "draft K cache",
    ),
    Flag(
        ("-ctvd", "--spec-draft-type-v", "--cache-type-v-draft"),
        "cache_type_v_draft",
        "setting",
        "draft V cache",
    ),
    Flag(("-mm", "--mmproj"), "mmproj", "setting", "vision projector file (mmproj GGUF), on the main GPU"),
    Flag(("--no-mmproj-offload",), "no_mmproj_offload", "setting", "vision projector on the CPU", False),
    Flag(("--mmproj-offload",), "mmproj_offload", "setting", "vision projector on the GPU (default)", False),
    Flag(("-mmdev", "--mmproj-device"), "mmproj_device", "setting", "vision projector device (none: CPU)"),
    Flag(("--image-max-tokens",), "image_max_tokens", "setting", "tokens per image at most (warmup size)"),
    Flag(
        ("--no-mmproj", "--no-mmproj-auto"), "no_mmproj", "setting", "no projector downloaded with -hf", False
    ),
)
_BY_NAME = {name: f for f in FLAGS for name in f.names}
# Flags the pinned build removed, with its own hint (common/arg.cpp "removed params": arg_removed).
REMOVED = {
    **dict.fromkeys(
        ("--draft", "--draft-n", "--draft-max"), "use --spec-draft-n-max or --spec-ngram-mod-n-max"
    ),
    **dict.fromkeys(("--draft-min", "--draft-n-min"), "use --spec-draft-n-min or --spec-ngram-mod-n-min"),
}


@dataclass(frozen=True)
class Command:
    """The words of a command line and what the known flags among them set (the last one wins, as
    in llama.cpp)."""

    words: tuple[str, ...]
    values: dict[str, str]
    placement: tuple[int, ...]  # positions of the placement flags' words
    ignored: tuple[str, ...]  # flags moeplan does not model, as written
    spans: tuple[tuple[str, int, int], ...] = ()  # each known flag as written: key, first word, words

    @property
    def binary(self) -> str | None:
        """The program (llama-server, ./build/bin/llama-cli ...), None for flags alone."""
        return self.words[0] if self.words and not self.words[0].startswith("-") else None

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def has(self, key: str) -> bool:
        return key in self.values

    def integer(self, key: str) -> int | None:
        """A whole-number setting, or None when not given."""
        value = self.values.get(key)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            flag = next(f for f in FLAGS if f.key == key)
            raise MoeplanError(f"{flag.names[0]} needs a whole number, got '{value}'") from None

    @property
    def placement_flags(self) -> str:
        return " ".join(shlex.quote(self.words[i]) for i in self.placement)

    def with_placement(self, flags: str) -> str:
        """The same command with its placement flags replaced by `flags`, where the first of them
        stood (at the end when it had none); a setting `flags` sets too (-sm, -dev) is replaced, not
        repeated; every other word kept as written."""
        new = shlex.split(flags)
        keys = {key for key, _, _ in parse_command(flags).spans}
        drop = {*self.placement, *(i for key, at, n in self.spans if key in keys for i in range(at, at + n))}
        at = self.placement[0] if self.placement else len(self.words)
        kept = [w for i, w in enumerate(self.words) if i not in drop]
        at -= sum(1 for i in drop if i < at)
        return shlex.join([*kept[:at], *new, *kept[at:]])


def parse_command(command: str) -> Command:
    """Read a llama.cpp command line (`llama-server …`, `./build/bin/llama-cli …`, or flags alone)."""
    try:
        words = tuple(shlex.split(command))
    except ValueError as e:
        raise MoeplanError(f"cannot parse the command: {e}") from None
    values: dict[str, str] = {}
    placement: list[int] = []
    ignored: list[str] = []
    spans: list[tuple[str, int, int]] = []
    i = 1 if words and not words[0].startswith("-") else 0  # the binary
    while i < len(words):
        word = words[i]
        if word in REMOVED:
            raise MoeplanError(f"{word} was removed from llama.cpp: {REMOVED[word]}")
        flag = _BY_NAME.get(word)
        has_next = i + 1 < len(words) and not words[i + 1].startswith("-")
        if flag is None:
            ignored.append(word)  # with its value, if the next word is not a flag
            i += 2 if has_next else 1
            continue
        if not flag.takes_value:
            values[flag.key] = ""
            width = 1
        elif has_next or (i + 1 < len(words) and flag.bare is None):
            values[flag.key] = words[i + 1]
            width = 2
        elif flag.bare is not None:
            values[flag.key] = flag.bare
            width = 1
        else:
            raise MoeplanError(f"{word} needs a value")
        if flag.kind == "placement":
            placement += range(i, i + width)
        spans.append((flag.key, i, width))
        i += width
    return Command(words, values, tuple(placement), tuple(ignored), tuple(spans))
