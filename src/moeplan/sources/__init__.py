"""Where models come from: the built-in catalog, GGUF headers, config.json."""
