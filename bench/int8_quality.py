"""Weight-only int8 decoding (`--quantize int8`) on compare's task: what does it cost the answers?

    python bench/int8_quality.py          # or: make bench-int8 (about 10 minutes)

In one fresh home: the demo's fine-tune (the bundled order-extraction task, `tunesmith demo`'s
settings), then the comparison on its 100 held-out examples twice, the same prompts, without and
with int8 weights (no probes). Printed per strategy: the task's metric and exact match both
ways and their difference, against the issue's bar: exact match within 1 point of the
unquantised model. Also the decode time of each run, as a ratio.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

BAR = 0.01  # exact match may move by at most 1 point


def main() -> None:
    os.environ["TUNESMITH_HOME"] = tempfile.mkdtemp(prefix="bench-int8-")
    from tunesmith.cli.compare import compare
    from tunesmith.cli.store import store
    from tunesmith.cli.train import follow, submit
    from tunesmith.evals.compare import CompareConfig
    from tunesmith.tasks import ORDERS
    from tunesmith.train.config import SFTConfig

    cfg = SFTConfig(
        data=ORDERS / "train.jsonl",
        validation=ORDERS / "validation.jsonl",
        suffix="int8-check",
        epochs=1,
        batch_size=8,
    )
    job = submit(store(), cfg)
    follow(job.id)
    model = store().jobs.get(job.id).fine_tuned_model
    config = CompareConfig(
        train=ORDERS / "train.jsonl", test=ORDERS / "test.jsonl", fine_tuned=[model], probes=False
    )
    runs, seconds = {}, {}
    for quantize in (None, "int8"):
        started = time.perf_counter()
        runs[quantize], _ = compare(config, Path(tempfile.mkdtemp(prefix="bench-int8-")), quantize)
        seconds[quantize] = time.perf_counter() - started
    plain, int8 = ({s["name"]: s for s in runs[q]["strategies"]} for q in (None, "int8"))
    metric = runs[None]["metric"]
    print(f"\n{runs[None]['n']} held-out examples, metric {metric}; {model}")
    print(f"| strategy | {metric}: bf16/fp32 | int8 | exact: bf16/fp32 | int8 | exact moved |")
    print("| --- | --- | --- | --- | --- | --- |")
    worst = 0.0
    for name, row in plain.items():
        a, b = row["metric"], int8[name]["metric"]
        moved = b["exact_mean"] - a["exact_mean"]
        worst = max(worst, abs(moved))
        print(f"| {name} | {a['mean']:.1%} | {b['mean']:.1%} | {a['exact_mean']:.0%} | "
              f"{b['exact_mean']:.0%} | {moved:+.0%} |")  # fmt: skip
    verdict = "within" if worst <= BAR else "NOT within"
    print(f"\nlargest move of exact match: {worst:.0%}, {verdict} the 1-point bar")
    print(f"comparison time: {seconds[None]:.0f} s unquantised, {seconds['int8']:.0f} s int8 "
          f"({seconds[None] / seconds['int8']:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
