"""A finished run's results: OpenAI's step_metrics.csv and a loss-curve PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path

CSV_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]


def step_metrics_csv(metrics: list[dict]) -> str:
    """One row per step; validation columns empty where a step had none (as OpenAI writes it)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for m in metrics:
        valid = m.get("full_valid_loss", m.get("valid_loss"))
        valid_acc = m.get("full_valid_mean_token_accuracy", m.get("valid_mean_token_accuracy"))
        writer.writerow(
            [
                m["step"],
                f"{m['train_loss']:.5f}",
                f"{m['train_mean_token_accuracy']:.5f}",
                "" if valid is None else f"{valid:.5f}",
                "" if valid_acc is None else f"{valid_acc:.5f}",
            ]
        )
    return out.getvalue()


def plot_curves(metrics: list[dict], path: Path, title: str) -> Path:
    """Training and validation loss, and token accuracy, against the step."""
    import matplotlib

    matplotlib.use("Agg")  # no display; never pick an interactive backend
    import matplotlib.pyplot as plt

    steps = [m["step"] for m in metrics]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_ax.plot(steps, [m["train_loss"] for m in metrics], label="training", color="#2563eb")
    acc_ax.plot(
        steps, [m["train_mean_token_accuracy"] for m in metrics], label="training", color="#2563eb"
    )
    for key, acc_key, label, style in (
        ("valid_loss", "valid_mean_token_accuracy", "validation", "o-"),
        ("full_valid_loss", "full_valid_mean_token_accuracy", "full validation", "s"),
    ):
        points = [(m["step"], m[key], m[acc_key]) for m in metrics if key in m]
        if points:
            xs, losses, accs = zip(*points, strict=True)
            loss_ax.plot(xs, losses, style, label=label, color="#ea580c")
            acc_ax.plot(xs, accs, style, label=label, color="#ea580c")
    loss_ax.set(xlabel="step", ylabel="loss", title="Loss")
    acc_ax.set(xlabel="step", ylabel="mean token accuracy", title="Token accuracy", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
