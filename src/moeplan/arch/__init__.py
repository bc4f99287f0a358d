"""What a model is: ModelSpec, adapters from HF config.json, and the GGUF tensor inventory."""
