"""The llamacpp engine: OpenAI's settings as llama-server's. Against a live llama-server:
tests/infer/test_served.py, and the API's own suite (tests/api, `engine`)."""

from __future__ import annotations

from tunesmith.infer.llamacpp import request_body
from tunesmith.infer.sampling import SamplingParams


def test_openai_settings_become_llama_servers_with_its_own_samplers_off():
    params = SamplingParams(
        max_tokens=7,
        temperature=0.5,
        top_p=0.9,
        seed=-1,
        logit_bias={5: -100.0},
        logprobs=True,
        top_logprobs=2,
        presence_penalty=0.5,
    )
    body = request_body([1, 2, 3], params, adapter=1, adapters=3)
    assert (body["prompt"], body["n_predict"], body["stream"]) == ([1, 2, 3], 7, True)
    # top-k 40 and min-p 0.05 are llama.cpp's defaults: left on, they would cut OpenAI's sampling
    assert (body["top_k"], body["min_p"], body["repeat_penalty"]) == (0, 0.0, 1.0)
    assert body["samplers"].index("temperature") < body["samplers"].index("top_p")
    assert body["seed"] == 2**32 - 1  # -1 means "random" to llama.cpp: reduced like any other
    assert body["lora"] == [
        {"id": 0, "scale": 0.0},
        {"id": 1, "scale": 1.0},
        {"id": 2, "scale": 0.0},
    ]
    assert body["logit_bias"] == [[5, -100.0]] and body["n_probs"] == 2
    base = request_body([1], SamplingParams(temperature=0), None, 0)
    assert base["temperature"] == 0 and "lora" not in base and "seed" not in base
