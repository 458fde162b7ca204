"""OpenAI and OpenAI-compatible servers (vLLM serve, llama.cpp's server, TGI, ...).

Chat prompts go to ``/chat/completions``, string prompts to ``/completions``.
Requests are JSON bodies POSTed with aiohttp (:class:`~fnlabel.backends.openai_wire.WireClient`:
the SDK's per-request machinery was most of the client's CPU; the SDK runs the Batch API), at most
``max_concurrency`` in flight, on an event loop owned by the backend (see
:mod:`fnlabel.backends.loop`), so the sync ``generate`` is safe anywhere.
``num_generations`` uses the native ``n`` (greedy, ``temperature == 0``: one
choice, repeated); when a server returns fewer choices (llama.cpp's server
ignores ``n``) the missing ones are requested one by one, concurrently, and
later calls fan out directly. The SDK's own retries are off:
ours retry 408/409/429/5xx, timeouts, dropped connections and malformed bodies
with backoff and jitter that honour ``Retry-After``. A prompt whose retries run
out gets :class:`~fnlabel.types.GenerationFailure` entries; other rows go on.
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar

import attrs

from fnlabel.backends.base import check_capabilities
from fnlabel.backends.http import (
    RetryPolicy,
    RowError,
    failed,
    gather_all,
    read_secret,
    require,
    with_retries,
)
from fnlabel.backends.local import cut_at_stop
from fnlabel.backends.loop import LoopBackend
from fnlabel.backends.openai_wire import DIALECTS, WireClient, constraint_fields, usage
from fnlabel.backends.ratelimit import estimate_tokens
from fnlabel.errors import BackendError, ConfigError
from fnlabel.formats import check_format
from fnlabel.frozen import FrozenMap, frozen_table, thaw
from fnlabel.seeds import generation_seed
from fnlabel.types import FormattedPrompt, Generation, GenerationParams, OnPrompt, RawGeneration
from fnlabel.validators import boolean, integer, number, one_of, text, url

__all__ = ["OpenAIConfig", "OpenAIBackend", "openai", "PLACEHOLDER_KEY"]

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
        structured_output_dialect: how a structured output is asked for: ``"openai"``
            (``response_format`` with a strict JSON schema), ``"vllm"`` (vLLM's ``structured_outputs``:
            JSON schema, choice, regex) or ``"llama-cpp"`` (llama-cpp-python's server: a GBNF
            ``grammar`` made here, for a JSON schema, choice or regex). See docs/structured.md.
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
    structured_output_dialect: str = attrs.field(default="openai", validator=one_of(*DIALECTS))

    kind: ClassVar[str] = "openai"
    #: left out of the cache identity: how the request spells a param, or paces requests, does not change an output
    cache_ignore: ClassVar[tuple[str, ...]] = (
        "max_tokens_param",
        "max_requests_per_minute",
        "max_tokens_per_minute",
        "structured_output_dialect",
    )

    @property
    def structured_outputs(self) -> tuple[str, ...]:
        """The structured outputs the server's dialect can ask for."""
        return DIALECTS[self.structured_output_dialect]

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
        """Refuse params this backend cannot honour (``top_k`` unless ``supports_top_k``, a structured
        output its dialect cannot ask for)."""
        backend = f"openai (structured_output_dialect {self.structured_output_dialect!r})"
        check_capabilities(backend, True, self.structured_outputs, params)
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
            return WireClient(config.base_url, api_key or PLACEHOLDER_KEY, config.organization, config.max_concurrency)

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

    @property
    def structured_outputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.config.structured_outputs

    def check_params(self, params: GenerationParams) -> None:
        """Refuse params this backend cannot honour (see :meth:`OpenAIConfig.check_params`)."""
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
        k = params.num_generations
        if k > 1 and params.temperature == 0:
            # greedy: every generation is the same text, so one choice stands for all k (as in the
            # local backends); vLLM's server refuses n > 1 at temperature 0, and each choice is billed
            return (await self._prompt(prompt, params.replace(num_generations=1))) * k
        out: list[Any] = []  # RawGeneration entries
        if k == 1 or not self._n_ignored:
            try:
                out = _cut(params, (await self._ask(prompt, params, k, 0))[0])
            except RowError as exc:
                return failed(exc, k)
            if len(out) >= k:
                return out if len(out) == k else out[:k]
            self._n_ignored = True  # later prompts fan out at once
        out += await gather_all([self._one(prompt, params, i) for i in range(len(out), k)])
        return out

    async def _one(self, prompt: FormattedPrompt, params: GenerationParams, index: int) -> RawGeneration:
        try:
            return _cut(params, (await self._ask(prompt, params, 1, index))[0])[0]
        except RowError as exc:
            return failed(exc, 1)[0]

    def _ask(
        self, prompt: FormattedPrompt, params: GenerationParams, n: int, index: int
    ) -> Coroutine[Any, Any, tuple[list[Generation], Any]]:
        """The retried request for ``n`` choices from generation ``index`` on: (its generations, its
        headers). A coroutine the caller awaits (no frame of its own: thousands are in flight)."""
        session = self._session
        chat = not isinstance(prompt, str)
        body = self.request_body(params, n, index, chat)
        body["messages" if chat else "prompt"] = prompt
        tokens = estimate_tokens(prompt, params.max_new_tokens, n) if session.limiter is not None else 0
        args = (chat, body, params.logprobs)
        return with_retries(session.client.post, args, session, self._policy, self._what, tokens, usage)

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
        if params.structured_output is not None:
            body.update(constraint_fields(params.structured_output, cfg.structured_output_dialect))
        return body


def _cut(params: GenerationParams, gens: list[Any]) -> list[Any]:
    """``gens`` cut at the first stop sequence: TGI's messages API keeps it in the text; OpenAI and vLLM do not."""
    if not params.stop:
        return gens
    return [attrs.evolve(g, text=cut_at_stop(g.text, params.stop)) for g in gens]


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
