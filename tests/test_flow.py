"""Slots and deadlines, the two things every HTTP request passes through (fnlabel/backends/flow.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from fnlabel import BackendError, GenerationParams
from fnlabel.backends.flow import Deadlines, Session, Slots
from fnlabel.backends.http import RetryPolicy, RowError, with_retries
from fnlabel.backends.openai import openai
from tests.servers import Fault, FaultServer

pytestmark = pytest.mark.timeout(60)


async def _holders(slots: Slots, n: int, hold: float) -> tuple[int, list[int]]:
    """``n`` tasks each holding a slot for ``hold`` s: (most holders at once, the order they got in)."""
    held, most, order = 0, 0, []

    async def one(i: int) -> None:
        nonlocal held, most
        async with slots:
            order.append(i)
            held += 1
            most = max(most, held)
            await asyncio.sleep(hold)
            held -= 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return most, order


def test_slots_bound_the_holders_and_serve_waiters_in_order():
    slots = Slots(3)
    most, order = asyncio.run(_holders(slots, 20, 0.001))
    assert most == 3 and order == list(range(20)) and slots.free == 3


def test_a_cancelled_waiter_loses_no_slot():
    async def main() -> int:
        slots = Slots(1)
        await slots.acquire()
        waiters = [asyncio.ensure_future(slots.acquire()) for _ in range(5)]
        await asyncio.sleep(0)
        for w in waiters[:4]:
            w.cancel()
        slots.release()  # skips the four cancelled waiters, hands the slot to the fifth
        await waiters[4]
        slots.release()
        return slots.free

    assert asyncio.run(main()) == 1


def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on():
    async def main() -> tuple[bool, int]:
        slots = Slots(1)
        await slots.acquire()
        first = asyncio.ensure_future(slots.acquire())
        second = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # handed to ``first``...
        first.cancel()  # ...which is cancelled before it runs: ``second`` must get the slot
        await asyncio.wait_for(second, 1)
        slots.release()
        return first.cancelled(), slots.free

    assert asyncio.run(main()) == (True, 1)


def test_an_attempt_past_its_deadline_is_cancelled_within_the_granularity():
    async def main() -> tuple[float, bool, int, int]:
        deadlines = Deadlines(0.2)
        task = deadlines.start()
        start = time.monotonic()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            timed_out = deadlines.timed_out(task)
        return time.monotonic() - start, timed_out, task.cancelling(), len(deadlines)

    elapsed, timed_out, cancelling, still_open = asyncio.run(main())
    assert 0.2 <= elapsed < 0.2 + 0.02 + 0.1 and timed_out and cancelling == 0 and still_open == 0


def test_a_cancellation_from_outside_is_not_taken_for_a_timeout():
    async def attempt(deadlines: Deadlines, seconds: float) -> str:
        task = deadlines.start()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            if deadlines.timed_out(task):
                return "timed out"
            raise
        deadlines.finish(task)
        return "done"

    async def main() -> list[str]:
        deadlines = Deadlines(0.5)
        outside = asyncio.ensure_future(attempt(deadlines, 5))
        await asyncio.sleep(0.05)
        outside.cancel()
        # both: cancelled from outside in the same loop turn its deadline came
        both = asyncio.ensure_future(attempt(deadlines, 5))
        await asyncio.sleep(0)
        deadlines._open[both] = (0.0, 0)  # due long ago
        deadlines._sweep()
        both.cancel()
        results = []
        for t in (outside, both):
            try:
                results.append(await t)
            except asyncio.CancelledError:
                results.append("cancelled")
        results.append(await attempt(deadlines, 0.01))
        return [*results, str(len(deadlines))]

    assert asyncio.run(main()) == ["cancelled", "cancelled", "done", "0"]


def test_one_timer_serves_many_attempts():
    async def main() -> int:
        deadlines = Deadlines(0.3)  # granularity 0.03 s
        loop = asyncio.get_running_loop()
        timers = 0
        call_at = loop.call_at

        def counting_call_at(when, callback, *args, **kwargs):  # counts the timers the deadlines schedule
            nonlocal timers
            timers += callback == deadlines._sweep
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = counting_call_at  # type: ignore[method-assign]

        async def one() -> None:
            task = deadlines.start()
            await asyncio.sleep(0.001)
            deadlines.finish(task)

        for _ in range(20):  # 2,000 attempts over about 0.2 s
            await asyncio.gather(*(one() for _ in range(100)))
        loop.call_at = call_at  # type: ignore[method-assign]
        return timers

    assert asyncio.run(main()) <= 12


def test_a_timed_out_attempt_is_retried_and_then_fails_its_row():
    calls = []

    async def request() -> str:
        calls.append(time.monotonic())
        await asyncio.sleep(5)
        return "late"

    async def main() -> BaseException:
        session = Session(None, Slots(1), None, Deadlines(0.1))
        try:
            await with_retries(request, (), session, RetryPolicy(max_retries=1, timeout=0.1, backoff=0.01), "test")
        except RowError as exc:
            assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
            assert session.slots.free == 1 and len(session.deadlines) == 0
            return exc
        raise AssertionError("no error")

    error = asyncio.run(main())
    assert "TimeoutError: no answer within 0.1 s" in str(error) and "gave up after 2 attempts" in str(error)
    assert len(calls) == 2


def test_a_call_keeps_one_worker_per_slot_not_a_task_per_row():
    """2,000 prompts at max_concurrency 8: the backend's loop holds 8 workers (and, while connections
    open, aiohttp's own tasks for them), not a task per prompt."""
    most = 0

    def on_prompt(j, gens):
        nonlocal most
        most = max(most, len(asyncio.all_tasks()))

    with FaultServer(latency=0.001) as srv:
        gen = openai(model="fault-model", base_url=srv.url, max_concurrency=8)
        out = gen.generate_from([f"p{i}" for i in range(2000)], GenerationParams(), 0, on_prompt)
        gen.close()
    assert [row[0].text.split(" ")[0] for row in out] == [f"p{i}" for i in range(2000)]
    assert most <= 2 * 8 + 2


