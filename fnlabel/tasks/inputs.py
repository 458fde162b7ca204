"""Reading a task's input keys from a row, with errors that name the key and the fix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fnlabel.errors import InputError
from fnlabel.tasks.principles import stable_choice

__all__ = ["text", "texts", "single_text", "choose"]


def text(row: Mapping[str, Any], key: str) -> str:
    """``row[key]``, which must be a string."""
    value = row[key]
    if not isinstance(value, str):
        raise InputError(f"key {key!r} must be a string, got {type(value).__name__}")
    return value


def texts(row: Mapping[str, Any], key: str) -> list[str]:
    """``row[key]`` as a non-empty list of strings (a single string is one item)."""
    value = row[key]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not value:
        raise InputError(f"key {key!r} must be a non-empty list of strings, got {value!r:.80}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise InputError(
                f"{key}[{i}] must be a string, got {type(item).__name__} "
                "(a failed generation? drop or fill it before labelling)"
            )
    return list(value)


def single_text(row: Mapping[str, Any], key: str) -> str:
    """``row[key]``: a string, or a list holding exactly one string."""
    value = row[key]
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise InputError(
            f"key {key!r} must be one answer (a string or a one-item list), got {value!r:.80}; "
            "this task judges one answer per row: put each answer on its own row"
        )
    return value


def choose(options: Sequence[str], fixed: str | None, seed: int, row: Mapping[str, Any]) -> str:
    """``fixed`` when set; else one of ``options`` chosen from ``(seed, row)`` alone, so
    the same row gets the same choice in every run (distilabel 0.x drew at random)."""
    if fixed is not None:
        return fixed
    return stable_choice(tuple(options), seed, row)
