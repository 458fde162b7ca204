"""The Backend protocol's defaults, and the adapter that makes a plain function a full backend.

Every built-in backend subclasses :class:`BackendBase` and defines ``__call__``,
``model_name`` and a ``config`` record; the base supplies the rest of
:class:`fnlabel.types.Backend`. :func:`as_backend` (what :func:`fnlabel.llm` applies
to the backend it is given) wraps anything else, such as a plain
``generate(prompts, params)`` function in a test, in a :class:`FunctionBackend` that
reads the optional attributes the function may carry (``model_name``,
``prompt_format``, ``max_concurrency``, ``check_params``, ``close``,
``cache_identity``, ``config``). That adapter is the only place fnlabel looks for
optional attributes on a backend.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from fnlabel import seeds
from fnlabel.errors import ConfigError
from fnlabel.redact import is_secret_name
from fnlabel.types import Backend, FormattedPrompt, GenerationParams, OnPrompt, RawGeneration

__all__ = [
    "BackendBase",
    "FunctionBackend",
    "as_backend",
    "config_identity",
    "canonical_json",
    "describe_backend",
    "check_capabilities",
]

log = logging.getLogger("fnlabel")


def check_capabilities(
    backend: str, supports_logprobs: bool, structured_outputs: Sequence[str], params: GenerationParams
) -> None:
    """ConfigError when ``params`` ask for logprobs or a structured output the backend cannot give."""
    if params.logprobs is not None and not supports_logprobs:
        raise ConfigError(
            f"backend {backend} cannot return logprobs: leave GenerationParams.logprobs "
            "([params] logprobs) unset, or use a backend that can (openai, vllm, llama-cpp, transformers)"
        )
    constraint = params.structured_output
    if constraint is not None and constraint.kind not in structured_outputs:
        can = ", ".join(structured_outputs) or "no structured output"
        raise ConfigError(
            f"backend {backend} cannot constrain its output to a {constraint.kind} "
            f"(it supports: {can}); see docs/structured.md for what each backend supports"
        )


def canonical_json(value: Any) -> str:
    """A canonical JSON text of ``value`` (sorted keys, no spaces; records as dicts): what cache keys hash."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    if attrs.has(type(value)):
        return attrs.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def config_identity(config: Any) -> str:
    """``kind:{fields}`` of a backend config record, without what does not change outputs.

    Left out: secrets (see :mod:`fnlabel.redact`), ``*_env`` fields (the name of a
    variable, not its value) and the fields named in the class's ``cache_ignore``
    ClassVar (latency, timeouts, retries, logging...).

    Examples:
        >>> from fnlabel.backends import EchoConfig
        >>> config_identity(EchoConfig(model_name="m1", latency=0.5))
        'echo:{"model_name":"m1","prompt_format":"default"}'
    """
    cls = type(config)
    kind = getattr(cls, "kind", None) or f"{cls.__module__}.{cls.__qualname__}"
    ignore = set(getattr(cls, "cache_ignore", ()))
    fields = {
        a.name: getattr(config, a.name)
        for a in attrs.fields(cls)
        if a.name not in ignore and not a.name.endswith("_env") and not is_secret_name(a.name)
    }
    return f"{kind}:{canonical_json(fields)}"


def _qualname(obj: Any) -> str:
    if isinstance(obj, functools.partial):
        return f"{_qualname(obj.func)}(*{obj.args!r}, **{obj.keywords!r})"
    target = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"


