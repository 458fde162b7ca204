"""The shared machinery of the remote backends (fnlabel/backends/http.py, loop.py) as pure pieces."""

from __future__ import annotations

import asyncio
import email.utils
import pickle
import threading
import time

import pytest

from fnlabel import BackendError, ConfigError
from fnlabel.backends.flow import Deadlines, Session, Slots
from fnlabel.backends.http import MalformedResponse, RetryPolicy, classify, retry_after, with_retries
from fnlabel.backends.loop import LoopThread
from fnlabel.frozen import frozen_table
from fnlabel.seeds import generation_seed

pytestmark = pytest.mark.timeout(60)


class HTTPStatus(Exception):
    """An error shaped like the SDKs' HTTP errors: ``.response.status_code`` and ``.response.headers``."""

    def __init__(self, status: int, headers: dict | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = type("Response", (), {"status_code": status, "headers": headers or {}})()


def test_backoff_doubles_with_jitter_and_retry_after_wins():
    policy = RetryPolicy(backoff=1.0, max_backoff=8.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = {policy.delay(attempt, None) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
    assert all(3.0 <= policy.delay(1, 3.0) <= 3.3 for _ in range(20))
    assert all(8.0 <= policy.delay(1, 600.0) <= 8.8 for _ in range(20)), "capped by max_backoff"


def test_retry_after_headers():
    assert retry_after(HTTPStatus(429, {"retry-after": "2"})) == 2.0
    assert retry_after(HTTPStatus(429, {"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    date = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.5 < retry_after(HTTPStatus(503, {"retry-after": date})) <= 5.0
    assert retry_after(HTTPStatus(429)) is None and retry_after(ValueError("x")) is None
    # a wrapper raised "from" the HTTP error (huggingface_hub's OverloadedError) still has it
    try:
        try:
            raise HTTPStatus(429, {"retry-after": "1"})
        except HTTPStatus as exc:
            raise RuntimeError("overloaded") from exc
    except RuntimeError as wrapped:
        assert retry_after(wrapped) == 1.0 and classify(wrapped) == "retry"


def test_malformed_retry_after_falls_back_to_backoff(monkeypatch):
    # a server's odd Retry-After must not crash the call: the backoff applies instead
    assert retry_after(HTTPStatus(429, {"retry-after": "soon"})) is None
    assert retry_after(HTTPStatus(503, {"retry-after": "Wed, 99 Foo 2015"})) is None
    # an RFC 5322 date with "-0000" is UTC too (parsedate_to_datetime gives it no tzinfo),
    # whatever the machine's local time zone
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        date = email.utils.formatdate(time.time() + 5).replace("+0000", "-0000")
        assert 3.5 < retry_after(HTTPStatus(503, {"retry-after": date})) <= 5.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_malformed_retry_after_is_retried_with_backoff():
    calls = []

    async def request():
        calls.append(1)
        if len(calls) == 1:
            raise HTTPStatus(429, {"retry-after": "later"})
        return "ok"

    async def main():
        session = Session(None, Slots(1), None, Deadlines(1.0))
        return await with_retries(request, (), session, RetryPolicy(backoff=0.01), "test")

    assert asyncio.run(main()) == "ok" and len(calls) == 2


def test_classification():
    assert [classify(HTTPStatus(s)) for s in (408, 429, 500, 503)] == ["retry"] * 4
    assert [classify(HTTPStatus(s)) for s in (401, 403, 404)] == ["call"] * 3
    assert [classify(HTTPStatus(s)) for s in (400, 413, 422)] == ["row"] * 3
    assert classify(TimeoutError()) == classify(ConnectionResetError()) == classify(MalformedResponse()) == "retry"
    assert classify(KeyError("bug")) == "row"


def test_derived_seeds_are_stable_and_distinct():
    from fnlabel.seeds import SEED_LIMIT

    seeds = [generation_seed(123, i) for i in range(1000)]
    assert seeds[0] == 123 and len(set(seeds)) == 1000 and all(0 <= s < SEED_LIMIT for s in seeds)
    assert seeds == [generation_seed(123, i) for i in range(1000)]


def test_frozen_table_is_a_hashable_read_only_value():
    a, b = frozen_table({"x": [1, {"y": 2}]}), frozen_table({"x": [1, {"y": 2}]})
    assert a == b and hash(a) == hash(b) and pickle.loads(pickle.dumps(a)) == a
    assert a == {"x": (1, {"y": 2})} and hash(frozen_table({"p": 1, "q": 2})) == hash(frozen_table({"q": 2, "p": 1}))
    with pytest.raises(TypeError):
        a["z"] = 1
    with pytest.raises(TypeError):
        a["x"][1]["y"] = 3  # frozen all the way down
    for bad in ([1], {1: "int key"}, {"s": [bytearray(b"raw")]}):
        with pytest.raises(ConfigError):
            frozen_table(bad)


def test_loop_thread_runs_inside_a_running_loop_and_restarts_after_close():
    setups = []

    async def setup():
        setups.append(threading.current_thread().name)
        return "state"

    loop = LoopThread("test-loop", setup)

    async def work(x):
        await asyncio.sleep(0.01)
        return x * 2, threading.current_thread().name

    async def caller():  # a sync call from inside another running event loop
        return loop.run(work(2))

    assert asyncio.run(caller()) == (4, "test-loop")
    assert loop.run(work(3)) == (6, "test-loop") and setups == ["test-loop"]
    loop.close()
    assert loop.run(work(4))[0] == 8 and len(setups) == 2, "a closed loop starts again, setup included"
    loop.close()


def test_failed_setup_leaves_no_broken_loop():
    calls = []

    async def setup():
        calls.append(1)
        if len(calls) == 1:
            raise BackendError("endpoint is paused")
        return "ok"

    loop = LoopThread("test-setup", setup)

    async def noop():
        return 1

    with pytest.raises(BackendError, match="paused"):
        loop.run(noop())
    assert loop.run(noop()) == 1 and loop.state == "ok"
    loop.close()
