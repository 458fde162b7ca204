"""The contract of fnlabel, documented once.

Data flows one way::

    input dict --task.build_prompt--> Prompt --format--> str | list[ChatMessage]
        --backend(prompts, params)--> raw strings --task.parse--> dict --> LLMOutput

A *backend* is any callable ``generate(prompts, params) -> list[list[str]]``
returning, for each prompt, ``params.num_generations`` raw strings in order.
A generation that failed may be returned as a :class:`GenerationFailure`
instead of a string: only that generation's output is lost, and the failure is
reported for its row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypedDict, Union, runtime_checkable

import attrs

from fnlabel.errors import ConfigError

__all__ = [
    "LLMOutput",
    "Prompt",
    "ChatMessage",
    "FormattedPrompt",
    "GenerationParams",
    "GenerationFailure",
    "RawGeneration",
    "Backend",
]


class LLMOutput(TypedDict):
    """One generation for one input (the same keys as distilabel 0.x)."""

    model_name: str
    prompt_used: Any
    raw_output: str | None
    parsed_output: dict[str, Any] | None


class ChatMessage(TypedDict):
    role: str
    content: str


#: What a backend receives per prompt: a plain string, or chat messages.
FormattedPrompt = Union[str, list[ChatMessage]]


@attrs.frozen
class Prompt:
    """What a task builds from one input, before any prompt format is applied.

    Examples:
        >>> Prompt("Be brief.", "What is 2 + 2?").formatted_prompt
        'What is 2 + 2?'
    """

    system_prompt: str
    formatted_prompt: str

    def __attrs_post_init__(self) -> None:
        # one cheap check instead of attrs validators: a Prompt is built for every input row
        if self.system_prompt.__class__ is not str or self.formatted_prompt.__class__ is not str:
            for name in ("system_prompt", "formatted_prompt"):
                value = getattr(self, name)
                if not isinstance(value, str):
                    raise TypeError(f"Prompt.{name} must be a str, got {type(value).__name__}: {value!r}")


@attrs.frozen
class GenerationFailure:
    """Returned by a backend in place of a raw string for a generation it could not produce."""

    error: str


RawGeneration = Union[str, GenerationFailure]


def _range(name: str, low: float | None, high: float | None, *, low_open: bool = False, allow_none: bool = True):
    """A validator for ``low <= value <= high`` (``low < value`` when ``low_open``)."""

    def check(_inst: Any, _attr: attrs.Attribute, value: Any) -> None:
        if value is None and allow_none:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        if not ok:
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            bracket = "(" if low_open else "["
            raise ConfigError(
                f"GenerationParams.{name}={value!r} is out of range: allowed {bracket}{lo}, {hi}]"
            )

    return check


def _int_field(name: str, default: int | None, low: int) -> Any:
    def check(inst: Any, attr: attrs.Attribute, value: Any) -> None:
        if value is None and default is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"GenerationParams.{name} must be an integer >= {low}, got {value!r}")
        _range(name, low, None)(inst, attr, value)

    return attrs.field(default=default, validator=check)


def _float_field(name: str, default: float, low: float | None, high: float | None, **kw: Any) -> Any:
    # these floats are required: None is out of range too
    return attrs.field(default=default, converter=_to_float, validator=_range(name, low, high, allow_none=False, **kw))


def _to_float(value: Any) -> Any:
    # ints are fine for float fields (temperature=1); anything else is left for the validator
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _to_stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    try:
        stop = tuple(value)
    except TypeError:
        raise ConfigError(f"GenerationParams.stop must be a string or a list of strings, got {value!r}") from None
    if not all(isinstance(s, str) and s for s in stop):
        raise ConfigError(f"GenerationParams.stop must be non-empty strings, got {value!r}")
    return stop


@attrs.frozen
class GenerationParams:
    """The whole sampling request a backend receives, like vLLM's ``SamplingParams``.

    ``num_generations`` is set by the composed LLM from the call's
    ``num_generations``; everything else comes from the user or the recipe.
    ``top_k=None`` means "no top-k filtering"; ``seed=None`` means "unseeded".

    Examples:
        >>> GenerationParams(max_new_tokens=64, temperature=0.0).temperature
        0.0
        >>> GenerationParams(top_p=1.5)
        Traceback (most recent call last):
        ...
        fnlabel.errors.ConfigError: GenerationParams.top_p=1.5 is out of range: allowed (0, 1]
    """

    max_new_tokens: int = _int_field("max_new_tokens", 128, 1)
    temperature: float = _float_field("temperature", 0.7, 0.0, None)
    top_k: int | None = _int_field("top_k", None, 1)
    top_p: float = _float_field("top_p", 1.0, 0.0, 1.0, low_open=True)
    frequency_penalty: float = _float_field("frequency_penalty", 0.0, -2.0, 2.0)
    presence_penalty: float = _float_field("presence_penalty", 0.0, -2.0, 2.0)
    seed: int | None = _int_field("seed", None, 0)
    stop: tuple[str, ...] = attrs.field(default=(), converter=_to_stop)
    num_generations: int = _int_field("num_generations", 1, 1)

    def replace(self, **changes: Any) -> GenerationParams:
        """A copy with ``changes`` applied (and validated)."""
        return attrs.evolve(self, **changes)


@runtime_checkable
class Backend(Protocol):
    """``generate(prompts, params) -> list[list[str | GenerationFailure]]``.

    Optional attributes a backend may carry: ``model_name`` (str), ``prompt_format``
    (its natural format, e.g. ``"openai"`` for chat models), ``check_params(params)``
    (raise :class:`~fnlabel.errors.ConfigError` for params it cannot honour) and
    ``close()``.
    """

    def __call__(
        self, prompts: Sequence[FormattedPrompt], params: GenerationParams
    ) -> list[list[RawGeneration]]: ...


PromptFormattingFn = Callable[[Prompt], FormattedPrompt]
Input = Mapping[str, Any]
