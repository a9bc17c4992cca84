"""The generation engine: base models with adapters, a continuous-batching scheduler, streaming."""
