"""The Inference Endpoints backend against a TGI-protocol server and a real llama.cpp server (127.0.0.1)."""

from __future__ import annotations

import pickle
import time

import pytest

from fnlabel import ConfigError, Generation, GenerationFailure, GenerationParams, llm, tasks, text_of
from fnlabel.backends import config_class
from fnlabel.backends.inference_endpoints import InferenceEndpointsConfig, inference_endpoints
from tests.servers import Fault, TGIServer, shared_llama_server

pytestmark = pytest.mark.timeout(120)

SECRET = "hf_SECRETtoken0123456789"


def fast(url: str, **kw) -> object:
    options = {"base_url": url, "model_id": "org/model", "backoff": 0.01, "max_retries": 3, "timeout": 2.0}
    return inference_endpoints(**{**options, **kw})


def texts(out: list) -> list[list[str | None]]:
    """The texts of a backend's output (None for a failure)."""
    return [[text_of(g) for g in row] for row in out]


def params_of(seen) -> dict:
    return seen.body["parameters"]


def test_text_generation_params_and_distinct_seeds_per_generation():
    with TGIServer() as srv:
        gen = fast(srv.url, repetition_penalty=1.2)
        params = GenerationParams(
            max_new_tokens=7, temperature=0.5, top_k=40, top_p=0.9, frequency_penalty=0.3, seed=42, stop=["</s>"]
        )
        out = gen(["one", "two"], params.replace(num_generations=3))
        gen.close()
    assert len(srv.requests) == 6 and {s.path for s in srv.requests} == {"/"}
    for seen in srv.requests:
        p = params_of(seen)
        assert (p["max_new_tokens"], p["do_sample"], p["temperature"], p["top_k"], p["top_p"]) == (
            7,
            True,
            0.5,
            40,
            0.9,
        )
        assert (p["frequency_penalty"], p["repetition_penalty"], p["stop"], p["return_full_text"]) == (
            0.3,
            1.2,
            ["</s>"],
            False,
        )
    out = texts(out)
    for text, row in zip(["one", "two"], out):
        seeds = [g.split("seed ")[1].split()[0] for g in row]
        assert all(g.startswith(text) for g in row)
        assert seeds[0] == "42" and len(set(seeds)) == 3, "generation 0 keeps the seed, the others derive theirs"
    assert out[0][1:] == [g.replace("two", "one") for g in out[1][1:]], "seeds depend on (seed, i) only"


def test_greedy_and_defaults_are_not_sent_as_values_tgi_rejects():
    with TGIServer() as srv:
        gen = fast(srv.url)
        gen(["g"], GenerationParams(temperature=0.0, top_p=1.0))
        gen.close()
    p = params_of(srv.requests[0])
    assert p["do_sample"] is False
    assert "temperature" not in p and "top_p" not in p and "top_k" not in p and "frequency_penalty" not in p
    assert isinstance(p["seed"], int), "an unseeded call still sends a (random) seed per generation"


def test_chat_prompts_go_to_chat_completion_with_fan_out():
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    with TGIServer() as srv:
        gen = fast(srv.url)
        out = gen([chat], GenerationParams(num_generations=2, seed=3, max_new_tokens=5, presence_penalty=0.4))
        gen.close()
    assert [s.path for s in srv.requests] == ["/v1/chat/completions"] * 2
    bodies = [s.body for s in srv.requests]
    assert all(b["model"] == "org/model" and b["max_tokens"] == 5 and b["presence_penalty"] == 0.4 for b in bodies)
    assert all(b["messages"] == chat for b in bodies)
    assert sorted(b["seed"] for b in bodies)[0] != sorted(b["seed"] for b in bodies)[1]
    assert out[0][0].text == "Be brief.\nhello [chat seed 3]" and out[0][1].text != out[0][0].text


def test_stop_sequences_are_not_part_of_the_output():
    # TGI keeps the stop sequence in the generated text; every fnlabel backend leaves it out
    chat = [{"role": "user", "content": "alpha. beta"}]
    with TGIServer() as srv:
        gen = fast(srv.url)
        out = gen(["alpha. beta", chat], GenerationParams(stop=[". ", "zzz"], num_generations=2))
        gen.close()
    sent = [params_of(s) if s.path == "/" else s.body for s in srv.requests]
    assert [p["stop"] for p in sent] == [[". ", "zzz"]] * 4
    assert texts(out) == [["alpha"] * 2, ["alpha"] * 2]


