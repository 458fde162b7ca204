"""The event loop an HTTP backend owns, and the backend class built on it.

A remote backend is a sync ``generate(prompts, params)`` over an async client.
:class:`LoopThread` owns one event loop in a daemon thread, so ``generate``
works the same from plain code, from threads and from inside a running event
loop (the caller blocks; the work runs on the backend's own loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from fnlabel.backends.base import BackendBase
from fnlabel.backends.flow import Deadlines, Session, Slots, work_through
from fnlabel.backends.ratelimit import RateLimiter
from fnlabel.errors import BackendError
from fnlabel.seeds import generation_seed
from fnlabel.types import OnPrompt, RawGeneration

__all__ = ["LoopThread", "LoopBackend", "Session"]

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread, owned by one backend and reused across calls.

    ``setup`` (a coroutine function) runs once on the loop before the first job,
    e.g. to create an aiohttp-based client bound to that loop; ``teardown`` runs
    on :meth:`close`. A fork (the child has no such thread) starts a fresh loop.
    """

    def __init__(
        self,
        name: str,
        setup: Callable[[], Coroutine[Any, Any, Any]] | None = None,
        teardown: Callable[[Any], Coroutine[Any, Any, Any]] | None = None,
    ) -> None:
        self.name, self._setup, self._teardown = name, setup, teardown
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.state: Any = None  # what setup returned, e.g. the client

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
                if self._setup is not None:
                    try:
                        self.state = asyncio.run_coroutine_threadsafe(self._setup(), loop).result()
                    except BaseException:
                        loop.call_soon_threadsafe(loop.stop)
                        thread.join(timeout=10)
                        loop.close()
                        self._loop = self._thread = None
                        raise
            return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T] | Any:
        """Schedule ``coro`` on the loop; a ``concurrent.futures.Future`` of its result."""
        try:
            loop = self._start()
        except BaseException:
            coro.close()  # never scheduled: do not leave it un-awaited
            raise
        if threading.current_thread() is self._thread:
            coro.close()
            raise BackendError(f"{self.name}: generate() called from its own event loop thread; use agenerate()")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it (safe inside a running event loop)."""
        future = self.submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise BackendError(f"{self.name}: closed while this call was running") from None
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: stop the requests in flight
            raise

    def close(self) -> None:
        """Run ``teardown`` and stop the loop thread; a later call starts a fresh one."""
        with self._lock:
            loop, thread, state = self._loop, self._thread, self.state
            self._loop = self._thread = self.state = None
        if loop is None or self._pid != os.getpid():
            return
        teardown = self._teardown if state is not None else None

        async def shutdown() -> None:
            # Calls still running (another thread's batch when a run stops early) are cancelled,
            # so the threads waiting on them get an error instead of waiting forever.
            running = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if teardown is not None:
                await teardown(state)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        except Exception:  # closing must not raise over a dying connection
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()


class LoopBackend(BackendBase):
    """What the HTTP backends share: a :class:`LoopThread` holding a :class:`Session`.

    A subclass passes ``open_client``, a coroutine function run once on the loop that
    returns a client with an async ``close()``; it must not capture the backend itself, so
    the backend can be garbage-collected (its finalizer then closes the loop). The subclass
    implements ``_prompt(prompt, params)`` (one prompt's generations) and may override
    ``check_request``. Each prompt's generations are reported (``on_prompt``) as they arrive. It
    is rebuilt from its config when pickled.
    """

    def __init__(
        self,
        config: Any,
        name: str,
        open_client: Callable[[], Coroutine[Any, Any, Any]],
        read_headers: bool = False,
    ) -> None:
        """``read_headers``: the subclass passes each response's headers to the limiter, so it
        has one even without budgets (``max_requests_per_minute``, ``max_tokens_per_minute``)."""
        self.config = config
        self._policy = config.retry_policy
        concurrency = config.max_concurrency
        rpm, tpm = config.max_requests_per_minute, config.max_tokens_per_minute
        limited = read_headers or rpm is not None or tpm is not None

        async def setup() -> Session:
            # created on the backend's loop: the client's HTTP session belongs to it
            limiter = RateLimiter(rpm, tpm) if limited else None
            return Session(await open_client(), Slots(concurrency), limiter, Deadlines(self._policy.timeout))

        async def teardown(state: Session) -> None:
            await state.client.close()

        self._loop = LoopThread(name, setup, teardown)
        self._finalizer = weakref.finalize(self, self._loop.close)

    @property
    def prompt_format(self) -> str:
        return self.config.prompt_format

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at most, over all calls together."""
        return self.config.max_concurrency

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def __reduce__(self) -> Any:
        return (type(self.config).build, (self.config,))

    def check_request(self, prompts: Sequence[Any], params: Any) -> None:
        """Refuse, before any request, params this backend cannot honour for these prompts."""

    def __call__(self, prompts: Sequence[Any], params: Any) -> Any:
        """Generate ``params.num_generations`` texts per prompt (sync; safe inside a running loop)."""
        return self.generate_from(prompts, params, 0)

    def generate_from(
        self, prompts: Sequence[Any], params: Any, first_generation: int, on_prompt: OnPrompt | None = None
    ) -> Any:
        """As :meth:`BackendBase.generate_from`, with ``on_prompt`` called (on the backend's event loop
        thread) as soon as each prompt's responses have arrived."""
        if first_generation and params.seed is not None:
            params = params.replace(seed=generation_seed(params.seed, first_generation))
        self.check_request(prompts, params)
        return self._loop.run(self._generate(list(prompts), params, on_prompt))

    async def agenerate(self, prompts: Sequence[Any], params: Any) -> Any:
        """The same as calling the backend, awaitable from any event loop."""
        self.check_request(prompts, params)
        return await asyncio.wrap_future(self._loop.submit(self._generate(list(prompts), params, None)))

    def close(self) -> None:
        """Close the HTTP client and stop the loop thread (a later call reopens them)."""
        self._loop.close()

    async def _generate(self, prompts: list[Any], params: Any, on_prompt: OnPrompt | None = None) -> Any:
        """Every prompt's generations, in order; each reported to ``on_prompt`` as it is done.

        At most ``max_concurrency`` prompts of the call are under way at once (not counting those
        waiting to retry): :func:`~fnlabel.backends.flow.work_through`.
        """
        out: list[Any] = [None] * len(prompts)

        def done(j: int, gens: list[RawGeneration]) -> None:
            out[j] = gens
            if on_prompt is not None:
                on_prompt(j, gens)

        await work_through(len(prompts), lambda j: self._prompt(prompts[j], params), done, self.max_concurrency)
        return out

    @property
    def _session(self) -> Session:
        """The session of the backend's loop (BackendError once the backend is closed)."""
        session = self._loop.state
        if session is None:
            raise BackendError(f"{self._loop.name}: closed while this call was running")
        return session

    async def _prompt(self, prompt: Any, params: Any) -> list[RawGeneration]:
        """The ``params.num_generations`` generations of one prompt."""
        raise NotImplementedError
