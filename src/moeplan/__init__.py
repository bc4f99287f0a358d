"""moeplan: exact memory, placement and speed planning for dense and MoE LLMs."""

__version__ = "0.1.0"
