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

    def completion_payload(self, body: dict, forced: int | None = None) -> dict[str, Any]:
        """The answer to a ``/v1/completions`` body (``forced``: the number of choices a fault imposes)."""
        choices = [
            {"text": reply_text(body, i), "index": i, "finish_reason": finish(body), "logprobs": None}
            for i in range(self._n(body, forced))
        ]
        if body.get("logprobs") is not None:
            for c in choices:
                words = c["text"].split(" ")
                c["logprobs"] = {
                    "tokens": words,
                    "token_logprobs": [-0.5] * len(words),
                    "top_logprobs": [{w: -0.5, "x": -2.0} for w in words],
                }
        return _envelope("text_completion", body, choices)

    def chat_payload(self, body: dict, forced: int | None = None) -> dict[str, Any]:
        """The answer to a ``/v1/chat/completions`` body (``forced``: the number of choices a fault imposes)."""
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": reply_text(body, i)},
                "finish_reason": finish(body),
            }
            for i in range(self._n(body, forced))
        ]
        if body.get("logprobs"):
            for c in choices:
                top = [{"token": "x", "logprob": -2.0, "bytes": None}][: body.get("top_logprobs") or 0]
                c["logprobs"] = {
                    "content": [
                        {"token": w, "logprob": -0.5, "bytes": None, "top_logprobs": top}
                        for w in c["message"]["content"].split(" ")
                    ]
                }
        return _envelope("chat.completion", body, choices)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self.completion_payload)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self.chat_payload)

    async def _models(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({"object": "list", "data": [{"id": "fault-model", "object": "model"}]})


def words(text: str) -> int:
    """The fake's token count: words."""
    return len(text.split())


def finish(body: dict) -> str:
    """``"length"`` when ``max_tokens`` is under 4 (the fake's way to show a cut generation), else ``"stop"``."""
    return "length" if (body.get("max_tokens") or body.get("max_completion_tokens") or 99) < 4 else "stop"


def _envelope(obj: str, body: dict, choices: list[dict]) -> dict[str, Any]:
    texts = [c.get("text") or c.get("message", {}).get("content", "") for c in choices]
    return {
        "id": "cmpl-test",
        "object": obj,
        "created": int(time.time()),
        "model": body.get("model", "fault-model"),
        "choices": choices,
        # the prompt counted once, the output of every choice together (as OpenAI reports n > 1)
        "usage": {
            "prompt_tokens": words(prompt_text(body)),
            "completion_tokens": sum(map(words, texts)),
            "total_tokens": words(prompt_text(body)) + sum(map(words, texts)),
        },
    }
