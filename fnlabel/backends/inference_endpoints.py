"""Hugging Face Inference Endpoints, TGI servers and serverless models (``huggingface_hub``).

String prompts go to TGI ``text_generation``, chat prompts to ``chat_completion``.
Each generation is its own request with its own seed (``generation_seed(seed, i)``),
so ``num_generations`` fans out concurrently. Requests run on
``AsyncInferenceClient`` with the concurrency, retry and event-loop machinery of
:mod:`fnlabel.backends._async` (shared with the OpenAI backend).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from fnlabel import redact
from fnlabel.backends.base import check_capabilities
from fnlabel.backends.http import MalformedResponse, RetryPolicy, RowError, failed, gather_all, require, with_retries
from fnlabel.backends.local import cut_at_stop
from fnlabel.backends.loop import LoopBackend, Session
from fnlabel.backends.ratelimit import estimate_tokens
from fnlabel.backends.usage import finish_reason, int_or_none
from fnlabel.errors import BackendError, ConfigError
from fnlabel.formats import check_format
from fnlabel.seeds import generation_seed
from fnlabel.structured import StructuredOutput
from fnlabel.types import FormattedPrompt, Generation, GenerationParams, RawGeneration
from fnlabel.validators import integer, number, text, url

__all__ = ["InferenceEndpointsConfig", "InferenceEndpointsBackend", "inference_endpoints"]


@attrs.frozen
class InferenceEndpointsConfig:
    """Options of the Inference Endpoints backend (recipe ``kind = "inference-endpoints"``).

    Give exactly one target: ``endpoint_name`` (+ ``namespace``) of a dedicated
    Inference Endpoint, ``base_url`` of any TGI server, or only ``model_id`` for
    serverless inference (``provider`` picks the provider; default: huggingface_hub's).

    Attributes:
        model_id: the Hub model id (serverless target; sent as ``model`` in chat requests).
        endpoint_name: a dedicated Inference Endpoint, resolved to its URL on first use.
        namespace: the endpoint's user or organization (default: the token's user).
        base_url: a TGI server URL; the token is then optional (local servers need none).
        token_env: the environment variable holding the Hugging Face token; if unset, the token
            saved by ``hf auth login`` is used.
        provider: serverless provider (e.g. ``"hf-inference"``), only with ``model_id`` alone.
        max_concurrency, timeout, max_retries, backoff, max_backoff: as for the OpenAI backend.
        repetition_penalty: TGI's multiplicative penalty (text_generation only: chat prompts are
            refused with a ConfigError while it is set; unset: none).
        prompt_format: the natural prompt format (``"openai"``: chat messages -> chat_completion).
        max_requests_per_minute, max_tokens_per_minute: as for the OpenAI backend (huggingface_hub
            does not show response headers: only these budgets pace the requests).
    """

    model_id: str | None = attrs.field(default=None, validator=text(optional=True))
    endpoint_name: str | None = attrs.field(default=None, validator=text(optional=True))
    namespace: str | None = attrs.field(default=None, validator=text(optional=True))
    base_url: str | None = attrs.field(default=None, validator=url(optional=True))
    token_env: str = attrs.field(default="HF_TOKEN", validator=text())
    provider: str | None = attrs.field(default=None, validator=text(optional=True))
    max_concurrency: int = attrs.field(default=64, validator=integer(1))
    timeout: float = attrs.field(default=120.0, validator=number(0.0, low_open=True))
    max_retries: int = attrs.field(default=5, validator=integer(0))
    backoff: float = attrs.field(default=0.5, validator=number(0.0, low_open=True))
    max_backoff: float = attrs.field(default=60.0, validator=number(0.0, low_open=True))
    repetition_penalty: float | None = attrs.field(default=None, validator=number(0.0, low_open=True, optional=True))
    prompt_format: str = attrs.field(default="openai", validator=lambda _i, _a, v: check_format(v))
    #: budgets per minute over all calls of the backend (None: none); see docs/usage.md
    max_requests_per_minute: int | None = attrs.field(default=None, validator=integer(1, optional=True))
    max_tokens_per_minute: int | None = attrs.field(default=None, validator=integer(1, optional=True))

    kind: ClassVar[str] = "inference-endpoints"
    #: left out of the cache identity: the budgets do not change an output
    cache_ignore: ClassVar[tuple[str, ...]] = ("max_requests_per_minute", "max_tokens_per_minute")

    def __attrs_post_init__(self) -> None:
        if self.endpoint_name and self.base_url:
            raise ConfigError("inference-endpoints: set endpoint_name or base_url, not both")
        if not (self.endpoint_name or self.base_url or self.model_id):
            raise ConfigError("inference-endpoints: set model_id, endpoint_name (+ namespace) or base_url")
        if self.namespace and not self.endpoint_name:
            raise ConfigError("inference-endpoints: namespace only goes with endpoint_name")
        if self.provider and (self.endpoint_name or self.base_url):
            raise ConfigError("inference-endpoints: provider only goes with model_id alone (serverless)")

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_retries, self.timeout, self.backoff, self.max_backoff)

    def preflight(self, params: GenerationParams) -> list[str]:
        """What would stop this backend, knowable without a request: the library and a token."""
        try:
            require("inference-endpoints", "huggingface_hub")
            backend = InferenceEndpointsBackend
            check_capabilities("inference-endpoints", False, backend.structured_outputs, params)
        except ConfigError as exc:
            return [str(exc)]
        if self.base_url is None and not os.environ.get(self.token_env):
            from huggingface_hub import get_token

            if get_token() is None:
                return [
                    f"inference-endpoints backend ({self.endpoint_name or self.model_id}) needs a Hugging Face "
                    f"token: environment variable {self.token_env} is not set and no saved login was found"
                ]
        return []

    def build(self) -> InferenceEndpointsBackend:
        """The backend callable; reads the token now (ConfigError when one is needed and missing)."""
        require("inference-endpoints", "huggingface_hub")
        token = os.environ.get(self.token_env) or None
        if token is None and self.base_url is None:
            from huggingface_hub import get_token

            token = get_token()
            if token is None:
                target = self.endpoint_name or self.model_id
                raise ConfigError(
                    f"inference-endpoints backend ({target}) needs a Hugging Face token: environment variable "
                    f"{self.token_env} is not set and no saved login was found. Export it "
                    f"(export {self.token_env}=hf_...), run `hf auth login`, or set token_env in [backend]."
                )
        redact.register(token)
        return InferenceEndpointsBackend(self, token)


class InferenceEndpointsBackend(LoopBackend):
    """``generate(prompts, params)`` over TGI / Inference Endpoints. Make one with :func:`inference_endpoints`."""

    #: TGI's grammars: a JSON schema or a regex (choices become a regex of their alternatives)
    structured_outputs = ("json_schema", "choice", "regex")

    def __init__(self, config: InferenceEndpointsConfig, token: str | None) -> None:
        async def open_client() -> Any:
            from huggingface_hub import AsyncInferenceClient

            url = config.base_url or (
                await asyncio.to_thread(_endpoint_url, config, token) if config.endpoint_name else None
            )
            target = {"model": url} if url else {"model": config.model_id, "provider": config.provider}
            return AsyncInferenceClient(**target, token=token, timeout=config.timeout + 5)

        super().__init__(config, "fnlabel-inference-endpoints", open_client)
        self._what = f"inference-endpoints ({self.model_name})"

    @property
    def model_name(self) -> str:
        cfg = self.config
        return cfg.model_id or cfg.endpoint_name or cfg.base_url or "tgi"

    def check_prompts(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> None:
        """Refuse params the endpoint of these prompts cannot honour (before any request)."""
        kinds = {isinstance(p, str) for p in prompts}
        if True in kinds and params.presence_penalty:
            raise ConfigError(
                "inference-endpoints: presence_penalty has no TGI text_generation equivalent; use chat "
                "prompts (prompt_format 'openai' -> chat_completion) or leave it 0"
            )
        if False in kinds and params.top_k is not None:
            raise ConfigError(
                "inference-endpoints: chat_completion has no top_k; use a string prompt format "
                "(e.g. 'chatml' -> text_generation) or leave top_k unset"
            )
        if False in kinds and self.config.repetition_penalty is not None:
            raise ConfigError(
                "inference-endpoints: chat_completion has no repetition_penalty; use a string prompt format "
                "(e.g. 'chatml' -> text_generation) or unset repetition_penalty in [backend]"
            )

    check_request = check_prompts

    async def _prompt(self, prompt: FormattedPrompt, params: GenerationParams) -> list[RawGeneration]:
        """Each generation is its own request, with its own seed, all at once."""
        session = self._session
        base = params.seed if params.seed is not None else random.randrange(2**31)
        return await gather_all(
            [self._one(session, prompt, params, generation_seed(base, i)) for i in range(params.num_generations)]
        )

    async def _one(
        self, session: Session, prompt: FormattedPrompt, params: GenerationParams, seed: int
    ) -> RawGeneration:
        client = session.client
        if isinstance(prompt, str):
            request = lambda: _text(client, prompt, self.text_generation_kwargs(params, seed))
        else:
            request = lambda: _chat(client, prompt, self.chat_kwargs(params, seed))
        tokens = estimate_tokens(prompt, params.max_new_tokens) if session.limiter is not None else 0
        try:
            gen = await with_retries(request, (), session, self._policy, self._what, tokens, _usage)
        except RowError as exc:
            return failed(exc, 1)[0]
        # TGI keeps the stop sequence that ended the generation in its text; the other backends do not
        return attrs.evolve(gen, text=cut_at_stop(gen.text, params.stop)) if params.stop else gen

    def text_generation_kwargs(self, params: GenerationParams, seed: int) -> dict[str, Any]:
        """``AsyncInferenceClient.text_generation`` kwargs for one generation.

        Examples:
            >>> from fnlabel import GenerationParams
            >>> b = InferenceEndpointsConfig(base_url="http://127.0.0.1:1").build()
            >>> kw = b.text_generation_kwargs(GenerationParams(temperature=0.0, top_p=1.0), seed=3)
            >>> kw["do_sample"], kw["temperature"], kw["top_p"], kw["seed"]
            (False, None, None, 3)
        """
        sample = params.temperature > 0
        return {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "temperature": params.temperature if sample else None,  # TGI rejects temperature=0
            "top_k": params.top_k,
            "top_p": params.top_p if params.top_p < 1 else None,  # TGI requires top_p < 1
            "frequency_penalty": params.frequency_penalty or None,
            "repetition_penalty": self.config.repetition_penalty,
            "seed": seed,
            "stop": list(params.stop) or None,
            "grammar": tgi_grammar(params.structured_output),
            "return_full_text": False,
            "details": True,  # finish reason and generated tokens
            "decoder_input_details": True,  # the prompt's tokens (prefill)
        }

    def chat_kwargs(self, params: GenerationParams, seed: int) -> dict[str, Any]:
        """``AsyncInferenceClient.chat_completion`` kwargs for one generation."""
        return {
            "model": self.config.model_id,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p if params.top_p < 1 else None,
            "frequency_penalty": params.frequency_penalty or None,
            "presence_penalty": params.presence_penalty or None,
            "seed": seed,
            "stop": list(params.stop) or None,
            "response_format": tgi_grammar(params.structured_output),
        }


_REGEX_SPECIAL = frozenset("\\.^$*+?{}[]|()")


def tgi_grammar(constraint: StructuredOutput | None) -> dict[str, Any] | None:
    """TGI's ``grammar`` (``response_format`` in chat) for a structured output, or None.

    Examples:
        >>> tgi_grammar(StructuredOutput(choice=["yes", "no (sure)"]))
        {'type': 'regex', 'value': '(yes|no \\\\(sure\\\\))'}
    """
    if constraint is None:
        return None
    if constraint.json_schema is not None:
        return {"type": "json", "value": constraint.schema()}
    if constraint.regex is not None:
        return {"type": "regex", "value": constraint.regex}
    escaped = ["".join("\\" + c if c in _REGEX_SPECIAL else c for c in choice) for choice in constraint.choice or ()]
    return {"type": "regex", "value": "(" + "|".join(escaped) + ")"}


def _usage(gen: Generation) -> tuple[int | None, None]:
    """The tokens a generation used, as the server reported them (None when it did not)."""
    if gen.input_tokens is None or gen.output_tokens is None:
        return None, None
    return gen.input_tokens + gen.output_tokens, None


async def _text(client: Any, prompt: str, kwargs: dict[str, Any]) -> Generation:
    output = await client.text_generation(prompt, **kwargs)
    if isinstance(output, str):  # a server that is not TGI ignores details: the text alone
        return Generation(output)
    text, details = getattr(output, "generated_text", None), getattr(output, "details", None)
    if not isinstance(text, str):
        raise MalformedResponse(f"expected generated text, got {str(output)[:200]!r}")
    if details is None:
        return Generation(text)
    prefill = getattr(details, "prefill", None)
    return Generation(
        text,
        finish_reason=finish_reason(details.finish_reason),
        input_tokens=len(prefill) if prefill else None,
        output_tokens=int_or_none(details.generated_tokens),
    )


async def _chat(client: Any, messages: list[Any], kwargs: dict[str, Any]) -> Generation:
    response = await client.chat_completion(messages, **kwargs)
    choices = getattr(response, "choices", None)
    if not choices:
        raise MalformedResponse(f"expected a chat completion with choices, got {str(response)[:200]!r}")
    usage = getattr(response, "usage", None)
    return Generation(
        choices[0].message.content or "",
        finish_reason=finish_reason(getattr(choices[0], "finish_reason", None)),
        input_tokens=int_or_none(getattr(usage, "prompt_tokens", None)),
        output_tokens=int_or_none(getattr(usage, "completion_tokens", None)),
    )


def _endpoint_url(config: InferenceEndpointsConfig, token: str | None) -> str:
    """The URL of a running dedicated endpoint (BackendError naming its status otherwise)."""
    from huggingface_hub import get_inference_endpoint

    name = f"{config.namespace + '/' if config.namespace else ''}{config.endpoint_name}"
    try:
        endpoint = get_inference_endpoint(str(config.endpoint_name), namespace=config.namespace, token=token)
    except Exception as exc:
        raise BackendError(f"inference endpoint {name}: cannot look it up: {exc}") from exc
    if endpoint.status != "running" or not endpoint.url:
        raise BackendError(
            f"inference endpoint {name} is {endpoint.status!r}, not running: resume it in the Hugging Face UI "
            "or with huggingface_hub.get_inference_endpoint(...).resume().wait()"
        )
    return endpoint.url


def inference_endpoints(**options: Any) -> InferenceEndpointsBackend:
    """Make the Inference Endpoints backend; ``options`` are :class:`InferenceEndpointsConfig` fields.

    Examples:
        >>> gen = inference_endpoints(base_url="http://127.0.0.1:8080", model_id="HuggingFaceTB/SmolLM2-135M-Instruct")
        >>> gen.model_name, gen.prompt_format
        ('HuggingFaceTB/SmolLM2-135M-Instruct', 'openai')
    """
    return InferenceEndpointsConfig(**options).build()
