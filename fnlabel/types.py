"""The contract of fnlabel, documented once: the records that flow and the two protocols.

Data flows one way::

    input dict --task.build_prompt--> Prompt --format--> str | list[ChatMessage]
        --backend(prompts, params)--> raw strings --task.parse--> dict --> LLMOutput

* A :class:`Backend` returns, for each prompt, ``params.num_generations`` raw strings
  in order. A generation that failed may be returned as a :class:`GenerationFailure`
  instead of a string: only that generation's output is lost, and the failure is
  reported for its row. Any plain function ``generate(prompts, params)`` is a
  backend: :func:`fnlabel.llm` gives it the rest of the protocol's defaults.
* A :class:`Task` is a record of pure functions: ``build_prompt`` and ``parse``.
* An :class:`LLMLike` is what :func:`fnlabel.llm` returns and every combinator takes
  and returns: call it, ``run`` it (outputs plus :class:`RowFailure` records), or
  ``submit`` it (a Future of the :class:`RunResult`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypedDict, runtime_checkable

import attrs

from fnlabel.errors import ConfigError
from fnlabel.frozen import FrozenMap, frozen_table
from fnlabel.structured import StructuredOutput, to_structured_output
from fnlabel.validators import MAX_LOGPROBS, MAX_NEW_TOKENS, MAX_NUM_GENERATIONS, as_float, integer, number

__all__ = [
    "LLMOutput",
    "Prompt",
    "ChatMessage",
    "FormattedPrompt",
    "GenerationParams",
    "GenerationFailure",
    "Generation",
    "RawGeneration",
    "text_of",
    "Task",
    "RowFailure",
    "RunResult",
    "Backend",
    "LLMLike",
    "is_llm_like",
    "Input",
]


class _SeedOutput(TypedDict):
    model_name: str
    prompt_used: Any
    raw_output: str | None
    parsed_output: dict[str, Any] | None


class LLMOutput(_SeedOutput, total=False):
    """One generation for one input (the same four keys as distilabel 0.x, plus an optional fifth).

    ``metadata`` (only when asked for: ``fnlabel.llm(..., metadata=True)``, and in ``fnlabel run``)
    says why and at what cost the generation ended: ``{"finish_reason", "input_tokens",
    "output_tokens"}`` plus ``"logprobs"`` when ``GenerationParams.logprobs`` is set; a value the
    backend did not report is None.
    """

    metadata: dict[str, Any]


class ChatMessage(TypedDict):
    role: str
    content: str


#: What a backend receives per prompt: a plain string, or chat messages.
FormattedPrompt = str | list[ChatMessage]


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


@attrs.frozen(slots=True)
class Generation:
    """One generation with what the backend knows of it (a plain string is a generation too).

    Attributes:
        text: what the model wrote.
        finish_reason: why it stopped: ``"stop"`` (an end token or a stop string), ``"length"``
            (``max_new_tokens`` reached: the text is cut), or the server's own word; None if unknown.
        input_tokens: the prompt's tokens (a request of several choices splits its usage over them,
            so that totals stay exact).
        output_tokens: the tokens the model generated for it: those of a stop string that cut the
            text included (servers bill them), the end-of-sequence token that ended it not. A
            greedy generation repeated for ``num_generations`` repeats its counts too.
        logprobs: when ``GenerationParams.logprobs`` asked for them: one
            ``{"token", "logprob", "top_logprobs": [{"token", "logprob"}, ...]}`` per output token.

    Examples:
        >>> Generation("Paris.", finish_reason="stop", input_tokens=12, output_tokens=2).metadata()
        {'finish_reason': 'stop', 'input_tokens': 12, 'output_tokens': 2}
    """

    text: str
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    logprobs: tuple[dict[str, Any], ...] | None = None

    def metadata(self, logprobs: bool = False) -> dict[str, Any]:
        """The ``metadata`` of an :class:`LLMOutput` (with ``"logprobs"`` when asked for)."""
        meta: dict[str, Any] = {
            "finish_reason": self.finish_reason,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }
        if logprobs:
            meta["logprobs"] = None if self.logprobs is None else list(self.logprobs)
        return meta


#: what a backend returns per generation: the text, the text with its metadata, or a failure
RawGeneration = str | Generation | GenerationFailure


def text_of(generation: RawGeneration) -> str | None:
    """The text of what a backend returned for one generation (None for a failure).

    Examples:
        >>> text_of("Paris."), text_of(Generation("Paris.", "stop")), text_of(GenerationFailure("timeout"))
        ('Paris.', 'Paris.', None)
    """
    if isinstance(generation, Generation):
        return generation.text
    return generation if isinstance(generation, str) else None


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
        fnlabel.errors.ConfigError: GenerationParams.top_p must be a number in (0, 1], got 1.5
    """

    max_new_tokens: int = attrs.field(default=128, validator=integer(1, high=MAX_NEW_TOKENS))
    temperature: float = attrs.field(default=0.7, converter=as_float, validator=number(0.0))
    top_k: int | None = attrs.field(default=None, validator=integer(1, optional=True))
    top_p: float = attrs.field(default=1.0, converter=as_float, validator=number(0.0, 1.0, low_open=True))
    frequency_penalty: float = attrs.field(default=0.0, converter=as_float, validator=number(-2.0, 2.0))
    presence_penalty: float = attrs.field(default=0.0, converter=as_float, validator=number(-2.0, 2.0))
    seed: int | None = attrs.field(default=None, validator=integer(0, optional=True))
    stop: tuple[str, ...] = attrs.field(default=(), converter=_to_stop)
    num_generations: int = attrs.field(default=1, validator=integer(1, high=MAX_NUM_GENERATIONS))
    #: the ``logprobs`` of each output token and of its ``logprobs`` most likely alternatives (None: not asked)
    logprobs: int | None = attrs.field(default=None, validator=integer(0, high=MAX_LOGPROBS, optional=True))
    #: what each generation must look like (a JSON schema, choices or a regex), see :mod:`fnlabel.structured`
    structured_output: StructuredOutput | None = attrs.field(default=None, converter=to_structured_output)

    def replace(self, **changes: Any) -> GenerationParams:
        """A copy with ``changes`` applied (and validated)."""
        return attrs.evolve(self, **changes)


