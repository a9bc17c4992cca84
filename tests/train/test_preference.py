"""Preference tuning: the objectives, the packed batches, the row-by-row step, and whole runs of
DPO (the real built-in model learns a preference it generalises), ORPO, KTO, and DPO's resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from tunesmith.jobs.service import create_job, validate_files
from tunesmith.store import open_store
from tunesmith.store.lifecycle import Runner
from tunesmith.train import preference as pref
from tunesmith.train.config import load_config
from tunesmith.train.run import run

RUNNER = Runner(os.getpid(), "test-host")
TOPICS = [
    "the moon",
    "rivers",
    "bees",
    "volcanoes",
    "the ocean",
    "trees",
    "snow",
    "deserts",
    "cats",
    "dogs",
    "birds",
    "stars",
    "rain",
    "mountains",
    "the sun",
    "clouds",
    "fish",
    "horses",
    "wind",
    "islands",
    "forests",
    "lakes",
    "ants",
    "owls",
    "whales",
    "frogs",
    "lions",
    "apples",
    "bread",
    "music",
    "books",
    "trains",
    "bridges",
    "clocks",
    "maps",
    "coffee",
    "tea",
    "salt",
    "glass",
    "paper",
    "iron",
    "gold",
    "sand",
    "ice",
    "fire",
    "thunder",
    "caves",
    "rainbows",
    "tigers",
    "roses",
]


def preference_pair(topic: str) -> dict:
    """Helpful beats a refusal: a preference the held-out topics share with the training ones."""
    return {
        "input": {
            "messages": [{"role": "user", "content": f"Tell me one short fact about {topic}."}]
        },
        "preferred_output": [
            {"role": "assistant", "content": f"Sure! Here is a fact about {topic}."}
        ],
        "non_preferred_output": [{"role": "assistant", "content": "No. I will not answer that."}],
    }


def write_pairs(path: Path, topics) -> Path:
    path.write_text("".join(json.dumps(preference_pair(t)) + "\n" for t in topics))
    return path


@pytest.fixture
def pairs(tmp_path):
    return write_pairs(tmp_path / "train.jsonl", TOPICS[:16]), write_pairs(
        tmp_path / "valid.jsonl", TOPICS[40:46]
    )


def claimed_job(store, files, **settings):
    train = store.files.add_path(files[0], "fine-tune")
    valid = store.files.add_path(files[1], "fine-tune")
    config = load_config(None, {"suffix": "p", **settings})
    job = create_job(store, config, training_file=train.id, validation_file=valid.id, seed=7)
    job = validate_files(store, job)
    assert job.status == "queued", store.events.list(job.id).data[0].message
    return store.jobs.claim(job.id, RUNNER, only_from={"queued"})


# --- the objectives ------------------------------------------------------------------------------


def scores(logps, ref=None, label=None, counts=None):
    logps = torch.tensor(logps, dtype=torch.float32, requires_grad=True)
    units = len(logps) // (1 if label is not None else 2)
    return Scores(
        logps=logps,
        counts=torch.tensor(counts or [4] * len(logps)),
        ref=None if ref is None else torch.tensor(ref, dtype=torch.float32),
        present=torch.ones(units, dtype=torch.bool),
        units=units,
        chosen_tokens=4 * units,
        label=None if label is None else torch.tensor(label),
    )


Scores = pref.Scores


def test_dpo_starts_at_log_2_and_rewards_are_beta_times_the_log_ratio():
    loss, metrics = pref.DPO(beta=0.1).loss(scores([-5.0, -7.0], ref=[-5.0, -7.0]))
    assert float(loss.detach()) == pytest.approx(math.log(2))
    assert metrics["reward_margin"] == (0.0, 1)
    loss, metrics = pref.DPO(beta=0.5).loss(scores([-4.0, -8.0], ref=[-5.0, -7.0]))
    assert metrics["rewards_chosen"][0] == pytest.approx(0.5)
    assert metrics["rewards_rejected"][0] == pytest.approx(-0.5)
    assert metrics["reward_accuracy"] == (1.0, 1)
    assert float(loss.detach()) == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))))


def test_dpo_variants_and_label_smoothing():
    s = scores([-4.0, -8.0], ref=[-5.0, -7.0])
    hinge, _ = pref.DPO(beta=0.1, loss_type="hinge").loss(s)
    assert float(hinge.detach()) == pytest.approx(1 - 0.1 * 2.0)
    ipo, _ = pref.DPO(beta=0.1, loss_type="ipo").loss(s)  # mean log-probs: the margin is 2/4
    assert float(ipo.detach()) == pytest.approx((0.5 - 5.0) ** 2)
    plain, _ = pref.DPO(beta=1.0).loss(s)
    smoothed, _ = pref.DPO(beta=1.0, label_smoothing=0.2).loss(s)
    assert float(smoothed.detach()) > float(
        plain.detach()
    )  # some weight on the pair being the other way round


def test_orpo_rewards_lower_odds_of_the_rejected_answer():
    close, _ = pref.ORPO(beta=0.1).loss(scores([-4.0, -4.2]))
    apart, _ = pref.ORPO(beta=0.1).loss(scores([-4.0, -12.0]))
    assert float(apart.detach()) < float(close.detach())


def test_kto_pushes_good_answers_up_and_bad_ones_down():
    s = scores([-4.0, -6.0], ref=[-5.0, -5.0], label=[True, False])
    loss, metrics = pref.KTO(beta=0.1).loss(s)
    loss.backward()
    assert s.logps.grad[0] < 0 < s.logps.grad[1]  # gradient descent raises the good one
    assert metrics["reward_accuracy"] == (2.0, 2)


# --- packed batches --------------------------------------------------------------------------------


def unit(chosen: int, rejected: int, ref=None) -> dict:
    out = {
        "ids": [list(range(1, chosen + 1)), list(range(1, rejected + 1))],
        "labels": [
            [-100] * 2 + list(range(3, chosen + 1)),
            [-100] * 2 + list(range(3, rejected + 1)),
        ],
    }
    if ref:
        out["ref"] = ref
    return out


def test_a_pair_never_straddles_two_rows_and_sequences_restart_positions():
    batch = pref.UnitCollator(pad_token_id=0, row_tokens=16)([unit(5, 4), unit(3, 3), unit(6, 6)])
    for u, row in enumerate(batch["unit_row"].tolist()):
        segments = batch["segments"][row].tolist()
        assert 2 * u in segments and 2 * u + 1 in segments
    assert batch["input_ids"].shape[0] == 2  # first fit, longest first: 12 | 9 + 6
    first = batch["segments"][batch["unit_row"][0]].tolist()
    start = first.index(0)
    assert batch["position_ids"][batch["unit_row"][0], start] == 0
    # only answer tokens carry labels, and never a sequence's first token
    scored = batch["labels"] != -100
    assert (batch["segments"][scored] >= 0).all()
    assert int(scored.sum()) == (3 + 2) + (1 + 1) + (4 + 4)


def test_row_by_row_gradients_equal_the_whole_batch_gradient(tiny_model_dir):
    """On a CPU a batch trains one row at a time; the summed gradient must be the batch's."""
    from transformers import AutoModelForCausalLM, TrainingArguments

    from tunesmith.train import attention

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation=attention.NAME)
    units = [unit(7, 5, [-9.0, -8.0]), unit(4, 6, [-5.0, -7.0]), unit(8, 8, [-10.0, -10.5])]
    batch = pref.UnitCollator(0, 16)(units)
    assert batch["input_ids"].shape[0] > 1
    for objective in (pref.DPO(beta=0.5), pref.ORPO(beta=0.3)):
        trainer = pref.PreferenceTrainer(
            model=model,
            args=TrainingArguments(output_dir="/tmp/unused", use_cpu=True, report_to=[]),
            objective=objective,
        )
        model.zero_grad()
        whole = trainer.compute_loss(model, dict(batch))
        whole.backward()
        expected = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad()
        trainer.take_train_stats()
        split = trainer.training_step(model, dict(batch))
        # every token through the model counted once, not once per row
        assert trainer.take_train_stats().seen_tokens == int(batch["num_tokens"].sum())
        got = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        assert float(split) == pytest.approx(float(whole.detach()), rel=1e-5)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# --- whole runs ----------------------------------------------------------------------------------


