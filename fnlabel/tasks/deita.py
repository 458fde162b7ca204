"""Deita's scorers: rank several instructions by complexity, or several answers by quality.

- ``complexity_scorer``: ``generations`` (the instructions) -> ``rating`` (one score each).
- ``quality_scorer``: ``input`` + ``generations`` (answers to it) -> ``rating`` (one score each).

With N items, scores run from 1 to N, and N + 1 is reserved (too complex to
answer / cannot be improved). The parsers read ``[N] Score: s`` lines, in any
order, and return the scores in item order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from fnlabel.tasks import inputs
from fnlabel.tasks.judge_schemas import (
    JsonAnswerParser,
    OnePerText,
    check_structured,
    scores_format,
    scores_output,
    scores_schema,
    swap,
)
from fnlabel.tasks.parsing import format_score, indexed_scores
from fnlabel.tasks.templates import fill, read_template
from fnlabel.types import Prompt, Task

__all__ = [
    "complexity_scorer",
    "quality_scorer",
    "ComplexityScorerPrompt",
    "QualityScorerPrompt",
    "parse_indexed_scores",
    "format_complexity_scores",
    "format_quality_scores",
]

COMPLEXITY_TEMPLATE = """\
Rank the following questions by how difficult and complex they are. Give each question a score from 1 to {n}, where a higher score means a more complex question. You may give a score of {n_plus_one} to a question that is too complex for you to answer.
Answer in this format, one line per question, and write nothing else:
{format_lines}

Questions:
{items}"""

#: the template of ``complexity_scorer(structured=True)``: one JSON object instead of one line per question
COMPLEXITY_JSON_TEMPLATE = swap(
    COMPLEXITY_TEMPLATE,
    "Answer in this format, one line per question, and write nothing else:",
    "Answer with one JSON object holding one score per question, in order, and write nothing else:",
)

QUALITY_DESCRIPTION = (
    "Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, "
    "creativity and level of detail of each response."
)

QUALITY_TEMPLATE = """\
Rank the following responses of different AI assistants to the user's question by the quality of each response. Give each response a score from 1 to {n}, where a higher score means a better response; give {n_plus_one} to a response that is already very well written and cannot be improved further.
{task_description}
Answer in this format, one line per response, and write nothing else:
{format_lines}

