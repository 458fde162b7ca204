"""Prompt-format wrappers: the same LLM, formatting its prompts another way.

:func:`with_prompt_format` and :func:`with_prompt_formatting_fn` reach every plain
LLM inside a combinator (``threaded``, ``pooled``, a two-stage chain) through
``map_inner`` and return the same kind of value they were given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import attrs

from fnlabel.errors import ConfigError
from fnlabel.formats import check_format
from fnlabel.llm import map_llms
from fnlabel.types import FormattedPrompt, Prompt, is_llm_like

__all__ = ["with_prompt_format", "with_prompt_formatting_fn"]

T = TypeVar("T")

_FIX = "apply it to the LLM before wrapping (for in_process, set it in the spec that builds the LLM)"


def with_prompt_format(llm: T, fmt: str) -> T:
    """The same LLM, formatting prompts as ``fmt``.

    Examples:
        >>> from fnlabel import llm, tasks, backends
        >>> gen = with_prompt_format(llm(tasks.text_generation(), backends.echo()), "chatml")
        >>> gen.prompt_format
        'chatml'
    """
    check_format(fmt)
    _check_llm(llm)
    return map_llms(llm, lambda m: attrs.evolve(m, prompt_format=fmt), "change the prompt format of", _FIX)  # type: ignore[no-any-return]


def with_prompt_formatting_fn(llm: T, fn: Callable[[Prompt], FormattedPrompt]) -> T:
    """The same LLM, formatting prompts with ``fn(Prompt)``; it wins over any prompt format.

    Examples:
        >>> from fnlabel import llm, tasks, backends
        >>> gen = with_prompt_formatting_fn(
        ...     llm(tasks.text_generation(system_prompt=""), backends.echo(), prompt_format="chatml"),
        ...     lambda p: f"Q: {p.formatted_prompt}",
        ... )
        >>> gen([{"input": "hi"}])[0][0]["prompt_used"]
        'Q: hi'
    """
    if not callable(fn):
        raise ConfigError(f"prompt_formatting_fn must be callable, got {fn!r}")
    _check_llm(llm)
    return map_llms(llm, lambda m: attrs.evolve(m, prompt_formatting_fn=fn), "change the prompt format of", _FIX)  # type: ignore[no-any-return]


def _check_llm(llm: object) -> None:
    if not is_llm_like(llm):
        raise ConfigError(
            f"cannot change the prompt format of {type(llm).__name__}: it is not an LLM (see fnlabel.types.LLMLike)"
        )
