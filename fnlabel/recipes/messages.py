"""What recipe errors say: type names, key paths, unknown keys, and checks of a factory's keyword arguments.

Errors come out of :func:`error_lines` as ``key.path: message`` lines (via
:func:`cattrs.transform_error`); :func:`check_kwargs` checks a ``[task]`` table
against its factory's signature with the same messages.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from fnlabel.errors import ConfigError

__all__ = ["describe", "Mismatch", "at", "error_lines", "check_kwargs", "matches"]


def describe(t: Any) -> str:
    """A short name for a type in error messages: ``int``, ``list of str``, ``str | None``."""
    if t is type(None) or t is None:
        return "nothing"
    super_type = getattr(t, "__supertype__", None)
    if super_type is not None:
        return {"PositiveInt": "int >= 1", "NonNegativeInt": "int >= 0"}.get(t.__name__, describe(super_type))
    origin, args = get_origin(t), get_args(t)
    if origin in (Union, types.UnionType):
        return " | ".join(describe(a) for a in args)
    if origin in (list, tuple, Sequence, typing.Sequence) and args:
        return f"list of {describe(args[0])}"
    if origin in (dict, Mapping, typing.Mapping):
        return "table"
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


class Mismatch(TypeError):
    """A value of the wrong type: ``expected int, got 'ten'``."""

    def __init__(self, expected: str, value: Any) -> None:
        super().__init__(f"expected {expected}, got {value!r}")


def at(key: str | int, exc: Exception, t: Any = object) -> ClassValidationError:
    """Wrap ``exc`` so that cattrs' error paths continue with ``key``."""
    exc.__notes__ = [
        IterableValidationNote(f"@ index {key}", key, t)
        if isinstance(key, int)
        else AttributeValidationNote(f"@ attribute {key}", key, t)
    ]
    if isinstance(key, int):
        return IterableValidationError(f"while structuring [{key}]", [exc], object)  # type: ignore[return-value]
    return ClassValidationError(f"while structuring {key}", [exc], object)


def _unknown_keys(extra: Sequence[str], allowed: Sequence[str], what: str = "") -> str:
    parts = []
    for key in sorted(extra):
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        parts.append(f"unknown key {key!r}{what}{hint}")
    return "; ".join(parts) + f"; allowed keys: {', '.join(allowed)}"


def _format(exc: BaseException, t: Any) -> str:
    if isinstance(exc, (Mismatch, ConfigError)):
        return str(exc)
    if isinstance(exc, ForbiddenExtraKeysError):
        allowed = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        kind = getattr(exc.cl, "kind", None)
        what = f" for backend kind {kind!r}" if isinstance(kind, str) else ""
        return _unknown_keys(sorted(exc.extra_fields), allowed, what)
    if isinstance(exc, KeyError):
        return "missing required key"
    if isinstance(exc, (ValueError, TypeError)) and t is not None:
        return f"expected {describe(t)} ({exc})"
    return f"{type(exc).__name__}: {exc}"


def error_lines(exc: ClassValidationError | IterableValidationError) -> list[str]:
    """``key.path: message`` lines for every error inside ``exc``."""
    out = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_format):
        msg, _, path = line.rpartition(" @ ")
        path = path.removeprefix("$").removeprefix(".")
        out.append(f"{path}: {msg}" if path else msg)
    return out


def matches(value: Any, t: Any) -> bool:
    """Whether a TOML ``value`` fits annotation ``t`` (unknown annotations fit anything)."""
    if t is Any or t is inspect.Parameter.empty or t is object:
        return True
    if t is None or t is type(None):
        return value is None
    origin, args = get_origin(t), get_args(t)
    if origin in (Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if t is bool:
        return isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple, Sequence, typing.Sequence, set, frozenset):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args else Any
        if origin is tuple and args and (len(args) != 2 or args[1] is not Ellipsis):
            return len(args) == len(value) and all(matches(v, a) for v, a in zip(value, args))
        return all(matches(v, item) for v in value)
    if origin in (dict, Mapping, typing.Mapping):
        if not isinstance(value, Mapping):
            return False
        return not args or all(matches(v, args[1]) for v in value.values())
    if isinstance(t, type):
        return isinstance(value, t)
    return True


def check_kwargs(factory: Callable[..., Any], options: Mapping[str, Any], what: str) -> None:
    """Check ``options`` against ``factory``'s signature and annotations (all errors at once)."""
    sig = inspect.signature(factory)
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # unresolvable annotations: check names only
        hints = {}
    params = {n: p for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    errors: list[Exception] = []
    extra = [k for k in options if k not in params]
    if extra and not open_ended:
        errors.append(ConfigError(_unknown_keys(extra, ["kind", *params], f" for {what}")))
    for name, p in params.items():
        if name not in options:
            if p.default is p.empty:
                errors.append(at(name, ConfigError(f"missing required key (needed by {what})")).exceptions[0])
            continue
        t = hints.get(name, p.annotation)
        if not matches(options[name], t):
            errors.append(at(name, Mismatch(describe(t), options[name]), t).exceptions[0])
    if errors:
        raise ClassValidationError(f"invalid options for {what}", errors, object)
