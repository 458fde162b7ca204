"""The OpenAI backend against a real llama.cpp server and a fault-injecting server (127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from concurrent.futures import ThreadPoolExecutor

import attrs
import pytest

from fnlabel import BackendError, ConfigError, Generation, GenerationFailure, GenerationParams, llm, tasks, text_of
from fnlabel.backends import config_class
from fnlabel.backends.openai import PLACEHOLDER_KEY, OpenAIConfig, openai
from tests.servers import Fault, FaultServer, shared_llama_server
from tests.servers.openai_fault import words
from tests.structured_helpers import SCHEMA, check_all_valid

pytestmark = pytest.mark.timeout(120)

SECRET = "sk-test-SECRET-0123456789"


@pytest.fixture(autouse=True)
def _no_real_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture(scope="module")
def llama_url():
    return shared_llama_server().url


def texts(out: list) -> list[list[str | None]]:
    """The texts of a backend's output (None for a failure)."""
    return [[text_of(g) for g in row] for row in out]


def fast(url: str, **kw) -> object:
    """A backend with quick retries for the fault server."""
    options = {"model": "fault-model", "base_url": url, "backoff": 0.01, "max_retries": 3, "timeout": 2.0}
    return openai(**{**options, **kw})


# --- a real OpenAI-compatible server: llama_cpp.server with the embedded model -----------------


@pytest.mark.slow
def test_llama_cpp_chat_and_completions(llama_url):
    gen = openai(model="smollm2", base_url=llama_url)
    params = GenerationParams(max_new_tokens=8, temperature=0.0)
    chat = [{"role": "user", "content": "Say hello."}]
    out = gen([chat, "The capital of France is"], params)
    assert [len(row) for row in out] == [1, 1]
    assert all(isinstance(g, Generation) and g.text.strip() for row in out for g in row)
    # greedy: the same request gives the same text
    assert texts(gen([chat], params)) == texts([out[0]])
    gen.close()


@pytest.mark.slow
def test_llama_cpp_reports_usage_finish_reasons_and_logprobs(llama_url):
    gen = openai(model="smollm2", base_url=llama_url)
    chat = [{"role": "user", "content": "Say hi"}]
    [[done]] = gen([chat], GenerationParams(max_new_tokens=64, temperature=0.0))
    [[cut]] = gen([chat], GenerationParams(max_new_tokens=3, temperature=0.0))
    assert (done.finish_reason, cut.finish_reason) == ("stop", "length") and done.logprobs is None
    for g in (done, cut):
        assert all(type(v) is int and v > 0 for v in (g.input_tokens, g.output_tokens)), g
    # the chat template's tokens (turn markers, a default system turn), the same for both
    assert done.input_tokens == cut.input_tokens > 10
    assert cut.output_tokens == 3 < done.output_tokens < 64
    [[scored]] = gen([chat], GenerationParams(max_new_tokens=6, temperature=0.0, logprobs=2))
    assert scored.logprobs is not None and len(scored.logprobs) == scored.output_tokens == 6
    assert "".join(e["token"] for e in scored.logprobs) == scored.text
    for entry in scored.logprobs:
        top = [t["logprob"] for t in entry["top_logprobs"]]
        # (the server's default repeat_penalty may pick a token below the top one, never above it)
        assert len(top) == 2 and top == sorted(top, reverse=True) and entry["logprob"] <= top[0] + 1e-6
        assert top[0] <= 0
    gen.close()


@pytest.mark.slow
def test_llama_cpp_ignores_n_and_missing_generations_are_requested_again(llama_url):
    gen = openai(model="smollm2", base_url=llama_url)
    composed = llm(
        tasks.text_generation(system_prompt="Be brief."),
        gen,
        GenerationParams(max_new_tokens=12, temperature=1.0, seed=7),
    )
    result = composed.run([{"input": "Name a fruit."}, {"input": "Name a color."}], num_generations=3)
    assert result.failures == ()
    for row in result.outputs:
        texts = [o["raw_output"] for o in row]
        assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)
        assert len(set(texts)) > 1, "each refill gets its own seed, so the generations differ"
    gen.close()