def pair_logps(model_dir: Path, adapter: Path | None, files: Path) -> list[tuple[float, float]]:
    """(chosen, rejected) summed answer log-probabilities of each pair, read independently of
    the trainer: transformers (and PEFT) load the weights, the data room encodes the pairs."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesmith.data.preference import encode_pair
    from tunesmith.data.readers import read

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    out = []
    with torch.no_grad():
        for record in read(files).records:
            pair = encode_pair(tokenizer, record, 1024)
            sides = []
            for enc in (pair.chosen, pair.rejected):
                logits = model(torch.tensor([enc.input_ids])).logits[0, :-1].float()
                labels = torch.tensor(enc.labels[1:])
                mask = labels != -100
                sides.append(
                    float(
                        -torch.nn.functional.cross_entropy(
                            logits[mask], labels[mask], reduction="sum"
                        )
                    )
                )
            out.append(tuple(sides))
    return out


@pytest.mark.slow
def test_dpo_on_the_builtin_model_learns_a_preference_that_holds_on_held_out_pairs(
    tmp_path, builtin_dir
):
    store = open_store()
    files = (
        write_pairs(tmp_path / "train.jsonl", TOPICS[:40]),
        write_pairs(tmp_path / "valid.jsonl", TOPICS[40:]),
    )
    job = claimed_job(store, files, method="dpo", epochs=1, batch_size=4, eval_steps=3)
    done = run(job.id, store)
    assert done.status == "succeeded"
    metrics = store.events.metrics(job.id)
    # policy = reference at step 1. Not to the last digit: in bf16 a token's result depends a
    # little on the shape of the row it is packed in, and training packs other rows than the
    # reference pass did.
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=5e-3)
    first = next(m for m in metrics if "valid_loss" in m)
    last = metrics[-1]
    assert last["full_valid_reward_margin"] > first["valid_reward_margin"] > 0
    assert last["full_valid_reward_accuracy"] >= first["valid_reward_accuracy"]
    assert last["full_valid_reward_accuracy"] > 0.5
    assert last["full_valid_loss"] < math.log(2)
    csv = (Path(done.run_dir) / "step_metrics.csv").read_text().splitlines()
    assert "train_reward_margin" in csv[0] and "valid_reward_accuracy" in csv[0]

    # Independently of the trainer: on held-out pairs the preferred answer gained on the other.
    # Validation is scored in fp32: its numbers agree with an independent fp32 reading.
    spec = store.models.resolve(done.fine_tuned_model)
    before = pair_logps(builtin_dir, None, files[1])
    after = pair_logps(builtin_dir, spec.adapter, files[1])
    gains = [(ac - ar) - (bc - br) for (bc, br), (ac, ar) in zip(before, after, strict=True)]
    assert all(g > 0 for g in gains), gains
    beta = 0.1
    own = last["full_valid_reward_margin"] / beta
    assert own == pytest.approx(sum(gains) / len(gains), rel=0.05)


def test_orpo_and_kto_run_end_to_end_and_register_callable_models(tiny_model_dir, pairs):
    from tunesmith.infer.engine import Engine
    from tunesmith.infer.sampling import SamplingParams

    store = open_store()
    engine = Engine()
    try:
        for method, expected in (
            ("orpo", {"train_nll_loss", "train_log_odds_ratio"}),
            ("kto", {"train_kl"}),
        ):
            job = claimed_job(
                store, pairs, model=str(tiny_model_dir), method=method, epochs=1, batch_size=4
            )
            done = run(job.id, store)
            assert done.status == "succeeded", method
            metrics = store.events.metrics(job.id)
            assert expected <= metrics[-1].keys()
            assert {"train_rewards_chosen", "train_rewards_rejected", "full_valid_loss"} <= metrics[
                -1
            ].keys()
            if method == "kto":  # pairs were split: a desirable and an undesirable answer each
                assert metrics[-1]["total_steps"] == 8
            spec = store.models.resolve(done.fine_tuned_model)
            tokenizer = engine.tokenizer(spec)
            prompt = tokenizer("Tell me a fact.")["input_ids"]
            answer = engine.wait(engine.submit(spec, prompt, SamplingParams(max_tokens=4)))
            assert answer.completion_tokens > 0
    finally:
        engine.close()


def test_dpo_stopped_and_resumed_matches_an_uninterrupted_run(tiny_model_dir, pairs):
    store = open_store()
    settings = {"model": str(tiny_model_dir), "method": "dpo", "epochs": 2, "batch_size": 4}
    straight = run(claimed_job(store, pairs, **settings).id, store)
    expected = {m["step"]: m["train_loss"] for m in store.events.metrics(straight.id)}

    job = claimed_job(store, pairs, **settings)
    calls = iter(range(100))
    stopped = run(job.id, store, stop_requested=lambda: "cancel" if next(calls) == 2 else None)
    assert stopped.status == "cancelled"
    reference = Path(job.run_dir) / pref.REFERENCE_FILE
    computed_at = reference.stat().st_mtime_ns
    store.jobs.release(job.id, RUNNER)
    store.jobs.claim(job.id, RUNNER, only_from={"cancelled"})
    resumed = run(job.id, store, resume=True)
    assert resumed.status == "succeeded"
    assert reference.stat().st_mtime_ns == computed_at  # read back, not computed again
    got = {m["step"]: m["train_loss"] for m in store.events.metrics(job.id)}
    assert sorted(got) == list(range(1, 9))
    for step in range(4, 9):
        assert got[step] == pytest.approx(expected[step], rel=1e-4), step


def test_dpo_starting_from_an_sft_model_uses_it_as_the_reference(tiny_model_dir, pairs, orders):
    """SFT, then DPO with --model ft:…: the usual recipe. The SFT adapter trains on, and the
    reference is the SFT model (step 1's loss is exactly log 2), not the base under it."""
    store = open_store()
    chat = orders / "train.jsonl"
    sft = claimed_job(
        store, (chat, orders / "validation.jsonl"), model=str(tiny_model_dir), epochs=1
    )
    sft = run(sft.id, store)
    assert sft.status == "succeeded"
    job = claimed_job(
        store, pairs, model=sft.fine_tuned_model, method="dpo", epochs=1, batch_size=4
    )
    done = run(job.id, store)
    assert done.status == "succeeded"
    metrics = store.events.metrics(job.id)
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=5e-3)  # see the test above
    assert metrics[-1]["train_reward_margin"] > 0
    assert done.fine_tuned_model.startswith("ft:tiny-llama0:local:p:")
