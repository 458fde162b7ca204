"""Critique tasks: written feedback plus a score for one answer.

- ``ultracm``: ``input`` + ``generations`` (one answer) -> ``critique`` + ``score`` (1-10).
- ``prometheus``: ``input`` + ``generations`` (one answer) + ``ref_completion`` (a reference
  answer) -> ``critique`` + ``score`` (1..N, N = number of rubric levels), judged by a rubric.

Each row holds one answer: ``generations`` is a string or a one-item list (put
several answers on separate rows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from fnlabel.errors import ConfigError, ParseError
from fnlabel.tasks import inputs
from fnlabel.tasks.judge_schemas import (
    JsonAnswerParser,
    check_structured,
    critique_output,
    prometheus_schema,
    swap,
    ultracm_schema,
)
from fnlabel.tasks.parsing import excerpt, find_score, format_score, normalize, parse_score, strip_label
from fnlabel.tasks.templates import fill, read_template
from fnlabel.types import Prompt, Task
from fnlabel.validators import check_texts

__all__ = [
    "ultracm",
    "prometheus",
    "UltraCMPrompt",
    "parse_ultracm",
    "format_ultracm",
    "PrometheusPrompt",
    "PrometheusParser",
    "format_prometheus",
]

ULTRACM_SYSTEM_PROMPT = (
    "A chat between a curious user and an AI assistant. The assistant gives helpful, detailed and "
    "polite answers to the user's questions."
)

ULTRACM_TEMPLATE = """\
Here is my answer to an instruction. Your role is to give me specific, constructive feedback so that I can learn from it and do better.
Consider several aspects of my answer: helpfulness, truthfulness, honesty, and how well it follows the instruction.
---

### Instruction
{input}

### Answer
{answer}
---

Act as a teacher and give specific, constructive feedback. Besides describing the weaknesses of the answer, suggest concretely how to improve it. Your suggestions should help me complete the instruction better, without adding requirements that the instruction does not state. Help me think critically and answer accurately, but never give me the reference answer, and skip polite phrases. Keep the feedback concise, in chat style. Finally, score the overall quality of the answer from 1 to 10, where 1 is the worst and 10 the best.

*Format*
### Feedback
Overall Score: [score from 1 to 10]
[your feedback]
"""

#: the template of ``ultracm(structured=True)``: the JSON object replaces the score and feedback lines
ULTRACM_JSON_TEMPLATE = swap(
    ULTRACM_TEMPLATE,
    "*Format*\n### Feedback\nOverall Score: [score from 1 to 10]\n[your feedback]\n",
    '*Format*\nOne JSON object:\n{"score": [score from 1 to 10], "feedback": "[your feedback]"}\n',
)

PROMETHEUS_SYSTEM_PROMPT = "You are a fair evaluator language model."

PROMETHEUS_TEMPLATE = """\
###Task Description:
You are given an instruction (which may contain an input), a response to evaluate, a reference answer that would get a score of {high}, and a score rubric that states the evaluation criteria.
1. Write detailed feedback that assesses the quality of the response strictly by the score rubric, not by general impressions.
2. After the feedback, write a score: an integer from 1 to {high}, following the score rubric.
3. Use exactly this output format: "Feedback: (your feedback) [RESULT] (an integer from 1 to {high})"
4. Write no other opening, closing or explanation.

###The instruction to evaluate:
{input}

###Response to evaluate:
{answer}

###Reference Answer (Score {high}):
{reference}

###Score Rubrics:
[{criteria}]
{levels}