@pytest.mark.slow
def test_llama_cpp_top_k_only_where_supported(llama_url):
    params = GenerationParams(max_new_tokens=4, top_k=1, temperature=1.0)
    with pytest.raises(ConfigError, match="supports_top_k"):
        llm(tasks.text_generation(), openai(model="smollm2", base_url=llama_url), params)
    gen = openai(model="smollm2", base_url=llama_url, supports_top_k=True)
    out = llm(tasks.text_generation(system_prompt=""), gen, params)([{"input": "Hi"}], num_generations=2)
    texts = [o["raw_output"] for o in out[0]]
    assert texts[0] == texts[1], "top_k=1 is greedy: it reached the server"
    gen.close()


@pytest.mark.slow
def test_llama_cpp_inside_a_running_event_loop(llama_url):
    gen = openai(model="smollm2", base_url=llama_url)

    async def main():
        sync = gen(["Hello"], GenerationParams(max_new_tokens=4, temperature=0.0))
        awaited = await gen.agenerate(["Hello"], GenerationParams(max_new_tokens=4, temperature=0.0))
        return sync, awaited

    sync, awaited = asyncio.run(main())
    assert sync == awaited and isinstance(sync[0][0], Generation) and sync[0][0].text
    gen.close()


# --- the fault-injecting server -----------------------------------------------------------------

SCRIPT = {
    "rate-limited": [Fault.rate_limit(0.2), Fault.rate_limit(0.2)],
    "flaky": [Fault.error(500), Fault.error(503)],
    "always-500": Fault.error(500, "the model crashed"),
    "dropped": [Fault.drop()],
    "garbled": [Fault.malformed()],
    "sluggish": [Fault.slow(10)],
    "stingy": Fault.fewer(1),
}


def test_every_generation_arrives_or_is_reported_for_its_row(caplog):
    rows = ["ok-1", "rate-limited", "flaky", "always-500", "dropped", "garbled", "sluggish", "stingy", "ok-2"]
    with FaultServer(script=SCRIPT) as srv:
        gen = fast(srv.url, timeout=1.0)
        composed = llm(tasks.text_generation(system_prompt=""), gen, GenerationParams(seed=5), prompt_format="default")
        start = time.monotonic()
        result = composed.run([{"input": r} for r in rows], num_generations=2)
        elapsed = time.monotonic() - start
        gen.close()
    assert elapsed < 20
    failed_rows = {f.row for f in result.failures}
    assert failed_rows == {rows.index("always-500")}
    assert [(f.generation, f.stage) for f in result.failures] == [(0, "backend"), (1, "backend")]
    assert all("the model crashed" in f.error and "gave up after 4 attempts" in f.error for f in result.failures)
    for i, row in enumerate(result.outputs):
        texts = [o["raw_output"] for o in row]
        if i in failed_rows:
            assert texts == [None, None]
        else:
            assert len(texts) == 2 and all(t.startswith(rows[i]) for t in texts), (rows[i], texts)
    # n=2 was answered with one choice for "stingy": the second came from one more request, own seed
    stingy = [o["raw_output"] for o in result.outputs[rows.index("stingy")]]
    assert (
        stingy[0] == "stingy [gen 0 seed 5]" and stingy[1].startswith("stingy [gen 0 seed ") and stingy[1] != stingy[0]
    )
    assert srv.count("always-500") == 4  # 1 attempt + max_retries=3
    assert "row 3 generation 0 failed" in caplog.text and "row 3 generation 1 failed" in caplog.text


