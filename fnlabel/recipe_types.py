"""The one cattrs converter of fnlabel recipes, with strict TOML types and readable errors.

TOML has real types, so the converter is strict: ``"10"`` is not an int, ``1.5``
is not an int, ``1`` is a fine float. Errors come out of :func:`error_lines` as
``key.path: message`` lines (via :func:`cattrs.transform_error`).
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NewType, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn
from cattrs.preconf.tomllib import make_converter

from fnlabel.errors import ConfigError
from fnlabel.types import GenerationParams

__all__ = [
    "converter",
    "FrozenMap",
    "frozen",
    "thaw",
    "Mismatch",
    "at",
    "error_lines",
    "check_kwargs",
    "describe",
    "Params",
    "PositiveInt",
    "NonNegativeInt",
]

#: the one converter: a typo in a recipe is an error, not a silently ignored key
converter = make_converter(forbid_extra_keys=True)


class FrozenMap(dict):  # type: ignore[type-arg]
    """A read-only, hashable dict (task options, label inputs, params overrides)."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def _readonly(self, *_a: Any, **_k: Any) -> None:
        raise TypeError("FrozenMap is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenMap({dict.__repr__(self)})"


def frozen(value: Any) -> Any:
    """TOML values made immutable: lists -> tuples, tables -> FrozenMap (deeply)."""
    if isinstance(value, Mapping):
        return FrozenMap({k: frozen(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of :func:`frozen`: plain lists and dicts, for factories that expect them."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


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
    exc.__notes__ = [  # type: ignore[attr-defined]
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


# --- strict scalars -----------------------------------------------------------------------------


def _int(value: Any, _t: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Mismatch("int", value)
    return value


def _float(value: Any, _t: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Mismatch("float", value)
    return float(value)


def _str(value: Any, _t: Any) -> str:
    if not isinstance(value, str):
        raise Mismatch("str", value)
    return value


def _bool(value: Any, _t: Any) -> bool:
    if not isinstance(value, bool):
        raise Mismatch("bool (true or false)", value)
    return value


PositiveInt = NewType("PositiveInt", int)
NonNegativeInt = NewType("NonNegativeInt", int)


def _bounded(low: int) -> Callable[[Any, Any], int]:
    def hook(value: Any, t: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise Mismatch(f"int >= {low}", value)
        return value

    return hook


converter.register_structure_hook(int, _int)
converter.register_structure_hook(float, _float)
converter.register_structure_hook(str, _str)
converter.register_structure_hook(bool, _bool)
converter.register_structure_hook(PositiveInt, _bounded(1))
converter.register_structure_hook(NonNegativeInt, _bounded(0))


def _is_union(t: Any) -> bool:
    return get_origin(t) in (Union, types.UnionType)


def _union_factory(t: Any) -> Callable[[Any, Any], Any]:
    options = [a for a in get_args(t) if a is not type(None)]
    nullable = len(options) < len(get_args(t))

    def hook(value: Any, _t: Any) -> Any:
        if value is None and nullable:
            return None
        if len(options) == 1:  # Optional[X]: X's own error is the clearest
            return converter.structure(value, options[0])
        for option in options:  # the first type that takes the value wins (strict scalars: no coercion)
            try:
                return converter.structure(value, option)
            except Exception:
                continue
        raise Mismatch(describe(t), value)

    return hook


def _is_literal(t: Any) -> bool:
    return get_origin(t) is typing.Literal


def _literal_factory(t: Any) -> Callable[[Any, Any], Any]:
    allowed = get_args(t)

    def hook(value: Any, _t: Any) -> Any:
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise Mismatch("one of " + ", ".join(repr(a) for a in allowed), value)
        return value

    return hook


def _is_mapping(t: Any) -> bool:
    return get_origin(t) in (dict, Mapping, typing.Mapping) or t in (dict, Mapping)


def _mapping_factory(t: Any) -> Callable[[Any, Any], Any]:
    key_t, value_t = (get_args(t) or (Any, Any))[:2]

    def hook(value: Any, _t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise Mismatch("a table", value)
        out, errors = {}, []
        for k, v in value.items():
            try:
                out[converter.structure(k, key_t) if key_t is not Any else k] = (
                    v if value_t is Any else converter.structure(v, value_t)
                )
            except Exception as exc:
                errors.append(at(str(k), exc, value_t).exceptions[0])
        if errors:
            raise ClassValidationError(f"while structuring {describe(t)}", errors, dict)
        return out

    return hook


def _is_sequence(t: Any) -> bool:
    origin, args = get_origin(t), get_args(t)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis
    return origin in (list, Sequence, typing.Sequence)


def _sequence_factory(t: Any) -> Callable[[Any, Any], Any]:
    item = get_args(t)[0]
    build = list if get_origin(t) is list else tuple

    def hook(value: Any, _t: Any) -> Any:
        if item is str and isinstance(value, str):
            return build([value])  # `stop = "###"` means one stop string
        if not isinstance(value, (list, tuple)):
            raise Mismatch(f"a list of {describe(item)}", value)
        out, errors = [], []
        for i, v in enumerate(value):
            try:
                out.append(converter.structure(v, item))
            except Exception as exc:
                errors.append(at(i, exc, item).exceptions[0])
        if errors:
            raise IterableValidationError(f"while structuring {describe(t)}", errors, t)
        return build(out)

    return hook


def _table_factory(t: Any) -> Callable[[Any, Any], Any]:
    """Records (``[run]``, ``[label]``, a ``[[pool]]`` member) come from tables: say so for anything else."""
    inner = make_dict_structure_fn(t, converter)

    def hook(value: Any, _t: Any) -> Any:
        if not isinstance(value, Mapping):
            raise Mismatch("a table", value)
        return inner(value, _t)

    return hook


converter.register_structure_hook_factory(attrs.has, _table_factory)
converter.register_structure_hook_factory(_is_union, _union_factory)
converter.register_structure_hook_factory(_is_literal, _literal_factory)
converter.register_structure_hook_factory(_is_mapping, _mapping_factory)
converter.register_structure_hook_factory(_is_sequence, _sequence_factory)

# --- generation params: num_generations is a [run] setting --------------------------------------

Params = GenerationParams
_params_base = make_dict_structure_fn(GenerationParams, converter, _cattrs_forbid_extra_keys=True)


def _params_hook(value: Any, t: Any) -> GenerationParams:
    if not isinstance(value, Mapping):
        raise Mismatch("a table", value)
    if "num_generations" not in value:
        return _params_base(value, t)
    msg = "set num_generations in [run] (or with --num-generations), not in [params]"
    errors: list[Exception] = [at("num_generations", ConfigError(msg), int).exceptions[0]]
    try:
        _params_base({k: v for k, v in value.items() if k != "num_generations"}, t)
    except ClassValidationError as exc:
        errors.extend(exc.exceptions)
    raise ClassValidationError("invalid [params]", errors, GenerationParams)


converter.register_structure_hook(GenerationParams, _params_hook)

# --- keyword arguments of a factory (tasks) -----------------------------------------------------


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
