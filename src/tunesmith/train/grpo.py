"""Reinforcement fine-tuning with a grader (OpenAI's `reinforcement` method), by TRL's GRPO.

Each step samples `num_generations` answers to each of `batch_size` prompts, scores every answer
with the job's grader (OpenAI's grader JSON, python graders in their sandbox), and pushes the
model towards the answers that scored above their group's mean. The lifecycle is SFT's: the same
callback writes the step's numbers (mean and std of the reward, each sub-grader's reward for a
`multi` grader, answer length, KL when beta > 0) as events and curves, and saves checkpoints.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trl import GRPOTrainer

from tunesmith.train import events as ev

if TYPE_CHECKING:
    from datasets import Dataset

    from tunesmith.train.run import RunContext

# TRL's metric names -> tunesmith's (each gets a train_ prefix)
METRICS = {
    "reward": "reward",
    "reward_std": "reward_std",
    "completions/mean_length": "completion_length",
    "kl": "kl",
    "entropy": "entropy",
}


def prompt_dataset(records: list, tokenizer) -> Dataset:
    """Prompts rendered with the model's own template (tools too), and each line's other
    fields as the item its grader reads (JSON text: items differ in shape from line to line)."""
    from datasets import Dataset

    from tunesmith.data.preference import encode_rft_prompt

    return Dataset.from_dict(
        {
            "prompt": [encode_rft_prompt(tokenizer, r) for r in records],
            "item": [json.dumps(r.item) for r in records],
        }
    )


class GraderReward:
    """The job's grader as a TRL reward function. A sample whose grading fails scores 0 (the
    grader's own rule) and the failure becomes a warning event, once per step and kind. One
    `Grading` lives for the run, so a python grader keeps one sandbox worker throughout."""

    def __init__(self, ctx: RunContext, grader: Any) -> None:
        from tunesmith.graders.run import Grading
        from tunesmith.graders.spec import model_graders, parse_grader

        self.ctx = ctx
        parsed = parse_grader(grader)
        self.__name__ = parsed.name or parsed.type
        self.engine = None  # a judge model's, only when the grader has a model grader
        judge = None
        if model_graders(parsed):
            from tunesmith.graders.model import engine_judge
            from tunesmith.infer.engine import Engine

            self.engine = Engine(max_batch=8)
            judge = engine_judge(self.engine, ctx.store.models.resolve)
        self.grading = Grading(parsed, judge=judge)

    def __call__(self, prompts, completions, item, log_metric=None, **kwargs) -> list[float]:
        from tunesmith.graders.run import make_sample

        results = [
            self.grading.grade(make_sample(text), json.loads(fields))
            for text, fields in zip(completions, item, strict=True)
        ]
        subs: dict[str, list[float]] = defaultdict(list)
        failures: dict[str, int] = defaultdict(int)
        for result in results:
            for name, value in result.sub_rewards.items():
                subs[name].append(value)
            if result.error:
                failures[result.error] += 1
        if log_metric is not None:
            for name, values in subs.items():
                log_metric(f"rewards/{name}", statistics.fmean(values))
        for reason, count in failures.items():
            self.ctx.store.events.add(
                self.ctx.job.id,
                ev.GRADER_FAILED.format(n=count, total=len(results), reason=reason),
                level="warn",
            )
        return [r.reward for r in results]

    def close(self) -> None:
        self.grading.close()
        if self.engine is not None:
            self.engine.close()


@dataclass
class GRPOStats:
    """One step's numbers: TRL's metrics of the step, the loss, and the tokens seen."""

    metrics_: dict[str, float] = field(default_factory=dict)
    loss_sum: float = 0.0
    losses: int = 0
    tokens: int = 0
    seen_tokens: int = 0

    def metrics(self) -> dict[str, float]:
        loss = {"loss": self.loss} if self.losses else {}  # a validation has none
        return {**loss, **self.metrics_}

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.losses, 1)

    @property
    def accuracy(self) -> float:
        return self.metrics_.get("reward", math.nan)


class TunesmithGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer, reporting each step's numbers to the run's callback, and sampling with
    tunesmith's running batch (`sampler="tunesmith"`) instead of `generate`."""

    def __init__(self, *args, sampler: str = "tunesmith", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.step_stats = GRPOStats()
        self.eval_stats = GRPOStats()
        self.sampler = sampler

    def _generate_single_turn(
        self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False
    ):
        """The answers to a step's prompts, each prompt already repeated num_generations times.

        `generate` decodes every row until the longest is done, padded rows and finished ones
        too; the running batch (the serving engine's) drops a row as soon as it ends. Sampling
        is TRL's own default (temperature, top_p, no top-k), the end-of-turn token kept at the
        end of an answer that stopped, as TRL keeps it, so that it is trained.
        """
        if self.sampler != "tunesmith" or images or multimodal_fields or self.use_vllm:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        return self._sample(prompt_ids), None

    def _sample(self, prompt_ids: list[list[int]]) -> list[list[int]]:
        return sample_answers(
            self.accelerator.unwrap_model(self.model),
            self._tokenizer,
            prompt_ids,
            eos_ids=list(self.eos_token_ids),
            max_tokens=self.max_completion_length,
            temperature=self.temperature,
            top_p=self.top_p,
            device=str(self.accelerator.device),
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        stats = self.step_stats
        stats.loss_sum += float(loss.detach())
        stats.losses += 1
        answer = int(inputs["completion_mask"].sum())
        stats.tokens += answer
        stats.seen_tokens += answer + int(inputs["prompt_mask"].sum())
        return loss

    def take_train_stats(self) -> GRPOStats:
        """The step's numbers. TRL averages its metric lists when it logs, after this."""
        stats, self.step_stats = self.step_stats, GRPOStats()
        logged = self._metrics["train"]
        for trl_name, name in METRICS.items():
            values = [v for v in logged.get(trl_name, []) if not math.isnan(v)]
            if values:
                stats.metrics_[name] = statistics.fmean(values)
        for trl_name, values in logged.items():
            # a multi grader's parts, as GraderReward logs them (TRL's own are rewards/NAME/mean)
            part = trl_name.removeprefix("rewards/")
            if part != trl_name and "/" not in part and values:
                stats.metrics_[f"reward_{part}"] = statistics.fmean(values)
        return stats

    def take_eval_stats(self) -> GRPOStats:
        stats, self.eval_stats = self.eval_stats, GRPOStats()
        return stats

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        """OpenAI's validation reward: one answer sampled per validation prompt (at the run's
        temperature), graded like training's. TRL's own evaluation would also compute a loss
        over several answers per prompt, several times the cost on a CPU."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        prompts = dataset["prompt"]
        answers = self._sample(
            [self._tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        )
        texts = self._tokenizer.batch_decode(answers, skip_special_tokens=True)
        reward = next(f for f in self.reward_funcs if isinstance(f, GraderReward))
        rewards = reward(prompts, texts, dataset["item"])
        self.eval_stats.metrics_ = {
            "reward": statistics.fmean(rewards),
            "reward_std": statistics.stdev(rewards) if len(rewards) > 1 else 0.0,
            "completion_length": statistics.fmean(len(a) for a in answers),
        }
        metrics = {f"{metric_key_prefix}_reward": self.eval_stats.metrics_["reward"]}
        self.control = self.callback_handler.on_evaluate(
            self.args, self.state, self.control, metrics
        )
        return metrics

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:  # sandbox workers and judge engines end with the run
            for reward in self.reward_funcs:
                if isinstance(reward, GraderReward):
                    reward.close()


def sample_answers(
    model,
    tokenizer,
    prompt_ids: list[list[int]],
    *,
    eos_ids: list[int],
    max_tokens: int,
    temperature: float,
    top_p: float,
    device: str,
) -> list[list[int]]:
    """Sample one answer per prompt with the serving engine's running batch, on `model` as it
    is (a PEFT model's active adapter included), in eval mode and without gradients."""
    import torch

    from tunesmith.infer.batch import RunningBatch
    from tunesmith.infer.generation import Generation
    from tunesmith.infer.sampling import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p)
    adapter = getattr(model, "active_adapter", None) if hasattr(model, "peft_config") else None
    rows = [Generation(ids, params, adapter, tokenizer, set(eos_ids)) for ids in prompt_ids]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = RunningBatch(model, device, tokenizer.pad_token_id)
            batch.admit(rows)
            while len(batch):
                batch.step()
    finally:
        model.train(was_training)
    return [r.generated + ([eos_ids[0]] if r.finish_reason == "stop" else []) for r in rows]


def trainer(
    ctx: RunContext,
    model,
    tokenizer,
    train: Dataset,
    valid: Dataset | None,
    device: str,
    precision: str,
    callback,
) -> TunesmithGRPOTrainer:
    import trl

    from tunesmith.train.model import trainer_args

    config, resolved = ctx.config, ctx.resolved
    args = trl.GRPOConfig(
        **trainer_args(config, resolved, ctx.run_dir, device, precision),
        # TRL counts answers per step; tunesmith's batch_size counts prompts, as OpenAI's does.
        per_device_train_batch_size=resolved.batch_size * config.num_generations,
        # TRL checks this divides by num_generations; tunesmith's validation samples one each
        per_device_eval_batch_size=resolved.batch_size * config.num_generations,
        num_generations=config.num_generations,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        beta=config.beta,
        eval_strategy="steps" if valid is not None else "no",
        eval_steps=resolved.eval_steps if valid is not None else None,
        log_completions=False,
        generation_kwargs={"use_cache": True},
    )
    left_padding = copy.deepcopy(tokenizer)
    left_padding.padding_side = "left"  # TRL generates from left-padded prompts
    return TunesmithGRPOTrainer(
        model=model,
        reward_funcs=[GraderReward(ctx, config.grader)],
        args=args,
        train_dataset=train,
        eval_dataset=valid,
        processing_class=left_padding,
        callbacks=[callback],
        sampler=config.sampler,
    )
