"""An OpenAI-compatible server that enforces request and token limits (see :mod:`tests.servers`).

It counts over a sliding window of ``window`` seconds, as a provider does over a minute:
at most ``requests`` requests and ``tokens`` tokens. A request is charged when it arrives
with the estimate OpenAI's own limiter uses (the prompt's characters / 4 plus
``max_tokens`` per choice) and, once answered, with the usage the answer reports. A request
over a limit gets 429 with ``Retry-After``; every answer carries the
``x-ratelimit-remaining-*`` / ``x-ratelimit-reset-*`` headers.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from typing import Any

from aiohttp import web

from tests.servers.base import prompt_text
from tests.servers.openai_fault import FaultServer


def charge(body: dict) -> int:
    """What a request is charged when it arrives: ``ceil(chars / 4) + max_tokens * n``."""
    limit = body.get("max_tokens") or body.get("max_completion_tokens") or 16
    return math.ceil(len(prompt_text(body)) / 4) + int(limit) * int(body.get("n") or 1)


class LimitedServer(FaultServer):
    """``LimitedServer(requests=40, tokens=None, window=2.0)``: a FaultServer behind a rate limiter.

    Attributes after a run: ``admitted`` (answered requests), ``rejected`` (429s),
    ``charged`` (tokens of the answered requests, by their reported usage) and ``first`` /
    ``last`` (monotonic times of the first and last admitted request).
    """

    def __init__(
        self, requests: int | None = None, tokens: int | None = None, window: float = 2.0, latency: float = 0.0
    ) -> None:
        super().__init__(latency=latency)
        self.limit_requests, self.limit_tokens, self.window = requests, tokens, window
        self.entries: deque[list[float]] = deque()  # [time, tokens] of each admitted request in the window
        self.admitted = self.rejected = self.charged = 0
        self.first = self.last = 0.0

    def _expire(self, now: float) -> None:
        while self.entries and self.entries[0][0] <= now - self.window:
            self.entries.popleft()

    def _headers(self, now: float) -> dict[str, str]:
        reset = max(0.0, self.entries[0][0] + self.window - now) if self.entries else 0.0
        out = {"x-ratelimit-reset-requests": f"{reset:.3f}s", "x-ratelimit-reset-tokens": f"{reset:.3f}s"}
        if self.limit_requests is not None:
            out["x-ratelimit-remaining-requests"] = str(max(0, self.limit_requests - len(self.entries)))
        if self.limit_tokens is not None:
            used = sum(tokens for _, tokens in self.entries)
            out["x-ratelimit-remaining-tokens"] = str(max(0, int(self.limit_tokens - used)))
        return out

    async def serve(self, request: web.Request, answer: Any) -> web.StreamResponse:
        body = await request.json()
        now = time.monotonic()
        self._expire(now)
        cost = charge(body)
        over_requests = self.limit_requests is not None and len(self.entries) + 1 > self.limit_requests
        used = sum(tokens for _, tokens in self.entries)
        over_tokens = self.limit_tokens is not None and used + cost > self.limit_tokens
        if over_requests or over_tokens:
            self.rejected += 1
            wait = self.entries[0][0] + self.window - now if self.entries else self.window
            headers = {**self._headers(now), "Retry-After": f"{max(wait, 0.01):.3f}"}
            what = "requests" if over_requests else "tokens"
            error = {"error": {"message": f"Rate limit reached for {what}", "type": "rate_limit"}}
            return web.json_response(error, status=429, headers=headers)
        entry = [now, float(cost)]
        self.entries.append(entry)
        self.admitted += 1
        self.first = self.first or now
        self.last = now
        response = await super().serve(request, answer)
        if response.status == 200:
            usage = json.loads(response.body)["usage"]  # type: ignore[arg-type]
            entry[1] = usage["total_tokens"]  # the reported usage replaces the estimate
            self.charged += usage["total_tokens"]
        response.headers.update(self._headers(time.monotonic()))
        return response
