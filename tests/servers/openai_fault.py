"""A fault-injecting OpenAI-compatible server (see :mod:`tests.servers`)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.servers.base import Script, ServerThread, prompt_text


def reply_text(body: dict, index: int) -> str:
    """The deterministic text of choice ``index``: the prompt, the index and the seed."""
    return f"{prompt_text(body)} [gen {index} seed {body.get('seed')}]"


class FaultServer(ServerThread):
    """OpenAI-compatible: ``/v1/completions``, ``/v1/chat/completions``, ``/v1/models``.

    Args:
        script: faults per prompt substring (see :class:`tests.servers.Fault`).
        latency: seconds added to every request (the benchmark uses 0.1).
        ignore_n: answer one choice whatever ``n`` is (like llama.cpp's server).
    """

    def __init__(self, script: Script | None = None, latency: float = 0.0, ignore_n: bool = False) -> None:
        super().__init__(script, latency)
        self.ignore_n = ignore_n

    @property
    def url(self) -> str:
        """The OpenAI ``base_url`` (ends with ``/v1``)."""
        return f"{self.base_url}/v1"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/completions", self._completions),
            web.post("/v1/chat/completions", self._chat),
            web.get("/v1/models", self._models),
        ]

    def _n(self, body: dict, forced: int | None) -> int:
        if forced is not None:
            return forced
        return 1 if self.ignore_n else int(body.get("n") or 1)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        def answer(body: dict, forced: int | None) -> dict[str, Any]:
            choices = [
                {"text": reply_text(body, i), "index": i, "finish_reason": "stop", "logprobs": None}
                for i in range(self._n(body, forced))
            ]
            return _envelope("text_completion", body, choices)

        return await self.serve(request, answer)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        def answer(body: dict, forced: int | None) -> dict[str, Any]:
            choices = [
                {"index": i, "message": {"role": "assistant", "content": reply_text(body, i)}, "finish_reason": "stop"}
                for i in range(self._n(body, forced))
            ]
            return _envelope("chat.completion", body, choices)

        return await self.serve(request, answer)

    async def _models(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [{"id": "fault-model", "object": "model"}]})


def _envelope(obj: str, body: dict, choices: list[dict]) -> dict[str, Any]:
    return {
        "id": "cmpl-test",
        "object": obj,
        "created": int(time.time()),
        "model": body.get("model", "fault-model"),
        "choices": choices,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
