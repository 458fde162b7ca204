"""What the HTTP backends share: retries, error classification, secrets and extras.

:func:`with_retries` runs one request in one of the backend's slots, retrying
what is worth retrying: 408/409/425/429/5xx, timeouts, dropped connections and
malformed responses, with exponential backoff and jitter that honours
``Retry-After``. 401/403/404 abort the whole call (a wrong key, model or
endpoint fails every row alike); any other 4xx fails its row at once with the
server's message.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import attrs

from fnlabel import redact
from fnlabel.backends.flow import Session, waiting_to_retry
from fnlabel.backends.ratelimit import RateLimiter
from fnlabel.errors import BackendError, ConfigError
from fnlabel.types import GenerationFailure

__all__ = [
    "RetryPolicy",
    "RowError",
    "MalformedResponse",
    "with_retries",
    "classify",
    "read_secret",
    "require",
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


def read_secret(env: str, *, what: str, fix: str, optional: bool = False) -> str | None:
    """The value of environment variable ``env``; ConfigError saying how to set it when missing."""
    value = os.environ.get(env) or None
    if value is None and not optional:
        raise ConfigError(f"{what} needs an API key: environment variable {env} is not set. {fix}")
    redact.register(value)  # never written anywhere from now on, even when a server echoes it back
    return value


def require(extra: str, *modules: str) -> None:
    """ConfigError naming the pip extra when one of ``modules`` is not installed (nothing is imported)."""
    from importlib.util import find_spec

    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} not installed: pip install 'fnlabel[{extra}]'")


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


def response_headers(exc: BaseException) -> Any:
    """The headers of the HTTP response an error carries (or of the error it was raised from), or None."""
    while exc.__cause__ is not None and getattr(exc, "response", None) is None:
        exc = exc.__cause__
    return getattr(getattr(exc, "response", None), "headers", None) or getattr(exc, "headers", None)


def retry_after(exc: BaseException) -> float | None:
    """Seconds from ``Retry-After-Ms`` / ``Retry-After`` (seconds or HTTP date) of an error's response."""
    headers = response_headers(exc)
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
        parsed = parsed.replace(tzinfo=datetime.UTC)
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


def cannot_connect(exc: BaseException) -> str | None:
    """Why no connection could be made (``"connection refused"``, ``"host not found"``), or None.

    Looks through the error's causes: the SDKs wrap the socket's error (openai's APIConnectionError
    around aiohttp's ClientConnectorError around ConnectionRefusedError).
    """
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "host not found"
        if type(seen).__name__ in ("ClientConnectorDNSError",):
            return "host not found"
        seen = seen.__cause__ or seen.__context__
    return None


def describe(exc: BaseException) -> str:
    status = _status(exc)
    prefix = f"HTTP {status}: " if status is not None else f"{type(exc).__name__}: "
    return redact.scrub(prefix + server_message(exc))  # a server may quote the request's key


async def with_retries(
    request: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
    session: Session,
    policy: RetryPolicy,
    what: str,
    tokens: int = 0,
    usage: Callable[[T], tuple[int | None, Mapping[str, str] | None]] | None = None,
) -> T:
    """Await ``request(*args)`` in one of the session's slots, retrying transient errors per ``policy``.

    Raises :class:`RowError` when retries are exhausted or the server refuses the
    request (4xx), and :class:`BackendError` for errors that would hit every row
    (401/403/404, and a server that cannot be reached at all once the retries are spent:
    the connection refused, the host unknown). The slot is released while waiting to retry.
    Each attempt runs under the session's deadlines (``policy.timeout``).

    With a rate limiter, every attempt first waits for its turn (``tokens``: the request's
    estimate; the wait does not count toward the attempt's timeout), and ``usage(result)``
    gives the tokens the server reported and its response headers, to settle the budget.
    """
    slots, limiter, deadlines = session.slots, session.limiter, session.deadlines
    attempt = 0
    while True:
        await slots.acquire()
        try:
            if limiter is not None and not limiter.try_acquire(tokens):
                await limiter.acquire(tokens)
            task = deadlines.start()
            try:
                result = await request(*args)
            except Exception as exc:  # classified below; nothing escapes unlabelled
                deadlines.finish(task)
                error = exc
            except BaseException as exc:  # cancelled (by its deadline, or from outside), KeyboardInterrupt, ...
                if not (isinstance(exc, asyncio.CancelledError) and deadlines.timed_out(task)):
                    deadlines.finish(task)  # (nothing of the attempt is left behind)
                    if limiter is not None:
                        limiter.settle(tokens, None, ok=False)
                    raise
                error = TimeoutError(f"no answer within {deadlines.seconds:g} s")
            else:
                deadlines.finish(task)
                if limiter is not None:
                    limiter.settle(tokens, *(usage(result) if usage is not None else (None, None)))
                return result
        finally:
            slots.release()
        attempt += 1
        await waiting_to_retry(_retry_delay(error, attempt, policy, what, limiter, tokens))


def _retry_delay(
    error: Exception, attempt: int, policy: RetryPolicy, what: str, limiter: RateLimiter | None, tokens: int
) -> float:
    """Seconds to wait before retry ``attempt`` (1-based) of a request that failed with ``error``;
    raises :class:`BackendError` or :class:`RowError` when it is not to be retried."""
    wait = retry_after(error)
    if limiter is not None:
        limiter.settle(tokens, None, response_headers(error), ok=False)
        if wait is not None and _status(error) == 429:
            limiter.pause(wait)  # the server wants every request to wait, not only this one
    kind = classify(error)
    if kind == "call":
        raise BackendError(f"{what}: {describe(error)}") from error
    if kind == "row":
        raise RowError(f"{what}: {describe(error)} (not retried)") from error
    if attempt > policy.max_retries:
        unreachable = cannot_connect(error)
        if unreachable is not None:  # no request reached the server: every row would fail the same way
            raise BackendError(
                f"{what}: cannot connect ({unreachable}; gave up after {attempt} attempts): is the server "
                "running at that address?"
            ) from error
        raise RowError(f"{what}: {describe(error)} (gave up after {attempt} attempts)") from error
    return policy.delay(attempt, wait)


def failed(error: BaseException | str, n: int) -> list[Any]:
    """``n`` GenerationFailure entries for one error."""
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
