"""The GPU paths: bf16 batched decoding, multi-LoRA batches and QLoRA training on CUDA.

Skipped without a CUDA device (CI has none); run on a GPU machine with `pytest -m gpu`.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_batched_and_mixed_adapter_decoding_on_cuda(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunesmith.data.records import Message
    from tunesmith.data.render import encode_prompt
    from tunesmith.infer.engine import Engine
    from tunesmith.infer.sampling import SamplingParams
    from tunesmith.models.spec import ModelSpec

    adapters = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        peft = get_peft_model(
            AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            LoraConfig(r=8, target_modules="all-linear", init_lora_weights=False),
        )
        peft.save_pretrained(tmp_path / f"a{seed}")
        adapters.append(tmp_path / f"a{seed}")
    base = ModelSpec("t", "local", str(tiny_model_dir), str(tiny_model_dir))
    specs = [
        base,
        *(
            ModelSpec(f"a{i}", "local", base.base, base.weights, adapter=a)
            for i, a in enumerate(adapters)
        ),
    ]
    engine = Engine(max_batch=8)  # device auto: cuda, bf16
    params = SamplingParams(max_tokens=12, temperature=0)
    try:
        ids = encode_prompt(
            engine.tokenizer(base), [Message(role="user", content="Name three colors.")]
        )
        mixed = [engine.submit(s, ids, params) for s in specs]  # one batch, three adapters
        mixed = [engine.wait(s).token_ids for s in mixed]
        alone = [engine.wait(engine.submit(s, ids, params)).token_ids for s in specs]
        loaded, _ = engine.load(base)
        assert next(loaded.model.parameters()).device.type == "cuda"
    finally:
        engine.close()
    assert mixed == alone
    assert len({tuple(t) for t in alone}) == 3


def test_qlora_trains_on_cuda(tiny_model_dir, orders, tmp_path):
    pytest.importorskip("bitsandbytes")
    from tunesmith.jobs.service import create_job, validate_files
    from tunesmith.store import open_store
    from tunesmith.store.lifecycle import Runner
    from tunesmith.train.config import SFTConfig
    from tunesmith.train.run import run

    data = tmp_path / "train.jsonl"
    data.write_text("".join((orders / "train.jsonl").read_text().splitlines(keepends=True)[:16]))
    store = open_store()
    file = store.files.add_path(data, "fine-tune")
    config = SFTConfig(model=str(tiny_model_dir), epochs=2, batch_size=4, load_in_4bit=True)
    job = validate_files(store, create_job(store, config, training_file=file.id, seed=0))
    store.jobs.claim(job.id, Runner.here(), only_from={"queued"})
    job = run(job.id, store)
    assert job.status == "succeeded"
    losses = [m["train_loss"] for m in store.events.metrics(job.id)]
    assert len(losses) == 8 and losses[-1] < losses[0]
