"""`compare`: four strategies on the same held-out examples and base model, measured and decided.

The run, top to bottom: read the data → choose the metric → get the fine-tuned models (given, and
one trained now) → build each strategy's prompts → answer and score each strategy and each
fine-tuned model → with --learning-curve, train and score nested subsets (`curve.py`) → probe
general ability before and after → costs, break-even, ranking and recommendation → report files.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tunesmith.errors import TunesmithError
from tunesmith.evals import strategies as st
from tunesmith.evals.decide import Recommendation, Row, load_prices, recommend
from tunesmith.evals.measure import Measured, answer_all
from tunesmith.evals.metrics import MetricName
from tunesmith.evals.questions import answer_questions
from tunesmith.models.catalog import DEFAULT_MODEL

if TYPE_CHECKING:
    from tunesmith.evals.metrics import MetricResult
    from tunesmith.infer.engine import EngineFront
    from tunesmith.models.spec import ModelSpec
    from tunesmith.store import Store
    from tunesmith.train.config import SFTConfig

Metric = Literal["auto", MetricName]
# (stage, done, total): e.g. ("few-shot", 12, 100). The CLI draws bars, the API writes events.
ProgressFn = Callable[[str, int, int], None]
# Trains one model with this config, to the end, in the comparison's store; its ft: name.
TrainFn = Callable[["SFTConfig"], str]


class CompareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train: Path = Field(
        description="Training examples: the demonstrations' pool (and --train-now)."
    )
    test: Path = Field(description="Held-out examples every strategy answers.")
    model: str = Field(default=DEFAULT_MODEL, description="The base model all strategies share.")
    fine_tuned: list[str] = Field(
        default_factory=list, description="The ft: models to compare: one, or several to rank."
    )
    train_now: bool = Field(
        default=False, description="Fine-tune now with `tunesmith train` defaults (one more)."
    )
    shots: int = Field(default=3, ge=0, le=32, description="Demonstrations for few-shot and RAG.")
    metric: Metric = Field(default="auto", description="Task metric; auto picks from the answers.")
    prices: Path | None = Field(default=None, description="YAML of per-token prices.")
    context_dir: Path | None = Field(default=None, description="RAG over these documents instead.")
    limit: int | None = Field(default=None, ge=1, description="Only the first N test examples.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Answer length cap; auto from answers."
    )
    probes: bool = Field(default=True, description="Score general ability before and after.")
    learning_curve: bool = Field(
        default=False,
        description="Also train on 12.5%, 25% and 50% of the training examples (nested, same "
        "settings and seed) and say whether more data would help.",
    )
    seed: int = Field(default=0, ge=0)

    @field_validator("fine_tuned", mode="before")
    @classmethod
    def _one_or_several(cls, value: object) -> object:
        """One name is a list of one: comparisons queued before several were allowed hold one."""
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _curve_needs_a_full_model(self) -> CompareConfig:
        """The curve's last point is a model trained on all the examples: the first one given,
        else one trained now."""
        if self.learning_curve and not self.fine_tuned:
            self.train_now = True
        return self


@dataclass
class StrategyResult:
    name: str
    model: str
    metric: dict
    prompt_tokens: float
    completion_tokens: float
    latency_p50: float
    latency_p95: float
    seconds_per_request: float
    cost_per_1000: float
    outputs: list[str] = field(repr=False)
    # Fine-tuned rows trained in this store: job, seconds, trained tokens, cost.
    training: dict | None = None


@dataclass
class Comparison:
    config: dict
    metric: str
    n: int
    unit: str
    strategies: list[StrategyResult]  # the prompting strategies, then each fine-tuned model
    training: dict | None  # the recommended (best) fine-tuned model's; each row has its own
    probes: dict | None  # "base" and each fine-tuned row's name
    recommendation: dict
    samples: dict
    learning_curve: dict | None = None  # `curve.curve_dict`: points, last doubling, verdict
    n_train: int = 0  # training examples (the demonstrations' pool, and what was trained on)
    questions: dict[str, str] = field(default_factory=dict)  # `questions.answer_questions`
    created: int = field(default_factory=lambda: int(time.time()))

    def to_dict(self) -> dict:
        return asdict(self)


def _tokens_cap(tokenizer, references: list[str]) -> int:
    """Room for the longest reference answer and then some: base models ramble, and a rambling
    answer is wrong either way."""
    longest = max(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references)
    return min(1024, int(longest * 1.5) + 16)


def _fine_tuned_models(config: CompareConfig, store: Store, train_now) -> dict[str, ModelSpec]:
    """The ft: models to compare by row label: those given (checked before anything trains),
    then the one trained now; each once."""
    specs = [store.models.resolve(name) for name in dict.fromkeys(config.fine_tuned)]
    if config.train_now:
        if train_now is None:
            raise TunesmithError("--train-now is not available here.", param="train_now")
        specs.append(store.models.resolve(train_now(full_training(config))))
    if not specs:
        raise TunesmithError(
            "No fine-tuned model to compare.",
            "Pass --fine-tuned ft:… (see `tunesmith models list`; repeat it to rank several) "
            "or --train-now.",
            param="fine_tuned",
        )
    return dict(zip(st.tuned_labels(len(specs)), specs, strict=True))


def full_training(config: CompareConfig) -> SFTConfig:
    """--train-now: `tunesmith train --data TRAIN` with its defaults and the comparison's seed."""
    from tunesmith.train.config import SFTConfig

    return SFTConfig(data=config.train, model=config.model, seed=config.seed)