def _optional_table(value: Any) -> FrozenMap | None:
    return None if value is None else frozen_table(value)


def _tuple_of_str(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@attrs.frozen
class Task:
    """A record of pure functions: no I/O, no model.

    ``build_prompt(input) -> Prompt`` reads ``input_keys`` from an input dict;
    ``parse(raw) -> dict`` returns a dict with ``output_keys``, or raises
    :class:`~fnlabel.errors.ParseError`. Both should be picklable (top-level
    functions or frozen attrs callables) so a task can cross a process boundary.

    Examples:
        >>> echo_task = Task(
        ...     name="shout",
        ...     build_prompt=lambda row: Prompt("", row["text"]),
        ...     parse=lambda raw: {"loud": raw.upper()},
        ...     input_keys=("text",),
        ...     output_keys=("loud",),
        ... )
        >>> echo_task.parse("hi")
        {'loud': 'HI'}
    """

    name: str
    build_prompt: Callable[[Mapping[str, Any]], Prompt]
    parse: Callable[[str], dict[str, Any]]
    input_keys: tuple[str, ...] = attrs.field(converter=_tuple_of_str)
    output_keys: tuple[str, ...] = attrs.field(converter=_tuple_of_str)
    #: the JSON schema ``parse`` expects its raw text to follow (None: free text); the LLM then asks the
    #: backend to constrain decoding to it (``GenerationParams.structured_output``)
    schema: FrozenMap | None = attrs.field(default=None, converter=_optional_table)
    #: ``row_schema(row)``: the schema of one row's answer when it depends on the row (one rating per
    #: text of the row, say); a refinement of ``schema``, which ``parse`` checks
    row_schema: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

    def missing_keys(self, row: Mapping[str, Any]) -> list[str]:
        """The task's input keys that ``row`` lacks (empty when the row is usable)."""
        if not isinstance(row, Mapping):
            return list(self.input_keys)
        return [k for k in self.input_keys if k not in row]


@attrs.frozen
class RowFailure:
    """Why row ``row`` (or only its generation ``generation``) has no output.

    ``stage`` is ``"input"`` (missing keys, build_prompt failed), ``"backend"``
    (the generation failed, e.g. retries exhausted) or ``"parse"``; a two-stage
    chain prefixes it with ``generate.`` or ``label.``.
    """

    row: int
    generation: int | None
    stage: str
    error: str


@attrs.frozen
class RunResult:
    """The outputs of one call plus what failed in it."""

    outputs: list[list[LLMOutput]]
    failures: tuple[RowFailure, ...] = ()


#: one input row
Input = Mapping[str, Any]
#: ``on_prompt(j, generations)``: prompt ``j`` of a call has all its generations (see Backend.generate_from)
OnPrompt = Callable[[int, list[RawGeneration]], None]
PromptFormattingFn = Callable[[Prompt], FormattedPrompt]


@runtime_checkable
class Backend(Protocol):
    """What the composed LLM calls: ``backend(prompts, params) -> list[list[str | GenerationFailure]]``.

    :class:`fnlabel.backends.base.BackendBase` gives every member a default, and
    :func:`fnlabel.backends.base.as_backend` wraps a plain function in it.

    Attributes:
        model_name: reported in each output.
        prompt_format: the backend's natural prompt format (``"openai"`` for chat models), or None.
        max_concurrency: calls worth running at once (HTTP backends: requests in flight).
        cache_identity: a stable string naming what the backend computes (the cache keys on it).
        supports_logprobs: whether it fills :attr:`Generation.logprobs` (else ``logprobs`` is refused).
        structured_outputs: the kinds of ``GenerationParams.structured_output`` it constrains decoding
            to (``"json_schema"``, ``"choice"``, ``"regex"``); others are refused.
    """

    @property
    def model_name(self) -> str: ...

    @property
    def prompt_format(self) -> str | None: ...

    @property
    def max_concurrency(self) -> int: ...

    @property
    def cache_identity(self) -> str: ...

    @property
    def supports_logprobs(self) -> bool: ...

    @property
    def structured_outputs(self) -> tuple[str, ...]: ...

    def __call__(self, prompts: Sequence[FormattedPrompt], params: GenerationParams) -> list[list[RawGeneration]]: ...

    def generate_from(
        self,
        prompts: Sequence[FormattedPrompt],
        params: GenerationParams,
        first_generation: int,
        on_prompt: OnPrompt | None = None,
    ) -> list[list[RawGeneration]]:
        """Generations ``first_generation..first_generation+k-1`` of each prompt, seeded as such.

        ``on_prompt(j, generations)`` is called once per prompt as soon as its generations are
        there (an HTTP backend: as its responses arrive), so what was paid for can be kept at once.
        """
        ...

    def check_params(self, params: GenerationParams) -> None:
        """Raise :class:`~fnlabel.errors.ConfigError` for params the backend cannot honour."""
        ...

    def close(self) -> None:
        """Release the backend's model, client or event loop (a later call may reopen them)."""
        ...


@runtime_checkable
class LLMLike(Protocol):
    """The contract of every composed LLM, combinator and two-stage chain.

    Calling returns the outputs (a list, or a Future of it for ``threaded`` and
    ``in_process``); ``run`` blocks and returns a :class:`RunResult`; ``submit``
    returns a Future of it. ``first_generation=f`` asks for generations
    ``f..f+k-1`` of each row (how ``pooled`` splits them). ``map_inner(change)``
    applies ``change`` to every plain LLM inside and rebuilds the wrappers (how
    ``with_prompt_format`` and ``cached`` reach in).
    """

    @property
    def task(self) -> Task: ...

    @property
    def model_name(self) -> str: ...

    @property
    def max_concurrency(self) -> int: ...

    def __call__(self, inputs: Sequence[Input], num_generations: int = 1) -> Any: ...

    def generate(self, inputs: Sequence[Input], num_generations: int = 1) -> Any: ...

    def run(self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0) -> RunResult: ...

    def submit(
        self, inputs: Sequence[Input], num_generations: int = 1, *, first_generation: int = 0
    ) -> Future[RunResult]: ...

    def map_inner(self, change: Callable[[Any], Any]) -> Any: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


_LLM_MEMBERS = ("task", "model_name", "max_concurrency", "run", "submit", "map_inner", "close", "__enter__", "__exit__")


def is_llm_like(obj: object) -> bool:
    """Whether ``obj`` has every member of :class:`LLMLike` (looked up without running any property:
    an ``in_process`` LLM's ``task`` would wait for its child to load)."""
    sentinel = object()
    return callable(obj) and all(inspect.getattr_static(obj, m, sentinel) is not sentinel for m in _LLM_MEMBERS)
