"""`tunesmith compare` on real public tasks: does its verdict hold on data made by others?

Three tasks from ../shared/datasets, each with its own metric:
- AG News, 4-way topic classification (label accuracy), with the learning curve;
- the cookbook's drone function calling, 16 tools (the tool-call metric);
- the cookbook's recipe task, generic ingredients from a recipe (set F1 over the list).

Each task is turned into chat JSONL (a fixed system prompt, the example, the answer), trained
with `tunesmith train` and compared with `tunesmith compare`, in a fresh TUNESMITH_HOME, through
the CLI as a user runs it. The summary (docs/real-tasks.md, unless --out) quotes the report's
own numbers; every report.json/html is kept beside it under --reports.

    .venv/bin/python bench/real_tasks.py                 # all three (about an hour on 2 cores)
    .venv/bin/python bench/real_tasks.py --task ag_news  # one
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tunesmith.evals.compare import decide
from tunesmith.evals.questions import answer_questions, paired_gain
from tunesmith.evals.report import figures_text, learning_curve_svg

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
CLI = str(Path(sys.executable).parent / "tunesmith")

AG_SYSTEM = (
    "Classify the news article into one of these topics: World, Sports, Business, Sci/Tech. "
    "Answer with the topic only."
)
RECIPE_SYSTEM = (  # the cookbook's own prompt (recipenlg_ner/tmp_recipe_finetune_training.jsonl)
    "You are a helpful recipe assistant. You are to extract the generic ingredients from each "
    "of the recipes provided."
)


def chat(system: str, user: str, answer: str) -> dict:
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ]
    }


def ag_news() -> list[dict]:
    with (DATASETS / "ag_news" / "AG_news_samples.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        chat(AG_SYSTEM, f"Title: {r['title']}\nDescription: {r['description']}", r["label"])
        for r in rows
    ]


def recipes() -> list[dict]:
    path = DATASETS / "recipenlg_ner" / "1K_dataset.rows0000-0998.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        ingredients = json.dumps(ast.literal_eval(r["ingredients"]))
        user = f"Title: {r['title']}\n\nIngredients: {ingredients}\n\nGeneric ingredients: "
        out.append(chat(RECIPE_SYSTEM, user, json.dumps(ast.literal_eval(r["NER"]))))
    return out


def drone() -> list[dict]:
    path = DATASETS / "drone_function_calling" / "drone_training.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# name: (examples, train, test, train flags, compare flags, what it shows)
TASKS: dict[str, tuple[Callable[[], list[dict]], int, int, list[str], list[str], str]] = {
    "ag_news": (
        ag_news, 160, 100, ["--epochs", "2"], ["--learning-curve"],
        "AG News, 4-way topic classification",
    ),
    "drone": (
        drone, 48, 39, ["--epochs", "2", "--batch-size", "4", "--max-length", "2048"],
        ["--shots", "1"],
        "drone function calling (16 tools)",
    ),
    "recipes": (
        recipes, 100, 60, ["--epochs", "2"], [],
        "recipe → generic ingredients (the cookbook's task)",
    ),
}  # fmt: skip


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"tunesmith {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def run_task(name: str, work: Path, reports: Path, seed: int, scale: float = 1.0) -> dict:
    make, n_train, n_test, train_flags, compare_flags, title = TASKS[name]
    n_train, n_test = round(n_train * scale), round(n_test * scale)
    rows = make()
    random.Random(seed).shuffle(rows)
    train = write_jsonl(rows[:n_train], work / f"{name}-train.jsonl")
    test = write_jsonl(rows[n_train : n_train + n_test], work / f"{name}-test.jsonl")
    env = {**os.environ, "TUNESMITH_HOME": str(work / f"home-{name}")}
    started = time.monotonic()
    cli("train", "--data", str(train), "--suffix", name.replace("_", ""), *train_flags, env=env)
    newest = "from tunesmith.store import open_store; print(open_store().jobs.list().data[0].fine_tuned_model)"
    tuned = subprocess.run(
        [sys.executable, "-c", newest], capture_output=True, text=True, env=env, check=True
    ).stdout.strip()
    out = reports / name
    cli(
        "compare", "--train", str(train), "--test", str(test), "--fine-tuned", tuned,
        "--out", str(out), *compare_flags, env=env,
    )  # fmt: skip
    bench = {"task": name, "title": title, "wall_seconds": time.monotonic() - started}
    (out / "bench.json").write_text(json.dumps(bench))
    return load_report(out)


def load_report(folder: Path, redecide: bool = False) -> dict:
    """A task's report.json with its bench facts; `redecide`: the verdict and the lesson's
    answers derived again from the measured scores by the current rules (no model runs)."""
    data = json.loads((folder / "report.json").read_text())
    data["bench"] = json.loads((folder / "bench.json").read_text())
    if redecide:
        data["recommendation"] = decide(data["strategies"], data["probes"], data["unit"]).to_dict()
        data["questions"] = answer_questions(data, data["n_train"])
    return data


def verdict_check(data: dict) -> tuple[bool, str]:
    """Does the verdict match the measured ranking? F is the best fine-tuned row, P the best
    prompting one; their gain is paired on the same held-out examples (README's rules)."""
    rec = data["recommendation"]
    rows = {s["name"]: s["metric"] for s in data["strategies"]}
    f, p = rec["fine_tuned"], rec["compared_with"]
    f_first = rec["ranking"].index(f) < rec["ranking"].index(p)
    gain, low, high = paired_gain(rows[f], rows[p])
    if rec["verdict"] == "fine-tune":
        ok = f_first and low > 0
    elif rec["verdict"] == "do not fine-tune":
        ok = not f_first or low <= 0
    else:
        ok = low <= 0 < high
    order = " > ".join(rec["ranking"])
    paired = f"{gain * 100:+.0f} points [{low * 100:+.0f}, {high * 100:+.0f}]"
    return ok, f"ranking {order}; {f} vs {p}, paired: {paired}"


def summary(results: list[dict], redecided: bool = False) -> str:
    lines = [
        "# compare on real public tasks",
        "",
        "Made by `bench/real_tasks.py` on this project's machine kind (2 CPU cores), the built-in",
        "model (SmolLM2-135M-Instruct), through the CLI as a user runs it: `tunesmith train`, then",
        "`tunesmith compare --fine-tuned …`. Numbers are the reports' own; training seconds are",
        "wall time on this machine (other work may have shared it). Rerun it to refresh this page.",
        "",
    ]
    if redecided:
        lines += [
            "The verdicts and answers below were derived again from the measured per-example",
            "scores by the current rules (`--redecide`): the measurements are the run's own.",
            "",
        ]
    for data in results:
        b = data["bench"]
        lines += [
            f"## {b['title']}",
            "",
            f"{data['n']} held-out examples, {data['n_train']} training examples, metric "
            f"`{data['metric']}`. Whole run: {b['wall_seconds'] / 60:.0f} min.",
            "",
            "| strategy | quality [95% CI] | exact | also | prompt tokens | p50 s |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for s in data["strategies"]:
            m = s["metric"]
            lines.append(
                f"| {s['name']} | {m['mean']:.0%} [{m['ci'][0]:.0%}, {m['ci'][1]:.0%}] | "
                f"{m['exact_mean']:.0%} | {figures_text(m) or '—'} | {s['prompt_tokens']:.0f} | "
                f"{s['latency_p50']:.2f} |"
            )
        ok, how = verdict_check(data)
        lines += [
            "",
            f"**Verdict:** {data['recommendation']['headline']}",
            "",
            f"Check against the measured ranking: {'matches' if ok else 'DOES NOT MATCH'} ({how}).",
            "",
        ]
        if curve := data.get("learning_curve"):
            points = ", ".join(
                f"{p['examples']}: {p['metric']['mean']:.0%}" for p in curve["points"]
            )
            lines += [f"**Learning curve** ({points}): {curve['verdict']}", ""]
            lines += [f"![Learning curve, {b['title']}](real-tasks/{b['task']}-curve.svg)", ""]
        for key, answer in data.get("questions", {}).items():
            lines.append(f"- *{key}*: {answer}")
        lines.append("")
    return "\n".join(lines)


def write_curves(results: list[dict], out: Path) -> None:
    """Each learning curve as an SVG in real-tasks/ beside the summary (it links them)."""
    for data in results:
        if data.get("learning_curve"):
            figures = out.parent / "real-tasks"
            figures.mkdir(exist_ok=True)
            svg = learning_curve_svg(data)
            (figures / f"{data['bench']['task']}-curve.svg").write_text(svg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "real-tasks.md")
    parser.add_argument("--reports", type=Path, default=None, help="Where report folders go.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--redecide",
        type=Path,
        help="Only rewrite the summary from the reports under this folder, each verdict derived "
        "again by the current rules from its measured scores.",
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="Multiply every task's train and test sizes."
    )
    args = parser.parse_args()
    if args.redecide:
        names = [n for n in args.task or list(TASKS) if (args.redecide / n).is_dir()]
        results = [load_report(args.redecide / n, redecide=True) for n in names]
        args.out.write_text(summary(results, redecided=True))
        write_curves(results, args.out)
        print(f"wrote {args.out} from {', '.join(names)}")
        return
    work = Path(tempfile.mkdtemp(prefix="tunesmith-real-"))
    reports = args.reports or work / "reports"
    results = []
    for name in args.task or list(TASKS):
        print(f"[{time.strftime('%H:%M:%S')}] {name} …", flush=True)
        results.append(run_task(name, work, reports, args.seed, args.scale))
        args.out.write_text(summary(results))  # each task as it ends: a long run keeps its part
        write_curves(results[-1:], args.out)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {results[-1]['recommendation']['headline']}")
    print(f"wrote {args.out}; reports under {reports}")


if __name__ == "__main__":
    main()