#Question#: {input}
#Response List#:
{items}"""
#: the template of ``quality_scorer(structured=True)``: one JSON object instead of one line per response
QUALITY_JSON_TEMPLATE = swap(
    QUALITY_TEMPLATE,
    "Answer in this format, one line per response, and write nothing else:",
    "Answer with one JSON object holding one score per response, in order, and write nothing else:",
)


@attrs.frozen
class ComplexityScorerPrompt:
    """``build_prompt`` of :func:`complexity_scorer`."""

    system_prompt: str = ""
    template: str = COMPLEXITY_TEMPLATE
    #: ask for ``{"scores": [...]}`` in ``{format_lines}``
    structured: bool = False

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        items = inputs.texts(row, "generations")
        n = len(items)
        values = {
            "n": n,
            "n_plus_one": n + 1,
            "format_lines": scores_format(n, "question")
            if self.structured
            else "\n".join(f"[{i}] Score: [score of question {i}]" for i in range(1, n + 1)),
            "items": "\n".join(f"[{i}] {q.strip()}" for i, q in enumerate(items, start=1)),
        }
        return Prompt(self.system_prompt, fill(self.template, values))


@attrs.frozen
class QualityScorerPrompt:
    """``build_prompt`` of :func:`quality_scorer`."""

    system_prompt: str = ""
    task_description: str = QUALITY_DESCRIPTION
    template: str = QUALITY_TEMPLATE
    #: ask for ``{"scores": [...]}`` in ``{format_lines}``
    structured: bool = False

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        items = inputs.texts(row, "generations")
        n = len(items)
        values = {
            "n": n,
            "n_plus_one": n + 1,
            "task_description": self.task_description.strip(),
            "format_lines": scores_format(n, "response")
            if self.structured
            else "\n".join(f"[Response {i}] Score: [score of response {i}]" for i in range(1, n + 1)),
            "input": inputs.text(row, "input").strip(),
            "items": "\n".join(f"[Response {i}] {r.strip()}" for i, r in enumerate(items, start=1)),
        }
        return Prompt(self.system_prompt, fill(self.template, values))


def parse_indexed_scores(raw: str) -> dict[str, Any]:
    """``parse`` of both scorers: ``[1] Score: s`` / ``[Response 1] Score: s`` lines -> ``rating``.

    Examples:
        >>> parse_indexed_scores("[Response 1] Score: 3\\n[Response 2] Score: **1** (vague)")
        {'rating': [3.0, 1.0]}
    """
    return {"rating": indexed_scores(raw, low=0)}


def format_complexity_scores(output: Mapping[str, Any]) -> str:
    """The answer the complexity template asks for: the inverse of :func:`parse_indexed_scores`."""
    return "\n".join(f"[{i}] Score: {format_score(s)}" for i, s in enumerate(output["rating"], start=1))


def format_quality_scores(output: Mapping[str, Any]) -> str:
    """The answer the quality template asks for: the inverse of :func:`parse_indexed_scores`."""
    return "\n".join(f"[Response {i}] Score: {format_score(s)}" for i, s in enumerate(output["rating"], start=1))


def complexity_scorer(system_prompt: str = "", template: str | None = None, structured: bool = False) -> Task:
    """Deita's complexity scorer: score each instruction in ``generations`` by complexity.

    Args:
        system_prompt: the system prompt of every request (none by default).
        template: a file whose text replaces the built-in template (see :mod:`fnlabel.tasks.templates`):
            it must use ``{items}`` (the numbered instructions) and may use ``{n}``, ``{n_plus_one}``
            and ``{format_lines}``.
        structured: ask for a JSON object, ``{"scores": [1, 3]}`` (in ``{format_lines}``), which the
            backend constrains decoding to; the parsed output keeps the same keys and types.

    Examples:
        >>> task = complexity_scorer()
        >>> task.build_prompt({"generations": ["Add 2 and 2.", "Prove Fermat's last theorem."]}).formatted_prompt.splitlines()[-1]
        "[2] Prove Fermat's last theorem."
        >>> task.parse("[1] Score: 1\\n[2] Score: 3")
        {'rating': [1.0, 3.0]}
    """
    schema = scores_schema("question") if check_structured(structured, "complexity-scorer") else None
    return Task(
        name="complexity-scorer",
        build_prompt=ComplexityScorerPrompt(
            system_prompt,
            (COMPLEXITY_TEMPLATE if schema is None else COMPLEXITY_JSON_TEMPLATE)
            if template is None
            else read_template(
                template,
                task="complexity-scorer",
                placeholders=("items", "n", "n_plus_one", "format_lines"),
                required=("items",),
            ),
            structured,
        ),
        parse=parse_indexed_scores if schema is None else JsonAnswerParser(schema, scores_output),
        input_keys=("generations",),
        output_keys=("rating",),
        schema=schema,
        row_schema=None if schema is None else OnePerText(schema, "scores", top=True),
    )


def quality_scorer(
    system_prompt: str = "",
    task_description: str = QUALITY_DESCRIPTION,
    template: str | None = None,
    structured: bool = False,
) -> Task:
    """Deita's quality scorer: score each answer in ``generations`` to ``input`` by quality.

    Args:
        system_prompt: the system prompt of every request (none by default).
        task_description: what the evaluation should consider.
        template: a file whose text replaces the built-in template (see :mod:`fnlabel.tasks.templates`):
            it must use ``{input}`` and ``{items}`` (the numbered responses) and may use ``{n}``,
            ``{n_plus_one}``, ``{format_lines}`` and ``{task_description}``.
        structured: ask for a JSON object, ``{"scores": [2, 3]}`` (in ``{format_lines}``), which the
            backend constrains decoding to; the parsed output keeps the same keys and types.

    Examples:
        >>> quality_scorer().parse("[Response 1] Score: 2\\n[Response 2] Score: 3")
        {'rating': [2.0, 3.0]}
    """
    schema = scores_schema("response") if check_structured(structured, "quality-scorer") else None
    return Task(
        name="quality-scorer",
        build_prompt=QualityScorerPrompt(
            system_prompt,
            task_description,
            (QUALITY_TEMPLATE if schema is None else QUALITY_JSON_TEMPLATE)
            if template is None
            else read_template(
                template,
                task="quality-scorer",
                placeholders=("input", "items", "n", "n_plus_one", "format_lines", "task_description"),
                required=("input", "items"),
            ),
            structured,
        ),
        parse=parse_indexed_scores if schema is None else JsonAnswerParser(schema, scores_output),
        input_keys=("input", "generations"),
        output_keys=("rating",),
        schema=schema,
        row_schema=None if schema is None else OnePerText(schema, "scores", top=True),
    )
