"""Tasks bundled with tunesmith: the demo's data (made by tools/make_demo_task.py) and the probes."""

from __future__ import annotations

from pathlib import Path

ORDERS = Path(__file__).parent / "orders"
# General-instruction prompts with accepted answers: what fine-tuning may have broken.
PROBES = Path(__file__).parent / "probes.jsonl"
