"""The vllm engine: OpenAI's settings as vLLM's completion request, its streamed chunks read back
as token ids, and a running server that serves another model refused by name. Against a live
vLLM: tests/infer/test_served.py, and the API's own suite (tests/api, `engine`)."""

from __future__ import annotations

import pytest

from tunesmith.errors import TunesmithError
from tunesmith.infer.sampling import SamplingParams
from tunesmith.infer.served import ServerProcess
from tunesmith.infer.vllm import read_chunk, request_body


def test_openai_settings_become_vllms_with_its_own_samplers_off():
    params = SamplingParams(
        guide="json", max_tokens=7, seed=-1, temperature=0.5, top_p=0.9, frequency_penalty=0.5,
        logprobs=True, top_logprobs=2, logit_bias={5: -100.0},
    )  # fmt: skip
    body = request_body([1, 2, 3], params, "lora-1", {2, 0})
    assert (body["model"], body["prompt"], body["max_tokens"]) == ("lora-1", [1, 2, 3], 7)
    # the model's generation_config.json would otherwise set them
    assert (body["top_k"], body["min_p"], body["repetition_penalty"]) == (0, 0.0, 1.0)
    assert (body["seed"], body["frequency_penalty"]) == (-1, 0.5)
    assert body["logit_bias"] == {"5": -100.0} and body["stop_token_ids"] == [0, 2]
    assert body["logprobs"] == 2 and body["return_tokens_as_token_ids"]
    assert body["return_token_ids"] and body["structured_outputs"] == {"json_object": True}
    greedy = request_body([1], SamplingParams(temperature=0), "base", set())
    assert greedy["temperature"] == 0 and "seed" not in greedy and "logprobs" not in greedy


def test_a_streamed_chunk_gives_its_token_ids_log_probs_and_finish():
    chunk = {
        "choices": [
            {
                "index": 0,
                "text": " Hi",
                "token_ids": [17, 42],
                "logprobs": {
                    "token_logprobs": [-0.5, -1.0],
                    "tokens": ["token_id:17", "token_id:42"],
                    "top_logprobs": [
                        {"token_id:9": -2.0, "token_id:17": -0.5},
                        {"token_id:42": -1.0},
                    ],
                },
                "finish_reason": None,
            }
        ]
    }
    tokens, finish = read_chunk(chunk)
    assert [t for t, _ in tokens] == [17, 42] and finish is None
    first = tokens[0][1]
    assert first is not None and (first.logprob, first.top) == (-0.5, [(17, -0.5), (9, -2.0)])
    last = {"choices": [{"index": 0, "text": "", "token_ids": [], "finish_reason": "length"}]}
    assert read_chunk(last) == ([], "length")
    assert read_chunk({"choices": [{"token_ids": [2], "finish_reason": "stop"}]}) == (
        [(2, None)],
        "stop",
    )
    with pytest.raises(TunesmithError) as failed:
        read_chunk({"error": {"message": "EngineCore died", "code": 500}})
    assert failed.value.status == 502  # the server's failure, not the client's


def test_an_address_that_is_not_a_servers_is_refused():
    for url in ("localhost:8000", "https://fleet/v1", "http://fleet:8000/v1"):
        with pytest.raises(TunesmithError, match="http://host:port"):
            ServerProcess.attach("vLLM", url)
    assert ServerProcess.attach("vLLM", "http://fleet:8001").port == 8001
