"""UltraJudge: per answer, a 0-10 score and feedback for each area, then final scores.

``input`` + ``generations`` -> ``rating`` (one 0-10 score per answer) + ``areas`` (per answer,
``{area: {"rating": float, "rationale": str}}``). :mod:`fnlabel.tasks.judges` re-exports it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from fnlabel.errors import ParseError
from fnlabel.tasks import inputs
from fnlabel.tasks.judge_schemas import (
    JsonAnswerParser,
    OnePerText,
    check_structured,
    swap,
    ultrajudge_format,
    ultrajudge_output,
    ultrajudge_schema,
)
from fnlabel.tasks.parsing import excerpt, format_score, normalize, parse_score, parse_score_list
from fnlabel.tasks.templates import fill, fill_description, read_template
from fnlabel.types import Prompt, Task
from fnlabel.validators import check_texts

__all__ = [
    "ultrajudge",
    "UltraJudgePrompt",
    "UltraJudgeParser",
    "format_ultrajudge",
    "ULTRAJUDGE_SYSTEM_PROMPT",
    "ULTRAJUDGE_DESCRIPTION",
    "ULTRAJUDGE_JSON_DESCRIPTION",
    "ULTRAJUDGE_TEMPLATE",
    "ULTRAJUDGE_JSON_TEMPLATE",
    "ULTRAJUDGE_PLACEHOLDERS",
    "DEFAULT_AREAS",
]

ULTRAJUDGE_SYSTEM_PROMPT = (
    "You evaluate AI assistants' answers the way a typical user would judge them. Focus on what people "
    "value: engagement, whether the solution works, accuracy, clarity and creativity. Read each answer as if "
    "you had asked the question yourself and consider how well it meets your needs in a real situation. "
    "Give detailed feedback on strengths and weaknesses. Be impartial and thorough, prefer answers that are "
    "practical, clear, authentic and true to the user's intent, and judge only the content and quality of "
    "the answers."
)

ULTRAJUDGE_DESCRIPTION = (
    "Your task is to evaluate the answers of {num_responses} AI assistants carefully, from a human's point "
    "of view. Judge each answer in these areas, which people typically value: {areas}. For each assistant "
    "and each area, first give a score from 0 to 10, then detailed feedback. Finally, give a list of "
    "{num_responses} scores separated by spaces: the overall performance of Assistants 1 to {num_responses}."
)
#: the description of ``ultrajudge(structured=True)``: final scores in the JSON object
ULTRAJUDGE_JSON_DESCRIPTION = swap(
    ULTRAJUDGE_DESCRIPTION,
    "give a list of {num_responses} scores separated by spaces: the overall performance of Assistants 1 to "
    "{num_responses}.",
    "give each assistant a final score from 0 to 10 for its overall performance. Answer with one JSON object.",
)

DEFAULT_AREAS = (
    "Practical Accuracy",
    "Clarity & Transparency",
    "Authenticity & Reliability",
    "Compliance with Intent",
)


def _areas(value: Any) -> tuple[str, ...]:
    return check_texts(value, "areas")


def _areas_text(areas: Sequence[str]) -> str:
    if len(areas) == 1:
        return areas[0]
    return ", ".join(areas[:-1]) + " and " + areas[-1]


ULTRAJUDGE_TEMPLATE = """\
{task_description}

---

## Format

### Input
Instruction: [the instruction]

{answer_placeholders}

### Output
{output_format}

Final scores: {final_scores_format}

---

### Input
Instruction: {input}

{answers}