def test_random_faults_never_lose_or_mix_up_a_generation():
    import random
    import threading

    rng, lock = random.Random(0), threading.Lock()
    faults = [
        Fault.error(500),
        Fault.rate_limit(0.01),
        Fault.drop(),
        Fault.malformed(),
        Fault.fewer(1),
        Fault.slow(5),
        Fault.error(400, "refused"),
    ]

    def script(body, path):
        with lock:
            return rng.choice(faults) if rng.random() < 0.3 else None

    prompts = [f"row-{i}" if i % 2 else [{"role": "user", "content": f"row-{i}"}] for i in range(120)]
    with FaultServer(script=script) as srv:
        gen = fast(srv.url, timeout=0.5, max_retries=4, max_concurrency=16)
        out = gen(prompts, GenerationParams(num_generations=3, seed=9))
        gen.close()
    assert len(out) == 120 and all(len(row) == 3 for row in out)
    failures = 0
    for i, row in enumerate(out):
        for g in row:
            if isinstance(g, GenerationFailure):
                failures += 1
                assert "refused" in g.error or "gave up" in g.error
            else:
                assert g.text.startswith(f"row-{i} [gen "), (i, g)
        arrived = [g.text for g in row if isinstance(g, Generation)]
        assert len(set(arrived)) == len(arrived), "no generation is duplicated by a refill"
    assert 0 < failures < 120, "some requests were refused (400), most arrived"


def test_retry_after_is_honoured():
    with FaultServer(script={"slow-down": [Fault.rate_limit(0.6)]}) as srv:
        gen = fast(srv.url)
        assert texts(gen(["slow-down"], GenerationParams())) == [["slow-down [gen 0 seed None]"]]
        gen.close()
    first, second = srv.requests
    assert first.fault == "status" and second.fault == "ok"
    assert second.at - first.at >= 0.55, "the client waited as long as Retry-After asked (backoff alone: ~0.01 s)"


def test_other_4xx_fail_fast_with_the_server_message():
    with FaultServer(script={"too-long": Fault.error(400, "maximum context length is 2048 tokens")}) as srv:
        gen = fast(srv.url)
        out = gen(["too-long", "fine"], GenerationParams())
        gen.close()
    assert srv.count("too-long") == 1, "a 400 is not retried"
    failure = out[0][0]
    assert isinstance(failure, GenerationFailure)
    assert "HTTP 400" in failure.error and "maximum context length is 2048 tokens" in failure.error
    assert texts(out[1:]) == [["fine [gen 0 seed None]"]]


def test_auth_error_aborts_the_call_and_says_how_to_fix():
    with FaultServer(script={"": Fault.error(401, "Invalid API key")}) as srv:
        gen = fast(srv.url)
        with pytest.raises(BackendError, match="Invalid API key.*export OPENAI_API_KEY"):
            gen(["a", "b"], GenerationParams())
        gen.close()
    assert srv.count() <= 2


def test_timeouts_and_dropped_connections_exhaust_retries_without_hanging():
    with FaultServer(script={"stuck": Fault.slow(30), "gone": Fault.drop()}) as srv:
        gen = fast(srv.url, timeout=0.3, max_retries=2)
        start = time.monotonic()
        out = gen(["stuck", "gone", "fine"], GenerationParams())
        elapsed = time.monotonic() - start
        gen.close()
    assert elapsed < 5
    assert "TimeoutError" in out[0][0].error and "gave up after 3 attempts" in out[0][0].error
    assert isinstance(out[1][0], GenerationFailure) and "gave up after 3 attempts" in out[1][0].error
    assert texts(out[2:]) == [["fine [gen 0 seed None]"]]
    assert srv.count("stuck") == 3 and srv.count("gone") == 3


def test_sync_generate_inside_a_running_event_loop():
    with FaultServer(latency=0.05) as srv:
        gen = fast(srv.url)

        async def main():
            ticks = 0

            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            task = asyncio.create_task(ticker())
            awaited = await gen.agenerate(["a", "b"], GenerationParams())  # the caller's loop keeps running
            blocking = gen(["c"], GenerationParams())  # the sync form blocks this loop but cannot deadlock
            task.cancel()
            return awaited, blocking, ticks

        awaited, blocking, ticks = asyncio.run(main())
        gen.close()
    assert texts(awaited) == [["a [gen 0 seed None]"], ["b [gen 0 seed None]"]]
    assert texts(blocking) == [["c [gen 0 seed None]"]]
    assert ticks >= 2


