"""Plain text generation: ``input`` -> ``generations``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from fnlabel.errors import ConfigError, InputError
from fnlabel.tasks.principles import PRINCIPLES, stable_choice
from fnlabel.types import Prompt, Task

__all__ = ["text_generation", "DEFAULT_SYSTEM_PROMPT"]

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest assistant. Answer as helpfully as possible. "
    "If you do not know the answer to a question, say so instead of making something up."
)


def _principles(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    names = (value,) if isinstance(value, str) else tuple(value)
    if names == ("all",):
        names = tuple(PRINCIPLES)
    unknown = [n for n in names if n not in PRINCIPLES]
    if unknown:
        raise ConfigError(f"unknown principle(s) {unknown}; known: {', '.join(PRINCIPLES)} (or 'all')")
    return names


def _check_seed(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"text_generation seed must be an integer, got {value!r}")


@attrs.frozen
class TextGenerationPrompt:
    """``build_prompt`` of :func:`text_generation` (a frozen callable, so it pickles)."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    principles: tuple[str, ...] = attrs.field(default=(), converter=_principles)
    seed: int = attrs.field(default=0, validator=lambda _i, _a, v: _check_seed(v))

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        text = row["input"]
        if not isinstance(text, str):
            raise InputError(f"key 'input' must be a string, got {type(text).__name__}")
        system = self.system_prompt
        if self.principles:
            family = stable_choice(self.principles, self.seed, row)
            principle = stable_choice(PRINCIPLES[family], self.seed + 1, row)
            system = f"{system}\n{principle}" if system else principle
        return Prompt(system, text)


def parse_generation(raw: str) -> dict[str, Any]:
    """``parse`` of :func:`text_generation`: the raw text is the generation."""
    return {"generations": raw}


def text_generation(
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    principles: str | Sequence[str] | None = None,
    seed: int = 0,
) -> Task:
    """Generate free text for each ``input``.

    Args:
        system_prompt: the system prompt of every request.
        principles: UltraFeedback principle families to append to the system
            prompt (``"helpfulness"``, ``"harmlessness"``, ``"honesty"``,
            ``"verbalized_calibration"``, ``"truthfulness"``, or ``"all"``); one
            principle per row, chosen from ``seed`` and the row's content.
        seed: makes the choice of principles reproducible.

    Examples:
        >>> task = text_generation(system_prompt="Be brief.")
        >>> task.build_prompt({"input": "What is 2 + 2?"})
        Prompt(system_prompt='Be brief.', formatted_prompt='What is 2 + 2?')
        >>> task.parse("4")
        {'generations': '4'}
    """
    return Task(
        name="text-generation",
        build_prompt=TextGenerationPrompt(system_prompt, principles, seed),
        parse=parse_generation,
        input_keys=("input",),
        output_keys=("generations",),
    )
