"""The thread-hosted aiohttp server and the fault script shared by the test servers."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Fault:
    """What the server does with one request. Build with the class methods."""

    kind: str = "ok"  # ok | status | slow | drop | malformed | fewer
    status: int = 200
    message: str = ""
    retry_after: float | None = None
    delay: float = 0.0
    choices: int = 0

    @classmethod
    def ok(cls) -> Fault:
        return cls()

    @classmethod
    def error(
        cls, status: int = 500, message: str = "injected server error", retry_after: float | None = None
    ) -> Fault:
        """Answer ``status`` with an OpenAI-style error body (and ``Retry-After`` if given)."""
        return cls("status", status=status, message=message, retry_after=retry_after)

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1.0) -> Fault:
        return cls.error(429, "injected rate limit", retry_after)

    @classmethod
    def slow(cls, seconds: float = 30.0) -> Fault:
        """Answer normally, but only after ``seconds`` (longer than the client's timeout)."""
        return cls("slow", delay=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @classmethod
    def malformed(cls) -> Fault:
        """Answer 200 with truncated JSON."""
        return cls("malformed")

    @classmethod
    def fewer(cls, choices: int = 1) -> Fault:
        """Answer only ``choices`` choices, whatever ``n`` asked."""
        return cls("fewer", choices=choices)


#: substring of the prompt -> one Fault (every time) or a sequence (1st, 2nd, ... request; then ok);
#: or a function (body, path) -> Fault | None
Script = Mapping[str, Fault | Sequence[Fault]] | Callable[[dict, str], Fault | None]


@dataclass
class Seen:
    """One request the server received."""

    path: str
    body: Any
    fault: str
    headers: dict[str, str] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


def prompt_text(body: Any) -> str:
    """The prompt of an OpenAI/TGI request body as text (chat: the messages' contents)."""
    if not isinstance(body, dict):
        return ""
    if "messages" in body and isinstance(body["messages"], list):
        return "\n".join(str(m.get("content", "")) for m in body["messages"] if isinstance(m, dict))
    value = body.get("prompt", body.get("inputs", ""))
    return value if isinstance(value, str) else json.dumps(value)


class ServerThread:
    """An aiohttp app on 127.0.0.1:<free port>, served by an event loop in a daemon thread."""

    def __init__(self, script: Script | None = None, latency: float = 0.0) -> None:
        self.script = script if script is not None else {}
        self.latency = latency
        self.requests: list[Seen] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.in_flight = 0
        self.max_in_flight = 0

    # --- subclasses -------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    # --- lifecycle --------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.SockSite(self._runner, sock, backlog=1024).start())
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"test-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        self._loop = None

    async def _shutdown(self) -> None:
        await self._runner.cleanup()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:  # e.g. a "slow" answer its client gave up on
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the fault script ---------------------------------------------------------
    def count(self, key: str = "") -> int:
        """Requests whose prompt contains ``key`` (all requests for ``""``)."""
        with self._lock:
            return sum(key in prompt_text(s.body) for s in self.requests)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._counts.clear()
            self.max_in_flight = 0

    def pick(self, body: Any, path: str, headers: dict[str, str] | None = None) -> Fault:
        """The fault for this request (and record it)."""
        fault = Fault()
        with self._lock:
            if callable(self.script):
                fault = self.script(body, path) or fault
            else:
                text = prompt_text(body)
                for key, plan in self.script.items():
                    if key in text:
                        seen = self._counts.get(key, 0)
                        self._counts[key] = seen + 1
                        if isinstance(plan, Fault):
                            fault = plan
                        elif seen < len(plan):
                            fault = plan[seen]
                        break
            self.requests.append(Seen(path, body, fault.kind, dict(headers or {})))
        return fault

    def error_payload(self, fault: Fault) -> Any:
        """The body of an injected HTTP error (OpenAI style)."""
        return {"error": {"message": fault.message, "type": "injected", "code": fault.status}}

    async def serve(self, request: web.Request, answer: Callable[[Any, int | None], Any]) -> web.StreamResponse:
        """Apply the script, then ``answer(body, forced_choices)`` -> JSON payload."""
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": {"message": "request body is not JSON"}}, status=400)
        except ConnectionError:  # the client went away mid-body (a benchmark client exiting): nothing to answer
            return web.Response(status=499)
        fault = self.pick(body, request.path, dict(request.headers))
        self.in_flight += 1  # only touched on the server's loop
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, body, fault, answer)
        finally:
            self.in_flight -= 1

    async def _answer(
        self, request: web.Request, body: Any, fault: Fault, answer: Callable[[Any, int | None], Any]
    ) -> web.StreamResponse:
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault.kind == "status":
            headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            return web.json_response(self.error_payload(fault), status=fault.status, headers=headers)
        if fault.kind == "drop":
            request.transport.abort()  # type: ignore[union-attr]
            return web.Response(status=204)  # never reaches the client: the socket is gone
        if fault.kind == "malformed":
            return web.Response(text='{"id": "x", "choices": [{"text": "trunc', content_type="application/json")
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        return web.json_response(answer(body, fault.choices if fault.kind == "fewer" else None))
