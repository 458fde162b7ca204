"""A small TOML writer for recipes (their shape is flat: scalars, arrays, a few tables).

Secret fields are never written (the rule is :mod:`fnlabel.redact`'s; use an ``*_env``
field naming an environment variable instead), nor secret keys inside a table value
(``extra_body``, ``engine_kwargs``).
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from fnlabel.redact import is_secret_field, is_secret_name

__all__ = ["dump", "toml_value"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else _string(name)


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """One TOML value (inline form).

    Examples:
        >>> toml_value(["a", 1, 2.5, True, {"x": "y"}])
        '["a", 1, 2.5, true, { x = "y" }]'
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (datetime.date, datetime.time)):  # TOML has them (datetime is a date)
        return value.isoformat()
    if isinstance(value, Mapping):
        items = [  # a secret is left out at any depth (e.g. a token in vLLM's engine_kwargs)
            f"{_key(str(k))} = {toml_value(v)}"
            for k, v in value.items()
            if v is not None and not is_secret_name(str(k))
        ]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def _fields(record: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config record's fields (None and secrets left out)."""
    out: dict[str, Any] = {}
    for f in attrs.fields(type(record)):
        if f.name in skip or is_secret_field(f):
            continue
        value = getattr(record, f.name)
        if value is None:
            continue
        out[f.name] = value
    return out


def _table(lines: list[str], header: str, items: Mapping[str, Any], array: bool = False) -> None:
    lines.append("")
    lines.append(f"[[{header}]]" if array else f"[{header}]")
    lines.extend(f"{_key(k)} = {toml_value(v)}" for k, v in items.items())


def _backend(record: Any) -> dict[str, Any]:
    return {"kind": type(record).kind, **_fields(record)}


def _stage(lines: list[str], stage: Any, prefix: str, extra: Mapping[str, Any] = {}) -> None:
    """Write a stage: its scalars first (at ``prefix``), then its tables."""
    scalars = {
        "prompt_format": stage.prompt_format,
        "prompt_formatting_fn": stage.prompt_formatting_fn,
        "in_process": stage.in_process or None,
        "model_name": stage.model_name,
        **extra,
    }
    scalars = {k: v for k, v in scalars.items() if v is not None}
    dot = f"{prefix}." if prefix else ""
    if prefix:
        _table(lines, prefix, scalars)
    else:
        lines.extend(f"{k} = {toml_value(v)}" for k, v in scalars.items())
    _table(lines, f"{dot}task", {"kind": stage.task.kind, **stage.task.options})
    if stage.backend is not None:
        _table(lines, f"{dot}backend", _backend(stage.backend))
    _table(lines, f"{dot}params", _fields(stage.params, skip=("num_generations", "structured_output")))
    constraint = stage.params.structured_output
    if constraint is not None:  # the file's name when the schema came from one, else the constraint itself
        own = _fields(constraint, skip=("json_schema",) if constraint.json_schema_file else ())
        _table(lines, f"{dot}params.structured_output", own)
    if stage.pricing is not None:
        _table(lines, f"{dot}pricing", _fields(stage.pricing))
    for member in stage.pool:
        own = {
            "prompt_format": member.prompt_format,
            "prompt_formatting_fn": member.prompt_formatting_fn,
            "in_process": member.in_process,
            "model_name": member.model_name,
        }
        _table(lines, f"{dot}pool", {k: v for k, v in own.items() if v is not None}, array=True)
        if member.backend is not None:
            _table(lines, f"{dot}pool.backend", _backend(member.backend))
        if member.params:
            _table(lines, f"{dot}pool.params", member.params)


def dump(recipe: Any) -> str:
    """The recipe as TOML text (see :func:`fnlabel.recipes.load.dump_recipe`)."""
    lines: list[str] = ["# written by fnlabel.dump_recipe"]
    _stage(lines, recipe, "")
    _table(lines, "run", _fields(recipe.run))
    if recipe.label is not None:
        label = recipe.label
        _stage(lines, label, "label", {"num_generations": label.num_generations})
        if label.inputs:
            _table(lines, "label.inputs", label.inputs)
    return "\n".join(lines) + "\n"
