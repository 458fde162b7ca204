"""Judges that score several answers to one question: JudgeLM and UltraJudge.

- ``judgelm``: ``input`` + ``generations`` -> ``rating`` (one 1-10 score per answer)
  + ``rationale`` (one explanation for all).
- ``ultrajudge``: ``input`` + ``generations`` -> ``rating`` (one 0-10 score per answer)
  + ``areas`` (per answer, ``{area: {"rating": float, "rationale": str}}``); it lives in
  :mod:`fnlabel.tasks.ultrajudge` and is re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from fnlabel.errors import ParseError
from fnlabel.tasks import inputs
from fnlabel.tasks.judge_schemas import (
    JsonAnswerParser,
    OnePerText,
    check_structured,
    judgelm_output,
    judgelm_schema,
    swap,
)
from fnlabel.tasks.parsing import excerpt, format_score, normalize, parse_score_list
from fnlabel.tasks.templates import fill, fill_description, read_template
from fnlabel.tasks.ultrajudge import (
    DEFAULT_AREAS,
    ULTRAJUDGE_DESCRIPTION,
    ULTRAJUDGE_SYSTEM_PROMPT,
    ULTRAJUDGE_TEMPLATE,
    UltraJudgeParser,
    UltraJudgePrompt,
    format_ultrajudge,
    ultrajudge,
)
from fnlabel.types import Prompt, Task

__all__ = [
    "judgelm",
    "ultrajudge",
    "JudgeLMPrompt",
    "parse_judgelm",
    "format_judgelm",
    "UltraJudgePrompt",
    "UltraJudgeParser",
    "format_ultrajudge",
    "ULTRAJUDGE_SYSTEM_PROMPT",
    "ULTRAJUDGE_DESCRIPTION",
    "ULTRAJUDGE_TEMPLATE",
    "DEFAULT_AREAS",
]

JUDGELM_SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of answers."

JUDGELM_DESCRIPTION = (
    "We would like your feedback on the answers of {num_responses} AI assistants to the user question above.\n"
    "Rate the helpfulness, relevance, accuracy and level of detail of each answer. Give each assistant one "
    "overall score from 1 to 10; a higher score means better overall performance.\n"
    "First write one line containing only the {num_responses} scores, for Assistants 1 to {num_responses} "
    "in order, separated by spaces. On the following lines, explain your evaluation in detail. Avoid any "
    "bias, and make sure the order in which the answers were presented does not affect your judgement."
)
#: the description of ``judgelm(structured=True)``: it asks for the JSON object instead of the line of scores
JUDGELM_JSON_DESCRIPTION = swap(
    JUDGELM_DESCRIPTION,
    "First write one line containing only the {num_responses} scores, for Assistants 1 to {num_responses} "
    "in order, separated by spaces. On the following lines, explain your evaluation in detail.",
    'Answer with one JSON object: "ratings" holds the {num_responses} scores, for Assistants 1 to '
    '{num_responses} in order, and "rationale" explains your evaluation in detail: {"ratings": [score of '
    'Assistant 1, ..., score of Assistant {num_responses}], "rationale": "[your explanation]"}.',
)

JUDGELM_TEMPLATE = "[Question]\n{input}\n\n{answers}\n\n[System]\n{task_description}\n"
JUDGELM_PLACEHOLDERS = ("input", "answers", "task_description", "num_responses")


@attrs.frozen
class JudgeLMPrompt:
    """``build_prompt`` of :func:`judgelm`."""

    system_prompt: str = JUDGELM_SYSTEM_PROMPT
    task_description: str = JUDGELM_DESCRIPTION
    template: str = JUDGELM_TEMPLATE

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        answers = inputs.texts(row, "generations")
        values = {
            "input": inputs.text(row, "input").strip(),
            "answers": "\n\n".join(
                f"[The Start of Assistant {i}'s Answer]\n{a.strip()}\n[The End of Assistant {i}'s Answer]"
                for i, a in enumerate(answers, start=1)
            ),
            "task_description": fill_description(self.task_description, num_responses=str(len(answers))),
            "num_responses": len(answers),
        }
        return Prompt(self.system_prompt, fill(self.template, values))


def parse_judgelm(raw: str) -> dict[str, Any]:
    """``parse`` of :func:`judgelm`: the first line(s) of scores, then the explanation.

    Scores may be written ``8 9``, ``8, 9``, ``8/10 9/10`` or one ``Assistant N: s``
    per line; text before them (a preamble) is skipped.

    Examples:
        >>> parse_judgelm("Assistant 1: 8\\nAssistant 2: 6\\nBoth answer, the first is clearer.")
        {'rating': [8.0, 6.0], 'rationale': 'Both answer, the first is clearer.'}
    """
    lines = normalize(raw).split("\n")
    scores: list[float] = []
    start = end = len(lines)
    for i, line in enumerate(lines):
        try:
            found = parse_score_list(line, 0, 10) if line.strip() else None
        except ParseError:
            found = None
        if found is not None:
            start = min(start, i)
            scores.extend(found)
        elif scores:
            end = i
            break
    if not scores:
        raise ParseError(
            f"expected a first line of scores from 1 to 10 such as '8 9', then an explanation; got {excerpt(raw)}"
        )
    # the explanation follows the scores; a model that explained first gets that text instead
    rationale = "\n".join(lines[end:]).strip() or "\n".join(lines[:start]).strip()
    return {"rating": scores, "rationale": rationale}


def format_judgelm(output: Mapping[str, Any]) -> str:
    """The answer the template asks for: the inverse of :func:`parse_judgelm`."""
    return " ".join(format_score(s) for s in output["rating"]) + "\n" + output["rationale"]


def judgelm(
    system_prompt: str = JUDGELM_SYSTEM_PROMPT,
    task_description: str = JUDGELM_DESCRIPTION,
    template: str | None = None,
    structured: bool = False,
) -> Task:
    """JudgeLM: score each of the ``generations`` for ``input`` from 1 to 10, with one explanation.

    Args:
        system_prompt: the system prompt of every request.
        task_description: the instructions after the answers; ``{num_responses}`` is
            replaced by the number of answers.
        template: a file whose text replaces the built-in template (see :mod:`fnlabel.tasks.templates`):
            it must use ``{input}`` and ``{answers}`` (each answer between JudgeLM's start and end
            marks) and may use ``{task_description}`` and ``{num_responses}``.
        structured: ask for a JSON object, ``{"ratings": [8, 6], "rationale": "..."}``, which the
            backend constrains decoding to (the default description asks for it; a description of
            yours is sent as written); the parsed output keeps the same keys and types.

    Examples:
        >>> task = judgelm()
        >>> task.parse("7 9\\nAssistant 2 is more detailed.")
        {'rating': [7.0, 9.0], 'rationale': 'Assistant 2 is more detailed.'}
    """
    schema = judgelm_schema() if check_structured(structured, "judgelm") else None
    if schema is not None and task_description == JUDGELM_DESCRIPTION:
        task_description = JUDGELM_JSON_DESCRIPTION
    return Task(
        name="judgelm",
        build_prompt=JudgeLMPrompt(
            system_prompt,
            task_description,
            JUDGELM_TEMPLATE
            if template is None
            else read_template(
                template, task="judgelm", placeholders=JUDGELM_PLACEHOLDERS, required=("input", "answers")
            ),
        ),
        parse=parse_judgelm if schema is None else JsonAnswerParser(schema, judgelm_output),
        input_keys=("input", "generations"),
        output_keys=("rating", "rationale"),
        schema=schema,
        row_schema=None if schema is None else OnePerText(schema, "ratings"),
    )
