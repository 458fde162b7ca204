"""The one family of value checks every config record, combinator and option uses.

Each ``check_*`` function returns the value or raises :class:`~fnlabel.errors.ConfigError`
with one message shape: ``"<what> must be <rule>, got <value>"``. The attrs adapters
(:func:`integer`, :func:`number`, :func:`text`, :func:`one_of`, :func:`boolean`) name
the field as ``Class.field``, so a recipe error points at the key to fix.

Examples:
    >>> check_int(3, "num_threads", low=1)
    3
    >>> check_int(0, "num_threads", low=1)
    Traceback (most recent call last):
    ...
    fnlabel.errors.ConfigError: num_threads must be an integer >= 1, got 0
    >>> check_number(1.5, "GenerationParams.top_p", low=0, high=1, low_open=True)
    Traceback (most recent call last):
    ...
    fnlabel.errors.ConfigError: GenerationParams.top_p must be a number in (0, 1], got 1.5
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fnlabel.errors import ConfigError
from fnlabel.redact import url_credentials

__all__ = [
    "check_int",
    "check_number",
    "check_text",
    "check_one_of",
    "check_texts",
    "integer",
    "number",
    "text",
    "one_of",
    "boolean",
    "check_url",
    "url",
    "as_float",
    "MAX_NUM_GENERATIONS",
    "MAX_NEW_TOKENS",
    "MAX_LOGPROBS",
    "INPUT_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "check_input_source",
    "check_output_path",
]

#: an attrs validator: ``check(instance, attribute, value)``
Validator = Callable[[Any, Any, Any], None]

#: the most generations one row may ask for: more is a typo, and each is held in memory with its row
MAX_NUM_GENERATIONS = 1000
#: the most new tokens a request may ask for (no model has a longer context)
MAX_NEW_TOKENS = 2**20
#: the most alternatives per token ``GenerationParams.logprobs`` may ask for (OpenAI's limit)
MAX_LOGPROBS = 20

#: what ``fnlabel run`` reads (by extension), besides ``hf:NAME[:SPLIT]``
INPUT_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
#: what ``fnlabel run`` writes
OUTPUT_SUFFIXES = (".jsonl", ".parquet")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _range(low: float | None, high: float | None, low_open: bool) -> str:
    if high is None:
        return f"> {low:g}" if low_open else f">= {low:g}"
    if low is None:
        return f"<= {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}]"


def check_int(value: Any, what: str, *, low: int | None = None, high: int | None = None, optional: bool = False) -> Any:
    """``value`` when it is an int in ``[low, high]`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return value
    if not _is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            rule = "an integer" + (f" >= {low}" if low is not None else "")
        else:
            rule = f"an integer in [{low}, {high}]" if low is not None else f"an integer <= {high}"
        raise ConfigError(f"{what} must be {rule}{' or None' if optional else ''}, got {value!r}")
    return value


def check_number(
    value: Any,
    what: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    optional: bool = False,
) -> Any:
    """``value`` when it is a finite number in the range (``low < value`` when ``low_open``)."""
    if value is None and optional:
        return value
    ok = _is_number(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        rule = "a number" + (f" {_range(low, high, low_open)}" if low is not None or high is not None else "")
        raise ConfigError(f"{what} must be {rule}{' or None' if optional else ''}, got {value!r}")
    return value


def check_text(value: Any, what: str, *, optional: bool = False) -> Any:
    """``value`` when it is a non-empty string (or ``None`` when ``optional``)."""
    if value is None and optional:
        return value
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string{' or unset' if optional else ''}, got {value!r}")
    return value


def check_one_of(value: Any, what: str, options: tuple[Any, ...]) -> Any:
    """``value`` when it is one of ``options``."""
    if value not in options:
        raise ConfigError(f"{what} must be one of: {', '.join(map(str, options))}; got {value!r}")
    return value


def check_texts(value: Any, what: str, min_len: int = 1) -> tuple[str, ...]:
    """``value`` (a string, or a list of them) as a tuple of at least ``min_len`` non-empty strings."""
    items = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else None
    if items is None or len(items) < min_len or not all(isinstance(s, str) and s.strip() for s in items):
        raise ConfigError(f"{what} must be a list of at least {min_len} non-empty strings, got {value!r}")
    return items


def _field(inst: Any, attr: Any) -> str:
    return f"{type(inst).__name__}.{attr.name}"


def integer(low: int | None = None, *, high: int | None = None, optional: bool = False) -> Validator:
    """attrs validator: :func:`check_int` naming the field ``Class.field``."""

    def check(inst: Any, attr: Any, value: Any) -> None:
        check_int(value, _field(inst, attr), low=low, high=high, optional=optional)

    return check


def number(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, optional: bool = False
) -> Validator:
    """attrs validator: :func:`check_number` naming the field ``Class.field``."""

    def check(inst: Any, attr: Any, value: Any) -> None:
        check_number(value, _field(inst, attr), low=low, high=high, low_open=low_open, optional=optional)

    return check


def text(*, optional: bool = False) -> Validator:
    """attrs validator: :func:`check_text` naming the field ``Class.field``."""

    def check(inst: Any, attr: Any, value: Any) -> None:
        check_text(value, _field(inst, attr), optional=optional)

    return check


def one_of(*options: Any) -> Validator:
    """attrs validator: :func:`check_one_of` naming the field ``Class.field``."""

    def check(inst: Any, attr: Any, value: Any) -> None:
        check_one_of(value, _field(inst, attr), options)

    return check


def boolean() -> Validator:
    """attrs validator: ``True`` or ``False`` (not 0/1, not a string)."""

    def check(inst: Any, attr: Any, value: Any) -> None:
        if not isinstance(value, bool):
            raise ConfigError(f"{_field(inst, attr)} must be true or false, got {value!r}")

    return check


def as_float(value: Any) -> Any:
    """attrs converter: an int becomes a float (``temperature = 1``); anything else is left to the validator."""
    return float(value) if _is_int(value) else value


def check_url(value: Any, what: str, *, optional: bool = False) -> Any:
    """A server URL that carries no credential: fnlabel never writes secrets, and a URL is written
    into recipe dumps, failure records and messages."""
    check_text(value, what, optional=optional)
    if value is None:
        return value
    found = url_credentials(value)
    if found is not None:
        raise ConfigError(
            f"{what} carries a credential ({found}): a key in the URL would be written into recipe dumps and "
            "failure records, and user:password in the URL also clashes with the Authorization header every "
            "request sends. Put the key in an environment variable and name it in api_key_env (token_env)"
        )
    return value


def url(*, optional: bool = False) -> Validator:
    """attrs validator: :func:`check_url` naming the field ``Class.field``."""

    def check(inst: Any, attr: Any, value: Any) -> None:
        check_url(value, _field(inst, attr), optional=optional)

    return check


def check_input_source(value: str) -> str:
    """An input ``fnlabel run`` can read: a path with a known extension, or ``hf:NAME[:SPLIT]``."""
    suffix = Path(value).suffix.lower()
    if not value.startswith("hf:") and suffix not in INPUT_SUFFIXES:
        supported = ", ".join((*INPUT_SUFFIXES, "hf:name[:split]"))
        raise ConfigError(
            f"input {value!r} has an unknown format {suffix or '(no extension)'!r}; supported: {supported}"
        )
    return value


def check_output_path(value: str) -> str:
    """An output ``fnlabel run`` can write: ``.jsonl`` (or ``.parquet``)."""
    if Path(value).suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"output {value!r} must end in .jsonl (or .parquet)")
    return value
