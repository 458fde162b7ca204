"""What every request of an HTTP backend passes through: a worker, a slot, a turn, a deadline.

:func:`work_through` runs a call's prompts with at most ``max_concurrency`` workers,
:class:`Slots` bounds the requests in flight (``max_concurrency``, all calls together),
:class:`Deadlines` times each attempt (the policy's ``timeout``), and :class:`Session` holds the
last two with the backend's client and rate limiter. All are built for thousands of requests in
flight on one event loop:

- ``asyncio.Semaphore`` (Python 3.11) scans its woken-but-not-yet-running waiters on every
  release, so a burst of ``k`` answers costs ``k**2 / 2`` steps; :class:`Slots` hands a freed slot
  straight to the next waiter, in constant time.
- ``asyncio.timeout`` schedules (and cancels) one timer per request; :class:`Deadlines` keeps the
  open attempts in arrival order (which is deadline order: one timeout per backend) and runs one
  timer for them all, which fires at most once per ``granularity`` seconds.
- a task per prompt, all created at once, keeps a chain of coroutines per prompt alive while it
  waits for a slot, and Python's garbage collector walks them in every full collection;
  :func:`work_through`'s workers take the next prompt when their last is done.

benchmarks/throughput_bench.py measures what they save; docs/backends/openai.md has the figures.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from fnlabel.backends.ratelimit import RateLimiter

__all__ = ["Slots", "Deadlines", "Session", "work_through", "waiting_to_retry"]


class Slots:
    """At most ``size`` holders at once; waiters are served first come, first served.

    ``await acquire()`` then ``release()`` (or ``async with``). A release hands its slot to the
    next waiter directly; a waiter cancelled after it was handed one passes it on.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self._free > 0:  # a free slot means no one is waiting: every release serves a waiter first
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # the slot was handed over: pass it on
                self.release()
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # (a cancelled waiter is skipped here, not searched for when it leaves)
                waiter.set_result(None)
                return
        self._free += 1

    @property
    def free(self) -> int:
        """Slots no one holds."""
        return self._free

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Deadlines:
    """Cancels attempts that run past ``seconds``: ``task = start()`` in the attempt's task, then
    ``timed_out(task)`` if it raised ``CancelledError``, else ``finish(task)``.

    An attempt is cancelled between ``seconds`` and ``seconds + granularity`` after it started
    (``granularity``: a tenth of ``seconds``, at most one second). A task runs one attempt at a time.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.granularity = min(1.0, seconds / 10)
        #: the open attempts' tasks -> (deadline, how often the task was being cancelled at its start),
        #: in start order, which is deadline order
        self._open: dict[asyncio.Task[Any], tuple[float, int]] = {}
        self._expired: dict[asyncio.Task[Any], int] = {}  # cancelled by their deadline -> (as above)
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> asyncio.Task[Any]:
        """Time an attempt of the current task, from now."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Deadlines.start() must be called inside a task")
        deadline = loop.time() + self.seconds
        self._open[task] = (deadline, task.cancelling())
        if self._timer is None:
            self._timer = loop.call_at(deadline + self.granularity, self._sweep)
        return task

    def finish(self, task: asyncio.Task[Any]) -> None:
        """The attempt is over (it returned, or raised anything but ``CancelledError``)."""
        if self._open.pop(task, None) is None and self._expired.pop(task, None) is not None:
            task.uncancel()  # it ended as its deadline came: the cancellation will not be delivered

    def timed_out(self, task: asyncio.Task[Any]) -> bool:
        """For an attempt that raised ``CancelledError``: True when the cancellation was its deadline
        alone (the task is then no longer cancelling), False when something else cancelled it."""
        cancelling = self._expired.pop(task, None)
        if cancelling is None:
            self._open.pop(task, None)
            return False
        return task.uncancel() <= cancelling

    def _sweep(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        overdue = []
        for task, (deadline, _) in self._open.items():
            if deadline > now:
                break
            overdue.append(task)
        for task in overdue:
            self._expired[task] = self._open.pop(task)[1]
            task.cancel()
        if self._open:
            first = next(iter(self._open.values()))[0]
            self._timer = loop.call_at(first + self.granularity, self._sweep)

    def __len__(self) -> int:
        """The attempts open."""
        return len(self._open)


#: told ``True`` when a request of the current task starts waiting out a retry's backoff, ``False``
#: when it is done waiting (set by :func:`work_through` for its workers)
RETRY_WAIT: contextvars.ContextVar[Callable[[bool], None] | None] = contextvars.ContextVar("retry_wait", default=None)


async def waiting_to_retry(seconds: float) -> None:
    """Sleep out a retry's backoff; the caller's :func:`work_through` starts a worker in its place meanwhile."""
    told = RETRY_WAIT.get()
    if told is None:
        await asyncio.sleep(seconds)
        return
    told(True)
    try:
        await asyncio.sleep(seconds)
    finally:
        told(False)


async def work_through(
    count: int, step: Callable[[int], Awaitable[Any]], done: Callable[[int, Any], None], size: int
) -> None:
    """``done(j, await step(j))`` for ``j`` in ``range(count)``, by at most ``size`` workers at once.

    A worker takes the next ``j`` when its last is done, so a call of a million prompts holds
    ``size`` coroutines, not a task per prompt. A worker waiting out a retry's backoff
    (:func:`waiting_to_retry`) does not count: a spare starts in its place, and the surplus ends
    once the wait is over. The first exception stops every worker (none takes another ``j``) and is
    raised once all have ended.
    """
    if count:
        await _Crew(count, step, done, size).run()


class _Crew:
    """The workers of one :func:`work_through`."""

    def __init__(
        self, count: int, step: Callable[[int], Awaitable[Any]], done: Callable[[int, Any], None], size: int
    ) -> None:
        self.todo, self.step, self.done, self.size = iter(range(count)), step, done, size
        self.count = count
        self.loop = asyncio.get_running_loop()
        self.workers: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []
        self.busy = 0  # workers not waiting out a backoff
        self.ended = self.loop.create_future()

    async def run(self) -> None:
        token = RETRY_WAIT.set(self.told)  # the workers' contexts are copies of this one
        try:
            for _ in range(min(self.count, self.size)):
                self.start()
        finally:
            RETRY_WAIT.reset(token)
        try:
            await self.ended
        except asyncio.CancelledError:
            self.errors.append(asyncio.CancelledError())  # no worker takes another j
            running = list(self.workers)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        if self.errors:
            raise self.errors[0]

    async def work(self) -> None:
        try:
            for j in self.todo:
                self.done(j, await self.step(j))
                if self.errors or self.busy > self.size:  # (after a spare's start, one too many)
                    return
        finally:
            self.busy -= 1

    def start(self) -> None:
        self.busy += 1
        task = self.loop.create_task(self.work())
        self.workers.add(task)
        task.add_done_callback(self.finish)

    def finish(self, task: asyncio.Task[None]) -> None:
        self.workers.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None and not self.errors:
            self.errors.append(error)
            for other in self.workers:
                other.cancel()
        if not self.workers and not self.ended.done():
            self.ended.set_result(None)

    def told(self, waiting: bool) -> None:
        """A worker started (True) or ended (False) waiting out a retry's backoff."""
        self.busy += -1 if waiting else 1
        if waiting and self.busy < self.size and not self.errors:
            self.start()


@attrs.frozen
class Session:
    """What an HTTP backend's requests share, made on its event loop: the client, the bound on
    requests in flight, the rate limiter (None: no budget, and no headers to read) and the
    attempts' deadlines."""

    client: Any
    slots: Slots
    limiter: RateLimiter | None
    deadlines: Deadlines
