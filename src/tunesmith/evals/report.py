"""The comparison's report: report.json, and a self-contained report.html with its plots inline."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

from tunesmith import atomic
from tunesmith.evals.compare import Comparison
from tunesmith.evals.metrics import TOOL_CALLS, tool_calls_in
from tunesmith.evals.strategies import is_tuned

COLORS = {"zero-shot": "#94a3b8", "few-shot": "#60a5fa", "rag": "#a78bfa", "fine-tuned": "#f97316"}
TUNED_COLORS = ("#f97316", "#dc2626", "#ca8a04", "#16a34a", "#0d9488")  # fine-tuned #1, #2, …


def color(name: str) -> str:
    if name in COLORS:
        return COLORS[name]
    number = int(name.rsplit("#", 1)[1]) if is_tuned(name) else 1
    return TUNED_COLORS[(number - 1) % len(TUNED_COLORS)]


def ranked(data: dict) -> list[tuple[int, dict]]:
    """(rank, row) best first, as the recommendation ranked them (`decide.rank`)."""
    order = data["recommendation"].get("ranking") or [s["name"] for s in data["strategies"]]
    by_name = {s["name"]: s for s in data["strategies"]}
    return [(i, by_name[name]) for i, name in enumerate(order, start=1)]


def figures_text(metric: dict) -> str:
    """The metric's other figures, one line: the valid-JSON rate and `MetricResult.figures`.
    (For tool calls the rate is "—" when no answer tried to call; other metrics have none.)"""
    figures = {"valid JSON": metric.get("valid_json"), **(metric.get("figures") or {})}
    if metric.get("valid_json") is None and metric["metric"] != TOOL_CALLS:
        del figures["valid JSON"]
    return " · ".join(
        f"{name} {'—' if value is None else f'{value:.0%}'}" for name, value in figures.items()
    )


def write_report(comparison: Comparison, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    data = comparison.to_dict()
    paths = {"json": folder / "report.json", "html": folder / "report.html"}
    # whole files only: the API serves them while another host may be writing them
    atomic.write_text(paths["json"], json.dumps(data, indent=2))
    atomic.write_text(paths["html"], render_html(data))
    return paths


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG sits inside HTML


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: small, selectable
    return plt.subplots(figsize=(5.2, 3.4))


def _quality_vs_tokens(data: dict) -> str:
    fig, ax = _figure()
    for s in data["strategies"]:
        m = s["metric"]
        low, high = m["ci"]
        ax.errorbar(
            s["prompt_tokens"], m["mean"], yerr=[[m["mean"] - low], [high - m["mean"]]],
            fmt="o", color=color(s["name"]), capsize=4, markersize=9, label=s["name"],
        )  # fmt: skip
    ax.set(xlabel="prompt tokens per request", ylabel=data["metric"], ylim=(-0.02, 1.02))
    ax.set_title("Quality against prompt tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)


def _quality_bars(data: dict) -> str:
    fig, ax = _figure()
    names = [s["name"] for s in data["strategies"]]
    means = [s["metric"]["mean"] for s in data["strategies"]]
    errors = [
        [m - s["metric"]["ci"][0] for m, s in zip(means, data["strategies"], strict=True)],
        [s["metric"]["ci"][1] - m for m, s in zip(means, data["strategies"], strict=True)],
    ]
    ax.bar(names, means, yerr=errors, capsize=5, color=[color(n) for n in names])
    exact = [s["metric"]["exact_mean"] for s in data["strategies"]]
    ax.plot(names, exact, "k_", markersize=22, label="exact match")
    ax.set(ylabel=data["metric"], ylim=(0, 1.05), title="Quality per strategy (95% interval)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig)


def _latency(data: dict) -> str:
    fig, ax = _figure()
    names = [s["name"] for s in data["strategies"]]
    x = range(len(names))
    ax.bar(
        [i - 0.2 for i in x],
        [s["latency_p50"] for s in data["strategies"]],
        0.4,
        label="p50",
        color="#60a5fa",
    )
    ax.bar(
        [i + 0.2 for i in x],
        [s["latency_p95"] for s in data["strategies"]],
        0.4,
        label="p95",
        color="#f97316",
    )
    ax.set_xticks(list(x), names)
    ax.set(ylabel="seconds per request", title="Latency on this machine (8 in flight)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig)


def learning_curve_svg(data: dict) -> str:
    """Quality against training examples (log2 axis: one step a doubling), each point with its
    interval, and the prompting strategies as horizontal bands (their mean and interval)."""
    curve = data.get("learning_curve")
    if not curve:
        return ""
    fig, ax = _figure()
    for s in data["strategies"]:
        if is_tuned(s["name"]):
            continue
        low, high = s["metric"]["ci"]
        ax.axhspan(low, high, color=color(s["name"]), alpha=0.15)
        ax.axhline(s["metric"]["mean"], color=color(s["name"]), lw=1.2, label=s["name"])
    points = curve["points"]
    x = [p["examples"] for p in points]
    means = [p["metric"]["mean"] for p in points]
    errors = [
        [m - p["metric"]["ci"][0] for m, p in zip(means, points, strict=True)],
        [p["metric"]["ci"][1] - m for m, p in zip(means, points, strict=True)],
    ]
    ax.errorbar(
        x, means, yerr=errors, fmt="-o", color=COLORS["fine-tuned"], capsize=4, label="fine-tuned"
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(n) for n in x])
    ax.set(xlabel="training examples", ylabel=data["metric"], ylim=(-0.02, 1.02))
    ax.set_title("Learning curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)


def _seconds(training: dict | None) -> str:
    return f"{training['seconds']:.0f} s" if training else "—"


def _curve_text(data: dict) -> str:
    curve = data.get("learning_curve")
    if not curve:
        return ""
    rows = "".join(
        f"<tr><td>{p['examples']}</td><td>{p['metric']['mean']:.0%} "
        f"[{p['metric']['ci'][0]:.0%}, {p['metric']['ci'][1]:.0%}]</td>"
        f"<td>{_seconds(p['training'])}</td>"
        f"<td>{html.escape(p['model'])}{' (given)' if p['given'] else ''}</td></tr>"
        for p in curve["points"]
    )
    return (
        f"<h2>How much data?</h2><p class=verdict>{html.escape(curve['verdict'])}</p>"
        "<table><tr><th>examples</th><th>quality [95% CI]</th><th>training</th><th>model</th></tr>"
        f"{rows}</table><div class=plots><div>{learning_curve_svg(data)}</div></div>"
    )


def _table(data: dict) -> str:
    """Every row, best first, with the metric's other figures when it has some."""
    unit = data["unit"]
    extra = any(figures_text(s["metric"]) for s in data["strategies"])
    head = (
        "<tr><th>rank</th><th>strategy</th><th>model</th><th>quality</th><th>95% interval</th><th>exact</th>"
        + ("<th>also</th>" if extra else "")
        + f"<th>prompt tokens</th><th>completion tokens</th><th>p50 s</th><th>p95 s</th><th>cost / 1,000 ({html.escape(unit)})</th></tr>"
    )
    rows = []
    for rank, s in ranked(data):
        m = s["metric"]
        also = f"<td>{html.escape(figures_text(m))}</td>" if extra else ""
        rows.append(
            f"<tr><td>{rank}</td><td>{s['name']}</td><td>{html.escape(s['model'])}</td><td>{m['mean']:.1%}</td>"
            f"<td>{m['ci'][0]:.1%} – {m['ci'][1]:.1%}</td><td>{m['exact_mean']:.1%}</td>{also}"
            f"<td>{s['prompt_tokens']:.0f}</td><td>{s['completion_tokens']:.0f}</td>"
            f"<td>{s['latency_p50']:.2f}</td><td>{s['latency_p95']:.2f}</td><td>{s['cost_per_1000']:.4g}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _calls(text: str | None) -> str:
    """An answer as the tool-call metric reads it: each call as `name {arguments}`, the calls
    that did not parse counted, the rest of the text below."""
    calls, tried = tool_calls_in(text)
    lines = [
        f"{c.name} {json.dumps(c.arguments) if c.arguments is not None else '(arguments not a JSON object)'}"
        for c in calls
    ]
    if tried > len(calls):
        lines.append(f"({tried - len(calls)} call(s) that do not parse)")
    return "\n".join(lines) or "(no call)"


def _answer(text: str | None, metric: str) -> str:
    """One answer in the side-by-side view: the calls made, for the tool-call metric, and the
    text as written."""
    shown = html.escape(text or "")
    if metric != TOOL_CALLS:
        return f"<pre>{shown}</pre>"
    return f"<pre><b>{html.escape(_calls(text))}</b></pre><details><summary>as written</summary><pre>{shown}</pre></details>"


def _samples(data: dict) -> str:
    parts = []
    for kind, title in (
        ("best", "Where fine-tuning helped most"),
        ("worst", "Where it helped least"),
    ):
        parts.append(f"<h3>{title}</h3>")
        for sample in data["samples"][kind]:
            cells = "".join(
                f"<td>{_answer(answer, data['metric'])}<span class=score>score {sample['scores'][name]:.2f}</span></td>"
                for name, answer in sample["answers"].items()
            )
            heads = "".join(f"<th>{name}</th>" for name in sample["answers"])
            reference = sample["reference"] or ""
            if data["metric"] == TOOL_CALLS:
                reference = _calls(reference)
            parts.append(
                f"<p class=input><b>Input:</b> {html.escape(sample['input'])}<br><b>Reference:</b> "
                f"<code>{html.escape(reference)}</code></p><table class=samples><tr>{heads}</tr><tr>{cells}</tr></table>"
            )
    return "".join(parts)


def _extras(data: dict) -> str:
    items = []
    for s in data["strategies"]:
        if not s.get("training"):
            continue
        t = s["training"]
        items.append(
            f"<li>Training {html.escape(s['name'])}, once: {t['seconds']:.0f} s on this machine, "
            f"{t['trained_tokens'] or 0:,} tokens trained"
            + (
                f", cost {t['cost']:.4g} {html.escape(data['unit'])}"
                if t.get("cost") is not None
                else ""
            )
            + "</li>"
        )
    if data["probes"]:
        p = data["probes"]
        items.append(
            f"<li>General-ability probes ({len(p['base']['outputs'])} prompts): "
            + ", ".join(f"{html.escape(name)} {r['mean']:.0%}" for name, r in p.items())
            + "</li>"
        )
    return f"<ul>{''.join(items)}</ul>"


STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#0f172a}
h1{font-size:1.5em}.verdict{font-size:1.25em;padding:.8em 1em;border-radius:8px;background:#fff7ed;border:1px solid #fdba74}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #cbd5e1;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f1f5f9}.plots{display:flex;flex-wrap:wrap;gap:12px}.plots>div{flex:1 1 330px}svg{max-width:100%;height:auto}
pre{white-space:pre-wrap;margin:0;font-size:12px;max-width:240px}.score{font-size:11px;color:#64748b}.input{margin-top:1em}
.questions dt{font-weight:600;margin-top:.4em}.questions dd{margin:0 0 0 1em}"""


def _questions(data: dict) -> str:
    """The lesson's questions, each answered with its numbers (`questions.answer_questions`)."""
    if not data.get("questions"):
        return ""
    items = "".join(
        f"<dt>{html.escape(k.capitalize())}</dt><dd>{html.escape(v)}</dd>"
        for k, v in data["questions"].items()
    )
    return f"<h2>Before you fine-tune: the questions</h2><dl class=questions>{items}</dl>"


def render_html(data: dict) -> str:
    rec = data["recommendation"]
    answers = "".join(
        f"<li><b>{k.capitalize()}.</b> {html.escape(v)}</li>" for k, v in rec["answers"].items()
    )
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>tunesmith compare</title>
<style>{STYLE}</style></head><body>
<h1>Should you fine-tune? {data["n"]} held-out examples, metric {html.escape(data["metric"])}</h1>
<p class=verdict>{html.escape(rec["headline"])}</p><ul>{answers}</ul>
{_questions(data)}
{_table(data)}{_extras(data)}
<div class=plots><div>{_quality_vs_tokens(data)}</div><div>{_quality_bars(data)}</div><div>{_latency(data)}</div></div>
{_curve_text(data)}
<h2>Side by side</h2>{_samples(data)}
<p style="color:#64748b;font-size:12px">Made by tunesmith. Rules behind the verdict: see the README, "Should I fine-tune?".</p>
</body></html>"""