def test_text_generation_reports_finish_reason_and_token_counts():
    # the fake counts words: the prompt's (prefill) and the generated text's
    with TGIServer() as srv:
        gen = fast(srv.url)
        [[done]], [[cut]] = (
            gen(["three word prompt"], GenerationParams(seed=1)),
            gen(["three word prompt"], GenerationParams(max_new_tokens=3, seed=1)),
        )
        gen.close()
    assert all(params_of(s)["details"] is True and params_of(s)["decoder_input_details"] is True for s in srv.requests)
    assert done.text == "three word prompt [seed 1 sample True]"
    assert (done.finish_reason, done.input_tokens, done.output_tokens) == ("stop", 3, 7)  # TGI's "eos_token"
    assert (cut.finish_reason, cut.input_tokens) == ("length", 3) and done.logprobs is None


def test_chat_completion_reports_finish_reason_and_usage():
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    with TGIServer() as srv:
        gen = fast(srv.url)
        [[done]], [[cut]] = gen([chat], GenerationParams(seed=3)), gen([chat], GenerationParams(max_new_tokens=3))
        gen.close()
    assert done.text == "Be brief.\nhello there [chat seed 3]"
    # usage: the messages' words (4) and the answer's (7)
    assert (done.finish_reason, done.input_tokens, done.output_tokens) == ("stop", 4, 7)
    assert cut.finish_reason == "length"


def test_logprobs_are_refused_when_composed():
    with TGIServer() as srv:
        gen = fast(srv.url)
        with pytest.raises(ConfigError, match="cannot return logprobs"):
            llm(tasks.text_generation(), gen, GenerationParams(logprobs=1))
        assert not gen.supports_logprobs
        gen.close()
    assert srv.requests == []


def test_params_it_cannot_honour_are_refused_before_any_request():
    with TGIServer() as srv:
        gen = fast(srv.url)
        with pytest.raises(ConfigError, match="presence_penalty"):
            gen(["text"], GenerationParams(presence_penalty=0.5))
        with pytest.raises(ConfigError, match="top_k"):
            gen([[{"role": "user", "content": "chat"}]], GenerationParams(top_k=5))
        gen.close()
        # TGI's chat_completion has no repetition_penalty: the config's value is refused, not dropped
        gen = fast(srv.url, repetition_penalty=1.3)
        with pytest.raises(ConfigError, match="repetition_penalty"):
            gen([[{"role": "user", "content": "chat"}]], GenerationParams())
        gen.close()
    assert srv.requests == []


def test_faults_are_retried_and_a_dead_row_fails_alone():
    script = {
        "overloaded": [Fault.rate_limit(0.3)],
        "flaky": [Fault.error(503)],
        "always-500": Fault.error(500, "CUDA out of memory"),
        "dropped": [Fault.drop()],
        "garbled": [Fault.malformed()],
        "sluggish": [Fault.slow(10)],
        "refused": Fault.error(422, "Input validation error: inputs too long"),
    }
    rows = ["ok", "overloaded", "flaky", "always-500", "dropped", "garbled", "sluggish", "refused", "chat-flaky"]
    with TGIServer(script=script) as srv:
        gen = fast(srv.url, timeout=1.0)
        composed = llm(tasks.text_generation(system_prompt=""), gen, GenerationParams(seed=1), prompt_format="default")
        start = time.monotonic()
        result = composed.run([{"input": r} for r in rows])
        elapsed = time.monotonic() - start
        chat = gen([[{"role": "user", "content": "flaky chat"}]], GenerationParams(seed=1))
        gen.close()
    assert elapsed < 20
    by_row = {f.row: f.error for f in result.failures}
    assert set(by_row) == {rows.index("always-500"), rows.index("refused")}
    assert (
        "CUDA out of memory" in by_row[rows.index("always-500")]
        and "gave up after 4" in by_row[rows.index("always-500")]
    )
    assert "inputs too long" in by_row[rows.index("refused")] and "not retried" in by_row[rows.index("refused")]
    assert srv.count("refused") == 1 and srv.count("always-500") == 4
    for i, row in enumerate(result.outputs):
        if i not in by_row:
            assert row[0]["raw_output"] == f"{rows[i]} [seed 1 sample True]"
    assert texts(chat) == [["flaky chat [chat seed 1]"]]
    overloaded = [s for s in srv.requests if "overloaded" in str(s.body)]
    assert overloaded[1].at - overloaded[0].at >= 0.25, "Retry-After of the 429 was honoured"