class BackendBase:
    """Defaults of :class:`fnlabel.types.Backend` for a backend class with a ``config`` record.

    A subclass defines ``__call__(prompts, params)`` and ``model_name``; it overrides
    ``prompt_format`` (default: None, the plain ``default`` format), ``max_concurrency``
    (default 1: a local model serves one call at a time), ``check_params`` and ``close``
    where it has something to say.
    """

    __slots__ = ()

    config: Any = None
    #: whether it fills ``Generation.logprobs`` when ``GenerationParams.logprobs`` asks for them
    supports_logprobs: bool = False
    #: the kinds of ``GenerationParams.structured_output`` it constrains decoding to (json_schema, choice, regex)
    structured_outputs: tuple[str, ...] = ()

    def __call__(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> list[list[RawGeneration]]:
        raise NotImplementedError

    @property
    def model_name(self) -> str:
        return type(self).__name__

    @property
    def prompt_format(self) -> str | None:
        return None

    @property
    def max_concurrency(self) -> int:
        return 1

    @property
    def cache_identity(self) -> str:
        """:func:`config_identity` of ``config``, else the class's qualified name and ``model_name``."""
        if attrs.has(type(self.config)):
            return config_identity(self.config)
        return f"{_qualname(self)}:{self.model_name}"

    def generate_from(
        self,
        prompts: Sequence[FormattedPrompt],
        params: GenerationParams,
        first_generation: int,
        on_prompt: OnPrompt | None = None,
    ) -> list[list[RawGeneration]]:
        """Generations ``first_generation..`` of each prompt: the call seeded as generation ``first_generation``.

        ``on_prompt(j, generations)`` hears of each prompt's generations; here, once the whole call
        has returned (a backend that can say it sooner, as the HTTP ones do, overrides this).
        """
        if first_generation and params.seed is not None:
            params = params.replace(seed=seeds.generation_seed(params.seed, first_generation))
        out = self(prompts, params)
        if on_prompt is not None and isinstance(out, list):
            for j, gens in enumerate(out):
                on_prompt(j, gens)
        return out

    def check_params(self, params: GenerationParams) -> None:
        """Refuse what this backend cannot honour: logprobs, structured outputs (a subclass adds its own)."""
        check_capabilities(describe_backend(self), self.supports_logprobs, self.structured_outputs, params)

    def close(self) -> None:
        """Nothing to release."""


@attrs.frozen
class FunctionBackend(BackendBase):
    """A plain ``generate(prompts, params)`` callable as a full backend (made by :func:`as_backend`)."""

    fn: Callable[..., list[list[RawGeneration]]]

    def __call__(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> list[list[RawGeneration]]:
        return self.fn(prompts, params)

    @property
    def config(self) -> Any:
        return getattr(self.fn, "config", None)

    @property
    def model_name(self) -> str:
        name = getattr(self.fn, "model_name", None) or getattr(self.fn, "__name__", None)
        return str(name or type(self.fn).__name__)

    @property
    def prompt_format(self) -> str | None:
        return getattr(self.fn, "prompt_format", None)

    @property
    def max_concurrency(self) -> int:
        try:
            value = getattr(self.fn, "max_concurrency", 1)
        except Exception:  # a property of the user's that fails: one call at a time
            return 1
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1

    @property
    def cache_identity(self) -> str:
        """The function's ``cache_identity`` (a string or a method returning one), else its
        ``config``'s identity, else its qualified name and ``model_name``."""
        explicit = getattr(self.fn, "cache_identity", None)
        if explicit is not None:
            value = explicit() if callable(explicit) else explicit
            if not isinstance(value, str) or not value:
                raise ConfigError(f"backend {describe_backend(self)}: cache_identity must be a non-empty string")
            return value
        if attrs.has(type(self.config)):
            return config_identity(self.config)
        qual = _qualname(self.fn)
        if "<lambda>" in qual or "<locals>" in qual:
            log.warning(
                "backend %s has no stable cache identity: set a `cache_identity` string attribute on it "
                "(two such backends with the same name would share cache entries)",
                qual,
            )
        name = getattr(self.fn, "model_name", None)
        return f"{qual}:{name}" if name else qual

    @property
    def supports_logprobs(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.fn, "supports_logprobs", False))

    @property
    def structured_outputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(getattr(self.fn, "structured_outputs", ()))

    def check_params(self, params: GenerationParams) -> None:
        super().check_params(params)
        check = getattr(self.fn, "check_params", None)
        if check is not None:
            check(params)

    def close(self) -> None:
        close = getattr(self.fn, "close", None)
        if close is not None:
            close()


_BACKEND_MEMBERS = (
    "model_name",
    "prompt_format",
    "max_concurrency",
    "cache_identity",
    "supports_logprobs",
    "structured_outputs",
    "generate_from",
    "check_params",
    "close",
)


def as_backend(obj: Any) -> Backend:
    """``obj`` when it implements :class:`fnlabel.types.Backend` fully, else ``obj`` wrapped in a :class:`FunctionBackend`.

    Examples:
        >>> def generate(prompts, params):
        ...     return [["ok"] * params.num_generations for _ in prompts]
        >>> backend = as_backend(generate)
        >>> backend.model_name, backend.max_concurrency, backend(["hi"], GenerationParams())
        ('generate', 1, [['ok']])
    """
    if isinstance(obj, BackendBase):
        return obj
    if not callable(obj):
        raise ConfigError(f"backend must be callable as generate(prompts, params), got {obj!r}")
    if all(hasattr(type(obj), m) for m in _BACKEND_MEMBERS):
        return obj
    return FunctionBackend(obj)


def describe_backend(backend: Any) -> str:
    """A readable name for a backend in error messages: ``Echo (echo)``, ``generate``."""
    target = backend.fn if isinstance(backend, FunctionBackend) else backend
    kind = getattr(target, "__qualname__", None) or type(target).__name__
    name = backend.model_name
    return f"{kind} ({name})" if name and name != kind else kind
