"""GGML types, llama.cpp file-type recipes and native release formats."""
