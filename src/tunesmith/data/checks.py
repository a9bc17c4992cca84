"""The validation report of a training file (and its validation file): every issue, located, and stats."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tunesmith.data.issues import Issue, make_issue
from tunesmith.data.method_checks import (
    KIND_METHODS,
    Method,
    kto_label_issues,
    length_issues,
    method_issues,
    rft_item_issues,
)
from tunesmith.data.readers import ReadResult, read
from tunesmith.data.records import Record, prompt_of
from tunesmith.data.stats import (
    CPU_TOKENS_PER_SECOND,
    DatasetStats,
    count_tokens,
    dataset_stats,
)
from tunesmith.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MIN_TRAINING_EXAMPLES = 10  # OpenAI refuses a smaller training file
# transformers sets model_max_length to ~1e30 when a tokenizer does not know its model's limit.
NO_LIMIT = 1_000_000
# OpenAI's notebook counts examples with no system and no user message; what to do about each.
MISSING_ROLE_ADVICE = {
    "system": "Fine if the model will be called without one too; otherwise add the system prompt "
    "it will be called with, so that training and use see the same text.",
    "user": "Each example should show the model the kind of request it will answer.",
}
Data = str | Path | ReadResult


@dataclass
class Report:
    """Everything a check found. Plain data: the CLI renders it, the API returns `to_dict()`."""

    file: str
    format: str
    description: str
    n_examples: int
    issues: list[Issue] = field(default_factory=list)
    validation_file: str | None = None
    n_validation_examples: int | None = None
    stats: DatasetStats | None = None

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def file_label(self, issue: Issue) -> str:
        """How a summary names the file an issue is in."""
        if self.validation_file is not None and issue.file == self.validation_file:
            return "validation file"
        return "training file"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "file": self.file,
            "format": self.format,
            "description": self.description,
            "n_examples": self.n_examples,
            "validation_file": self.validation_file,
            "n_validation_examples": self.n_validation_examples,
            "errors": [i.to_dict() for i in self.errors],
            "warnings": [i.to_dict() for i in self.warnings],
            "stats": self.stats.to_dict() if self.stats else None,
        }

    def raise_for_errors(self) -> None:
        """Raise a DataError carrying this report if it has any error."""
        if self.ok:
            return
        n = len(self.errors)
        raise DataError(
            f"The data has {n} error{'s' if n > 1 else ''}: {summarize(self)}",
            "Fix them and check the file again; the full report lists every one.",
            report=self,
            param="training_file",
        )


def check(
    data: Data,
    tokenizer: PreTrainedTokenizerBase | None = None,
    *,
    max_length: int | None = None,
    validation: Data | None = None,
    mapping: dict[str, str] | None = None,
    fmt: str = "auto",
    method: Method | None = None,
    n_epochs: int | Literal["auto"] = "auto",
    tokens_per_second: float = CPU_TOKENS_PER_SECOND,
    min_examples: int = MIN_TRAINING_EXAMPLES,
    item_fields: list[str] | None = None,
) -> Report:
    """Check a training file (a path, or what `read` returned) and optionally its validation file.

    Without a tokenizer, only the format and the dataset as a whole are checked. With one, each
    example is rendered with the model's chat template: `too_long` is checked against
    `max_length` (default: the tokenizer's model_max_length when it states one), and the report
    carries token statistics, epochs and estimates. `method` checks the kind of examples (chat,
    preference pairs, KTO examples, RFT prompts) against the training method; KTO accepts pairs.
    `item_fields` names the fields an RFT grader reads (`{{item.NAME}}`): each example must have
    them. Raises TunesmithError only when a file cannot
    be read at all (see `read`).
    """
    train = as_result(data, mapping, fmt)
    valid = as_result(validation, mapping, fmt) if validation is not None else None
    issues = list(train.problems)
    issues += size_issues(train, min_examples)
    issues += method_issues(train, method)
    issues += duplicate_issues(train)
    issues += role_count_issues(train)
    issues += kto_label_issues(train)
    issues += rft_item_issues(train, item_fields)
    if valid is not None:
        issues += valid.problems
        issues += method_issues(valid, method or KIND_METHODS[train.kind])
        issues += duplicate_issues(valid)
        issues += overlap_issues(train, valid)
        issues += rft_item_issues(valid, item_fields)
    stats = None
    if tokenizer is not None:
        max_length = max_length or model_limit(tokenizer)
        counts = count_tokens(tokenizer, train.records)
        issues += length_issues(train.file, counts, max_length, train.kind)
        if valid is not None:
            valid_counts = count_tokens(tokenizer, valid.records)
            issues += length_issues(valid.file, valid_counts, max_length, valid.kind)
        if counts:
            stats = dataset_stats(
                counts,
                max_length=max_length,
                n_epochs=n_epochs,
                tokens_per_second=tokens_per_second,
            )
    # Training file first, then the validation file; per file by line, file-wide issues last.
    issues.sort(key=lambda i: (i.file != train.file, i.line is None, i.line or 0))
    return Report(
        file=train.file,
        format=train.format,
        description=train.description,
        n_examples=train.n_examples,
        issues=issues,
        validation_file=valid.file if valid else None,
        n_validation_examples=valid.n_examples if valid else None,
        stats=stats,
    )


def as_result(data: Data, mapping: dict[str, str] | None, fmt: str) -> ReadResult:
    return data if isinstance(data, ReadResult) else read(data, mapping=mapping, fmt=fmt)


def model_limit(tokenizer: PreTrainedTokenizerBase) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < NO_LIMIT else None


def size_issues(train: ReadResult, min_examples: int) -> list[Issue]:
    if train.n_examples >= min_examples:
        return []
    return [
        make_issue(
            "too_few_examples",
            f"The training file has {train.n_examples} example(s); at least {min_examples} are "
            "needed (OpenAI's minimum). Add examples; 50 to 100 good ones usually show a clear gain.",
            file=train.file,
        )
    ]


def record_key(record: Record) -> str:
    """Two examples are the same when their canonical JSON is (key order aside)."""
    return json.dumps(record.to_openai(), sort_keys=True, ensure_ascii=False)


def duplicate_issues(result: ReadResult) -> list[Issue]:
    first: dict[str, int | None] = {}
    issues = []
    for record in result.records:
        key = record_key(record)
        if key in first:
            issues.append(
                make_issue(
                    "duplicate",
                    f"This example is an exact copy of the one at line {first[key]}; copies weigh "
                    "an example more than the others. Remove it unless that is meant.",
                    file=result.file,
                    line=record.line,
                )
            )
        else:
            first[key] = record.line
    return issues


def overlap_issues(train: ReadResult, valid: ReadResult) -> list[Issue]:
    lines = {}
    for record in train.records:
        lines.setdefault(record_key(record), record.line)
    return [
        make_issue(
            "validation_overlap",
            f"This validation example is also in the training file (line "
            f"{lines[record_key(record)]}), so validation loss flatters the model. Remove "
            "it from one of the two files.",
            file=valid.file,
            line=record.line,
        )
        for record in valid.records
        if record_key(record) in lines
    ]


def role_count_issues(result: ReadResult) -> list[Issue]:
    """OpenAI's two counters, as one warning each: examples with no system or no user message."""
    if result.kind == "text":  # plain text has no roles
        return []
    prompts = [prompt_of(r) for r in result.records]
    n = len(prompts)
    issues = []
    for role, advice in MISSING_ROLE_ADVICE.items():
        names = (
            ("system", "developer") if role == "system" else (role,)
        )  # developer is the new system
        missing = sum(all(m.role not in names for m in messages) for messages in prompts)
        if missing:
            issues.append(
                make_issue(
                    f"no_{role}_message",
                    f"{missing} of {n} examples have no {role} message. {advice}",
                    file=result.file,
                )
            )
    return issues


def summarize(report: Report, limit: int = 3) -> str:
    """The first `limit` errors in one line, for job failures and error messages.

    `training file line 3, messages[1].role: Unrecognized role 'bot'; ...; and 4 more errors.`
    """
    errors = report.errors
    if not errors:
        return "no errors"
    text = "; ".join(
        f"{e.where(report.file_label(e))}: {e.message.rstrip('.')}" for e in errors[:limit]
    )
    more = len(errors) - limit
    if more > 0:
        text += f"; and {more} more error{'s' if more > 1 else ''}"
    return text
