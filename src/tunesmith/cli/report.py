"""Rich rendering of a data check report: problems with their lines, then token statistics."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tunesmith.data.checks import Report

SHOWN_ISSUES = 50


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def render_report(report: Report, console: Console, *, brief: bool = False) -> None:
    head = f"[bold]{report.file}[/]: {report.n_examples} examples, {report.description}"
    if report.validation_file:
        head += f"; validation {report.validation_file}: {report.n_validation_examples} examples"
    console.print(head)
    if report.issues and not (brief and report.ok):
        table = Table(show_edge=False, pad_edge=False, box=None)
        for column in ("", "where", "problem"):
            table.add_column(column, overflow="fold")
        for issue in report.issues[:SHOWN_ISSUES]:
            mark = "[red]error[/]" if issue.severity == "error" else "[yellow]warn[/]"
            table.add_row(mark, issue.where(issue.file), f"[dim]{issue.kind}[/] {issue.message}")
        console.print(table)
        if len(report.issues) > SHOWN_ISSUES:
            console.print(f"… and {len(report.issues) - SHOWN_ISSUES} more (use --json for all).")
    if report.stats and not brief:
        s = report.stats
        table = Table(title="Per example", title_justify="left", show_edge=False)
        table.add_column("")
        for column in ("min", "p10", "median", "mean", "p90", "max"):
            table.add_column(column, justify="right")
        for label, dist in (
            ("messages", s.messages),
            ("total tokens", s.total_tokens),
            ("assistant tokens", s.assistant_tokens),
        ):
            values = (dist.min, dist.p10, dist.median, dist.mean, dist.p90, dist.max)
            table.add_row(label, *(f"{v:,.0f}" if v >= 10 else f"{v:.1f}" for v in values))
        console.print(table)
        console.print(
            f"epochs (auto: OpenAI's rule): [bold]{s.n_epochs}[/]   billed tokens: "
            f"[bold]{s.billed_tokens:,}[/]   estimated training time here: "
            f"[bold]{_duration(s.estimated_seconds)}[/] (at ~{s.tokens_per_second:.0f} tokens/s)"
        )
    errors, warnings = len(report.errors), len(report.warnings)
    if report.ok:
        console.print(f"[green]✓ usable[/] ({warnings} warning{'s' * (warnings != 1)})")
    else:
        console.print(
            f"[red]✗ {errors} error{'s' * (errors != 1)}[/], {warnings} warning"
            f"{'s' * (warnings != 1)}: fix the errors above, then check again."
        )
