"""`tunesmith export MODEL --format … --out DIR`: write a model for llama.cpp, Ollama, vLLM or PEFT."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tunesmith.cli.console import err, out
from tunesmith.export.run import Format

if TYPE_CHECKING:
    from tunesmith.export.run import ExportResult, ProgressFn
    from tunesmith.models.spec import ModelSpec


def export_command(
    model: Annotated[
        str, typer.Argument(help="Built-in name, local folder, or ft:… model/checkpoint.")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to write; must not exist or be empty.")
    ],
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            help="merged: Hugging Face safetensors (vLLM, transformers); adapter: the PEFT adapter "
            "(+ adapter.gguf); gguf: llama.cpp; ollama: GGUF + Modelfile.",
        ),
    ],
    quant: Annotated[
        str | None,
        typer.Option(
            help="merged: f32|f16|bf16 (default: as stored); gguf/ollama: f16|bf16|q8_0|q4_0 (default f16)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
    check: Annotated[
        bool,
        typer.Option(help="Load what was written and compare its greedy answers with the model's."),
    ] = True,
) -> None:
    """Export a model, then load the export back and check that it answers like the model.

    Example: tunesmith export ft:smollm2-135m-instruct:local:orders:AbC12345 --format ollama --quant q8_0 --out orders-ollama
    """
    from tunesmith.cli.store import store

    spec = store().models.resolve(model)  # an unknown name fails before torch is imported
    from tunesmith.export.run import NotVerifiedError, export
    from tunesmith.jobs.exports import training_data

    try:
        with export_bar(spec.name, fmt) as progress:
            result = export(
                spec, fmt, out_dir, quant, force, check, training_data(store(), spec), progress
            )
    except NotVerifiedError as exc:
        show(exc.result)
        raise
    show(result)
    next_steps(result, spec)


@contextmanager
def export_bar(name: str, fmt: str) -> Iterator[ProgressFn]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn(f"[bold]{name} → {fmt}[/] {{task.description}}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    )
    task = bar.add_task("starting", total=None)

    def report(stage: str, done: int, total: int) -> None:
        bar.update(task, description=stage, completed=done, total=total)

    with bar:
        yield report


def show(result: ExportResult) -> None:
    out.print(f"Wrote {result.path} ({', '.join(result.files)}) in {result.write_seconds:.1f} s.")
    check = result.check
    if check is None:
        out.print("[yellow]Not checked (--no-check).[/]")
        return
    for prompt, share in zip(check.prompts, check.agreements, strict=True):
        out.print(f"  agreement {share:6.1%}  {prompt[:70]!r}")
    enforced = (
        f"threshold {check.threshold:.0%}" if check.threshold is not None else "reported only"
    )
    verdict = "[green]passed[/]" if check.passed else "[bold red]FAILED[/]"
    out.print(
        f"Check {verdict}: mean agreement {check.mean:.1%} ({enforced}), {check.seconds:.1f} s."
    )


def next_steps(result: ExportResult, spec: ModelSpec) -> None:
    path = result.path
    steps = {
        "merged": [f"vllm serve {path}", f"tunesmith chat {path}"],
        "adapter": [
            f"vllm serve {spec.base} --enable-lora --lora-modules model={path}",
            f"llama-server -m BASE.gguf --lora {path / 'adapter.gguf'}",
        ],
        "gguf": [f"llama-server -m {path / 'model.gguf'}"],
        "ollama": [f"cd {path} && ollama create NAME -f Modelfile && ollama run NAME"],
    }[result.format]
    out.print("Next:")
    for step in steps:
        out.print(f"  {step}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
