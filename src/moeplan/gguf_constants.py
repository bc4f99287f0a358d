"""gguf-py's tables (llama.cpp's own constants as data: GGML types and their sizes, file types,
metadata value types) without the rest of the `gguf` package.

`import gguf` also runs the package's reader, writer, tensor-name mapping, vocabulary and metadata
code — about 0.1 s of every CLI start that planning never uses (`python -X importtime`). Its
`constants.py` imports only the standard library, so it is loaded here on its own, registered as
`gguf.constants`: a later `from gguf import ...` or `from gguf.constants import ...` reuses this
module, so every enum keeps a single identity. (Only the attribute `gguf.constants`, on a `gguf`
imported afterwards, stays unbound; nothing in moeplan reads it that way.)
"""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING


def _constants() -> ModuleType:
    loaded = sys.modules.get("gguf.constants")
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("gguf")  # finds the package without running its __init__
    if package is None or not package.submodule_search_locations:
        raise ImportError("moeplan needs gguf-py: pip install gguf")
    path = Path(next(iter(package.submodule_search_locations))) / "constants.py"
    spec = importlib.util.spec_from_file_location("gguf.constants", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gguf.constants"] = module
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING:
    from gguf.constants import (
        GGML_QUANT_SIZES,
        MODEL_TENSOR,
        TENSOR_NAMES,
        GGMLQuantizationType,
        GGUFValueType,
        LlamaFileType,
    )
else:
    _c = _constants()
    GGML_QUANT_SIZES = _c.GGML_QUANT_SIZES
    GGMLQuantizationType = _c.GGMLQuantizationType
    GGUFValueType = _c.GGUFValueType
    LlamaFileType = _c.LlamaFileType
    MODEL_TENSOR = _c.MODEL_TENSOR
    TENSOR_NAMES = _c.TENSOR_NAMES

__all__ = [
    "GGML_QUANT_SIZES",
    "MODEL_TENSOR",
    "TENSOR_NAMES",
    "GGMLQuantizationType",
    "GGUFValueType",
    "LlamaFileType",
]
