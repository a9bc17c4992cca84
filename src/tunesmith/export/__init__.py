"""Exports: merged folders, adapters, GGUF and Ollama files, each checked by loading it back."""
