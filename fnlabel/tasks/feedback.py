"""UltraFeedback: rate several texts for one instruction on one aspect.

``input`` + ``generations`` -> ``rating`` (one float per text) + ``rationale``
(one string per text), the columns distilabel 0.x's UltraFeedbackTask produced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from fnlabel.errors import ParseError
from fnlabel.tasks import inputs
from fnlabel.tasks.judge_schemas import (
    JsonAnswerParser,
    OnePerText,
    check_structured,
    ultrafeedback_format,
    ultrafeedback_output,
    ultrafeedback_schema,
)
from fnlabel.tasks.parsing import excerpt, format_score, label_value, normalize, parse_score, starts_with_score
from fnlabel.tasks.templates import fill, read_template
from fnlabel.types import Prompt, Task
from fnlabel.validators import check_one_of, check_texts

__all__ = ["ultrafeedback", "UltraFeedbackPrompt", "UltraFeedbackParser", "format_ratings", "ASPECTS"]

DEFAULT_SYSTEM_PROMPT = "Your role is to evaluate the quality of texts against the given criteria."

Aspect = Literal["overall-quality", "helpfulness", "truthfulness", "honesty", "instruction-following"]

#: aspect -> (task description, descriptions of ratings 1..5)
ASPECTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "overall-quality": (
        "# General Text Quality Assessment\n"
        "Judge the texts on several criteria at once:\n"
        "1. **Correctness and informativeness**: is the information accurate and useful?\n"
        "2. **Honesty and uncertainty**: is the text as confident as it should be, and does it say when it is unsure?\n"
        "3. **Truthfulness**: does it avoid misleading or invented details?\n"
        "4. **Instruction following**: does it do what the instruction and the user intended?\n"
        "Give one overall judgement that weighs all of these.\n\n"
        "**Scoring**: rate each text from 1 to 5 for its overall quality:",
        (
            "**Low quality**: inaccurate, possibly entirely wrong, or badly hallucinated.",
            "**Moderate quality**: covers part of the task, with errors or only partly following the instruction.",
            "**Good**: mostly accurate, with minor errors or small deviations.",
            "**Very good**: nearly perfect; only small issues of alignment or confidence.",
            "**Excellent**: accurate, rightly confident, follows the instruction, free of hallucinations.",
        ),
    ),
    "helpfulness": (
        "# Helpfulness and Informativeness Assessment\n"
        "Judge whether each text achieves the task's goal with correct, informative, high-quality content.\n"
        "**Correctness**: computations, reasoning steps and results are accurate, with no misunderstanding or fabrication.\n"
        "**Informativeness**: the text gives relevant, useful and complete information without repeating itself.\n\n"
        "**Scoring**: rate each text from 1 to 5 for helpfulness, counting both correctness and informativeness:",
        (
            "**Severely incorrect**: major inaccuracies or invented content, however much information it gives.",
            "**Partially incorrect**: errors that may confuse the reader, even if the information is comprehensive.",
            "**Correct**: accurate, with useful information that meets the task's requirements.",
            "**Highly informative**: accurate and extensive, with valuable insights and detail.",
            "**Outstandingly helpful**: accurate and in-depth, with profound insights and comprehensive information.",
        ),
    ),
    "truthfulness": (
        "# Truthfulness and Hallucination Assessment\n"
        "Judge whether each text gives accurate information without misleading or invented details. "
        "Look for three kinds of hallucination:\n"
        "1. **Contradicts the world**: entities, places, concepts or events that conflict with established knowledge.\n"
        "2. **Contradicts the instruction or input**: new facts that disagree with the instruction or its input.\n"
        "3. **Contradicts itself**: internal contradictions or logical errors within the text.\n\n"
        "**Scoring**: rate each text from 1 to 5 by how free it is of hallucination:",
        (
            "**Completely hallucinated**: unreliable throughout.",
            "**Severe hallucination**: about half of it is hallucinated, straying far from the main points.",
            "**Partial hallucination or misunderstanding**: truthful overall, with some misunderstanding caused by hallucination.",
            "**Insignificant hallucination**: mostly truthful; slight hallucinations do not affect the main points.",
            "**No hallucination**: free of hallucinations.",
        ),
    ),
    "honesty": (
        "# Honesty and Uncertainty Assessment\n"
        "Judge how honestly each text conveys what it knows, and whether its confidence matches its correctness.\n"
        '- **Signs of uncertainty**: hedges ("I think", "probably"), refusing to answer, or stated confidence '
        "levels (0-20 low, 20-40 uncertain, 40-60 moderate, 60-80 fairly confident, 80-100 high).\n"
        "- A text with no sign of uncertainty counts as confident.\n"
        "- **Correctness**: agrees with the ground truth, or gives accurate content without fabrication.\n\n"
        "**Scoring**: rate each text from 1 to 5 for honesty and expression of uncertainty:",
        (
            "**Confidently incorrect**: confident but entirely wrong.",
            "**Confident with major mistakes, or unconfident and wrong**: confident but with major errors, or unsure and entirely wrong.",
            '**Uncertain or subtly wrong**: says "I don\'t know" or declines; or confident with minor errors; or unsure with significant mistakes.',
            "**Correct but uncertain**: correct but unconfident, or points out where it may be slightly wrong.",
            "**Correct and confident, or precise about uncertainty**: correct and confident; or acknowledges its minor mistakes precisely.",
        ),
    ),
    "instruction-following": (
        "# Instruction Following Assessment\n"
        "Judge how well each text matches the intent of the instruction: does it understand the task goal "
        "and respect its restrictions?\n"
        "**Parts of an instruction**: the task goal (the intended outcome) and the restrictions "
        "(style, format, or required method).\n\n"
        "**Scoring**: rate each text from 1 to 5 for instruction following:",
        (
            "**Irrelevant**: does not follow the instruction at all.",
            "**Partial focus**: handles one part of the instruction, poorly.",
            "**Partial compliance**: meets the goal or the restrictions but neglects the other, or handles both with slight deviations.",
            "**Almost there**: close to full alignment, with minor deviations.",
            "**Full compliance**: follows the instruction completely, meeting all requirements.",
        ),
    ),
}

_ALIASES = {"text-quality": "overall-quality", "overall": "overall-quality"}


def canonical_aspect(value: Any) -> str:
    """``overall_quality`` / ``Overall Quality`` / ``text-quality`` -> ``overall-quality``."""
    name = re.sub(r"[\s_]+", "-", str(value).strip().lower())
    name = _ALIASES.get(name, name)
    check_one_of(name, "ultrafeedback aspect", tuple(ASPECTS))
    return name


def _ratings(value: Any) -> tuple[str, ...] | None:
    return None if value is None else check_texts(value, "ratings", min_len=2)


TEMPLATE = """\
{task_description}
{ratings}

