"""Request and token budgets per minute for the HTTP backends, and the ``x-ratelimit-*`` headers.

:class:`RateLimiter` paces the requests of one backend (all its calls together, on its
event loop) so that they never go over ``max_requests_per_minute`` or
``max_tokens_per_minute``: each budget is a "generic cell rate" schedule (GCRA), which
spaces requests evenly rather than sending a minute's worth at once, so a server that
counts over any window (a minute, a second) sees no more than its limit. Pacing runs at
:data:`HEADROOM` of each limit: network jitter can bunch requests that left evenly spaced.

A request's tokens are estimated before it is sent (:func:`estimate_tokens`: the prompt's
characters / 4, plus ``max_new_tokens`` for each choice, as OpenAI's own limiter counts
them) and corrected by the usage the server reports: what was reserved but not used is
given back.

Servers also say where their own limits stand: ``x-ratelimit-remaining-requests`` /
``-tokens`` and ``x-ratelimit-reset-requests`` / ``-tokens`` (OpenAI, vLLM, Groq, ...).
When a response says no more requests (or too few tokens) remain than are already in
flight, new requests wait until the reset it gives.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["RateLimiter", "estimate_tokens", "parse_reset", "HEADROOM"]

#: the share of a configured limit that requests are paced at
HEADROOM = 0.95

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_reset(value: Any) -> float | None:
    """Seconds until a limit resets, from an ``x-ratelimit-reset-*`` header (None if unreadable).

    Examples:
        >>> parse_reset("1s"), parse_reset("6m0s"), parse_reset("20ms"), parse_reset("1h2m3.5s"), parse_reset("2.5")
        (1.0, 360.0, 0.02, 3723.5, 2.5)
    """
    if value is None:
        return None
    text = str(value).strip()
    try:
        seconds = float(text)
    except ValueError:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            return None
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def estimate_tokens(prompt: Any, max_new_tokens: int, choices: int = 1) -> int:
    """The tokens a request may use: its prompt's characters / 4 (rounded up), plus ``max_new_tokens`` per choice.

    Examples:
        >>> estimate_tokens("x" * 10, max_new_tokens=100, choices=2)
        203
        >>> estimate_tokens([{"role": "user", "content": "hello"}], 16)
        22
    """
    if isinstance(prompt, str):
        chars = len(prompt)
    else:  # chat messages: their contents, and a few tokens per message for the roles and separators
        chars = 0
        for m in prompt:
            if type(m) is dict or isinstance(m, Mapping):
                content = m.get("content", "")
                chars += (len(content) if type(content) is str else len(str(content))) + 16
    return -(-chars // 4) + max_new_tokens * choices


def _int(value: Any) -> int | None:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


class RateLimiter:
    """Paces one backend's requests under per-minute request and token budgets (either may be None),
    and under what the server's ``x-ratelimit-*`` headers say remains.

    Use it on the backend's event loop: ``await acquire(tokens)`` before a request, then
    ``settle(tokens, used, headers, ok)`` once it is answered (``ok=False``: it failed).
    """

    def __init__(
        self,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.request_gap = None if requests_per_minute is None else 60.0 / (requests_per_minute * HEADROOM)
        self.token_gap = None if tokens_per_minute is None else 60.0 / (tokens_per_minute * HEADROOM)
        #: what a one-second window tolerates over the paced rate: a request may leave that far ahead
        #: of its turn (less its own size), so answers that give tokens back are not lost to the wait
        self.token_slack = 0.0 if tokens_per_minute is None else (1 - HEADROOM) * tokens_per_minute / 60
        self.clock = clock
        self._request_at = 0.0  # when the next request may leave (its theoretical arrival time)
        self._token_at = 0.0  # when the token budget has room again for what is reserved
        self._paused_until = 0.0  # the server's tokens are spoken for (or a 429 said to wait) until then
        self._allowance: int | None = None  # requests the server's last headers leave (None: not limited)
        self._allowance_until = 0.0  # when that allowance resets
        self._in_flight = 0
        self._reserved = 0  # tokens of the requests in flight
        self._lock: asyncio.Lock | None = None
        self._changed: asyncio.Event | None = None  # set when an answer may let the next request leave sooner

    async def acquire(self, tokens: int) -> None:
        """Wait until a request of ``tokens`` (estimated) may be sent; requests leave in the order they asked."""
        if self._lock is None or self._changed is None:
            self._lock, self._changed = asyncio.Lock(), asyncio.Event()  # made on the loop that uses them
        async with self._lock:
            while True:
                now = self.clock()
                start = self._start(now, tokens)
                if start <= now:
                    break
                self._changed.clear()
                try:  # (not wait_for: on Python 3.11 it can swallow a cancellation that comes as it ends)
                    async with asyncio.timeout(start - now):
                        await self._changed.wait()
                except TimeoutError:
                    pass
            self._take(now, tokens)

    def try_acquire(self, tokens: int) -> bool:
        """Take a turn now if one is free (no request waiting before it, nothing to wait for): the
        common case, without a coroutine. False: ``await acquire(tokens)``."""
        if self._lock is not None and self._lock.locked():
            return False
        now = self.clock()
        if self._start(now, tokens) > now:
            return False
        self._take(now, tokens)
        return True

    def _take(self, now: float, tokens: int) -> None:
        if self.request_gap is not None:
            self._request_at = max(self._request_at, now) + self.request_gap
        if self.token_gap is not None:
            self._token_at = max(self._token_at, now) + tokens * self.token_gap
        if self._allowance is not None:
            self._allowance -= 1
        self._in_flight += 1
        self._reserved += tokens

    def _start(self, now: float, tokens: int) -> float:
        """When a request of ``tokens`` may leave, as things stand at ``now``."""
        if self._allowance is not None and self._allowance <= 0 and now >= self._allowance_until:
            # the server's window has reset: one request finds out where it stands (the next waits for its answer)
            self._allowance, self._allowance_until = 1, math.inf
        ahead = max(0.0, self.token_slack - tokens) * (self.token_gap or 0.0)
        start = max(now, self._paused_until, self._request_at, self._token_at - ahead)
        if self._allowance is not None and self._allowance <= 0:
            start = max(start, self._allowance_until)
        return start

    def settle(self, tokens: int, used: int | None, headers: Mapping[str, str] | None = None, ok: bool = True) -> None:
        """A request reserved with ``tokens`` is answered: give back what it did not use; read the server's headers.

        ``used``: the tokens the server reported (None when unknown: nothing is given back, since
        a server may count a failed request too).
        """
        self._in_flight = max(0, self._in_flight - 1)
        self._reserved = max(0, self._reserved - tokens)
        if self.token_gap is not None and used is not None and used < tokens:
            # the budget was charged for ``tokens``: the unused part is free again (never before now)
            self._token_at = max(self.clock(), self._token_at - (tokens - used) * self.token_gap)
        if headers and ("x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers):
            self.observe(headers)
        elif ok:
            # a server that says nothing of its limits: no allowance to keep to (nor a probe's "until
            # its answer": a later pause would keep to that forever)
            self._allowance, self._allowance_until = None, 0.0
        elif self._allowance is not None:
            self._allowance_until = min(self._allowance_until, self.clock())  # no answer: ask again
        if self._changed is not None:
            self._changed.set()

    def observe(self, headers: Mapping[str, str]) -> None:
        """Keep to what a server's headers say remains until their reset."""
        get = headers.get
        now = self.clock()
        requests = _int(get("x-ratelimit-remaining-requests"))
        if requests is not None:
            self._allowance = requests - self._in_flight  # those in flight take from it too
            self._allowance_until = now + (parse_reset(get("x-ratelimit-reset-requests")) or 0.0)
        tokens = _int(get("x-ratelimit-remaining-tokens"))
        if tokens is not None and tokens <= self._reserved:
            reset = parse_reset(get("x-ratelimit-reset-tokens"))
            if reset is not None:
                self._paused_until = max(self._paused_until, now + reset)

    def pause(self, seconds: float) -> None:
        """No request leaves for ``seconds`` (a 429's ``Retry-After``); then one, to find out where the limit stands."""
        now = self.clock()
        self._paused_until = max(self._paused_until, now + seconds)
        until = self._allowance_until if self._allowance is not None else 0.0  # (no allowance: none to keep)
        self._allowance, self._allowance_until = 0, max(until, now + seconds)
