"""Structured outputs: JSON decoded and validated against a schema, and the generic extraction task.

:func:`decode_json` is what every structured parse runs: the generation must be one JSON
value (a Markdown code fence around it is allowed) that the schema accepts, checked with
`jsonschema <https://python-jsonschema.readthedocs.io>`_; anything else is a
:class:`~fnlabel.errors.ParseError`, never a partial object. :func:`structured` makes the
task for "extract these fields from this text" jobs: the schema is the user's, the task
supplies it to the backend (constrained decoding) and returns the decoded object.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from fnlabel.errors import ConfigError, ParseError
from fnlabel.frozen import FrozenMap, frozen_table, thaw
from fnlabel.structured import read_schema_file
from fnlabel.tasks import inputs
from fnlabel.types import Prompt, Task
from fnlabel.validators import check_text

__all__ = ["decode_json", "check_schema", "JsonParser", "structured", "StructuredPrompt", "schema_text"]

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(?P<body>.*?)\n?\s*```\s*$", re.DOTALL)


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ConfigError("structured output needs jsonschema: pip install jsonschema") from exc
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the root"
        raise ConfigError(
            f"structured_output.json_schema is not a valid JSON schema at {where}: {exc.message}"
        ) from None
    return cls(schema)


def _key(schema: Mapping[str, Any]) -> str:
    return json.dumps(thaw(schema), sort_keys=True, separators=(",", ":"))


def check_schema(schema: Mapping[str, Any]) -> None:
    """ConfigError when ``schema`` is not a valid JSON schema (checked once per schema)."""
    _validator(_key(schema))


def decode_json(raw: str, schema: Mapping[str, Any]) -> Any:
    """The JSON value ``raw`` holds, validated against ``schema``; ParseError naming what is wrong.

    Examples:
        >>> schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}, "required": ["n"]}
        >>> decode_json('{"n": 3}', schema)
        {'n': 3}
        >>> decode_json('{"n": 9}', schema)
        Traceback (most recent call last):
        ...
        fnlabel.errors.ParseError: the JSON does not match the schema at n: 9 is greater than the maximum of 5
    """
    fenced = _FENCE.match(raw)
    text = fenced["body"] if fenced else raw
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ParseError(f"the output is not JSON ({exc}): {text[:120]!r}") from None
    errors = sorted(_validator(_key(schema)).iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "the root"
        raise ParseError(f"the JSON does not match the schema at {where}: {first.message}")
    return value


@attrs.frozen
class JsonParser:
    """``parse`` of a JSON-schema-constrained generation: the decoded value (a non-object under ``"value"``)."""

    schema: FrozenMap = attrs.field(converter=frozen_table)

    def __call__(self, raw: str) -> dict[str, Any]:
        value = decode_json(raw, self.schema)
        return value if isinstance(value, dict) else {"value": value}


def schema_text(schema: Mapping[str, Any]) -> str:
    """The schema as the compact JSON a prompt shows the model."""
    return json.dumps(thaw(schema), ensure_ascii=False)


DEFAULT_INSTRUCTION = "Extract the information the schema asks for from the text."
#: the schema of :func:`structured` when none is given: a summary and the topics of the text
DEFAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "maxLength": 300},
        "topics": {"type": "array", "items": {"type": "string", "maxLength": 40}, "minItems": 1, "maxItems": 5},
    },
    "required": ["summary", "topics"],
    "additionalProperties": False,
}


@attrs.frozen
class StructuredPrompt:
    """``build_prompt`` of :func:`structured`: the instruction, the text, and the schema to answer with."""

    instruction: str
    schema: FrozenMap = attrs.field(converter=frozen_table)
    input_key: str = "input"
    system_prompt: str = "You answer with one JSON object and nothing else."

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        text = inputs.text(row, self.input_key).strip()
        body = (
            f"{self.instruction.strip()}\n\nText:\n{text}\n\n"
            f"Answer with one JSON object that follows this JSON schema:\n{schema_text(self.schema)}"
        )
        return Prompt(self.system_prompt, body)


def structured(
    schema: dict[str, Any] | None = None,
    instruction: str = DEFAULT_INSTRUCTION,
    input_key: str = "input",
    schema_file: str | None = None,
    system_prompt: str = "You answer with one JSON object and nothing else.",
) -> Task:
    """Extract the fields of a JSON schema from each row's text (recipe ``kind = "structured"``).

    The task supplies ``schema`` to the backend, which constrains decoding to it; each
    ``parsed_output`` is the decoded object, validated against the schema.

    Args:
        schema: a JSON schema whose root is an object (its properties are the output keys);
            neither it nor ``schema_file`` given: :data:`DEFAULT_SCHEMA` (a summary and topics).
        instruction: what to do with the text.
        input_key: the row key holding the text.
        schema_file: a JSON file holding the schema, instead of ``schema``.
        system_prompt: the system prompt of every request.

    Examples:
        >>> person = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        ...           "required": ["name", "age"]}
        >>> task = structured(person, "Who is this text about?", input_key="text")
        >>> task.output_keys, task.parse('{"name": "Ada", "age": 36}')
        (('name', 'age'), {'name': 'Ada', 'age': 36})
    """
    if schema is not None and schema_file is not None:
        raise ConfigError("structured task: give schema or schema_file, not both")
    if schema_file is not None:
        table = read_schema_file(schema_file)
    else:
        table = frozen_table(DEFAULT_SCHEMA if schema is None else schema)
    check_schema(table)
    props = table.get("properties")
    if table.get("type") != "object" or not isinstance(props, Mapping) or not props:
        raise ConfigError(
            'structured task: the schema\'s root must be an object with properties ({"type": "object", '
            '"properties": {...}}): they are the output keys'
        )
    check_text(instruction, "structured task instruction")
    check_text(input_key, "structured task input_key")
    return Task(
        name="structured",
        build_prompt=StructuredPrompt(instruction, table, input_key, system_prompt),
        parse=JsonParser(table),
        input_keys=(input_key,),
        output_keys=tuple(props),
        schema=table,
    )
