"""The measuring instrument: the pinned llama.cpp, materialised models, runners and the report."""
