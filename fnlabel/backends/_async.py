"""Shared machinery of the remote backends: event loop, concurrency, retries.

A remote backend is a sync ``generate(prompts, params)`` over an async client.
:class:`LoopThread` owns one event loop in a daemon thread, so ``generate``
works the same from plain code, from threads and from inside a running event
loop (the caller blocks; the work runs on the backend's own loop).
:func:`with_retries` runs one request under the backend's semaphore, retrying
what is worth retrying: 408/409/425/429/5xx, timeouts, dropped connections and
malformed responses, with exponential backoff and jitter that honours
``Retry-After``. 401/403/404 abort the whole call (a wrong key, model or
endpoint fails every row alike); any other 4xx fails its row at once with the
server's message.
"""

from __future__ import annotations

import concurrent.futures
import asyncio
import datetime
import email.utils
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import attrs

from fnlabel.seeds import generation_seed as derive_seed  # one seed derivation for every backend
from fnlabel.errors import BackendError, ConfigError

__all__ = [
    "LoopBackend",
    "LoopThread",
    "RetryPolicy",
    "RowError",
    "MalformedResponse",
    "with_retries",
    "classify",
    "derive_seed",
    "positive",
    "non_negative",
    "read_secret",
    "require",
    "FrozenDict",
    "frozen_dict",
    "failed",
    "gather_all",
]

T = TypeVar("T")

#: statuses worth retrying besides 5xx
RETRY_STATUSES = frozenset({408, 409, 425, 429})
#: statuses that mean every request of the call would fail the same way
CALL_STATUSES = frozenset({401, 403, 404})
#: exception class names (any module: httpx, httpx2, aiohttp, openai, huggingface_hub) that mean
#: "the request did not complete": worth retrying
_TRANSIENT_NAMES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "TransportError",
        "TimeoutException",
        "InferenceTimeoutError",
        "ClientConnectionError",
        "ClientPayloadError",
        "ServerDisconnectedError",
        "JSONDecodeError",
        "MalformedResponse",
    }
)


def positive(_inst: Any, attr: attrs.Attribute, value: Any) -> None:
    """attrs validator: a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise ConfigError(f"{attr.name} must be a number > 0, got {value!r}")


def non_negative(_inst: Any, attr: attrs.Attribute, value: Any) -> None:
    """attrs validator: an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{attr.name} must be an integer >= 0, got {value!r}")


def read_secret(env: str, *, what: str, fix: str, optional: bool = False) -> str | None:
    """The value of environment variable ``env``; ConfigError saying how to set it when missing."""
    value = os.environ.get(env) or None
    if value is None and not optional:
        raise ConfigError(f"{what} needs an API key: environment variable {env} is not set. {fix}")
    return value


def require(extra: str, *modules: str) -> None:
    """ConfigError naming the pip extra when one of ``modules`` is not installed (nothing is imported)."""
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not installed: pip install 'fnlabel[{extra}]'")


class FrozenDict(dict):  # type: ignore[type-arg]
    """A read-only, hashable dict (for config fields such as ``extra_body``)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted((k, _hashable(v)) for k, v in self.items())))

    def _readonly(self, *_a: Any, **_k: Any) -> None:
        raise TypeError("this mapping is read-only; build a new config with attrs.evolve")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _readonly  # type: ignore[assignment]
    __ior__ = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        return (FrozenDict, (dict(self),))


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def frozen_dict(value: Any) -> FrozenDict:
    """attrs converter: a mapping (or None) as a :class:`FrozenDict` with string keys, JSON-like values."""
    if value is None:
        return FrozenDict()
    if not isinstance(value, dict):
        raise ConfigError(f"expected a table/dict, got {type(value).__name__}: {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"keys must be strings, got {bad!r}")
    frozen = FrozenDict(value)
    hash(frozen)  # unhashable leaves (sets, objects) fail here, at construction
    return frozen


@attrs.frozen
class RetryPolicy:
    """How one request is retried: attempts, per-attempt timeout, backoff."""

    max_retries: int = 5
    timeout: float = 120.0
    backoff: float = 0.5
    max_backoff: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry ``attempt`` (1-based): the server's Retry-After wins."""
        if retry_after is not None:
            return min(self.max_backoff, retry_after) * (1 + 0.1 * random.random())
        ceiling = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * random.random())  # "equal jitter": never 0, never in lockstep


class RowError(Exception):
    """A request failed for good: only its row loses the generations."""


class MalformedResponse(Exception):
    """The server answered 2xx with something that is not the expected payload (retried)."""


def _status(exc: BaseException | None) -> int | None:
    # huggingface_hub raises TGI errors (e.g. OverloadedError) "from" the HTTP error carrying the status
    for _ in range(4):
        if exc is None:
            return None
        for obj in (exc, getattr(exc, "response", None)):
            for name in ("status_code", "status"):
                value = getattr(obj, name, None)
                if isinstance(value, int) and 100 <= value < 600:
                    return value
        exc = exc.__cause__
    return None


def retry_after(exc: BaseException) -> float | None:
    """Seconds from ``Retry-After-Ms`` / ``Retry-After`` (seconds or HTTP date) of an error's response."""
    while exc.__cause__ is not None and getattr(exc, "response", None) is None:
        exc = exc.__cause__
    headers = getattr(getattr(exc, "response", None), "headers", None) or getattr(exc, "headers", None)
    if not headers:
        return None
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        raw = headers.get("retry-after")
    except (TypeError, ValueError, AttributeError):
        return None
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):  # neither seconds nor an HTTP date: the backoff applies
        return None
    if parsed.tzinfo is None:  # "-0000": UTC with no zone given (RFC 5322)
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, parsed.timestamp() - time.time())