@pytest.mark.parametrize("how", ["401", "on_prompt"])
def test_a_call_that_fails_stops_sending_at_once(how):
    """A 401 (or a failure reporting a prompt) ends the call: the workers do not go on sending the rest
    of its prompts (with a request budget, a cancelled wait for a turn must not be lost)."""

    def script(body, path):
        return Fault.error(401, "bad key") if how == "401" and "poison" in str(body) else None

    def on_prompt(j, gens):
        if how == "on_prompt" and j == 5:
            raise OSError("disk full")

    prompts = [f"{'poison' if i == 5 else 'ok'} {i}" for i in range(60)]
    with FaultServer(script=script, latency=0.01) as srv:
        gen = openai(model="fault-model", base_url=srv.url, max_concurrency=8, max_requests_per_minute=1200)
        with pytest.raises((BackendError, OSError)):
            gen.generate_from(prompts, GenerationParams(), 0, on_prompt)
        gen.close()
        sent = srv.count()
    assert sent <= 8 + 4, f"{sent} requests sent by a call that failed at its 6th prompt"


def test_a_prompt_waiting_to_retry_lends_its_place_to_the_next_prompts():
    """Every 10th prompt always fails (500, retried after 1-2 s); the other 36 are answered at once and
    must not wait behind them: max_concurrency counts requests, not prompts waiting to retry."""
    prompts = [f"{'poison' if i % 10 == 0 else 'ok'} {i}" for i in range(40)]
    done_at: dict[int, float] = {}
    with FaultServer(script={"poison": Fault.error(500)}, latency=0.01) as srv:
        gen = openai(model="fault-model", base_url=srv.url, max_concurrency=4, max_retries=1, backoff=2.0)
        start = time.monotonic()
        out = gen.generate_from(prompts, GenerationParams(), 0, lambda j, g: done_at.setdefault(j, time.monotonic()))
        gen.close()
    assert [type(row[0]).__name__ for row in out].count("GenerationFailure") == 4
    healthy = max(t for j, t in done_at.items() if j % 10) - start
    assert healthy < 0.9, f"the healthy prompts were done after {healthy:.2f} s (the failing ones wait >= 1 s)"