def test_concurrency_is_bounded():
    with FaultServer(latency=0.1) as srv:
        gen = fast(srv.url, max_concurrency=4)
        out = gen([f"p{i}" for i in range(16)], GenerationParams())
        gen.close()
    assert [row[0].text.split()[0] for row in out] == [f"p{i}" for i in range(16)]
    assert srv.max_in_flight == 4


def test_native_n_and_learned_fan_out():
    with FaultServer(ignore_n=True) as srv:
        gen = fast(srv.url)
        first = gen(["a"], GenerationParams(num_generations=3, seed=1))
        asked_first = [s.body["n"] for s in srv.requests]
        srv.reset()
        second = gen(["b"], GenerationParams(num_generations=3, seed=1))
        asked_second = [s.body["n"] for s in srv.requests]
        gen.close()
    assert asked_first == [3, 1, 1] and asked_second == [1, 1, 1]
    assert len(set(texts(first)[0])) == 3 and len(set(texts(second)[0])) == 3
    with FaultServer() as srv:
        gen = fast(srv.url)
        out = gen(["c"], GenerationParams(num_generations=3))
        gen.close()
    assert [s.body["n"] for s in srv.requests] == [3]
    assert texts(out) == [[f"c [gen {i} seed None]" for i in range(3)]]


def vllm_rules(body: dict, _path: str) -> Fault | None:
    """What vLLM's OpenAI server answers for n > 1 at temperature 0 (its SamplingParams refuses it)."""
    if body.get("temperature") == 0 and (body.get("n") or 1) > 1:
        return Fault.error(400, f"n must be 1 when using greedy sampling, got {body['n']}.")
    return None


def test_greedy_asks_for_one_choice_and_repeats_it():
    # every greedy generation is the same text: one choice stands for all (as in the local backends),
    # so a server that refuses n > 1 at temperature 0 (vLLM) still serves every row
    with FaultServer(script=vllm_rules) as srv:
        gen = fast(srv.url)
        out = gen(
            ["a", [{"role": "user", "content": "b"}]], GenerationParams(temperature=0.0, num_generations=3, seed=5)
        )
        gen.close()
    assert texts(out) == [["a [gen 0 seed 5]"] * 3, ["b [gen 0 seed 5]"] * 3]
    assert sorted(s.body["n"] for s in srv.requests) == [1, 1]


def test_a_stop_string_the_server_kept_is_cut():
    # TGI's messages API keeps the stop sequence in the text (this test server ignores stop
    # altogether); OpenAI, vLLM and llama.cpp leave it out, and so does every fnlabel backend
    with FaultServer() as srv:
        gen = fast(srv.url)
        out = gen(["alpha. beta", [{"role": "user", "content": "gamma. delta"}]], GenerationParams(stop=[". "]))
        gen.close()
    assert texts(out) == [["alpha"], ["gamma"]]


def test_params_reach_the_request_body_and_endpoints_follow_the_prompt_type():
    with FaultServer() as srv:
        gen = fast(srv.url, supports_top_k=True, extra_body={"min_p": 0.05, "nested": {"a": [1]}})
        params = GenerationParams(
            max_new_tokens=9,
            temperature=0.3,
            top_p=0.8,
            top_k=20,
            frequency_penalty=0.5,
            presence_penalty=-0.5,
            seed=11,
            stop=["\n\n", "###"],
        )
        gen(["plain", [{"role": "user", "content": "chat"}]], params)
        gen.close()
    paths = sorted(s.path for s in srv.requests)
    assert paths == ["/v1/chat/completions", "/v1/completions"]
    for seen in srv.requests:
        body = seen.body
        assert body["model"] == "fault-model" and body["max_tokens"] == 9 and body["n"] == 1
        assert (body["temperature"], body["top_p"], body["top_k"]) == (0.3, 0.8, 20)
        assert (body["frequency_penalty"], body["presence_penalty"], body["seed"]) == (0.5, -0.5, 11)
        assert body["stop"] == ["\n\n", "###"] and body["min_p"] == 0.05 and body["nested"] == {"a": [1]}


