"""What the decode path's weights cost the answers, on compare's task.

    python bench/decode_quality.py            # or: make bench-quality (about 12 minutes)
    python bench/decode_quality.py --int8     # also weight-only int8 (about 16 minutes)

In one fresh home: the demo's fine-tune (the bundled order-extraction task, `tunesmith demo`'s
settings), then the comparison on its 100 held-out examples, the same prompts each time (no
probes), with the weights held
- dense: the serving dtype's own weights (the default);
- `--quantize int4`: the checkpoint's 4-bit numbers as 4-bit, with bf16 scales and inputs
  (infer/weights.py);
- with --int8, `--quantize int8`: weight-only int8 per output channel.
Printed per strategy: the task's metric and exact match for each, and how far each moved from
dense, against the issue's bar: exact match within 1 point. Also each comparison's time.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

BAR = 0.01  # exact match may move by at most 1 point


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--int8", action="store_true", help="also weight-only int8")
    args = parser.parse_args()
    os.environ["TUNESMITH_HOME"] = tempfile.mkdtemp(prefix="bench-quality-")
    from tunesmith.cli.compare import compare
    from tunesmith.cli.store import store
    from tunesmith.cli.train import follow, submit
    from tunesmith.evals.compare import CompareConfig
    from tunesmith.tasks import ORDERS
    from tunesmith.train.config import SFTConfig

    cfg = SFTConfig(
        data=ORDERS / "train.jsonl",
        validation=ORDERS / "validation.jsonl",
        suffix="quality-check",
        epochs=1,
        batch_size=8,
    )
    job = submit(store(), cfg)
    follow(job.id)
    model = store().jobs.get(job.id).fine_tuned_model
    config = CompareConfig(
        train=ORDERS / "train.jsonl", test=ORDERS / "test.jsonl", fine_tuned=[model], probes=False
    )
    setups = {"dense": None, "int4": "int4", **({"int8": "int8"} if args.int8 else {})}
    runs, seconds = {}, {}
    for name, quantize in setups.items():
        started = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="bench-quality-"))
        runs[name], _ = compare(config, folder, quantize)
        seconds[name] = time.perf_counter() - started
    rows = {name: {s["name"]: s for s in run["strategies"]} for name, run in runs.items()}
    metric = runs["dense"]["metric"]
    others = [name for name in setups if name != "dense"]
    print(f"\n{runs['dense']['n']} held-out examples, metric {metric}; {model}")
    head = " | ".join(f"{metric}: {n} | exact: {n} | moved" for n in others)
    print(f"| strategy | {metric}: dense | exact: dense | {head} |")
    print("|" + " --- |" * (3 + 3 * len(others)))
    worst = dict.fromkeys(others, 0.0)
    for strategy, dense in rows["dense"].items():
        cells = [f"{dense['metric']['mean']:.1%}", f"{dense['metric']['exact_mean']:.0%}"]
        for name in others:
            got = rows[name][strategy]["metric"]
            moved = got["exact_mean"] - dense["metric"]["exact_mean"]
            worst[name] = max(worst[name], abs(moved))
            cells += [f"{got['mean']:.1%}", f"{got['exact_mean']:.0%}", f"{moved:+.0%}"]
        print(f"| {strategy} | " + " | ".join(cells) + " |")
    print()
    for name in others:
        verdict = "within" if worst[name] <= BAR else "NOT within"
        print(f"{name}: largest move of exact match {worst[name]:.0%}, {verdict} the 1-point bar; "
              f"comparison {seconds[name]:.0f} s against dense's {seconds['dense']:.0f} s "
              f"({seconds['dense'] / seconds[name]:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
