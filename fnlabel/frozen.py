"""The one frozen mapping: TOML tables and dict-valued config fields, immutable and hashable.

Config records are frozen and hashable (they key loaded models and cross process
boundaries), so a table inside one (``extra_body``, ``engine_kwargs``, task options,
``[label.inputs]``) is a :class:`FrozenMap`: a read-only ``dict`` whose nested tables
are FrozenMaps and whose lists are tuples. Being a ``dict``, it serializes to JSON and
TOML as one; :func:`thaw` gives plain, mutable data back for libraries that want it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from fnlabel.errors import ConfigError

__all__ = ["FrozenMap", "frozen", "thaw", "frozen_table"]


class FrozenMap(dict):  # type: ignore[type-arg]
    """A read-only, hashable ``dict``; nested tables and lists are frozen too.

    Examples:
        >>> t = FrozenMap({"a": 1, "b": {"c": [1, 2]}})
        >>> t["b"], hash(t) == hash(FrozenMap({"b": {"c": (1, 2)}, "a": 1}))
        (FrozenMap({'c': (1, 2)}), True)
        >>> thaw(t)
        {'a': 1, 'b': {'c': [1, 2]}}
    """

    __slots__ = ()

    def __init__(self, value: Mapping[Any, Any] | None = None, /) -> None:
        dict.__init__(self, {k: frozen(v) for k, v in (value or {}).items()})

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def _readonly(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise TypeError("this table is read-only; build a new record with attrs.evolve")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenMap({dict.__repr__(self)})"


def frozen(value: Any) -> Any:
    """``value`` made immutable: mappings -> FrozenMap, lists -> tuples, sets -> frozensets (deeply)."""
    if isinstance(value, FrozenMap):
        return value
    if isinstance(value, Mapping):
        return FrozenMap(value)
    if isinstance(value, (list, tuple)):
        return tuple(frozen(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of :func:`frozen`: plain dicts, lists and sets."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if isinstance(value, frozenset):
        return set(value)
    return value


def frozen_table(value: Any) -> FrozenMap:
    """attrs converter for a table field: a mapping with string keys (or ``None``) as a hashable FrozenMap.

    Examples:
        >>> frozen_table(None)
        FrozenMap({})
        >>> frozen_table({"x": [bytearray(b"raw")]})
        Traceback (most recent call last):
        ...
        fnlabel.errors.ConfigError: a table's values must be plain data (tables, lists, scalars): ...
    """
    if value is None:
        return FrozenMap()
    if not isinstance(value, Mapping):
        raise ConfigError(f"expected a table/dict, got {type(value).__name__}: {value!r}")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"a table's keys must be strings, got {bad!r}")
    table = frozen(value)
    try:
        hash(table)
    except TypeError as exc:
        raise ConfigError(f"a table's values must be plain data (tables, lists, scalars): {exc}") from exc
    return table  # type: ignore[no-any-return]
