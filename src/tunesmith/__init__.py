"""tunesmith: fine-tune open language models on your own data, measure it, serve it."""

__version__ = "0.1.0"
