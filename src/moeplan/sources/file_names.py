"""What a published GGUF file's name says: the model (the words before the quantization label) and
the llama.cpp file type, as uploaders write them:

- ggml-org: `gpt-oss-120b-mxfp4-00001-of-00003.gguf` (split by gguf-split; MXFP4 = MXFP4_MOE, the
  converter keeping the released MXFP4 experts);
- unsloth: `Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf` (UD- marks their "dynamic" recipes, which keep chosen
  tensors at more bits than llama-quantize would; `_XL` labels have no stock counterpart);
- bartowski: `Qwen_Qwen3-8B-Q4_K_M.gguf` (the original organisation as a prefix).

A custom recipe is planned as the stock file type it builds on, with a note saying so: only the
file's own header (point `-m` at the downloaded file) gives its exact tensor types.
"""

from dataclasses import dataclass
from pathlib import PurePath

from moeplan.quant.recipe import LABEL_ALIASES, FileType, custom_recipe_base
from moeplan.sources.hub_refs import quant_label, split_parts

F = FileType


@dataclass(frozen=True)
class NamedFile:
    model: str  # the name before the label, as written ('' when the label starts the name)
    label: str  # the quantization label, upper case (UD-Q4_K_XL)
    file_type: FileType | None  # None when the label names no llama.cpp file type
    note: str | None  # set when file_type stands in for a custom recipe


def file_type_of_label(label: str) -> tuple[FileType | None, str | None]:
    """The llama.cpp file type a label names, or the stock one a custom recipe builds on (with a note)."""
    custom = custom_recipe_base(label)
    if custom is None:
        upper = label.upper()
        return F.__members__.get(upper) or LABEL_ALIASES.get(upper), None
    ft = custom
    return ft, (
        f"{label} is unsloth's dynamic recipe (chosen tensors at more bits): planned as the stock "
        f"{ft.name}; point -m at the downloaded file for its exact tensor types"
    )


def read_file_name(path: str) -> NamedFile | None:
    """The model and quantization a GGUF file name states, or None when it states no quantization."""
    stem, _ = split_parts(PurePath(path).name)
    stem = stem.removesuffix(".gguf").removesuffix(".GGUF")
    label = quant_label(stem)
    if not label:
        return None
    model = stem[: stem.upper().rfind(label)].rstrip("-_. ")
    return NamedFile(model, label, *file_type_of_label(label))
