"""gguf-py's tables loaded without the rest of the package keep one identity when the package is
imported afterwards (a fresh interpreter, so nothing else has imported gguf first)."""

import subprocess
import sys


def test_constants_alone_then_the_package() -> None:
    code = (
        "import sys\n"
        "from moeplan.quant.ggml import GGMLType\n"
        "from moeplan.sources.gguf_header import GGUFValueType\n"
        "assert 'gguf' not in sys.modules and 'gguf.constants' in sys.modules\n"
        "import gguf\n"
        "from gguf.constants import GGML_QUANT_SIZES\n"
        "assert gguf.GGMLQuantizationType is GGMLType and gguf.GGUFValueType is GGUFValueType\n"
        "assert GGML_QUANT_SIZES[GGMLType.Q4_K] == (256, 144)\n"
        "assert gguf.GGUFReader is not None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
