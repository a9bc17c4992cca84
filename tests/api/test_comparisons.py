"""Comparisons through the API: queued, run by a worker with progress events, report served."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import torch

from tunesmith.models.spec import ModelSpec
from tunesmith.store import open_store


def test_a_comparison_runs_as_a_job(serve, client, tiny_model_dir, orders, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(4)
    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False),
    )
    peft.save_pretrained(tmp_path / "adapter")
    name = "ft:tiny:local:api:cmp"
    spec = ModelSpec(
        name, "fine-tuned", str(tiny_model_dir), str(tiny_model_dir), adapter=tmp_path / "adapter"
    )
    open_store().models.register(spec, None)

    url = serve(workers=1, model_dirs=[tiny_model_dir])
    sdk = client(url)
    test = tmp_path / "test.jsonl"
    test.write_text("".join((orders / "test.jsonl").read_text().splitlines(keepends=True)[:4]))
    train = tmp_path / "train.jsonl"  # 24: the learning curve trains 12 of them in the worker
    train.write_text("".join((orders / "train.jsonl").read_text().splitlines(keepends=True)[:24]))
    train_file = sdk.files.create(file=train, purpose="fine-tune")
    test_file = sdk.files.create(file=Path(test), purpose="fine-tune")
    http = httpx.Client(base_url=url, headers={"Authorization": "Bearer test"}, timeout=60)
    created = http.post(
        "/comparisons",
        json={
            "training_file": train_file.id,
            "test_file": test_file.id,
            "model": str(tiny_model_dir),
            "fine_tuned_model": name,
            "max_tokens": 6,
            "probes": False,
            "learning_curve": True,
        },
    )
    assert created.status_code == 200, created.text
    cmp_id = created.json()["id"]
    assert created.json()["status"] == "queued" and cmp_id.startswith("cmp_")

    deadline = time.monotonic() + 300
    while (body := http.get(f"/comparisons/{cmp_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert body["status"] == "succeeded", body["error"]
    assert [s["name"] for s in body["result"]["strategies"]] == [
        "zero-shot",
        "few-shot",
        "rag",
        "fine-tuned",
    ]
    assert body["recommendation"]["headline"]
    curve = body["result"]["learning_curve"]
    assert [p["examples"] for p in curve["points"]] == [12, 24] and curve["verdict"]
    assert curve["points"][0]["training"]["trained_tokens"] > 0  # trained by the worker
    assert curve["points"][1]["given"] and curve["points"][1]["model"] == name
    events = http.get(f"/comparisons/{cmp_id}/events", params={"limit": 100}).json()
    messages = [e["message"] for e in reversed(events["data"])]
    assert messages[0] == f"Created comparison: {cmp_id}" and messages[-1].startswith(
        "Comparison finished:"
    )
    assert "fine-tuned: 4/4" in messages and "curve: 12 examples: 4/4" in messages
    report = http.get(f"/comparisons/{cmp_id}/report")
    assert report.status_code == 200 and "<svg" in report.text
    listed = http.get("/comparisons").json()
    assert listed["data"][0]["id"] == cmp_id

    missing = http.post(
        "/comparisons", json={"training_file": train_file.id, "test_file": test_file.id}
    )
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "fine_tuned_model"
    assert http.get("/comparisons/cmp_nope").status_code == 404


def test_cancel_and_delete_through_the_api(serve, tiny_model_dir, orders, tmp_path):
    url = serve(workers=0, model_dirs=[tiny_model_dir])  # no worker: it stays queued
    http = httpx.Client(base_url=url, timeout=60)
    upload = {"purpose": "fine-tune"}
    train = http.post(
        "/files",
        files={"file": ("train.jsonl", (orders / "train.jsonl").read_bytes())},
        data=upload,
    )
    test = http.post(
        "/files", files={"file": ("test.jsonl", (orders / "test.jsonl").read_bytes())}, data=upload
    )
    body = {"training_file": train.json()["id"], "test_file": test.json()["id"],
            "model": str(tiny_model_dir), "train_now": True}  # fmt: skip
    cmp_id = http.post("/comparisons", json=body).json()["id"]

    refused = http.delete(f"/comparisons/{cmp_id}")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_job_state"
    assert http.post(f"/comparisons/{cmp_id}/cancel").json()["status"] == "cancelled"
    again = http.post(f"/comparisons/{cmp_id}/cancel")
    assert again.status_code == 400 and "cancelled" in again.json()["error"]["message"]
    out_dir = Path(open_store().comparisons.get(cmp_id).out_dir)
    out_dir.mkdir(parents=True)
    assert http.delete(f"/comparisons/{cmp_id}").json()["deleted"] is True
    assert http.get(f"/comparisons/{cmp_id}").status_code == 404
    assert not out_dir.exists()


def test_several_fine_tuned_models_through_the_api(serve, tiny_model_dir, orders):
    """fine_tuned_models takes a list; fine_tuned_model still works; both at once is refused."""
    store = open_store()
    for name in ("ft:tiny:local:api:one", "ft:tiny:local:api:two"):
        store.models.register(
            ModelSpec(name, "fine-tuned", str(tiny_model_dir), str(tiny_model_dir)), None
        )
    url = serve(workers=0, model_dirs=[tiny_model_dir])  # no worker: they stay queued
    http = httpx.Client(base_url=url, timeout=60)
    upload = {"purpose": "fine-tune"}
    file_id = http.post(
        "/files", files={"file": ("t.jsonl", (orders / "test.jsonl").read_bytes())}, data=upload
    ).json()["id"]
    body = {"training_file": file_id, "test_file": file_id, "model": str(tiny_model_dir)}
    models = ["ft:tiny:local:api:one", "ft:tiny:local:api:two"]
    several = http.post("/comparisons", json={**body, "fine_tuned_models": models})
    assert several.status_code == 200, several.text
    assert several.json()["config"]["fine_tuned"] == models
    one = http.post("/comparisons", json={**body, "fine_tuned_model": models[0]})
    assert one.json()["config"]["fine_tuned"] == models[0]  # as it always was
    both = http.post(
        "/comparisons", json={**body, "fine_tuned_model": models[0], "fine_tuned_models": models}
    )
    assert both.status_code == 400 and both.json()["error"]["param"] == "fine_tuned_models"
    unknown = http.post("/comparisons", json={**body, "fine_tuned_models": ["ft:nope:x:y:z"]})
    assert unknown.status_code in (400, 404), unknown.text