def _training(store: Store, spec: ModelSpec) -> dict | None:
    """What training the model cost, when it was trained in this store."""
    job_id = spec.extra.get("job_id") if spec.extra else None
    if not job_id:
        return None
    job = store.jobs.get(job_id)
    started = next(
        (
            e.created_at
            for e in store.events.since(job_id)
            if e.message.startswith("Fine-tuning job started")
        ),
        job.created_at,
    )
    return {
        "job": job_id,
        "seconds": float((job.finished_at or started) - started),
        "trained_tokens": job.trained_tokens,
    }


def run_comparison(
    config: CompareConfig,
    store: Store,
    engine: EngineFront,
    progress: ProgressFn | None = None,
    train_now: TrainFn | None = None,
) -> Comparison:
    from tunesmith.data.readers import read
    from tunesmith.data.render import tool_call_text
    from tunesmith.evals.metrics import choose_metric, score_all
    from tunesmith.infer.sampling import SamplingParams

    def report(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    train = _conversations(read(config.train).records, config.train)
    tests = _conversations(read(config.test).records, config.test)[: config.limit]
    # Tool calls as the model learns to write them (Hermes text), so the metric reads both alike.
    references = [tool_call_text(t.answer) for t in tests]
    metric = choose_metric(references) if config.metric == "auto" else config.metric
    base = store.models.resolve(config.model)
    tuned = _fine_tuned_models(config, store, train_now)

    prompts = st.build_prompts(
        train, tests, config.shots, config.seed, *_retrieval(config, train, report)
    )
    params = SamplingParams(
        max_tokens=config.max_tokens or _tokens_cap(engine.tokenizer(base), references),
        temperature=0,
    )
    # (row, the strategy whose prompts it answers, the model answering)
    plan = [(n, n, base) for n in st.PROMPTING] + [(n, st.TUNED, s) for n, s in tuned.items()]
    measured: dict[str, Measured] = {}
    for row, strategy, spec in plan:
        report(row, 0, len(tests))
        measured[row] = answer_all(
            engine, spec, prompts.by_strategy[strategy], params,
            on_done=lambda done, total, n=row: report(n, done, total), tools=prompts.tools,
        )  # fmt: skip
    scores = {n: score_all(metric, m.outputs, references) for n, m in measured.items()}
    curve = None
    if config.learning_curve:
        full = next(iter(tuned)) if config.fine_tuned else list(tuned)[-1]
        answer = lambda spec, stage: score_all(  # noqa: E731
            metric,
            answer_all(
                engine, spec, prompts.by_strategy[st.TUNED], params,
                on_done=lambda done, total: report(stage, done, total), tools=prompts.tools,
            ).outputs,
            references,
        )  # fmt: skip
        curve = _learning_curve(
            config, store, train, tuned[full], scores[full], answer, train_now, report
        )
    probes = _probe(engine, {"base": base, **tuned}, report) if config.probes else None

    prices = load_prices(config.prices) if config.prices else None
    unit = prices.currency if prices else "machine-seconds"
    results = []
    for row, _, spec in plan:
        training = _training(store, spec) if row in tuned else None
        if training is not None:
            training["cost"] = _training_cost(training, prices)
        per_request = _per_request(measured[row], prices, tuned=row in tuned)
        results.append(_result(row, spec, measured[row], scores[row], per_request, training))
    decision = decide([asdict(r) for r in results], probes, unit)
    best = next(r for r in results if r.name == decision.fine_tuned)
    comparison = Comparison(
        config=config.model_dump(mode="json"),
        metric=metric,
        n=len(tests),
        unit=unit,
        strategies=results,
        training=best.training,
        probes=probes,
        recommendation=decision.to_dict(),
        samples=_samples(tests, references, measured, scores, best.name),
        learning_curve=curve,
        n_train=len(train),
    )
    comparison.questions = answer_questions(comparison.to_dict(), len(train))
    return comparison


def decide(strategies: list[dict], probes: dict | None, unit: str) -> Recommendation:
    """The recommendation from a comparison's rows as its report holds them (`StrategyResult`
    as a dict): what the run decides, and what re-deciding a saved report.json by the current
    rules reads (bench/real_tasks.py --redecide)."""
    rows = []
    for s in strategies:
        m, training = s["metric"], s.get("training")
        tuned = st.is_tuned(s["name"])
        lost = probes["base"]["mean"] - probes[s["name"]]["mean"] if probes and tuned else None
        rows.append(
            Row(
                s["name"], m["mean"], *m["ci"], s["prompt_tokens"], s["cost_per_1000"] / 1000,
                model=s["model"], training_cost=training["cost"] if training else None,
                forgetting=lost, scores=m["scores"],
            )
        )  # fmt: skip
    return recommend(rows, unit=unit)


def _learning_curve(
    config: CompareConfig,
    store: Store,
    train: list,
    full: ModelSpec,
    full_score: MetricResult,
    answer: Callable[[ModelSpec, str], MetricResult],
    train_now: TrainFn | None,
    report: ProgressFn,
) -> dict:
    """Train on nested subsets with the full model's settings, score each like the full model;
    the full model is the curve's last point (reused, not trained again)."""
    from tunesmith.evals import curve as cv

    if train_now is None:
        raise TunesmithError("--learning-curve is not available here.", param="learning_curve")
    training = _training(store, full)
    settings = _settings_of(store, training, config)
    order = cv.nested_order(len(train), config.seed)
    points = []
    with tempfile.TemporaryDirectory(dir=store.settings.root, prefix=".curve-") as folder:
        for size in cv.subset_sizes(len(train)):
            report(f"curve: training on {size}", 0, 1)
            path = cv.write_subset(train, order, size, Path(folder))
            name = train_now(settings.model_copy(update={"data": path, "suffix": f"curve{size}"}))
            spec = store.models.resolve(name)
            score = answer(spec, f"curve: {size} examples")
            points.append(cv.Point(size, spec.name, score.to_dict(), _training(store, spec)))
    points.append(
        cv.Point(
            len(train), full.name, full_score.to_dict(), training, given=bool(config.fine_tuned)
        )
    )
    prices = load_prices(config.prices) if config.prices else None
    for point in points:
        if point.training is not None:
            point.training["cost"] = _training_cost(point.training, prices)
    return cv.curve_dict(points, n_test=full_score.n, seed=config.seed)


def _settings_of(store: Store, training: dict | None, config: CompareConfig) -> SFTConfig:
    """The settings the full model was trained with (`training`: its job, when it was trained in
    this store), if by SFT, so the subsets differ from it only in their data; else --train-now's
    defaults."""
    from tunesmith.train.config import parse_config

    if training is not None:
        settings = parse_config(store.jobs.get(training["job"]).config)
        if settings.method == "sft":
            return settings.model_copy(update={"validation": None, "mapping": None})
    return full_training(config)


def _result(
    row: str, spec: ModelSpec, m: Measured, s: MetricResult, per_request: float, training
) -> StrategyResult:
    """One row of the report: its scores, tokens, latency and cost per 1,000 requests."""
    return StrategyResult(
        name=row,
        model=spec.name,
        metric=s.to_dict(),
        prompt_tokens=sum(m.prompt_tokens) / len(m.outputs),
        completion_tokens=sum(m.completion_tokens) / len(m.outputs),
        latency_p50=m.latency(0.5),
        latency_p95=m.latency(0.95),
        seconds_per_request=m.seconds_per_request,
        cost_per_1000=per_request * 1000,
        outputs=m.outputs,
        training=training,
    )


def _conversations(records: list, path: Path) -> list:
    """Chat examples; a preference pair (or a KTO answer marked good) counts as its prompt and
    its preferred answer, so that a DPO-tuned model is compared on its own data."""
    from tunesmith.data.records import Conversation, KTOExample, PreferencePair

    convs = []
    for r in records:
        if isinstance(r, Conversation):
            convs.append(r)
        elif isinstance(r, PreferencePair):
            messages = [*r.input.messages, *r.preferred_output]
            convs.append(Conversation(messages=messages, tools=r.input.tools, line=r.line))
        elif isinstance(r, KTOExample) and r.label:
            messages = [*r.input.messages, *r.output]
            convs.append(Conversation(messages=messages, tools=r.input.tools, line=r.line))
    if not convs:
        raise TunesmithError(
            f"{path} holds no chat examples or preference pairs to compare on.", param="test"
        )
    return convs


def _retrieval(config: CompareConfig, train: list, report) -> tuple:
    """The index RAG searches: training examples' inputs, or the user's own documents."""
    if not config.shots:
        return None, None
    from tunesmith.evals.retrieval import Index, passages_from_dir

    report("embedding", 0, 1)
    if config.context_dir is not None:
        passages = passages_from_dir(config.context_dir)
        if not passages:
            raise TunesmithError(
                f"No readable text documents in {config.context_dir}.", param="context_dir"
            )
        index = Index([p.text for p in passages])
    else:
        passages, index = None, Index([st.query_text(t) for t in train])
    report("embedding", 1, 1)
    return index, passages


def _per_request(m: Measured, prices, tuned: bool) -> float:
    if prices is None:
        return m.seconds_per_request
    n = len(m.outputs)
    return prices.request(tuned, sum(m.prompt_tokens) / n, sum(m.completion_tokens) / n)


def _training_cost(training: dict, prices) -> float:
    if prices is None:
        return training["seconds"]
    return (training["trained_tokens"] or 0) * prices.training / 1e6


def _probe(engine: EngineFront, models: dict[str, ModelSpec], report) -> dict:
    """General ability before and after: the bundled probe set, for the base ("base") and each
    fine-tuned row."""
    from tunesmith.evals.metrics import bootstrap_ci
    from tunesmith.evals.probes import load_probes, probe_score
    from tunesmith.infer.sampling import SamplingParams

    probes = load_probes()
    params = SamplingParams(max_tokens=48, temperature=0)
    out = {}
    for label, spec in models.items():
        stage = f"probes ({label})"
        report(stage, 0, len(probes))
        m = answer_all(
            engine, spec, [p.messages for p in probes], params,
            on_done=lambda done, total, s=stage: report(s, done, total),
        )  # fmt: skip
        scores = [probe_score(o, p) for o, p in zip(m.outputs, probes, strict=True)]
        low, high = bootstrap_ci(scores)
        out[label] = {"mean": sum(scores) / len(scores), "ci": [low, high], "outputs": m.outputs}
    return out


def _samples(tests, references, measured, scores, tuned: str, n: int = 3) -> dict:
    """Side-by-side answers: where the `tuned` row gained most over zero-shot, and where it lost.
    Every row answers; the reference is written as the metric reads it (tool calls as text)."""
    gain = [(scores[tuned].scores[i] - scores[st.ZERO].scores[i], i) for i in range(len(tests))]
    order = sorted(gain, key=lambda g: (-g[0], g[1]))
    pick = {"best": [i for _, i in order[:n]], "worst": [i for _, i in order[::-1][:n]]}
    return {
        kind: [
            {
                "input": st.query_text(tests[i]),
                "reference": references[i],
                "answers": {name: m.outputs[i] for name, m in measured.items()},
                "scores": {name: scores[name].scores[i] for name in measured},
            }
            for i in idx
        ]
        for kind, idx in pick.items()
    }
