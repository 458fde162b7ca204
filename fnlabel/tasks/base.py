"""The Task record: pure ``build_prompt`` and ``parse`` functions plus their keys."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from fnlabel.types import Prompt

__all__ = ["Task"]


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
        >>> from fnlabel.types import Prompt
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

    def missing_keys(self, row: Mapping[str, Any]) -> list[str]:
        """The task's input keys that ``row`` lacks (empty when the row is usable)."""
        if not isinstance(row, Mapping):
            return list(self.input_keys)
        return [k for k in self.input_keys if k not in row]
