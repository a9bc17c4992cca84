"""One export top to bottom: validate → write into a temporary folder → self-check → move into place."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tunesmith.data.records import Conversation, prompt_of
from tunesmith.errors import DiskFullError, TunesmithError, out_of_space
from tunesmith.export.check import GGUF_FILE, CheckResult, check_export, prompts_from
from tunesmith.export.merged import end_of_turn_tokens, write_adapter, write_merged
from tunesmith.models.loading import load_tokenizer, weights_folder
from tunesmith.models.spec import ModelSpec

log = logging.getLogger(__name__)

Format = Literal["merged", "adapter", "gguf", "ollama"]
# (stage, done, total): what the CLI draws as a bar.
ProgressFn = Callable[[str, int, int], None]
# The quantisations each format can take; the first is the default (None: as stored).
QUANTS: dict[str, tuple[str | None, ...]] = {
    "merged": (None, "f16", "bf16", "f32"),
    "adapter": (None,),
    "gguf": ("f16", "bf16", "q8_0", "q4_0"),
    "ollama": ("f16", "bf16", "q8_0", "q4_0"),
}
UNVERIFIED = "NOT-VERIFIED.txt"


@dataclass
class ExportResult:
    format: str
    path: Path
    quant: str | None
    files: list[str]
    write_seconds: float
    check: CheckResult | None


class NotVerifiedError(TunesmithError):
    """The export was written but answers differently from the source model: the files are kept
    (with NOT-VERIFIED.txt) for inspection, and the command fails."""

    code = "export_not_verified"

    def __init__(self, message: str, hint: str, *, result: ExportResult) -> None:
        super().__init__(message, hint, param="format")
        self.result = result


def check_quant(fmt: Format, quant: str | None) -> str | None:
    """The quantisation to write: the one given if the format takes it, else its default."""
    allowed = QUANTS[fmt]
    if quant is None:
        return allowed[0]
    if quant not in allowed:
        shown = ", ".join(q for q in allowed if q)
        raise TunesmithError(
            f"--format {fmt} cannot take --quant {quant}.",
            f"Choose one of: {shown}."
            if shown
            else "An adapter is exported as trained: drop --quant.",
            param="quant",
        )
    return quant


def check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise TunesmithError(
            f"{out_dir} is a file, not a folder.", "Give --out a folder.", param="out"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise TunesmithError(
            f"{out_dir} exists and is not empty.",
            "Choose another --out, or add --force to replace it.",
            param="out",
        )


def conversations_of(data: Path | None) -> list[Conversation]:
    """The training examples as conversations (a preference pair, a KTO example or an RFT
    prompt contributes its prompt: the check asks prompts, the Modelfile keeps a system one)."""
    if data is None:
        return []
    from tunesmith.data.readers import read

    records = read(data).records
    return [
        r if isinstance(r, Conversation) else Conversation(messages=prompt_of(r)) for r in records
    ]


def shared_system(conversations: list[Conversation]) -> str | None:
    """The system prompt every example opens with, if they all share one."""
    firsts = {
        c.messages[0].content if c.messages[0].role == "system" else None for c in conversations
    }
    return firsts.pop() if len(firsts) == 1 else None


def ollama_name(spec: ModelSpec) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", spec.name.lower()).strip("-") or "my-model"


def write_gguf_file(spec: ModelSpec, folder: Path, quant: str, progress: ProgressFn | None) -> None:
    """model.gguf; a fine-tuned model is merged first (fp32) into a scratch folder inside `folder`."""
    from tunesmith.export.gguf import write_gguf

    source = Path(weights_folder(spec))
    scratch = folder / ".merged"
    if spec.adapter is not None:
        source = write_merged(spec, scratch, dtype="f32")
    tick = (lambda done, total: progress("writing model.gguf", done, total)) if progress else None
    template = load_tokenizer(spec).chat_template
    write_gguf(source, folder / GGUF_FILE, quant=quant, chat_template=template, progress=tick)
    shutil.rmtree(scratch, ignore_errors=True)


def write_modelfile(spec: ModelSpec, folder: Path, conversations: list[Conversation]) -> None:
    from tunesmith.export.ollama import modelfile

    tokenizer = load_tokenizer(spec)
    text = modelfile(
        GGUF_FILE,
        tokenizer.chat_template or "",
        end_of_turn_tokens(tokenizer),
        shared_system(conversations),
        name=ollama_name(spec),
    )
    (folder / "Modelfile").write_text(text)


def write(
    spec: ModelSpec,
    fmt: Format,
    folder: Path,
    quant: str | None,
    conversations: list[Conversation],
    progress: ProgressFn | None,
) -> None:
    if fmt == "merged":
        write_merged(spec, folder, dtype=quant or "auto")
    elif fmt == "adapter":
        write_adapter(spec, folder)
    else:
        if fmt == "ollama":  # first: an untranslatable template fails before minutes of writing
            write_modelfile(spec, folder, conversations)
        write_gguf_file(spec, folder, quant or "f16", progress)


def build(
    spec: ModelSpec,
    fmt: Format,
    tmp: Path,
    quant: str | None,
    check: bool,
    conversations: list[Conversation],
    progress: ProgressFn | None,
) -> ExportResult:
    """Write into `tmp` and check it there; a failed check leaves NOT-VERIFIED.txt beside the files."""
    started = time.monotonic()
    if progress:
        progress(f"writing {fmt}", 0, 2)
    write(spec, fmt, tmp, quant, conversations, progress)
    files = sorted(p.name for p in tmp.iterdir())
    result = ExportResult(fmt, tmp, quant, files, time.monotonic() - started, None)
    if check:
        if progress:
            progress("checking", 1, 2)
        result.check = check_export(
            fmt, tmp, spec, prompts_from(conversations) or None, quant=quant
        )
        if not result.check.passed:
            (tmp / UNVERIFIED).write_text(unverified_text(result.check))
    return result


def move_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace `out_dir` by `tmp` with renames only, so it is never half there."""
    tmp.chmod(0o755)  # mkdtemp makes it private; an export is meant to be read by servers
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export(
    spec: ModelSpec,
    fmt: Format,
    out_dir: Path,
    quant: str | None = None,
    force: bool = False,
    check: bool = True,
    data: Path | None = None,
    progress: ProgressFn | None = None,
) -> ExportResult:
    """Export `spec` as `fmt` into `out_dir`; `data` (its training file) gives the check's prompts
    and the Modelfile's SYSTEM.

    Raises TunesmithError for a quant the format cannot take, a non-empty out_dir without
    `force`, a base model exported as an adapter, or an untranslatable chat template;
    DiskFullError when the disk fills (nothing is left at out_dir); NotVerifiedError when the
    written model answers differently from the source (the files are kept, marked NOT-VERIFIED).
    """
    quant = check_quant(fmt, quant)
    out_dir = out_dir.resolve()
    check_out_dir(out_dir, force)
    conversations = conversations_of(data)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Written beside out_dir (same filesystem, so the final rename is atomic), under a dot name.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        result = build(spec, fmt, tmp, quant, check, conversations, progress)
        result.path = out_dir
        move_into_place(tmp, out_dir)
    except BaseException as exc:  # KeyboardInterrupt too: nothing half-written may stay
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception) and out_of_space(exc):
            raise DiskFullError(
                f"No space left to write the export to {out_dir.parent}; nothing of it was kept.",
                "Free some disk space, or choose another --out, then export again.",
                param="out",
            ) from exc
        raise
    if progress:
        progress("done", 2, 2)
    if result.check is not None and not result.check.passed:
        raise NotVerifiedError(
            f"The export in {out_dir} does not answer like {spec.name} "
            f"(mean agreement {result.check.mean:.1%}, needed {result.check.threshold:.0%}): "
            "do not trust it.",
            f"The files are kept for inspection, marked {UNVERIFIED}.",
            result=result,
        )
    return result


def unverified_text(check: CheckResult) -> str:
    rows = "\n".join(
        f"  {a:6.1%}  {p[:60]!r}" for p, a in zip(check.prompts, check.agreements, strict=True)
    )
    return (
        "This export did NOT pass tunesmith's self-check: its greedy answers differ from the\n"
        f"source model's (mean agreement {check.mean:.1%}, threshold {check.threshold:.0%}).\n"
        f"Do not use it as if it were the same model.\n\nPer prompt:\n{rows}\n"
    )