---

## Format

### Input
Instruction: [Specify task goal and restrictions]

Texts:
{text_placeholders}

### Output
{output_format}

---

## Annotation

### Input
Instruction: {input}

Texts:
{texts}

### Output
"""
#: what a template of :func:`ultrafeedback` may use; it must use ``{input}`` and ``{texts}``
PLACEHOLDERS = ("input", "texts", "task_description", "ratings", "text_placeholders", "output_format")


@attrs.frozen
class UltraFeedbackPrompt:
    """``build_prompt`` of :func:`ultrafeedback`."""

    task_description: str
    ratings: tuple[str, ...]
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    template: str = TEMPLATE
    #: ask for the JSON object of :func:`~fnlabel.tasks.judge_schemas.ultrafeedback_schema` in ``{output_format}``
    structured: bool = False

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        texts = [t.strip() for t in inputs.texts(row, "generations")]
        n = len(texts)
        output_format = (
            ultrafeedback_format(n, len(self.ratings))
            if self.structured
            else "\n\n".join(
                f"#### Output for Text {i}\nRating: [Rating for text {i}]\n"
                "Rationale: [Rationale for the rating, in short sentences]"
                for i in range(1, n + 1)
            )
        )
        values = {
            "input": inputs.text(row, "input").strip(),
            "texts": "\n".join(f"<text {i}> {t}" for i, t in enumerate(texts, start=1)),
            "task_description": self.task_description.strip(),
            "ratings": "\n".join(f"{i}. {d}" for i, d in enumerate(self.ratings, start=1)),
            "text_placeholders": "\n".join(f"<text {i}> [Text {i}]" for i in range(1, n + 1)),
            "output_format": output_format,
        }
        return Prompt(self.system_prompt, fill(self.template, values))


_HEADER_PREFIX = re.compile(r"^[\s#>*_\-]*(?:output\s+for\s+)?text\s*#?\d+[\s*_]*[:.)\-–]?\s*", re.IGNORECASE)
_HEADER = re.compile(r"^[\s#>*_\-]*(?:output\s+for\s+)?text\s*#?\d+\s*:?\s*$", re.IGNORECASE)


@attrs.frozen
class UltraFeedbackParser:
    """``parse`` of :func:`ultrafeedback`: one ``Rating:`` (+ ``Rationale:``) per text, in order."""

    low: float = 1
    high: float = 5

    def __call__(self, raw: str) -> dict[str, Any]:
        # one entry per text: [rating, rationale lines]; a rationale may come before its rating
        entries: list[list[Any]] = []
        current: list[Any] | None = None  # the entry of the text being read
        collecting = False
        for line in normalize(raw).split("\n"):
            prefix = _HEADER_PREFIX.match(line)  # "**Text 2**: Rating: 4" is a header, then a rating
            if prefix and label_value(line[prefix.end() :], ["rating", "rationale"]) is not None:
                current, collecting, line = None, False, line[prefix.end() :]
            rating_value = label_value(line, ["rating"])
            rationale_value = label_value(line, ["rationale", "reason", "explanation"])
            # inside a rationale, "Rating it lower..." is prose, not a rating line
            if rating_value is not None and (not collecting or starts_with_score(rating_value)):
                inline = re.split(r"\brationale\b\s*[:\-]?", rating_value, maxsplit=1, flags=re.IGNORECASE)
                rating = parse_score(inline[0], self.low, self.high, "rating")
                if current is None or current[0] is not None:  # a rating starts the next text...
                    current = [None, None]
                    entries.append(current)
                current[0] = rating  # ...unless this text's rationale came first
                if len(inline) > 1:
                    current[1] = [inline[1].strip()]
                collecting = len(inline) > 1
            elif rationale_value is not None:
                if current is None or current[1] is not None:  # a second rationale starts the next text
                    current = [None, None]
                    entries.append(current)
                current[1] = [rationale_value]
                collecting = True
            elif _HEADER.match(line) or line.lstrip().startswith("#"):
                current, collecting = None, False
            elif collecting and current is not None:
                current[1].append(line)
        while entries and entries[-1][0] is None:  # a closing remark ("Explanation: ...") rates no text
            entries.pop()
        # a text with a rationale but no rating before rated ones: dropping it would shift their ratings
        unrated = [i for i, (rating, _) in enumerate(entries, start=1) if rating is None]
        if not entries or unrated:
            missing = f" (text {unrated[0]} has a rationale but no rating)" if unrated else ""
            raise ParseError(
                f"expected 'Rating: <{self.low:g}-{self.high:g}>' and 'Rationale: ...' for each text{missing}, "
                f"got {excerpt(raw)}"
            )
        return {
            "rating": [rating for rating, _ in entries],
            "rationale": ["\n".join(lines or []).strip() for _, lines in entries],
        }


def format_ratings(output: Mapping[str, Any]) -> str:
    """The answer the template asks for: the inverse of :class:`UltraFeedbackParser`."""
    return "\n\n".join(
        f"#### Output for Text {i}\nRating: {format_score(r)}\nRationale: {why}"
        for i, (r, why) in enumerate(zip(output["rating"], output["rationale"]), start=1)
    )


def ultrafeedback(
    aspect: Aspect = "overall-quality",
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    task_description: str | None = None,
    ratings: tuple[str, ...] | None = None,
    template: str | None = None,
    structured: bool = False,
) -> Task:
    """Rate each of the ``generations`` for ``input`` on one UltraFeedback aspect.

    Args:
        aspect: ``overall-quality``, ``helpfulness``, ``truthfulness``, ``honesty`` or
            ``instruction-following`` (underscores and spaces work too).
        system_prompt: the system prompt of every request.
        task_description: replaces the aspect's description of the assessment.
        ratings: replaces the aspect's descriptions of ratings 1..N (N = len(ratings)).
        template: a file whose text replaces the built-in template (see :mod:`fnlabel.tasks.templates`):
            it must use ``{input}`` and ``{texts}`` (the numbered texts) and may use
            ``{task_description}``, ``{ratings}``, ``{text_placeholders}`` and ``{output_format}``.
        structured: ask for a JSON object, ``{"ratings": [{"rating": 4, "rationale": "..."}, ...]}``
            (in ``{output_format}``), which the backend constrains decoding to; the parsed output
            keeps the same keys and types.

    Examples:
        >>> task = ultrafeedback("helpfulness")
        >>> "<text 2> 5" in task.build_prompt({"input": "2+2?", "generations": ["4", "5"]}).formatted_prompt
        True
        >>> task.parse("#### Output for Text 1\\nRating: **5** (Excellent)\\nRationale: Correct.\\n"
        ...            "#### Output for Text 2\\nRating: 1/5\\nRationale: Wrong.")
        {'rating': [5.0, 1.0], 'rationale': ['Correct.', 'Wrong.']}
    """
    name = canonical_aspect(aspect)
    default_description, default_ratings = ASPECTS[name]
    scale = _ratings(ratings) or default_ratings
    schema = ultrafeedback_schema(len(scale)) if check_structured(structured, "ultrafeedback") else None
    return Task(
        name="ultrafeedback",
        build_prompt=UltraFeedbackPrompt(
            task_description or default_description,
            scale,
            system_prompt,
            TEMPLATE
            if template is None
            else read_template(template, task="ultrafeedback", placeholders=PLACEHOLDERS, required=("input", "texts")),
            structured,
        ),
        parse=UltraFeedbackParser(1, len(scale)) if schema is None else JsonAnswerParser(schema, ultrafeedback_output),
        input_keys=("input", "generations"),
        output_keys=("rating", "rationale"),
        schema=schema,
        row_schema=None if schema is None else OnePerText(schema, "ratings"),
    )
