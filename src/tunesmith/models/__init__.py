"""Base models: the catalog of known names, loading, adapters and fine-tuned model naming."""
