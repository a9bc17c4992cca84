"""Evaluation: task metrics, scoring a model on held-out data, and the strategy comparison."""
