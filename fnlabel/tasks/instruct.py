"""Self-Instruct: write user queries for an AI application from a context.

``input`` (the context) -> ``instructions`` (a list of queries). The template
asks for a numbered list, and the parser reads numbered, bulleted and plain
lines alike, so a compliant answer always parses (distilabel 0.x asked for
plain lines but only parsed numbered ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from fnlabel.errors import ParseError
from fnlabel.tasks import inputs
from fnlabel.tasks.parsing import excerpt, list_items
from fnlabel.tasks.templates import fill, read_template
from fnlabel.types import Prompt, Task
from fnlabel.validators import check_texts, integer

__all__ = ["self_instruct", "SelfInstructPrompt", "parse_instructions", "format_instructions"]

DEFAULT_SYSTEM_PROMPT = (
    "You are an expert prompt writer. You write diverse, realistic queries that users "
    "would send to a given AI application."
)

DEFAULT_CRITERIA = (
    "Vary the verbs and sentence structures; do not repeat yourself.",
    "Each query is one or two sentences that a text-only AI model can answer.",
    "Each query stands on its own, without referring to the other queries.",
    'Mix questions (e.g. "Why does x happen?") and requests (e.g. "Describe how x works.").',
)

TEMPLATE = """\
# Task
Write {num_instructions} different queries that a user could send to the AI application below, about the given context.

# Criteria
{criteria}

# AI application
{application_description}

# Context
{input}

# Output format
Write exactly {num_instructions} queries as a numbered list, one query per line ("1. ...", "2. ...").
Write nothing else: no title, no introduction, no answers."""


PLACEHOLDERS = ("input", "num_instructions", "criteria", "application_description")


def _criteria(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # one criterion per line, like distilabel 0.x's string
        value = [line for line in value.splitlines() if line.strip()]
    return check_texts(value, "criteria_for_query_generation")


@attrs.frozen
class SelfInstructPrompt:
    """``build_prompt`` of :func:`self_instruct`."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    application_description: str = "AI assistant"
    num_instructions: int = attrs.field(default=5, validator=integer(1))
    criteria_for_query_generation: tuple[str, ...] = attrs.field(default=DEFAULT_CRITERIA, converter=_criteria)
    template: str = TEMPLATE

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        criteria = "\n".join(f"- {c.strip()}" for c in self.criteria_for_query_generation)
        values = {
            "num_instructions": self.num_instructions,
            "criteria": criteria,
            "application_description": self.application_description.strip(),
            "input": inputs.text(row, "input").strip(),
        }
        return Prompt(self.system_prompt, fill(self.template, values))


def parse_instructions(raw: str) -> dict[str, Any]:
    """``parse`` of :func:`self_instruct`: the queries of a numbered, bulleted or plain list.

    Examples:
        >>> parse_instructions("1. What is DNS?\\n2. Explain TCP.")
        {'instructions': ['What is DNS?', 'Explain TCP.']}
    """
    items = list_items(raw)
    if not items:
        raise ParseError(f"expected a list of queries, one per line; got {excerpt(raw)}")
    return {"instructions": items}


def format_instructions(output: Mapping[str, Any]) -> str:
    """The answer the template asks for: the inverse of :func:`parse_instructions`."""
    return "\n".join(f"{i}. {q}" for i, q in enumerate(output["instructions"], start=1))


def self_instruct(
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    application_description: str = "AI assistant",
    num_instructions: int = 5,
    criteria_for_query_generation: tuple[str, ...] = DEFAULT_CRITERIA,
    template: str | None = None,
) -> Task:
    """Write ``num_instructions`` user queries about each ``input`` context.

    Args:
        system_prompt: the system prompt of every request.
        application_description: the AI application the queries are for.
        num_instructions: how many queries to ask for (models may write fewer or more;
            all are kept).
        criteria_for_query_generation: the rules the queries follow, one per item.
        template: a file whose text replaces the built-in template (see :mod:`fnlabel.tasks.templates`),
            with the placeholders ``{input}``, ``{num_instructions}``, ``{criteria}``, ``{application_description}``.

    Examples:
        >>> task = self_instruct(num_instructions=2, application_description="A cooking assistant")
        >>> "Write exactly 2 queries" in task.build_prompt({"input": "Pasta"}).formatted_prompt
        True
        >>> task.parse("Here are two:\\n1. How long do I boil pasta?\\n2. Suggest a sauce.")
        {'instructions': ['How long do I boil pasta?', 'Suggest a sauce.']}
    """
    return Task(
        name="self-instruct",
        build_prompt=SelfInstructPrompt(
            system_prompt,
            application_description,
            num_instructions,
            criteria_for_query_generation,
            TEMPLATE
            if template is None
            else read_template(template, task="self-instruct", placeholders=PLACEHOLDERS, required=("input",)),
        ),
        parse=parse_instructions,
        input_keys=("input",),
        output_keys=("instructions",),
    )