def test_usage_of_n_choices_is_split_so_that_it_adds_up():
    # the fake counts words: the prompt once, the output of all choices together (as OpenAI reports n > 1)
    with FaultServer() as srv:
        gen = fast(srv.url)
        prompts = ["alpha beta", [{"role": "user", "content": "a longer chat prompt of seven words"}]]
        out = gen(prompts, GenerationParams(num_generations=3, seed=100))
        gen.close()
    assert [s.body["n"] for s in srv.requests] == [3, 3], "one request of 3 choices per prompt"
    for row, prompt_words in zip(out, [2, 7]):
        assert sum(g.input_tokens for g in row) == prompt_words  # the server's prompt_tokens
        assert sum(g.output_tokens for g in row) == sum(words(g.text) for g in row)  # its completion_tokens
        assert max(g.input_tokens for g in row) - min(g.input_tokens for g in row) <= 1, "the prompt, evenly"
        assert all(g.finish_reason == "stop" and g.logprobs is None for g in row)
    assert [g.input_tokens for g in out[0]] == [1, 1, 0]  # 2 words over 3 choices: whole numbers, exact sum


def test_max_new_tokens_reached_is_finish_reason_length():
    with FaultServer() as srv:
        gen = fast(srv.url)
        prompts = ["plain", [{"role": "user", "content": "chat"}]]
        cut, done = gen(prompts, GenerationParams(max_new_tokens=3)), gen(prompts, GenerationParams(max_new_tokens=4))
        gen.close()
    assert [g.finish_reason for [g] in cut] == ["length", "length"]
    assert [g.finish_reason for [g] in done] == ["stop", "stop"]


def test_logprobs_are_asked_for_and_parsed_per_endpoint():
    with FaultServer() as srv:
        gen = fast(srv.url)
        plain, chat = gen(["one two", [{"role": "user", "content": "three"}]], GenerationParams(logprobs=2))
        unasked = gen(["one two", [{"role": "user", "content": "three"}]], GenerationParams())
        gen.close()
    sent = {s.path: s.body for s in srv.requests[:2]}
    assert (sent["/v1/chat/completions"]["logprobs"], sent["/v1/chat/completions"]["top_logprobs"]) == (True, 2)
    assert sent["/v1/completions"]["logprobs"] == 2 and "top_logprobs" not in sent["/v1/completions"]
    assert all("logprobs" not in s.body and "top_logprobs" not in s.body for s in srv.requests[2:])
    # the fake: each word of the text is a token of logprob -0.5; "x" (-2.0) is the other candidate
    [g] = plain
    assert g.logprobs == tuple(
        {"token": w, "logprob": -0.5, "top_logprobs": [{"token": w, "logprob": -0.5}, {"token": "x", "logprob": -2.0}]}
        for w in g.text.split(" ")
    )
    [g] = chat
    assert g.logprobs == tuple(
        {"token": w, "logprob": -0.5, "top_logprobs": [{"token": "x", "logprob": -2.0}]} for w in g.text.split(" ")
    )
    assert [g.logprobs for [g] in unasked] == [None, None]


def test_threads_share_one_backend():
    with FaultServer(latency=0.02) as srv:
        gen = fast(srv.url, max_concurrency=8)
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda i: gen([f"t{i}-{j}" for j in range(5)], GenerationParams()), range(4)))
        gen.close()
        again = gen(["after close"], GenerationParams())  # a closed backend reopens on the next call
        gen.close()
    assert [[row[0].text.split()[0] for row in out] for out in outs] == [
        [f"t{i}-{j}" for j in range(5)] for i in range(4)
    ]
    assert texts(again) == [["after close [gen 0 seed None]"]]
    assert srv.max_in_flight <= 8


# --- config, keys and secrets -------------------------------------------------------------------


def test_missing_key_is_a_clear_config_error(monkeypatch):
    with pytest.raises(ConfigError, match=r"OPENAI_API_KEY is not set.*export OPENAI_API_KEY=.*api_key_env"):
        openai(model="gpt-4o-mini")
    monkeypatch.setenv("MY_KEY", SECRET)
    assert openai(model="gpt-4o-mini", api_key_env="MY_KEY").model_name == "gpt-4o-mini"


