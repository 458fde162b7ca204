"""How a composed LLM applies structured output: the constraint its backend gets, and the parse it runs.

A task with a ``schema`` (a structured judge, :func:`fnlabel.tasks.structured`) asks for its
own constraint; ``GenerationParams.structured_output`` asks for one for any task. With a JSON
schema, the parsed output is the decoded, validated object (a task with a schema maps it to
its own keys), and a generation cut at ``max_new_tokens`` is a parse failure: its JSON is
incomplete.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fnlabel.errors import ConfigError, ParseError
from fnlabel.frozen import FrozenMap, frozen_table
from fnlabel.structured import StructuredOutput
from fnlabel.tasks.structured import JsonParser, check_schema
from fnlabel.types import GenerationParams, Task

__all__ = ["constrained_params", "output_parser", "truncated_json", "row_groups"]


def constrained_params(task: Task, params: GenerationParams) -> GenerationParams:
    """``params`` with the task's own schema as the constraint; ConfigError when both name a different one."""
    wanted = params.structured_output
    if task.schema is not None:
        if wanted is None:
            params = params.replace(structured_output=StructuredOutput(json_schema=task.schema))
        elif wanted.json_schema != task.schema:
            raise ConfigError(
                f"task {task.name} supplies its own JSON schema (structured = true): leave "
                "GenerationParams.structured_output ([params.structured_output]) unset"
            )
    constraint = params.structured_output
    if constraint is not None and constraint.json_schema is not None:
        check_schema(constraint.json_schema)
    return params


def output_parser(task: Task, params: GenerationParams) -> Callable[[str], dict[str, Any]]:
    """The task's parse, or (a JSON schema asked for a task without its own) the schema's decoder."""
    constraint = params.structured_output
    if task.schema is None and constraint is not None and constraint.json_schema is not None:
        return JsonParser(constraint.json_schema)
    return task.parse


def row_groups(
    task: Task, inputs: Sequence[Mapping[str, Any]], rows: Sequence[int], params: GenerationParams
) -> list[tuple[GenerationParams, list[int]]] | None:
    """The prompts (their positions in ``rows``) that share a row schema, each with its params; None when
    the task's schema does not depend on the row (or the constraint is not the task's own)."""
    constraint = params.structured_output
    if task.row_schema is None or constraint is None or constraint.json_schema != task.schema:
        return None
    groups: dict[FrozenMap, list[int]] = {}
    for j, i in enumerate(rows):
        groups.setdefault(frozen_table(task.row_schema(inputs[i])), []).append(j)
    return [(params.replace(structured_output=StructuredOutput(json_schema=s)), js) for s, js in groups.items()]


def truncated_json(finish_reason: str | None) -> None:
    """ParseError for a JSON generation that ``max_new_tokens`` cut off."""
    if finish_reason == "length":
        raise ParseError(
            "the JSON was cut at max_new_tokens (finish_reason 'length'), so it is incomplete: raise max_new_tokens"
        )
