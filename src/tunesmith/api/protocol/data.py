"""Data inspection schemas (a tunesmith extension): check, lines, render, convert and split of an
uploaded file, what `tunesmith data check|convert|split` do to a local one."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tunesmith.api.protocol.common import OpenAIRequest
from tunesmith.api.protocol.files import FileObject
from tunesmith.data.method_checks import Method
from tunesmith.data.readers import RecordKind
from tunesmith.models.catalog import DEFAULT_MODEL
from tunesmith.train.config import SFTConfig

# What training truncates at unless told otherwise: the check and the render use the same.
DEFAULT_MAX_LENGTH: int = SFTConfig.model_fields["max_length"].default

Mapping = dict[str, str]
MAPPING_HELP = (
    'Read the rows by columns: {"system"?, "user", "assistant"} (chat) or {"system"?, "prompt", '
    '"chosen", "rejected"} (preference pairs) to column names; "=text" is a literal value, '
    "where {COLUMN} is filled in."
)


class CheckRequest(OpenAIRequest):
    model: str = Field(default=DEFAULT_MODEL, description="Whose tokenizer counts the tokens.")
    mapping: Mapping | None = Field(default=None, description=MAPPING_HELP)
    validation_file: str | None = Field(default=None, description="File id, checked for overlap.")
    max_length: int = Field(default=DEFAULT_MAX_LENGTH, ge=16, description="Longest example.")
    method: Method | None = Field(default=None, description="Check the examples' kind against it.")
    held_out: bool = Field(
        default=False,
        description="Checked as validation or test data: no minimum number of examples.",
    )


class Histogram(BaseModel):
    edges: list[int] = Field(description="Bin i counts lengths in [edges[i], edges[i + 1]).")
    counts: list[int]


class Problem(BaseModel):
    """Why the file cannot be read as a whole as it is (e.g. a table that needs a mapping)."""

    message: str
    hint: str | None = None
    param: str | None = None


class CheckResult(BaseModel):
    report: dict[str, Any] | None = Field(
        description="The check report (`tunesmith data check --json`): ok, format, description, "
        "n_examples, errors and warnings (kind, severity, message, file, line, field), stats."
    )
    columns: list[str] | None = Field(description="A CSV/TSV/Parquet file's columns, to map.")
    histogram: Histogram | None = Field(description="Examples by length in tokens.")
    problem: Problem | None = Field(description="Set when report is null.")


class Line(BaseModel):
    line: int = Field(description="1-based, as check reports number them.")
    text: str = Field(description="The line as stored; a Parquet row as JSON.")


class LinesPage(BaseModel):
    object: str = "list"
    data: list[Line]
    total_lines: int


class RenderRequest(OpenAIRequest):
    model: str = DEFAULT_MODEL
    mapping: Mapping | None = Field(default=None, description=MAPPING_HELP)
    index: int = Field(default=0, ge=0, description="Which valid example, from 0.")
    max_length: int = Field(default=DEFAULT_MAX_LENGTH, ge=16, description="Truncate as training.")


class Token(BaseModel):
    text: str
    loss: bool = Field(description="The token carries the training loss.")


class RenderedSequence(BaseModel):
    name: str = Field(description="example, chosen, rejected, answer (KTO) or prompt (RFT).")
    tokens: list[Token]
    n_loss_tokens: int


class RenderResult(BaseModel):
    index: int
    n_examples: int = Field(description="Valid examples in the file.")
    kind: RecordKind
    line: int | None = Field(description="The example's line in the file.")
    sequences: list[RenderedSequence]


class ConvertRequest(OpenAIRequest):
    mapping: Mapping | None = Field(default=None, description=MAPPING_HELP)


class SplitRequest(OpenAIRequest):
    validation: float = Field(default=0.1, gt=0, lt=1, description="Share held out.")
    seed: int = Field(default=0, ge=0, description="Seed of the shuffle.")
    mapping: Mapping | None = Field(default=None, description=MAPPING_HELP)


class StoredData(FileObject):
    n_examples: int = Field(description="Examples written to the file.")


class SplitResult(BaseModel):
    training_file: StoredData
    validation_file: StoredData