def test_key_is_sent_but_never_shown(monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with FaultServer(script={"boom": Fault.error(500, "boom")}) as srv:
        config = OpenAIConfig(model="m", base_url=srv.url, backoff=0.01, max_retries=1)
        gen = config.build()
        out = llm(tasks.text_generation(), gen).run([{"input": "fine"}, {"input": "boom"}])
        gen.close()
    assert {s.headers.get("Authorization") for s in srv.requests} == {f"Bearer {SECRET}"}
    assert [f.row for f in out.failures] == [1]
    shown = [repr(config), str(config), repr(gen), str(attrs.asdict(config)), caplog.text, str(out)]
    assert all(SECRET not in text for text in shown)
    assert SECRET.encode() not in pickle.dumps(config) and SECRET.encode() not in pickle.dumps(gen)


def test_local_server_gets_a_placeholder_key():
    with FaultServer() as srv:
        gen = fast(srv.url)
        gen(["x"], GenerationParams())
        gen.close()
    assert srv.requests[0].headers["Authorization"] == f"Bearer {PLACEHOLDER_KEY}"


def test_config_is_a_validated_hashable_picklable_record():
    assert config_class("openai") is OpenAIConfig
    a = OpenAIConfig(model="m", extra_body={"x": [1, 2]})
    b = OpenAIConfig(model="m", extra_body={"x": [1, 2]})
    assert a == b and hash(a) == hash(b) and pickle.loads(pickle.dumps(a)) == a
    for bad in (
        {"max_concurrency": 0},
        {"timeout": -1},
        {"max_retries": -1},
        {"extra_body": [1]},
        {"model": ""},
        {"max_tokens_param": "tokens"},
        {"prompt_format": "nope"},
    ):
        with pytest.raises(ConfigError):
            OpenAIConfig(**{"model": "m", **bad})


def test_backend_pickles_by_config():
    with FaultServer() as srv:
        gen = fast(srv.url)
        clone = pickle.loads(pickle.dumps(gen))
        assert clone.config == gen.config
        assert texts(clone(["p"], GenerationParams())) == [["p [gen 0 seed None]"]]
        clone.close()
        gen.close()


# --- structured output ---------------------------------------------------------------------------


def test_each_dialect_asks_for_a_structured_output_its_own_way():
    chat = [{"role": "user", "content": "hi"}]
    with FaultServer() as srv:
        for dialect in ("openai", "vllm", "llama-cpp"):
            gen = fast(srv.url, structured_output_dialect=dialect)
            gen([chat], GenerationParams(structured_output={"json_schema": SCHEMA}))
            if dialect != "openai":
                gen([chat], GenerationParams(structured_output={"choice": ["yes", "no"]}))
            gen.close()
    openai_body, vllm_json, vllm_choice, llama_json, llama_choice = (s.body for s in srv.requests)
    sent = {**SCHEMA, "properties": {**SCHEMA["properties"], "name": {"type": "string"}}}  # no maxLength: refused
    assert openai_body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": sent, "strict": True},
    }
    assert vllm_json["structured_outputs"] == {"json": SCHEMA}
    assert vllm_choice["structured_outputs"] == {"choice": ["yes", "no"]}
    assert 'age ::= ("18" | "19"' in llama_json["grammar"], "an integer range is part of the grammar"
    assert llama_choice["grammar"] == 'root ::= "yes" | "no"'


def test_a_structured_output_the_dialect_cannot_ask_for_is_refused_before_any_request():
    with FaultServer() as srv:
        with pytest.raises(ConfigError, match=r"structured_output_dialect 'openai'.*cannot constrain .* to a choice"):
            llm(tasks.text_generation(), fast(srv.url), GenerationParams(structured_output={"choice": ["a"]}))
    assert srv.requests == []


@pytest.mark.slow
def test_llama_cpp_server_keeps_to_a_json_schema(llama_url):
    gen = fast(llama_url, structured_output_dialect="llama-cpp", native_n=False, timeout=300.0, max_concurrency=4)
    check_all_valid(gen, "llama-cpp-python server")
    gen.close()
