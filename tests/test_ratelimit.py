"""Request and token budgets of the HTTP backends, against a local server that answers 429 above its limits."""

from __future__ import annotations

import asyncio

import pytest

from fnlabel import ConfigError, GenerationParams, llm, tasks
from fnlabel.backends.inference_endpoints import inference_endpoints
from fnlabel.backends.openai import openai
from fnlabel.backends.ratelimit import HEADROOM, RateLimiter, estimate_tokens, parse_reset
from tests.servers import TGIServer
from tests.servers.limited import LimitedServer, charge

pytestmark = pytest.mark.timeout(120)

TG = tasks.text_generation(system_prompt="")
PARAMS = GenerationParams(max_new_tokens=16, temperature=0.0)


def rows(n: int) -> list[dict]:
    return [{"input": f"question number {i}"} for i in range(n)]


def backend(url: str, **kw) -> object:
    options = {"model": "m", "base_url": url, "backoff": 0.05, "max_retries": 8, "max_concurrency": 16}
    return openai(**{**options, **kw})


def test_a_request_budget_sends_nothing_over_the_limit_and_reaches_nine_tenths_of_it():
    # 40 requests per 2 s window = 1200 per minute
    with LimitedServer(requests=40, window=2.0, latency=0.01) as srv:
        gen = llm(TG, backend(srv.url, max_requests_per_minute=1200), PARAMS)
        out = gen(rows(150))
        gen.close()
    assert all(o[0]["raw_output"] for o in out)
    assert srv.rejected == 0, "no request over the limit"
    rate = (srv.admitted - 1) / (srv.last - srv.first)
    assert rate >= 0.9 * 20, f"{rate:.1f} requests/s of the 20 allowed"


def test_a_token_budget_sends_nothing_over_the_limit_and_reaches_nine_tenths_of_it():
    # 2000 tokens per 2 s window = 60000 per minute; each request is charged ~30 tokens on arrival
    # (its max_tokens) and ~12 once answered (its usage): the budget is given back as answers come
    with LimitedServer(tokens=2000, window=2.0, latency=0.01) as srv:
        gen = llm(TG, backend(srv.url, max_tokens_per_minute=60000), PARAMS)
        out = gen(rows(600))
        gen.close()
    assert all(o[0]["raw_output"] for o in out)
    assert srv.rejected == 0, "no request over the limit"
    rate = srv.charged / (srv.last - srv.first)
    assert rate >= 0.9 * 1000, f"{rate:.0f} tokens/s of the 1000 allowed"


def test_without_a_budget_the_servers_headers_hold_requests_back():
    # 10 requests per second, 16 in flight at most. Measured for 60 requests: a client without a
    # limiter gets ~150 429s; one that only waits out each 429's Retry-After ~30; this one, which
    # sends no more than x-ratelimit-remaining-requests allows until the reset, 6 (the first 16 leave
    # before any answer says where the limit stands)
    with LimitedServer(requests=10, window=1.0) as srv:
        gen = llm(TG, backend(srv.url), PARAMS)
        out = gen(rows(60))
        gen.close()
    assert all(o[0]["raw_output"] for o in out)
    assert srv.rejected <= 8, f"{srv.rejected} 429s for 60 requests (6 of the first 16 cannot be helped)"


def test_a_429_pauses_every_request_not_only_its_own():
    with LimitedServer(requests=5, window=1.0) as srv:
        gen = llm(TG, backend(srv.url, max_concurrency=8), PARAMS)
        gen(rows(20))
        gen.close()
    assert srv.rejected <= 8, "after a 429 the others wait for its Retry-After instead of piling on"


def test_inference_endpoints_requests_are_paced_too():
    with TGIServer() as srv:
        gen = inference_endpoints(base_url=srv.url, max_requests_per_minute=600)  # 10 per second
        gen([f"q{i}" for i in range(12)], PARAMS)
        gen.close()
    times = sorted(seen.at for seen in srv.requests)
    assert times[-1] - times[0] >= 11 * 60 / (600 * HEADROOM) * 0.9, "spaced evenly, not sent at once"


def test_budgets_are_checked_and_left_out_of_the_cache_identity():
    with pytest.raises(ConfigError, match="max_requests_per_minute"):
        openai(model="m", base_url="http://127.0.0.1:1/v1", max_requests_per_minute=0)
    a = openai(model="m", base_url="http://127.0.0.1:1/v1")
    b = openai(model="m", base_url="http://127.0.0.1:1/v1", max_tokens_per_minute=1000)
    assert a.cache_identity == b.cache_identity, "a budget does not change what the model writes"


def test_token_estimates_cover_what_the_server_charges():
    body = {"messages": [{"role": "user", "content": "question number 12"}], "max_tokens": 16, "n": 2}
    assert estimate_tokens(body["messages"], 16, 2) >= charge(body)
    assert estimate_tokens("x" * 41, 10) == 21


def test_reset_headers_in_every_form_providers_send():
    assert [parse_reset(v) for v in ("1s", "6m0s", "59.5ms", "1h", "0.25", "soon", "", None)] == [
        1.0,
        360.0,
        pytest.approx(0.0595),
        3600.0,
        0.25,
        None,
        None,
        None,
    ]


def test_the_limiter_gives_back_what_a_request_did_not_use():
    now = [0.0]
    limiter = RateLimiter(None, 600, clock=lambda: now[0])  # 10 tokens per second (at HEADROOM)

    async def go() -> None:
        await limiter.acquire(100)  # reserves 100 tokens: the next may leave ~10.5 s later
        limiter.settle(100, 10)  # it used 10: the next may leave ~1 s later
        assert limiter._token_at == pytest.approx(10 * 60 / (600 * HEADROOM))

    asyncio.run(go())


def test_two_429s_with_an_answer_between_them_do_not_stop_the_backend_for_good():
    """A 429's pause, then a probe that is answered, then another 429: requests leave again once
    the second pause is over (the probe's 'until further notice' must not outlive its answer)."""
    now = [0.0]
    limiter = RateLimiter(None, None, clock=lambda: now[0])
    limiter.pause(1.0)
    now[0] = 2.0
    assert limiter.try_acquire(0)  # the probe, once the pause is over
    limiter.settle(0, None, {}, ok=True)  # answered: the server says nothing of its limits
    limiter.pause(1.0)  # another 429
    now[0] = 3.5
    assert limiter.try_acquire(0), "the second pause is over: the next request may leave"


def test_a_backend_that_met_two_429s_answers_every_row():
    from tests.servers import Fault, FaultServer

    script = {"first": [Fault.rate_limit(0.01)], "second": [Fault.rate_limit(0.01)]}
    with FaultServer(script=script) as srv:
        gen = backend(srv.url, max_concurrency=1)
        out = gen(["first", "second"], GenerationParams())
        gen.close()
    assert [row[0].text.split(" ")[0] for row in out] == ["first", "second"]