def server_message(exc: BaseException) -> str:
    """The server's own message for an HTTP error (OpenAI or TGI error body), else ``str(exc)``."""
    for obj in (exc, exc.__cause__):
        body = getattr(obj, "body", None)
        if body is None:
            try:
                body = obj.response.json()  # type: ignore[union-attr]
            except Exception:  # no response, or not JSON: fall back to the exception text
                body = None
        if isinstance(body, dict):
            err = body.get("error", body)
            msg = err.get("message") if isinstance(err, dict) else err
            if msg:
                return str(msg)
    return str(exc) or type(exc).__name__


def classify(exc: BaseException) -> str:
    """``"retry"``, ``"row"`` (fail the row now) or ``"call"`` (abort the call) for a request error."""
    status = _status(exc)
    if status is not None:
        if status >= 500 or status in RETRY_STATUSES:
            return "retry"
        return "call" if status in CALL_STATUSES else "row"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError, EOFError)):
        return "retry"
    names = {cls.__name__ for cls in type(exc).__mro__}
    return "retry" if names & _TRANSIENT_NAMES else "row"


def describe(exc: BaseException) -> str:
    status = _status(exc)
    prefix = f"HTTP {status}: " if status is not None else f"{type(exc).__name__}: "
    return prefix + server_message(exc)


async def with_retries(
    request: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    semaphore: asyncio.Semaphore,
    what: str,
) -> T:
    """Await ``request()`` under ``semaphore``, retrying transient errors per ``policy``.

    Raises :class:`RowError` when retries are exhausted or the server refuses the
    request (4xx), and :class:`BackendError` for errors that would hit every row
    (401/403/404). The semaphore is released while waiting to retry.
    """
    attempt = 0
    while True:
        async with semaphore:
            try:
                async with asyncio.timeout(policy.timeout):  # no extra task per request, unlike wait_for
                    return await request()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # classified below; nothing escapes unlabelled
                error = exc
        kind = classify(error)
        if kind == "call":
            raise BackendError(f"{what}: {describe(error)}") from error
        if kind == "row":
            raise RowError(f"{what}: {describe(error)} (not retried)") from error
        attempt += 1
        if attempt > policy.max_retries:
            raise RowError(f"{what}: {describe(error)} (gave up after {attempt} attempts)") from error
        await asyncio.sleep(policy.delay(attempt, retry_after(error)))


class LoopThread:
    """An event loop running in a daemon thread, owned by one backend and reused across calls.

    ``setup`` (a coroutine function) runs once on the loop before the first job,
    e.g. to create an aiohttp-based client bound to that loop; ``teardown`` runs
    on :meth:`close`. A fork (the child has no such thread) starts a fresh loop.
    """

    def __init__(self, name: str, setup: Callable[[], Coroutine[Any, Any, Any]] | None = None,
                 teardown: Callable[[Any], Coroutine[Any, Any, Any]] | None = None) -> None:
        self._name, self._setup, self._teardown = name, setup, teardown
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.state: Any = None  # what setup returned, e.g. the client

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
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

    def submit(self, coro: Coroutine[Any, Any, T]) -> "asyncio.Future[T] | Any":
        """Schedule ``coro`` on the loop; a ``concurrent.futures.Future`` of its result."""
        try:
            loop = self._start()
        except BaseException:
            coro.close()  # never scheduled: do not leave it un-awaited
            raise
        if threading.current_thread() is self._thread:
            coro.close()
            raise BackendError(f"{self._name}: generate() called from its own event loop thread; use agenerate()")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for it (safe inside a running event loop)."""
        future = self.submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise BackendError(f"{self._name}: closed while this call was running") from None
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


def failed(error: BaseException | str, n: int) -> list[Any]:
    """``n`` GenerationFailure entries for one error."""
    from fnlabel.types import GenerationFailure

    return [GenerationFailure(str(error))] * n


async def gather_all(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Await all ``coros`` concurrently, in order; on the first exception cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class LoopBackend:
    """What the HTTP backends share: a :class:`LoopThread` holding ``(client, semaphore)``.

    A subclass passes ``open_client``, a coroutine function run once on the loop that
    returns a client with an async ``close()``; it must not capture the backend itself, so
    the backend can be garbage-collected (its finalizer then closes the loop). The subclass
    implements ``_generate(prompts, params)`` and may override ``check_request``. It is
    rebuilt from its config when pickled.
    """

    def __init__(self, config: Any, name: str, open_client: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self.config = config
        self._policy = config.retry_policy
        concurrency = config.max_concurrency

        async def setup() -> tuple[Any, asyncio.Semaphore]:
            # created on the backend's loop: the client's HTTP session belongs to it
            return await open_client(), asyncio.Semaphore(concurrency)

        async def teardown(state: tuple[Any, asyncio.Semaphore]) -> None:
            await state[0].close()

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
        self.check_request(prompts, params)
        return self._loop.run(self._generate(list(prompts), params))

    async def agenerate(self, prompts: Sequence[Any], params: Any) -> Any:
        """The same as calling the backend, awaitable from any event loop."""
        self.check_request(prompts, params)
        return await asyncio.wrap_future(self._loop.submit(self._generate(list(prompts), params)))

    def close(self) -> None:
        """Close the HTTP client and stop the loop thread (a later call reopens them)."""
        self._loop.close()

    async def _generate(self, prompts: list[Any], params: Any) -> Any:
        raise NotImplementedError
