"""The export resource (a tunesmith extension): `tunesmith export` run as a background task."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tunesmith.api.protocol.common import OpenAIRequest


class ExportCreate(OpenAIRequest):
    format: Literal["merged", "adapter", "gguf", "ollama"] = Field(
        description="merged: a safetensors folder; adapter: PEFT + GGUF LoRA; gguf: one file; "
        "ollama: the GGUF and a Modelfile."
    )
    quant: Literal["f32", "f16", "bf16", "q8_0", "q4_0"] | None = Field(
        default=None, description="Weights' type; the format's default when left out."
    )
    check: bool = Field(
        default=True, description="Load what was written and compare its answers to the model's."
    )
