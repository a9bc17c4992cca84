"""Exports through the API: queued, run by a worker with events, checked, files downloadable."""

from __future__ import annotations

import time

import httpx
import pytest
import torch

from tunesmith.models.spec import ModelSpec
from tunesmith.store import open_store

FT = "ft:tiny:local:exp:AbCd1234"


@pytest.fixture
def tuned(tiny_model_dir, tmp_path) -> str:
    """The tiny model with a trained-looking (non-zero) LoRA, registered as an ft: model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False),
    )
    peft.save_pretrained(tmp_path / "adapter")
    base = str(tiny_model_dir)
    spec = ModelSpec(FT, "fine-tuned", base, base, adapter=tmp_path / "adapter")
    open_store().models.register(spec, None)
    return FT


def wait_done(http: httpx.Client, export_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while (body := http.get(f"/exports/{export_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, body
        time.sleep(0.3)
    return body


def test_a_merged_export_runs_as_a_task_and_its_files_download(serve, tiny_model_dir, tuned):
    http = httpx.Client(base_url=serve(workers=1, model_dirs=[tiny_model_dir]), timeout=60)
    created = http.post(f"/models/{tuned}/exports", json={"format": "merged"})
    assert created.status_code == 200, created.text
    body = created.json()
    assert (body["object"], body["status"]) == ("export", "queued")

    done = wait_done(http, body["id"])
    assert done["status"] == "succeeded", done["error"]
    result = done["result"]
    assert result["check"]["passed"] and result["check"]["mean"] == 1.0
    assert "config.json" in result["files"] and "generation_config.json" in result["files"]
    config = http.get(f"/exports/{body['id']}/files/config.json")
    assert config.status_code == 200 and b"LlamaForCausalLM" in config.content
    events = http.get(f"/exports/{body['id']}/events", params={"limit": 100}).json()["data"]
    messages = [e["message"] for e in reversed(events)]
    assert messages[0].startswith("Created export:") and messages[-1].startswith("Export finished")


def test_bad_exports_are_refused_and_a_queued_one_cancels(serve, tiny_model_dir, tuned):
    http = httpx.Client(base_url=serve(workers=0, model_dirs=[tiny_model_dir]), timeout=60)
    unknown = http.post("/models/ft:nope:local:x:y/exports", json={"format": "gguf"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
    wrong = http.post(f"/models/{tuned}/exports", json={"format": "merged", "quant": "q4_0"})
    assert wrong.status_code == 400 and "q4_0" in wrong.json()["error"]["message"]
    bad_format = http.post(f"/models/{tuned}/exports", json={"format": "zip"})
    assert bad_format.status_code == 400

    export_id = http.post(f"/models/{tuned}/exports", json={"format": "gguf"}).json()["id"]
    assert http.get(f"/exports/{export_id}/files/model.gguf").status_code == 404  # not done
    assert http.post(f"/exports/{export_id}/cancel").json()["status"] == "cancelled"
    assert http.delete(f"/exports/{export_id}").json()["deleted"] is True
    assert http.get(f"/exports/{export_id}").status_code == 404
