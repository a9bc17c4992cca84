"""Checks that depend on the training method: the kind of examples, KTO labels, RFT items, length."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from tunesmith.data.issues import Issue, make_issue
from tunesmith.data.readers import ReadResult, RecordKind
from tunesmith.data.records import KTOExample, RFTExample
from tunesmith.data.stats import ExampleTokens

# "dpo" also stands for ORPO, which trains on the same pairs; "reinforcement" is OpenAI's name
# for RFT, which tunesmith trains with GRPO.
Method = Literal["supervised", "dpo", "orpo", "kto", "reinforcement"]
# The kinds of records each method trains on. KTO takes pairs too: each gives two examples.
METHOD_KINDS: dict[str, tuple[RecordKind, ...]] = {
    "supervised": ("chat", "text"),
    "dpo": ("pairs",),
    "orpo": ("pairs",),
    "kto": ("kto", "pairs"),
    "reinforcement": ("rft",),
}
# The method a file's records suggest, for a validation file checked without one.
KIND_METHODS: dict[RecordKind, Method] = {
    "chat": "supervised",
    "pairs": "dpo",
    "kto": "kto",
    "rft": "reinforcement",
    "text": "supervised",
}
KIND_NAMES: dict[RecordKind, str] = {
    "chat": "chat examples",
    "pairs": 'preference pairs ({"input", "preferred_output", "non_preferred_output"}, or '
    'TRL\'s {"prompt", "chosen", "rejected"})',
    "kto": 'KTO examples ({"prompt", "completion", "label": true|false})',
    "rft": 'reinforcement fine-tuning prompts ({"messages": [..., user message], <grader fields>})',
    "text": 'plain texts ({"text": ...})',
}
# Share of examples that must have an item field before the others are told they lack it.
ITEM_FIELD_MAJORITY = 0.5


def method_issues(result: ReadResult, method: Method | None) -> list[Issue]:
    """The file's kind of examples against what the method trains on (file-wide)."""
    if method is None or result.kind in METHOD_KINDS[method]:
        return []
    found = "preference pairs" if result.kind == "pairs" else f"{result.description} examples"
    wanted = " or ".join(KIND_NAMES[kind] for kind in METHOD_KINDS[method])
    hint = "Give a file of that kind, or choose the other method."
    if method == "reinforcement" and result.format == "chat":
        hint = (
            "RFT examples end with the user's message and keep the reference answer in another "
            'field for the grader; read such a file with the format "rft".'
        )
    return [
        make_issue(
            "wrong_method",
            f"The file holds {found}, but the {method} method trains on {wanted}. {hint}",
            file=result.file,
        )
    ]


def kto_label_issues(result: ReadResult) -> list[Issue]:
    """KTO weighs desirable against undesirable answers: a file needs both (file-wide)."""
    labels = Counter(r.label for r in result.records if isinstance(r, KTOExample))
    if not labels or len(labels) == 2:
        return []
    (only,) = labels
    which, other = ("desirable", "undesirable") if only else ("undesirable", "desirable")
    return [
        make_issue(
            "one_sided_labels",
            f"All {labels[only]} examples are labelled {which} (label {str(only).lower()}); "
            f"KTO learns from the contrast, so add {other} examples too.",
            file=result.file,
        )
    ]


def rft_item_issues(result: ReadResult, item_fields: list[str] | None = None) -> list[Issue]:
    """The fields graders read: those the grader names must be on every example (errors); an
    example with none, or lacking one most examples have, is a warning."""
    examples = [r for r in result.records if isinstance(r, RFTExample)]
    if not examples:
        return []
    # A grader's {{item.answer.value}} reads the top-level field `answer`.
    required = [name.split(".")[0] for name in item_fields or []]
    counts = Counter(key for r in examples for key in r.item)
    usual = [k for k, n in counts.items() if n >= ITEM_FIELD_MAJORITY * len(examples)]
    issues = []
    for record in examples:
        for name in required:
            if name not in record.item:
                issues.append(
                    make_issue(
                        "missing_item_field",
                        f"The example has no {name!r} field, which the grader reads as "
                        f"{{{{item.{name}}}}}; add it.",
                        file=result.file,
                        line=record.line,
                        field=name,
                    )
                )
        if not record.item:
            issues.append(
                make_issue(
                    "no_item_fields",
                    "The example has only messages: a grader usually compares the answer with "
                    'a field such as "reference_answer"; add one for it to read.',
                    file=result.file,
                    line=record.line,
                )
            )
            continue
        for name in usual:
            if name not in record.item and name not in required:
                issues.append(
                    make_issue(
                        "inconsistent_item_fields",
                        f"The example has no {name!r} field, which {counts[name]} of "
                        f"{len(examples)} examples have; a grader reading {{{{item.{name}}}}} "
                        "would find nothing here.",
                        file=result.file,
                        line=record.line,
                        field=name,
                    )
                )
    return issues


def length_issues(
    file: str, counts: list[ExampleTokens], max_length: int | None, kind: RecordKind = "chat"
) -> list[Issue]:
    """Examples over max_length.

    SFT and RFT: an error, not OpenAI's warning. Truncation cuts the end, which is the answer
    and its end-of-turn token, so the model would learn to stop mid-answer; an RFT prompt cut
    short asks a different question. Pairs and KTO examples: the prompt is cut from the left and
    the answers kept whole (`preference`), a warning; an error only when an answer alone does
    not fit.
    """
    if max_length is None:
        return []
    issues = []
    for c in counts:
        if c.longest <= max_length:
            continue
        if c.prompt is not None and c.longest_answer < max_length:
            issues.append(
                make_issue(
                    "prompt_truncated",
                    f"The example is {c.longest} tokens long with the chat template, over "
                    f"max_length {max_length}; the prompt would lose its first "
                    f"{c.longest - max_length} tokens (the answers are kept whole). Shorten "
                    "the prompt, or raise max_length.",
                    file=file,
                    line=c.line,
                )
            )
            continue
        what = {
            "rft": "cutting off the end of the prompt",
            "chat": "cutting off the end of the answer",
            "text": "cutting off its end",
        }.get(kind, f"cutting off the end of an answer ({c.longest_answer} tokens long)")
        issues.append(
            make_issue(
                "too_long",
                f"The example is {c.longest} tokens long with the chat template, over max_length "
                f"{max_length}; it would be truncated, {what}. Shorten or split it, or raise "
                "max_length.",
                file=file,
                line=c.line,
            )
        )
    return issues
