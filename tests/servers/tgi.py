"""A small server speaking the TGI protocol (see :mod:`tests.servers`)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from tests.servers.base import ServerThread, prompt_text


def tgi_text(body: dict) -> str:
    """Echo of a text_generation request: the prompt and the sampling params that arrived."""
    p = body.get("parameters") or {}
    return tgi_stop(f"{body.get('inputs')} [seed {p.get('seed')} sample {p.get('do_sample')}]", p.get("stop"))


def tgi_output(body: dict) -> dict[str, Any]:
    """TGI's answer: the text, and its details when asked (words stand for tokens)."""
    text, p = tgi_text(body), body.get("parameters") or {}
    out: dict[str, Any] = {"generated_text": text}
    if p.get("details"):
        out["details"] = {
            "finish_reason": "length" if (p.get("max_new_tokens") or 99) < 4 else "eos_token",
            "generated_tokens": len(text.split()),
            "seed": p.get("seed"),
            "prefill": [{"id": i, "text": w, "logprob": None} for i, w in enumerate(str(body.get("inputs")).split())]
            if p.get("decoder_input_details")
            else [],
            "tokens": [],
        }
    return out


def tgi_stop(text: str, stop: list[str] | None) -> str:
    """TGI ends a generation at a stop sequence and keeps it in the text (both endpoints)."""
    ends = [text.find(s) + len(s) for s in stop or () if s in text]
    return text[: min(ends)] if ends else text


class TGIServer(ServerThread):
    """TGI: ``POST /generate`` and ``POST /`` (text_generation), ``POST /v1/chat/completions``.

    ``url`` is what a client gets as its endpoint URL (requests go to ``/`` and
    ``/v1/chat/completions`` under it). Faults use the same script as FaultServer.
    """

    @property
    def url(self) -> str:
        return self.base_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/", self._generate_compat),
            web.post("/generate", self._generate),
            web.post("/v1/chat/completions", self._chat),
            web.get("/info", self._info),
        ]

    def error_payload(self, fault: Any) -> Any:
        # TGI's error body; huggingface_hub turns error_type into OverloadedError, ValidationError, ...
        kind = "overloaded" if fault.status == 429 else "validation" if fault.status < 500 else "generation"
        return {"error": fault.message, "error_type": kind}

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, lambda body, _n: tgi_output(body))

    async def _generate_compat(self, request: web.Request) -> web.StreamResponse:
        # TGI's "/" answers a list of one generation
        return await self.serve(request, lambda body, _n: [tgi_output(body)])

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        def answer(body: dict, forced: int | None) -> dict[str, Any]:
            text = tgi_stop(f"{prompt_text(body)} [chat seed {body.get('seed')}]", body.get("stop"))
            n = 1 if forced is None else forced  # TGI answers one choice
            return {
                "id": "chat-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "tgi"),
                "system_fingerprint": "test",
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "length" if (body.get("max_tokens") or 99) < 4 else "stop",
                        "logprobs": None,
                    }
                    for i in range(n)
                ],
                "usage": {
                    "prompt_tokens": len(prompt_text(body).split()),
                    "completion_tokens": len(text.split()),
                    "total_tokens": len(prompt_text(body).split()) + len(text.split()),
                },
            }

        return await self.serve(request, answer)

    async def _info(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response({"model_id": "tgi-test", "max_input_tokens": 1024})