def test_exhausted_retries_give_generation_failures():
    with TGIServer(script={"down": Fault.error(502, "bad gateway")}) as srv:
        gen = fast(srv.url, max_retries=1)
        out = gen(["down", "up"], GenerationParams(num_generations=2))
        gen.close()
    assert all(isinstance(g, GenerationFailure) and "bad gateway" in g.error for g in out[0])
    assert all(isinstance(g, Generation) and g.text.startswith("up") for g in out[1])


def test_concurrency_is_bounded():
    with TGIServer(latency=0.1) as srv:
        gen = fast(srv.url, max_concurrency=3)
        out = gen([f"p{i}" for i in range(4)], GenerationParams(num_generations=3))
        gen.close()
    assert [[g.text.split()[0] for g in row] for row in out] == [[f"p{i}"] * 3 for i in range(4)]
    assert srv.max_in_flight == 3


@pytest.mark.slow
def test_chat_completion_against_a_real_server():
    url = shared_llama_server().url.removesuffix("/v1")
    gen = inference_endpoints(base_url=url, model_id="smollm2")
    out = gen(
        [[{"role": "user", "content": "Say hi."}]],
        GenerationParams(max_new_tokens=6, temperature=0.0, num_generations=2),
    )
    assert len(out[0]) == 2 and all(isinstance(g, Generation) and g.text.strip() for g in out[0])
    gen.close()


def test_config_validation_and_token_handling(monkeypatch, tmp_path):
    assert config_class("inference-endpoints") is InferenceEndpointsConfig
    for bad in (
        {},
        {"endpoint_name": "e", "base_url": "http://x"},
        {"base_url": "http://x", "namespace": "ns"},
        {"base_url": "http://x", "max_concurrency": 0},
        {"base_url": "http://x", "provider": "together"},
        {"model_id": "m", "repetition_penalty": 0},
    ):
        with pytest.raises(ConfigError):
            InferenceEndpointsConfig(**bad)
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "token"))  # no saved login
    monkeypatch.setattr(hf_constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    with pytest.raises(ConfigError, match=r"HF_TOKEN is not set.*export HF_TOKEN=.*hf auth login"):
        inference_endpoints(endpoint_name="my-endpoint", namespace="me")
    assert inference_endpoints(base_url="http://127.0.0.1:1").model_name == "http://127.0.0.1:1"
    monkeypatch.setenv("HF_TOKEN", SECRET)
    config = InferenceEndpointsConfig(endpoint_name="my-endpoint", namespace="me")
    gen = config.build()
    assert SECRET not in repr(gen) and SECRET not in repr(config)
    assert SECRET.encode() not in pickle.dumps(gen) and pickle.loads(pickle.dumps(config)) == config
    assert hash(config) == hash(InferenceEndpointsConfig(endpoint_name="my-endpoint", namespace="me"))


def test_token_is_sent_to_the_server(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with TGIServer() as srv:
        gen = fast(srv.url)
        gen(["x"], GenerationParams())
        gen.close()
    assert srv.requests[0].headers["Authorization"] == f"Bearer {SECRET}"


def test_structured_outputs_are_tgi_grammars():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    chat = [{"role": "user", "content": "hi"}]
    with TGIServer() as srv:
        gen = fast(srv.url)
        gen(["one"], GenerationParams(structured_output={"json_schema": schema}))
        gen(["two"], GenerationParams(structured_output={"choice": ["a.b", "c"]}))
        gen([chat], GenerationParams(structured_output={"regex": "[0-9]+"}))
        gen.close()
    json_seen, choice_seen, chat_seen = srv.requests
    assert params_of(json_seen)["grammar"] == {"type": "json", "value": schema}
    assert params_of(choice_seen)["grammar"] == {"type": "regex", "value": r"(a\.b|c)"}
    assert chat_seen.body["response_format"] == {"type": "regex", "value": "[0-9]+"}
