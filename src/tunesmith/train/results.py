"""A finished run's results: OpenAI's step_metrics.csv and a loss-curve PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path

CSV_COLUMNS = ["step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy"]
# The second panel of the curves: the number that says whether the run is learning, per method.
SCORES = (
    ("mean_token_accuracy", "Token accuracy", (0, 1)),
    ("reward_accuracy", "Reward accuracy (chosen above rejected)", (0, 1)),
    ("reward", "Mean reward from the grader", None),
)


def step_metrics_csv(metrics: list[dict]) -> str:
    """One row per step; validation columns empty where a step had none (as OpenAI writes it).

    SFT runs get OpenAI's columns. Preference and RL runs get every train_ and valid_ number they
    logged (rewards, margins, reward accuracy, KL), in the order first logged."""
    if not metrics or "train_mean_token_accuracy" in metrics[0]:
        return _sft_csv(metrics)
    columns: dict[str, None] = {"step": None}
    for m in metrics:
        columns.update(
            (k.removeprefix("full_"), None)
            for k in m
            if k.startswith(("train_", "valid_", "full_valid_"))
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for m in metrics:
        row = [m["step"]]
        for column in list(columns)[1:]:
            value = m.get(f"full_{column}", m.get(column))
            row.append("" if value is None else f"{value:.5f}")
        writer.writerow(row)
    return out.getvalue()


def _sft_csv(metrics: list[dict]) -> str:
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
    """Training and validation loss, and the run's score (token accuracy, reward accuracy, or
    mean reward), against the step."""
    import matplotlib

    matplotlib.use("Agg")  # no display; never pick an interactive backend
    import matplotlib.pyplot as plt

    score, score_title, ylim = next((s for s in SCORES if f"train_{s[0]}" in metrics[0]), SCORES[0])
    steps = [m["step"] for m in metrics]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_ax.plot(steps, [m["train_loss"] for m in metrics], label="training", color="#2563eb")
    acc_ax.plot(
        steps, [m.get(f"train_{score}") for m in metrics], label="training", color="#2563eb"
    )
    for prefix, label, style in (
        ("valid", "validation", "o-"),
        ("full_valid", "full validation", "s"),
    ):
        for ax, key in ((loss_ax, "loss"), (acc_ax, score)):
            points = [(m["step"], m[f"{prefix}_{key}"]) for m in metrics if f"{prefix}_{key}" in m]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, label=label, color="#ea580c")
    loss_ax.set(xlabel="step", ylabel="loss", title="Loss")
    acc_ax.set(xlabel="step", ylabel=score.replace("_", " "), title=score_title)
    if ylim:
        acc_ax.set_ylim(*ylim)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
