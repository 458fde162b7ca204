"""OpenAI and OpenAI-compatible servers (vLLM serve, llama.cpp's server, TGI, ...).

Chat prompts go to ``/chat/completions``, string prompts to ``/completions``.
Requests run on the official SDK's ``AsyncOpenAI`` with its aiohttp transport,
at most ``max_concurrency`` in flight, on an event loop owned by the backend
(see :mod:`fnlabel.backends._async`), so the sync ``generate`` is safe anywhere.
``num_generations`` uses the native ``n`` (greedy, ``temperature == 0``: one
choice, repeated); when a server returns fewer choices (llama.cpp's server
ignores ``n``) the missing ones are requested one by one, concurrently, and
later calls fan out directly. The SDK's own retries are off:
ours retry 408/409/429/5xx, timeouts, dropped connections and malformed bodies
with backoff and jitter that honour ``Retry-After``. A prompt whose retries run
out gets :class:`~fnlabel.types.GenerationFailure` entries; other rows go on.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from fnlabel.backends.http import (
    MalformedResponse,
    RetryPolicy,
    RowError,
    failed,
    gather_all,
    read_secret,
    require,
    with_retries,
)
from fnlabel.backends.local import cut_at_stop
from fnlabel.backends.loop import LoopBackend, Session
from fnlabel.backends.ratelimit import estimate_tokens
from fnlabel.backends.usage import chat_logprobs, completion_logprobs, finish_reason, int_or_none, split_exact
from fnlabel.errors import BackendError, ConfigError
from fnlabel.formats import check_format
from fnlabel.frozen import FrozenMap, frozen_table, thaw
from fnlabel.seeds import generation_seed
from fnlabel.types import FormattedPrompt, Generation, GenerationParams, OnPrompt, RawGeneration
from fnlabel.validators import boolean, integer, number, one_of, text, url

__all__ = ["OpenAIConfig", "OpenAIBackend", "openai", "PLACEHOLDER_KEY"]

#: request options of ``AsyncOpenAI.post``: authenticate with the key, as the typed endpoints do
_POST_OPTIONS: Any = {"security": {"bearer_auth": True}}

#: sent when ``base_url`` is set and the key variable is unset (local servers need no key)
PLACEHOLDER_KEY = "sk-no-key-required"


@attrs.frozen
class OpenAIConfig:
    """Options of the OpenAI backend (recipe ``kind = "openai"``).

    Attributes:
        model: the model name sent with each request (never checked against ``/models``).
        base_url: an OpenAI-compatible server, e.g. ``http://127.0.0.1:8000/v1``; unset: api.openai.com.
        api_key_env: the environment variable holding the key (the key itself is never stored).
            With ``base_url`` set and the variable unset, a placeholder key is sent (local servers).
        organization: OpenAI organization id, if any.
        max_concurrency: requests in flight at most (all calls of this backend together).
        timeout: seconds per request attempt.
        max_retries: retries per request after the first attempt.
        backoff: first retry delay in seconds (doubles each retry, with jitter; Retry-After wins).
        max_backoff: longest wait between two attempts, Retry-After included.
        extra_body: server-specific params merged into every request body.
        supports_top_k: the server accepts ``top_k`` in the body (vLLM, llama.cpp, TGI); else
            ``top_k`` is refused with a ConfigError rather than dropped.
        native_n: ask for ``num_generations`` with one ``n=k`` request; False: k requests with n=1
            (for servers that reject ``n``).
        max_tokens_param: ``"max_tokens"`` (compatible servers) or ``"max_completion_tokens"``
            (OpenAI reasoning models).
        prompt_format: the natural prompt format (``"openai"``: chat messages).
        max_requests_per_minute, max_tokens_per_minute: budgets the requests are paced under (tokens
            estimated from the prompt and ``max_new_tokens``, corrected by the reported usage); the
            server's ``x-ratelimit-*`` headers are read either way. See docs/usage.md.
    """

    model: str = attrs.field(validator=text())
    base_url: str | None = attrs.field(default=None, validator=url(optional=True))
    api_key_env: str = attrs.field(default="OPENAI_API_KEY", validator=text())
    organization: str | None = attrs.field(default=None, validator=text(optional=True))
    max_concurrency: int = attrs.field(default=64, validator=integer(1))
    timeout: float = attrs.field(default=120.0, validator=number(0.0, low_open=True))
    max_retries: int = attrs.field(default=5, validator=integer(0))
    backoff: float = attrs.field(default=0.5, validator=number(0.0, low_open=True))
    max_backoff: float = attrs.field(default=60.0, validator=number(0.0, low_open=True))
    extra_body: FrozenMap = attrs.field(default=None, converter=frozen_table)
    supports_top_k: bool = attrs.field(default=False, validator=boolean())
    native_n: bool = attrs.field(default=True, validator=boolean())
    max_tokens_param: str = attrs.field(default="max_tokens", validator=one_of("max_tokens", "max_completion_tokens"))
    prompt_format: str = attrs.field(default="openai", validator=lambda _i, _a, v: check_format(v))
    #: budgets per minute over all calls of the backend (None: none); see docs/usage.md
    max_requests_per_minute: int | None = attrs.field(default=None, validator=integer(1, optional=True))
    max_tokens_per_minute: int | None = attrs.field(default=None, validator=integer(1, optional=True))

    kind: ClassVar[str] = "openai"
    #: left out of the cache identity: the name of the length parameter and the budgets do not change an output
    cache_ignore: ClassVar[tuple[str, ...]] = ("max_tokens_param", "max_requests_per_minute", "max_tokens_per_minute")

    def build(self) -> OpenAIBackend:
        """The backend callable; reads the key from ``api_key_env`` now (ConfigError if missing)."""
        require("openai", "openai", "aiohttp")
        key = read_secret(
            self.api_key_env,
            what=f"openai backend (model {self.model!r})",
            fix=f"Export it (export {self.api_key_env}=sk-...), or set api_key_env in [backend] to the "
            "variable that holds your key. For a local server set base_url: a placeholder key is sent.",
            optional=self.base_url is not None,
        )
        return OpenAIBackend(self, key)

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.timeout, self.backoff, self.max_backoff)

    def check_params(self, params: GenerationParams) -> None:
        """Refuse params this backend cannot honour (``top_k`` unless ``supports_top_k``)."""
        if params.top_k is not None and not self.supports_top_k:
            raise ConfigError(
                f"openai backend: top_k={params.top_k} is not an OpenAI parameter. If the server at "
                f"{self.base_url or 'api.openai.com'} accepts top_k (vLLM, llama.cpp, TGI do), set "
                "supports_top_k = true in [backend]; otherwise leave top_k unset."
            )

    def preflight(self, params: GenerationParams) -> list[str]:
        """What would stop this backend, knowable without a request: the SDK, the key, the params."""
        problems = []
        try:
            require("openai", "openai", "aiohttp")
        except ConfigError as exc:
            problems.append(str(exc))
        if self.base_url is None and not os.environ.get(self.api_key_env):
            problems.append(
                f"openai backend (model {self.model!r}) needs an API key: environment variable {self.api_key_env} "
                f"is not set. Export it (export {self.api_key_env}=sk-...), or set api_key_env in [backend]."
            )
        try:
            self.check_params(params)
        except ConfigError as exc:
            problems.append(str(exc))
        return problems


class OpenAIBackend(LoopBackend):
    """``generate(prompts, params)`` over an OpenAI-compatible server. Make one with :func:`openai`."""

    def __init__(self, config: OpenAIConfig, api_key: str | None) -> None:
        async def open_client() -> Any:
            from openai import AsyncOpenAI, DefaultAioHttpClient

            return AsyncOpenAI(
                api_key=api_key or PLACEHOLDER_KEY,
                organization=config.organization,
                base_url=config.base_url,
                timeout=config.timeout + 5,  # asyncio.timeout in with_retries enforces config.timeout
                max_retries=0,  # fnlabel's retries are the only ones
                http_client=DefaultAioHttpClient(timeout=config.timeout + 5),
            )

        super().__init__(config, "fnlabel-openai", open_client, read_headers=True)
        self._placeholder_key = api_key is None
        self._extra_body = thaw(config.extra_body)  # plain JSON data, thawed once rather than per request
        self._n_ignored = not config.native_n
        where = f" at {config.base_url}" if config.base_url else ""
        self._what = f"openai ({config.model}{where})"

    @property
    def model_name(self) -> str:
        return self.config.model

    supports_logprobs = True

    def check_params(self, params: GenerationParams) -> None:
        """Refuse params this backend cannot honour (``top_k`` unless ``supports_top_k``)."""
        self.config.check_params(params)

    def check_request(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> None:
        self.check_params(params)

    async def _generate(
        self, prompts: list[FormattedPrompt], params: GenerationParams, on_prompt: OnPrompt | None = None
    ) -> list[list[RawGeneration]]:
        try:
            return await super()._generate(prompts, params, on_prompt)
        except BackendError as exc:
            if self._placeholder_key and "HTTP 401" in str(exc):
                raise BackendError(
                    f"{exc} (${self.config.api_key_env} is unset, so a placeholder key was sent: "
                    f"export {self.config.api_key_env}=<key>)"
                ) from exc
            raise

    async def _prompt(self, prompt: FormattedPrompt, params: GenerationParams) -> list[RawGeneration]:
        k, out = params.num_generations, list[RawGeneration]()
        if params.temperature == 0 and k > 1:
            # greedy: every generation is the same text, so one choice stands for all k (as in the
            # local backends); vLLM's server refuses n > 1 at temperature 0, and each choice is billed
            return (await self._prompt(prompt, params.replace(num_generations=1))) * k
        if k == 1 or not self._n_ignored:
            try:
                out = list((await self._retried(prompt, params, k, 0))[:k])
            except RowError as exc:
                return failed(exc, k)
            if len(out) < k:
                self._n_ignored = True  # later prompts fan out at once
        if len(out) < k:
            out += await gather_all([self._one(prompt, params, i) for i in range(len(out), k)])
        return out

    async def _one(self, prompt: FormattedPrompt, params: GenerationParams, index: int) -> RawGeneration:
        try:
            return (await self._retried(prompt, params, 1, index))[0]
        except RowError as exc:
            return failed(exc, 1)[0]

    async def _retried(self, prompt: FormattedPrompt, params: GenerationParams, n: int, index: int) -> list[Generation]:
        session: Session = self._loop.state
        tokens = estimate_tokens(prompt, params.max_new_tokens, n) if session.limiter is not None else 0
        gens, _headers = await with_retries(
            lambda: self._request(session.client, prompt, params, n, index),
            self._policy,
            session.semaphore,
            self._what,
            session.limiter,
            tokens,
            _usage,
        )
        return gens

    async def _request(
        self, client: Any, prompt: FormattedPrompt, params: GenerationParams, n: int, index: int
    ) -> tuple[list[Generation], Any]:
        # The body is plain JSON already, so it goes through the SDK's generic ``post`` (its
        # documented route for any endpoint): the typed ``create`` would transform every param
        # against its TypedDicts and cost ~20% more client CPU per request (benchmarks/openai_bench.py).
        # The response comes back as bytes and is read with json.loads for the same reason.
        chat = not isinstance(prompt, str)
        body = self.request_body(params, n, index, chat)
        body["messages" if chat else "prompt"] = prompt
        response = await client.post(
            "/chat/completions" if chat else "/completions", body=body, cast_to=_raw_response(), options=_POST_OPTIONS
        )
        content = response.content
        try:
            data = json.loads(content)
        except ValueError as exc:
            raise MalformedResponse(f"response is not JSON: {content[:200]!r}") from exc
        gens = _generations(data, chat=chat, top=params.logprobs)
        if params.stop:  # TGI's messages API keeps the stop sequence in the text; OpenAI and vLLM do not
            gens = [attrs.evolve(g, text=cut_at_stop(g.text, params.stop)) for g in gens]
        return gens, response.headers

    def request_body(self, params: GenerationParams, n: int = 1, index: int = 0, chat: bool = True) -> dict[str, Any]:
        """The JSON body (without the prompt) for ``n`` choices from generation ``index`` on.

        ``extra_body`` is merged first, so it cannot override the general params.
        The seed of generation ``index`` is ``generation_seed(params.seed, index)``.

        Examples:
            >>> from fnlabel import GenerationParams
            >>> cfg = OpenAIConfig(model="m", base_url="http://127.0.0.1:1/v1", supports_top_k=True)
            >>> b = OpenAIBackend(cfg, None).request_body(GenerationParams(top_k=5, seed=1, stop="\\n"))
            >>> b["max_tokens"], b["seed"], b["stop"], b["top_k"]
            (128, 1, ['\\n'], 5)
        """
        cfg = self.config
        body: dict[str, Any] = {
            **self._extra_body,
            "model": cfg.model,
            "n": n,
            cfg.max_tokens_param: params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "frequency_penalty": params.frequency_penalty,
            "presence_penalty": params.presence_penalty,
        }
        if params.seed is not None:
            body["seed"] = generation_seed(params.seed, index)
        if params.stop:
            body["stop"] = list(params.stop)
        if params.top_k is not None:
            body["top_k"] = params.top_k
        if params.logprobs is not None:
            body.update({"logprobs": True, "top_logprobs": params.logprobs} if chat else {"logprobs": params.logprobs})
        return body


@functools.cache
def _raw_response() -> Any:
    """The response class ``AsyncOpenAI.post`` returns as is (the body and the headers): the SDK's HTTP library's."""
    try:
        from httpx2 import Response  # the SDK's HTTP library since openai 2.x
    except ImportError:  # pragma: no cover - older openai releases are built on httpx
        from httpx import Response  # type: ignore[assignment]
    return Response


def _usage(answer: tuple[list[Generation], Any]) -> tuple[int | None, Any]:
    """The tokens a response used (what its usage said) and its headers, for the rate limiter."""
    gens, headers = answer
    counts = [(g.input_tokens, g.output_tokens) for g in gens]
    if any(i is None or o is None for i, o in counts):
        return None, headers
    return sum((i or 0) + (o or 0) for i, o in counts), headers


def _generations(data: Any, *, chat: bool, top: int | None) -> list[Generation]:
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
            logprobs=None if top is None else _logprobs(choice.get("logprobs"), chat, top),
        )
        for choice, text, i, o in zip(ordered, texts, inputs, outputs)
    ]


def _logprobs(logprobs: Any, chat: bool, top: int) -> tuple[dict[str, Any], ...] | None:
    if chat:
        return chat_logprobs(logprobs.get("content") if isinstance(logprobs, dict) else None, top)
    return completion_logprobs(logprobs, top)


def openai(**options: Any) -> OpenAIBackend:
    """Make the OpenAI backend; ``options`` are :class:`OpenAIConfig` fields.

    Examples:
        >>> import os
        >>> os.environ.pop("NO_SUCH_KEY_VAR", None)
        >>> gen = openai(model="smollm2", base_url="http://127.0.0.1:8080/v1", api_key_env="NO_SUCH_KEY_VAR")
        >>> gen.model_name, gen.prompt_format
        ('smollm2', 'openai')
    """
    return OpenAIConfig(**options).build()
