"""Structured output: a constraint on what a model may write, applied by the backend as it decodes.

:class:`StructuredOutput` holds exactly one of a JSON schema (inline, from a file, or from a
pydantic model class), a list of choices, or a regular expression. It is a field of
:class:`~fnlabel.types.GenerationParams` (``[params.structured_output]`` in recipes), so it is
part of the cache key, and each backend turns it into its library's own constrained decoding
(a grammar, a logits processor, a request field): see docs/structured.md.

Examples:
    >>> StructuredOutput(choice=["yes", "no"]).kind
    'choice'
    >>> StructuredOutput(json_schema={"type": "object"}, regex="a+")
    Traceback (most recent call last):
    ...
    fnlabel.errors.ConfigError: structured_output: give exactly one of json_schema, json_schema_file, choice, regex (got json_schema, regex)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from fnlabel.errors import ConfigError
from fnlabel.frozen import FrozenMap, frozen_table, thaw

__all__ = ["StructuredOutput", "to_structured_output", "KINDS"]

#: what a constraint may be
KINDS = ("json_schema", "choice", "regex")


def _schema(value: Any) -> FrozenMap | None:
    """A JSON schema as a frozen table: a mapping, or a pydantic model class (its ``model_json_schema()``)."""
    if value is None:
        return None
    to_schema = getattr(value, "model_json_schema", None) if isinstance(value, type) else None
    if callable(to_schema):
        value = to_schema()
    if not isinstance(value, dict):
        raise ConfigError(
            f"structured_output.json_schema must be a JSON schema (a table / dict) or a pydantic model class, "
            f"got {type(value).__name__}"
        )
    return frozen_table(value)


def _choices(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(c, str) and c for c in value) or not value:
        raise ConfigError(f"structured_output.choice must be a non-empty list of non-empty strings, got {value!r}")
    return tuple(value)


def _regex(_inst: Any, _attr: Any, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise ConfigError(f"structured_output.regex must be a non-empty string, got {value!r}")


def _file(_inst: Any, _attr: Any, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"structured_output.json_schema_file must be a path, got {value!r}")


def read_schema_file(path: str) -> FrozenMap:
    """The JSON schema in file ``path`` (relative paths: from the current directory)."""
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"structured_output.json_schema_file {path}: no such file "
            f"(relative paths are read from the current directory, {Path.cwd()})"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"structured_output.json_schema_file {path}: not a JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"structured_output.json_schema_file {path}: a JSON schema is an object, got {type(data).__name__}"
        )
    return frozen_table(data)


@attrs.frozen
class StructuredOutput:
    """What a generation must look like: exactly one of the fields.

    Attributes:
        json_schema: a JSON schema (a dict, or a pydantic model class in Python): the output is
            one JSON value it accepts; the parsed output is the decoded, validated value.
        json_schema_file: a JSON file holding the schema (read now; its content is what the
            cache keys on).
        choice: the output is exactly one of these strings.
        regex: the output matches this regular expression.
    """

    json_schema: FrozenMap | None = attrs.field(default=None, converter=_schema)
    json_schema_file: str | None = attrs.field(default=None, validator=_file)
    choice: tuple[str, ...] | None = attrs.field(default=None, converter=_choices)
    regex: str | None = attrs.field(default=None, validator=_regex)

    def __attrs_post_init__(self) -> None:
        given = [f.name for f in attrs.fields(type(self)) if getattr(self, f.name) is not None]
        if self.json_schema_file is not None and "json_schema" in given:
            given.remove("json_schema")  # read from the file already (a copy of a record made from it)
        if len(given) != 1:
            raise ConfigError(
                "structured_output: give exactly one of json_schema, json_schema_file, choice, regex "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.json_schema_file is not None and self.json_schema is None:
            object.__setattr__(self, "json_schema", read_schema_file(self.json_schema_file))

    @property
    def kind(self) -> str:
        """``"json_schema"``, ``"choice"`` or ``"regex"``."""
        return "json_schema" if self.json_schema is not None else "choice" if self.choice is not None else "regex"

    def schema(self) -> dict[str, Any]:
        """The JSON schema as plain data (``kind == "json_schema"``)."""
        if self.json_schema is None:
            raise ConfigError(f"structured_output is a {self.kind}, not a JSON schema")
        return thaw(self.json_schema)


def to_structured_output(value: Any) -> StructuredOutput | None:
    """attrs converter: a StructuredOutput, a dict of its fields, or a pydantic model class (its JSON schema)."""
    if value is None or isinstance(value, StructuredOutput):
        return value
    if isinstance(value, type) and callable(getattr(value, "model_json_schema", None)):
        return StructuredOutput(json_schema=value)
    if isinstance(value, dict):
        unknown = set(value) - {f.name for f in attrs.fields(StructuredOutput)}
        if unknown:
            raise ConfigError(
                f"structured_output: unknown key(s) {sorted(unknown)}; use json_schema, json_schema_file, choice or regex"
            )
        return StructuredOutput(**value)
    raise ConfigError(
        "GenerationParams.structured_output must be a StructuredOutput, a dict "
        f"(json_schema / json_schema_file / choice / regex) or a pydantic model class, got {type(value).__name__}"
    )