### Output
"""
#: the template of ``ultrajudge(structured=True)``: the JSON object replaces the per-area lines and final scores
ULTRAJUDGE_JSON_TEMPLATE = swap(
    ULTRAJUDGE_TEMPLATE, "{output_format}\n\nFinal scores: {final_scores_format}\n", "{output_format}\n"
)
ULTRAJUDGE_PLACEHOLDERS = (
    "input", "answers", "task_description", "answer_placeholders", "output_format", "final_scores_format", "areas",
)  # fmt: skip


@attrs.frozen
class UltraJudgePrompt:
    """``build_prompt`` of :func:`ultrajudge`."""

    areas: tuple[str, ...] = attrs.field(default=DEFAULT_AREAS, converter=_areas)
    system_prompt: str = ULTRAJUDGE_SYSTEM_PROMPT
    task_description: str = ULTRAJUDGE_DESCRIPTION
    template: str = ULTRAJUDGE_TEMPLATE
    #: ask for the JSON object of :func:`~fnlabel.tasks.judge_schemas.ultrajudge_schema` in ``{output_format}``
    structured: bool = False

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        answers = inputs.texts(row, "generations")
        n = len(answers)
        if self.structured:
            output_format = ultrajudge_format(n, self.areas)
            final_scores = 'the "final_score" of each assistant, in the JSON object'
        else:
            per_area = "\n".join(f"{a} - [score from 0 to 10]\n[feedback on {a}]" for a in self.areas)
            output_format = "\n\n".join(f"Assistant {i}:\n{per_area}" for i in range(1, n + 1))
            final_scores = " ".join(f"[score of Assistant {i}]" for i in range(1, n + 1))
        values = {
            "input": inputs.text(row, "input").strip(),
            "answers": "\n\n".join(f"Assistant {i}: {a.strip()}" for i, a in enumerate(answers, start=1)),
            "task_description": fill_description(
                self.task_description, num_responses=str(n), areas=_areas_text(self.areas)
            ),
            "answer_placeholders": "\n".join(f"Assistant {i}: [answer]" for i in range(1, n + 1)),
            "output_format": output_format,
            "final_scores_format": final_scores,
            "areas": _areas_text(self.areas),
        }
        return Prompt(self.system_prompt, fill(self.template, values))


_ASSISTANT_HEADER = re.compile(r"^[\s#>*_\-]*assistant\s*#?(\d+)\s*[:.\-]?\s*$", re.IGNORECASE)
_FINAL = re.compile(r"^[\s#>*_\-]*final\s+scores?\b\s*[:\-=]?\s*(.*)$", re.IGNORECASE)


def _final_scores(lines: list[str], final_at: int) -> list[float]:
    """The scores after ``Final scores:``: on its line, and/or one line per answer under it
    (``Assistant 1: 8`` / ``Assistant 2: 6``), up to the first line that is not scores."""
    value = _FINAL.match(lines[final_at]).group(1).strip()  # type: ignore[union-attr]
    rest = lines[final_at + 1 :]
    if not value:  # the scores start on the next non-empty line
        while rest and not rest[0].strip():
            rest = rest[1:]
        value, rest = (rest[0], rest[1:]) if rest else ("", [])
    rating = parse_score_list(value, 0, 10, "final score")
    for line in rest:
        try:
            rating.extend(parse_score_list(line, 0, 10, "final score"))
        except ParseError:
            break
    return rating


@attrs.frozen
class UltraJudgeParser:
    """``parse`` of :func:`ultrajudge`: per-area scores and feedback, then ``Final scores: ...``."""

    areas: tuple[str, ...] = attrs.field(default=DEFAULT_AREAS, converter=_areas)

    def _area_pattern(self) -> re.Pattern[str]:
        names = "|".join(r"\s*".join(re.escape(w) for w in a.split()).replace(r"\&", r"(?:&|and)") for a in self.areas)
        return re.compile(r"^[\s#>*_\-•\d.)]*(" + names + r")\s*(?:\([^)\n]*\))?\s*[:\-–=]\s*(.*)$", re.IGNORECASE)

    def _canonical(self, written: str) -> str:
        key = re.sub(r"\W+", "", written.lower().replace("&", "and"))
        for area in self.areas:
            if re.sub(r"\W+", "", area.lower().replace("&", "and")) == key:
                return area
        return written

    def __call__(self, raw: str) -> dict[str, Any]:
        lines = normalize(raw).split("\n")
        final_at = next((i for i, line in enumerate(lines) if _FINAL.match(line)), None)
        if final_at is None:
            raise ParseError(f"expected a line 'Final scores: <score> <score> ...', got {excerpt(raw)}")
        rating = _final_scores(lines, final_at)

        area_re = self._area_pattern()
        answers: dict[int, dict[str, dict[str, Any]]] = {}
        current: dict[str, dict[str, Any]] | None = None
        feedback: list[str] | None = None
        for line in lines[:final_at]:
            header = _ASSISTANT_HEADER.match(line)
            match = area_re.match(line)
            if header:  # "Assistant N:" places what follows at answer N
                current, feedback = answers.setdefault(max(int(header.group(1)) - 1, 0), {}), None
            elif match:
                name = self._canonical(match.group(1))
                if current is None or name in current:  # no header: a repeated area starts the next answer
                    current = answers.setdefault(max(answers, default=-1) + 1, {})
                score_text = match.group(2)
                score = parse_score(score_text, 0, 10, f"score for {name!r}")
                rest = re.sub(r"^[\s\[\(]*\d+(?:\.\d+)?(?:\s*/\s*\d+)?[\]\)]*", "", score_text, count=1)
                feedback = [rest.strip(" -–:.,;")] if rest.strip(" -–:.,;") else []
                current[name] = {"rating": score, "rationale": feedback}
            elif feedback is not None:
                feedback.append(line)
        for answer in answers.values():
            for area in answer.values():
                area["rationale"] = "\n".join(area["rationale"]).strip()
        areas = [answers.get(i, {}) for i in range(len(rating))]
        return {"rating": rating, "areas": areas}


def format_ultrajudge(output: Mapping[str, Any]) -> str:
    """The answer the template asks for: the inverse of :class:`UltraJudgeParser`."""
    blocks = []
    for i, areas in enumerate(output["areas"], start=1):
        lines = [f"Assistant {i}:"]
        for name, area in areas.items():
            lines += [f"{name} - {format_score(area['rating'])}", area["rationale"]]
        blocks.append("\n".join(lines))
    finals = " ".join(format_score(s) for s in output["rating"])
    return "\n\n".join(blocks) + f"\n\nFinal scores: {finals}"


def ultrajudge(
    areas: tuple[str, ...] = DEFAULT_AREAS,
    system_prompt: str = ULTRAJUDGE_SYSTEM_PROMPT,
    task_description: str = ULTRAJUDGE_DESCRIPTION,
    template: str | None = None,
    structured: bool = False,
) -> Task:
    """UltraJudge: score each of the ``generations`` per area and overall, from 0 to 10.

    Args:
        areas: the areas judged for each answer.
        system_prompt: the system prompt of every request.
        task_description: the task's instructions; ``{num_responses}`` and ``{areas}`` are filled in.
        template: a file whose text replaces the built-in template (see :mod:`fnlabel.tasks.templates`):
            it must use ``{input}`` and ``{answers}`` and may use ``{task_description}``, ``{areas}``,
            ``{answer_placeholders}``, ``{output_format}`` and ``{final_scores_format}``.
        structured: ask for a JSON object (in ``{output_format}``), per assistant
            ``{"areas": {area: {"rating": 8, "rationale": "..."}}, "final_score": 7}``, which the
            backend constrains decoding to; the parsed output keeps the same keys and types.

    Examples:
        >>> task = ultrajudge(areas=["Accuracy", "Clarity"])
        >>> out = task.parse("Assistant 1:\\nAccuracy - 8\\nRight.\\nClarity - 6\\nTerse.\\n\\nFinal scores: 7")
        >>> out["rating"], out["areas"][0]["Clarity"]
        ([7.0], {'rating': 6.0, 'rationale': 'Terse.'})
    """
    if template is not None:
        template = read_template(
            template, task="ultrajudge", placeholders=ULTRAJUDGE_PLACEHOLDERS, required=("input", "answers")
        )
    schema = None
    if check_structured(structured, "ultrajudge"):
        schema = ultrajudge_schema(_areas(areas))
        if task_description == ULTRAJUDGE_DESCRIPTION:
            task_description = ULTRAJUDGE_JSON_DESCRIPTION
    default_template = ULTRAJUDGE_TEMPLATE if schema is None else ULTRAJUDGE_JSON_TEMPLATE
    return Task(
        name="ultrajudge",
        build_prompt=UltraJudgePrompt(areas, system_prompt, task_description, template or default_template, structured),
        parse=UltraJudgeParser(areas) if schema is None else JsonAnswerParser(schema, ultrajudge_output),
        input_keys=("input", "generations"),
        output_keys=("rating", "areas"),
        schema=schema,
        row_schema=None if schema is None else OnePerText(schema, "assistants"),
    )
