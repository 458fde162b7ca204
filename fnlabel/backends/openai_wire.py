"""The OpenAI protocol on the wire: what a request carries for a structured output, what a response holds.

:func:`generations` reads a completion's choices with their share of its usage and their
logprobs; :func:`constraint_fields` spells a structured output in a server's dialect.
"""

from __future__ import annotations

import json
from typing import Any

from fnlabel.backends.grammar import gbnf
from fnlabel.backends.http import MalformedResponse
from fnlabel.backends.usage import chat_logprobs, completion_logprobs, finish_reason, int_or_none, split_exact
from fnlabel.structured import KINDS, StructuredOutput
from fnlabel.types import Generation

__all__ = ["DIALECTS", "constraint_fields", "usage", "generations", "HTTPStatusError", "WireClient"]

#: structured output dialect -> the kinds it can ask for
DIALECTS = {"openai": ("json_schema",), "vllm": ("json_schema", "choice", "regex"), "llama-cpp": KINDS}


def constraint_fields(constraint: StructuredOutput, dialect: str) -> dict[str, Any]:
    """The request fields that ask a server of ``dialect`` for a structured output.

    Examples:
        >>> constraint_fields(StructuredOutput(choice=["a", "b"]), "vllm")
        {'structured_outputs': {'choice': ['a', 'b']}}
    """
    if dialect == "openai":
        spec = {"name": "output", "schema": openai_schema(constraint.schema()), "strict": True}
        return {"response_format": {"type": "json_schema", "json_schema": spec}}
    if dialect == "vllm":
        if constraint.json_schema is not None:
            return {"structured_outputs": {"json": constraint.schema()}}
        if constraint.choice is not None:
            return {"structured_outputs": {"choice": list(constraint.choice)}}
        return {"structured_outputs": {"regex": constraint.regex}}
    return {"grammar": gbnf(constraint)}  # llama-cpp-python's server: the same grammar as the llama-cpp backend


#: JSON schema keywords OpenAI's strict mode refuses; left out of the request (fnlabel still validates them)
OPENAI_UNSUPPORTED = frozenset({"minLength", "maxLength"})


def openai_schema(schema: Any) -> Any:
    """``schema`` without the keywords OpenAI's strict mode refuses (at any depth; property names kept).

    Examples:
        >>> openai_schema({"type": "object", "properties": {"maxLength": {"type": "string", "maxLength": 9}}})
        {'type': 'object', 'properties': {'maxLength': {'type': 'string'}}}
    """
    if isinstance(schema, list):
        return [openai_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            out[key] = {name: openai_schema(sub) for name, sub in value.items()}
        elif key not in OPENAI_UNSUPPORTED:
            out[key] = openai_schema(value)
    return out


class HTTPStatusError(Exception):
    """A 4xx/5xx answer: its status, headers and body, read by :mod:`fnlabel.backends.http`
    (``status_code`` classifies it, ``headers`` give Retry-After, ``body`` the server's message)."""

    def __init__(self, status: int, headers: Any, raw: bytes) -> None:
        try:
            self.body: Any = json.loads(raw)
        except ValueError:
            self.body = raw[:500].decode("utf-8", "replace")
        self.status_code, self.headers = status, headers
        super().__init__(f"HTTP {status}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fnlabel")
    except PackageNotFoundError:  # (run from a source tree)
        return "dev"


class WireClient:
    """The requests of the openai backend: JSON bodies POSTed with aiohttp, answers read with ``json.loads``.

    What the SDK would add per request (building typed request options, httpx-style request and
    response objects over its aiohttp transport) is most of the client's CPU at hundreds of
    requests in flight: see docs/backends/openai.md. Made on the backend's event loop.
    """

    def __init__(self, base_url: str | None, api_key: str, organization: str | None, limit: int) -> None:
        import aiohttp
        from yarl import URL

        base = (base_url or "https://api.openai.com/v1").rstrip("/")
        self.urls = {True: URL(base + "/chat/completions"), False: URL(base + "/completions")}
        headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "User-Agent": f"fnlabel/{_version()}",
        }
        if organization:
            headers["OpenAI-Organization"] = organization
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, ttl_dns_cache=300)
        # no timeout here: fnlabel's retry loop times each attempt (flow.Deadlines)
        self.session = aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=aiohttp.ClientTimeout(total=None)
        )

    async def post(self, chat: bool, body: dict[str, Any], top: int | None) -> tuple[list[Generation], Any]:
        """POST ``body`` to the (chat) completions endpoint: (the answer's :func:`generations`, its headers).

        Raises HTTPStatusError for a 4xx/5xx, MalformedResponse for an answer that is not a completion.
        """
        async with self.session.post(self.urls[chat], data=json.dumps(body).encode()) as response:
            raw = await response.read()
            if response.status >= 400:
                raise HTTPStatusError(response.status, response.headers, raw)
            headers = response.headers
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise MalformedResponse(f"response is not JSON: {raw[:200]!r}") from exc
        return generations(data, chat=chat, top=top), headers

    async def close(self) -> None:
        await self.session.close()


def usage(answer: tuple[list[Generation], Any]) -> tuple[int | None, Any]:
    """The tokens a response used (what its usage said) and its headers, for the rate limiter."""
    gens, headers = answer
    counts = [(g.input_tokens, g.output_tokens) for g in gens]
    if any(i is None or o is None for i, o in counts):
        return None, headers
    return sum((i or 0) + (o or 0) for i, o in counts), headers


def generations(data: Any, *, chat: bool, top: int | None) -> list[Generation]:
    """A response's choices in index order, with their share of its usage; MalformedResponse if it is not one.

    ``usage`` counts the prompt once and the output of all choices together: the prompt's
    tokens are split evenly over the choices and the output's in proportion to their texts,
    so that the sums over a run's generations equal what the server billed.
    """
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse(f"expected a completion with choices, got {str(data)[:200]!r}")
    try:
        ordered = sorted(choices, key=lambda c: c.get("index") or 0)
        if chat:
            texts = [c["message"].get("content") or "" for c in ordered]
        else:
            texts = [c.get("text") or "" for c in ordered]
    except (AttributeError, KeyError, TypeError) as exc:
        raise MalformedResponse(f"unexpected choice shape: {str(data)[:200]!r}") from exc
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    inputs = split_exact(int_or_none(usage.get("prompt_tokens")), [1] * len(texts))
    outputs = split_exact(int_or_none(usage.get("completion_tokens")), [len(t) + 1 for t in texts])
    return [
        Generation(
            text,
            finish_reason=finish_reason(choice.get("finish_reason")),
            input_tokens=i,
            output_tokens=o,
            logprobs=None if top is None else logprobs_of(choice.get("logprobs"), chat, top),
        )
        for choice, text, i, o in zip(ordered, texts, inputs, outputs)
    ]


def logprobs_of(logprobs: Any, chat: bool, top: int) -> tuple[dict[str, Any], ...] | None:
    if chat:
        return chat_logprobs(logprobs.get("content") if isinstance(logprobs, dict) else None, top)
    return completion_logprobs(logprobs, top)