###Feedback:
"""

#: the template of ``prometheus(structured=True)``: it asks for the JSON object instead of ``[RESULT]``
PROMETHEUS_JSON_TEMPLATE = swap(
    PROMETHEUS_TEMPLATE,
    '3. Use exactly this output format: "Feedback: (your feedback) [RESULT] (an integer from 1 to {high})"',
    "3. Use exactly this output format, one JSON object: "
    '{"feedback": "(your feedback)", "score": (an integer from 1 to {high})}',
)

PROMETHEUS_PLACEHOLDERS = ("input", "answer", "reference", "criteria", "levels", "high")

DEFAULT_CRITERIA = "Does the response answer the instruction helpfully, accurately and completely?"
DEFAULT_SCORE_DESCRIPTIONS = (
    "The response is irrelevant or wrong, and does not help with the instruction.",
    "The response is related to the instruction but has major errors or omissions.",
    "The response is partly correct and helpful, with noticeable errors or gaps.",
    "The response is correct and helpful, with only minor issues.",
    "The response is correct, complete and clear, as good as the reference answer.",
)

_TRIM = " \t\n-–:.,;)]"


@attrs.frozen
class UltraCMPrompt:
    """``build_prompt`` of :func:`ultracm`."""

    system_prompt: str = ULTRACM_SYSTEM_PROMPT
    template: str = ULTRACM_TEMPLATE

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        values = {"input": inputs.text(row, "input").strip(), "answer": inputs.single_text(row, "generations").strip()}
        return Prompt(self.system_prompt, fill(self.template, values))


def _critique(text: str) -> str:
    text = re.sub(r"^\s*#*\s*feedback\s*#*\s*:?\s*$", "", text, count=1, flags=re.IGNORECASE | re.MULTILINE)
    return strip_label(text, ["feedback", "critique"]).strip()


def parse_ultracm(raw: str) -> dict[str, Any]:
    """``parse`` of :func:`ultracm`: ``Overall Score: s`` and the feedback around it.

    Without a labelled score, also reads a bare leading score (``"7\\nThe answer..."``),
    which is what a model writes when the prompt ends on ``Overall Score:`` (distilabel
    0.x's prefill).

    Examples:
        >>> parse_ultracm("### Feedback\\nOverall Score: 7/10\\nCorrect, but cite a source.")
        {'critique': 'Correct, but cite a source.', 'score': 7.0}
    """
    text = normalize(raw).strip()
    found = _labelled_score(text)
    if found is None and re.match(r"[\[\(*]*\d", text):  # no label: a prefilled reply starts with the score
        score = parse_score(text, 1, 10, "overall score")
        after = re.sub(r"^[\[\(*\s]*\d+(?:\.\d+)?(?:\s*/\s*\d+)?", "", text, count=1)
        return {"critique": _critique(after.lstrip(_TRIM)), "score": score}
    if found is None:  # a label anywhere, even in a sentence; else the error names what was expected
        found = find_score(text, ("overall score", "score", "rating"), what="overall score")
    score, start, end = found
    if not 1 <= score <= 10:
        raise ParseError(f"expected an overall score between 1 and 10, got {score:g} in {excerpt(text[start:end])}")
    after = re.sub(r"^[^\S\n]*\([^)\n]*\)", "", text[end:], count=1).lstrip(_TRIM)  # "8 (very good)"
    critique = _critique(after) or _critique(text[:start])
    return {"critique": critique, "score": score}


def _labelled_score(text: str) -> tuple[float, int, int] | None:
    """``Overall Score: s`` anywhere, else a line starting with ``Score:`` / ``Rating:``; else None.

    They win over a number the critique starts with ("1. Too short.") or mentions
    ("it would score 9")."""
    for labels, line_start in ((("overall score",), False), (("score", "rating"), True)):
        try:
            return find_score(text, labels, what="overall score", line_start=line_start)
        except ParseError:
            continue
    return None


def format_ultracm(output: Mapping[str, Any]) -> str:
    """The answer the template asks for: the inverse of :func:`parse_ultracm`."""
    return f"### Feedback\nOverall Score: {format_score(output['score'])}\n{output['critique']}"


def ultracm(system_prompt: str = ULTRACM_SYSTEM_PROMPT, template: str | None = None, structured: bool = False) -> Task:
    """UltraCM: critique the answer in ``generations`` to ``input`` and score it from 1 to 10.

    Args:
        system_prompt: the system prompt of every request.
        template: a file whose text replaces the built-in template (see :mod:`fnlabel.tasks.templates`),
            with the placeholders ``{input}`` and ``{answer}``.
        structured: ask for a JSON object, ``{"score": 7, "feedback": "..."}``, which the backend
            constrains decoding to (the built-in template asks for it; a template of yours is sent as
            written); the parsed output keeps the same keys and types.

    Examples:
        >>> task = ultracm()
        >>> task.parse("Overall Score: 3\\nThe answer ignores the question.")
        {'critique': 'The answer ignores the question.', 'score': 3.0}
    """
    schema = ultracm_schema() if check_structured(structured, "ultracm") else None
    return Task(
        name="ultracm",
        build_prompt=UltraCMPrompt(
            system_prompt,
            (ULTRACM_TEMPLATE if schema is None else ULTRACM_JSON_TEMPLATE)
            if template is None
            else read_template(
                template, task="ultracm", placeholders=("input", "answer"), required=("input", "answer")
            ),
        ),
        parse=parse_ultracm if schema is None else JsonAnswerParser(schema, critique_output),
        input_keys=("input", "generations"),
        output_keys=("critique", "score"),
        schema=schema,
    )


def _descriptions(value: Any) -> tuple[str, ...]:
    if isinstance(value, Mapping):  # distilabel 0.x's {score: description}, in score order
        try:
            value = [value[k] for k in sorted(value, key=lambda k: float(k))]
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"score_descriptions keys must be scores (1, 2, ...) or it must be a list, lowest first; "
                f"got keys {list(value)!r:.80}"
            ) from exc
    return check_texts(value, "score_descriptions", min_len=2)


@attrs.frozen
class PrometheusPrompt:
    """``build_prompt`` of :func:`prometheus`."""

    scoring_criteria: str = DEFAULT_CRITERIA
    score_descriptions: tuple[str, ...] = attrs.field(default=DEFAULT_SCORE_DESCRIPTIONS, converter=_descriptions)
    system_prompt: str = PROMETHEUS_SYSTEM_PROMPT
    template: str = PROMETHEUS_TEMPLATE

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        values = {
            "high": len(self.score_descriptions),
            "input": inputs.text(row, "input").strip(),
            "answer": inputs.single_text(row, "generations").strip(),
            "reference": inputs.text(row, "ref_completion").strip(),
            "criteria": self.scoring_criteria.strip(),
            "levels": "\n".join(f"Score {i}: {d.strip()}" for i, d in enumerate(self.score_descriptions, start=1)),
        }
        return Prompt(self.system_prompt, fill(self.template, values))


_RESULT = re.compile(r"\[\s*result\s*\]\s*:?", re.IGNORECASE)
_SCORE_LINE = re.compile(r"^[\s#>*_\-]*(?:final\s+|overall\s+)?score\s*:", re.IGNORECASE | re.MULTILINE)


@attrs.frozen
class PrometheusParser:
    """``parse`` of :func:`prometheus`: ``Feedback: ... [RESULT] s`` (or a last ``Score: s`` line)."""

    high: int = 5

    def __call__(self, raw: str) -> dict[str, Any]:
        text = normalize(raw).strip()
        marker = _RESULT.search(text) or _last(_SCORE_LINE.finditer(text))
        if marker is None:
            raise ParseError(f"expected 'Feedback: <feedback> [RESULT] <1-{self.high}>', got {excerpt(raw)}")
        score = parse_score(text[marker.end() :], 1, self.high, "score")
        critique = _critique(text[: marker.start()])
        return {"critique": critique, "score": score}


def _last(matches: Any) -> Any:
    found = None
    for found in matches:  # noqa: B007 - the loop keeps the last match
        pass
    return found


def format_prometheus(output: Mapping[str, Any]) -> str:
    """The answer the template asks for: the inverse of :class:`PrometheusParser`."""
    return f"Feedback: {output['critique']} [RESULT] {format_score(output['score'])}"


def prometheus(
    scoring_criteria: str = DEFAULT_CRITERIA,
    score_descriptions: tuple[str, ...] = DEFAULT_SCORE_DESCRIPTIONS,
    system_prompt: str = PROMETHEUS_SYSTEM_PROMPT,
    template: str | None = None,
    structured: bool = False,
) -> Task:
    """Prometheus: critique the answer in ``generations`` against the ``ref_completion``
    reference answer and a rubric, and score it from 1 to N.

    Args:
        scoring_criteria: the question the rubric answers.
        score_descriptions: what scores 1..N mean, lowest first (N = len; the
            reference answer gets N). A ``{score: description}`` mapping works too.
        system_prompt: the system prompt of every request.
        template: a file whose text replaces the built-in template (see :mod:`fnlabel.tasks.templates`):
            it must use ``{input}``, ``{answer}`` and ``{reference}`` and may use ``{criteria}``,
            ``{levels}`` (the rubric's "Score i: ..." lines) and ``{high}`` (the top score).
        structured: ask for a JSON object, ``{"feedback": "...", "score": 4}``, which the backend
            constrains decoding to (the built-in template asks for it; a template of yours is sent as
            written); the parsed output keeps the same keys and types.

    Examples:
        >>> task = prometheus()
        >>> task.parse("Feedback: Accurate but brief. [RESULT] 4")
        {'critique': 'Accurate but brief.', 'score': 4.0}
    """
    if template is not None:
        template = read_template(
            template, task="prometheus", placeholders=PROMETHEUS_PLACEHOLDERS, required=("input", "answer", "reference")
        )
    structured = check_structured(structured, "prometheus")
    default_template = PROMETHEUS_JSON_TEMPLATE if structured else PROMETHEUS_TEMPLATE
    prompt = PrometheusPrompt(scoring_criteria, score_descriptions, system_prompt, template or default_template)
    high = len(prompt.score_descriptions)
    schema = prometheus_schema(high) if structured else None
    return Task(
        name="prometheus",
        build_prompt=prompt,
        parse=PrometheusParser(high) if schema is None else JsonAnswerParser(schema, critique_output),
        input_keys=("input", "generations", "ref_completion"),
        output_keys=("critique", "score"),
        schema=schema,
    )
