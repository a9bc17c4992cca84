"""`tunesmith compare`: should you fine-tune? Four strategies measured, and a recommendation."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from tunesmith.cli.console import err, out


@contextmanager
def stage_bars():
    """One Rich bar per stage (strategy, probes), fed by the comparison's progress callback."""
    bar = Progress(
        TextColumn("{task.description:>22}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err,
    )  # fmt: skip
    tasks: dict[str, int] = {}

    def report(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield report


def train_now(cfg) -> str:
    """--train-now and the learning curve's subsets: the same path as `tunesmith train`."""
    from tunesmith.cli.store import store
    from tunesmith.cli.train import follow, submit

    job = submit(store(), cfg)
    follow(job.id)  # a stopped job exits here (130), as `tunesmith train` does
    return store().jobs.get(job.id).fine_tuned_model


def print_comparison(data: dict, paths: dict | None = None) -> None:
    from tunesmith.evals.report import figures_text, ranked
    from tunesmith.evals.strategies import is_tuned

    table = Table(title=f"{data['n']} held-out examples, metric {data['metric']}", show_edge=False)
    extra = any(figures_text(s["metric"]) for s in data["strategies"])
    several = sum(is_tuned(s["name"]) for s in data["strategies"]) > 1  # then: which is which
    columns = ["#", "strategy", *(["model"] if several else []), "quality [95% CI]", "exact",
               *(["also"] if extra else []), "prompt tok", "p50 s", "p95 s",
               f"cost/1k ({data['unit']})"]  # fmt: skip
    for column in columns:
        # Model names share their ft:BASE:ORG prefix: fold them, an ellipsis would hide the id.
        table.add_column(
            column,
            justify="left" if column in ("strategy", "model", "also") else "right",
            overflow="fold" if column == "model" else "ellipsis",
        )
    for rank, s in ranked(data):
        m = s["metric"]
        table.add_row(
            str(rank),
            s["name"],
            *([Text(s["model"])] if several else []),  # a name is not markup (ft:…:two:…)
            f"{m['mean']:.0%} [{m['ci'][0]:.0%}, {m['ci'][1]:.0%}]",
            f"{m['exact_mean']:.0%}",
            *([figures_text(m)] if extra else []),
            f"{s['prompt_tokens']:.0f}",
            f"{s['latency_p50']:.2f}",
            f"{s['latency_p95']:.2f}",
            f"{s['cost_per_1000']:.4g}",
        )
    out.print(table)
    if data["probes"]:
        scores = ", ".join(f"{name} {p['mean']:.0%}" for name, p in data["probes"].items())
        out.print(f"General-ability probes: {scores}")
    for s in data["strategies"]:
        if t := s.get("training"):
            out.print(
                f"Training {s['name']}, once: {t['seconds']:.0f} s, {t['trained_tokens'] or 0:,} tokens"
            )
    if curve := data.get("learning_curve"):
        print_curve(curve)
    rec = data["recommendation"]
    # Model names in the verdict are text: ":two:" in ft:…:two:… is no emoji, "[x]" no markup.
    out.print(Text(f"\n{rec['headline']}", style="bold"))
    for key, answer in rec["answers"].items():
        out.print(Text.assemble((f"  {key}:", "bold"), f" {answer}"))
    if data.get("questions"):
        out.print(Text("\nBefore you fine-tune: the questions", style="bold"))
        for key, answer in data["questions"].items():
            out.print(Text.assemble((f"  {key}:", "bold"), f" {answer}"))
    for kind, path in (paths or {}).items():
        out.print(f"  {kind}: {path}")


def compare_command(
    train: Annotated[
        Path, typer.Option(help="Training examples (demonstrations; data for --train-now).")
    ],
    test: Annotated[Path, typer.Option(help="Held-out examples that every strategy answers.")],
    model: Annotated[
        str, typer.Option(help="Base model shared by all strategies.")
    ] = "smollm2-135m-instruct",
    fine_tuned: Annotated[
        list[str] | None,
        typer.Option(
            help="The ft: model to compare; repeat it to rank several (SFT, DPO, checkpoints)."
        ),
    ] = None,
    train_now_flag: Annotated[
        bool, typer.Option("--train-now", help="Fine-tune first, with `tunesmith train` defaults.")
    ] = False,
    shots: Annotated[
        int, typer.Option(min=0, max=32, help="Demonstrations in few-shot and RAG prompts.")
    ] = 3,
    metric: Annotated[
        str, typer.Option(help="auto|exact|json-fields|set-f1|rouge-l|label-accuracy|tool-calls")
    ] = "auto",
    prices: Annotated[
        Path | None,
        typer.Option(help="YAML of per-token prices (default cost: this machine's seconds)."),
    ] = None,
    context_dir: Annotated[
        Path | None, typer.Option(help="RAG over your own documents instead of training examples.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for report.json and report.html.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N test examples (a quick look).")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Answer length cap (auto from the references).")
    ] = None,
    probes: Annotated[
        bool, typer.Option(help="Score general ability before/after fine-tuning.")
    ] = True,
    learning_curve: Annotated[
        bool,
        typer.Option(
            "--learning-curve",
            help="Also train on 12.5%, 25% and 50% of --train (nested, same settings and seed) "
            "and say whether more data would help.",
        ),
    ] = False,
    quantize: Annotated[
        str | None,
        typer.Option(
            help="int8 or int4: answer as `serve --quantize int8|int4` would (compare a run "
            "without it to see what it costs your task)."
        ),
    ] = None,
) -> None:
    """Measure zero-shot, few-shot, retrieval-augmented prompting and the fine-tuned model on the
    same held-out examples, and say whether fine-tuning is worth it.

    Example: tunesmith compare --train train.jsonl --test test.jsonl --fine-tuned ft:smollm2-135m-instruct:local:orders:AbC12345

    Several models: --fine-tuned ft:…:sft:… --fine-tuned ft:…:dpo:…, ranked, the best named.
    """
    from pydantic import ValidationError

    from tunesmith.cli.store import store
    from tunesmith.errors import TunesmithError
    from tunesmith.evals.compare import CompareConfig
    from tunesmith.infer.engine import check_quantize

    check_quantize(quantize)
    try:
        config = CompareConfig(
            train=train, test=test, model=model, fine_tuned=fine_tuned, train_now=train_now_flag,
            shots=shots, metric=metric, prices=prices, context_dir=context_dir, limit=limit,
            max_tokens=max_tokens, probes=probes, learning_curve=learning_curve,
        )  # fmt: skip
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TunesmithError(
            f"--{first['loc'][0]}: {first['msg']}.", param=str(first["loc"][0])
        ) from None
    folder = out_dir or store().settings.root / "comparisons" / time.strftime("%Y%m%d-%H%M%S")
    data, paths = compare(config, folder, quantize=quantize)
    print_comparison(data, paths)


def print_curve(curve: dict) -> None:
    table = Table(title="Learning curve (the fine-tuned model on nested subsets)", show_edge=False)
    for column in ("examples", "quality [95% CI]", "training s", "model"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for p in curve["points"]:
        m, t = p["metric"], p["training"]
        table.add_row(
            str(p["examples"]),
            f"{m['mean']:.0%} [{m['ci'][0]:.0%}, {m['ci'][1]:.0%}]",
            f"{t['seconds']:.0f}" if t else "-",
            Text(p["model"] + (" (given)" if p["given"] else "")),
        )
    out.print(table)
    out.print(Text.assemble(("Would more data help? ", "bold"), curve["verdict"]))


def compare(config, folder: Path, quantize: str | None = None) -> tuple[dict, dict]:
    from tunesmith.cli.store import store
    from tunesmith.evals.compare import run_comparison
    from tunesmith.evals.report import write_report
    from tunesmith.infer.engine import Engine

    # The fine-tuned model is served merged, as it would be deployed (see Engine).
    engine = Engine(max_batch=16, merge_adapters=True, quantize=quantize)
    try:
        with stage_bars() as report:
            result = run_comparison(config, store(), engine, report, train_now=train_now)
    finally:
        engine.close()
    paths = write_report(result, folder)
    return result.to_dict(), paths


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
