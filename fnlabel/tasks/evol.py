"""Evol-Instruct (WizardLM) and Deita's Evol-Complexity / Evol-Quality.

- ``evol_instruct``: ``input`` -> ``instructions`` (one evolved instruction, or None);
- ``evol_complexity``: the same with the in-depth methods only;
- ``evol_quality``: ``input`` + ``generation`` -> ``generations`` (one rewritten response, or None).

The parsers apply WizardLM's *elimination evolving* rules: an evolution that is
empty, an apology ("sorry" in under 80 words), only stop words and punctuation,
or that copies the template's wording ("rewritten prompt", "#Given Prompt#", ...)
parses to ``None`` under its key. A leading label such as ``#Rewritten Prompt#:``
is formatting, not content: it is removed before the rules run.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from fnlabel.errors import InputError
from fnlabel.tasks import inputs
from fnlabel.tasks.parsing import normalize, strip_label, strip_quotes
from fnlabel.tasks.templates import fill, read_template
from fnlabel.types import Prompt, Task
from fnlabel.validators import check_one_of

__all__ = [
    "evol_instruct",
    "evol_complexity",
    "evol_quality",
    "EvolPrompt",
    "EvolParser",
    "eliminated",
    "INSTRUCT_METHODS",
    "COMPLEXITY_METHODS",
    "QUALITY_METHODS",
]

INSTRUCT_METHODS = ("breadth", "constraints", "deepen", "concretizing", "reasoning")
COMPLEXITY_METHODS = ("constraints", "deepen", "concretizing", "reasoning")
QUALITY_METHODS = ("helpfulness", "relevance", "depth", "creativity", "details")

EvolInstructMethod = Literal["breadth", "constraints", "deepen", "concretizing", "reasoning"]
EvolComplexityMethod = Literal["constraints", "deepen", "concretizing", "reasoning"]
EvolQualityMethod = Literal["helpfulness", "relevance", "depth", "creativity", "details"]

BREADTH_TEMPLATE = """\
I want you to act as a Prompt Creator.
Take inspiration from the #Given Prompt# to write a brand-new prompt.
The new prompt belongs to the same domain as the #Given Prompt# but is about something rarer.
Keep its length and difficulty close to those of the #Given Prompt#.
The new prompt must be sensible: a person must be able to understand and answer it.
Do not write the phrases '#Given Prompt#', '#Created Prompt#', 'given prompt' or 'created prompt' in your answer.
Answer with the new prompt only.

#Given Prompt#:
{input}

#Created Prompt#:
"""

DEPTH_TEMPLATE = """\
I want you to act as a Prompt Rewriter.
Rewrite the #Given Prompt# into a more complex version that well-known AI systems (such as ChatGPT and GPT-4) find a little harder to handle.
The rewritten prompt must stay sensible: a person must be able to understand and answer it.
Keep the non-text parts of the #Given Prompt#, such as tables or code, and keep its input.
Make it more complex with this method:
{method}
Do not make it verbose: the #Rewritten Prompt# adds only 10 to 20 words to the #Given Prompt#.
Do not write the phrases '#Given Prompt#', '#Rewritten Prompt#', 'given prompt' or 'rewritten prompt' in your answer.
Answer with the rewritten prompt only.

#Given Prompt#:
{input}

#Rewritten Prompt#:
"""

QUALITY_TEMPLATE = """\
I want you to act as a Response Rewriter.
Rewrite the #Given Response# to the #Given Prompt# so that the response is of higher quality.
The rewritten response must stay sensible and easy to understand.
Keep the non-text parts of the #Given Prompt# and the #Given Response#, such as tables or code, and keep the input of the #Given Prompt#.
Improve the response with this method:
{method}
Do not make it verbose: the #Rewritten Response# adds only 10 to 20 words to the #Given Response#.
Do not write the phrases '#Given Response#', '#Rewritten Response#', 'given response' or 'rewritten response' in your answer.
Answer with the rewritten response only.

#Given Prompt#:
{input}

#Given Response#:
{generation}

#Rewritten Response#:
"""

METHOD_TEXT = {
    "constraints": "Add one more constraint or requirement to the #Given Prompt#.",
    "deepen": "If the #Given Prompt# asks about certain issues, increase the depth and breadth of the inquiry.",
    "concretizing": "Replace general concepts with more specific ones.",
    "reasoning": (
        "If the #Given Prompt# can be solved with a few simple steps of thought, rewrite it to ask "
        "explicitly for reasoning in several steps."
    ),
    "helpfulness": "Make the response more helpful to the user.",
    "relevance": "Make the response more relevant to the #Given Prompt#.",
    "depth": "Make the response more in-depth.",
    "creativity": "Make the response more creative.",
    "details": "Make the response more detailed.",
}

PROMPT_MARKERS = ("given prompt", "created prompt", "rewritten prompt")
RESPONSE_MARKERS = ("given response", "created response", "rewritten response")
LEADING_LABELS = ("rewritten prompt", "created prompt", "new prompt", "rewritten response", "new response")

# English function words: an "evolution" made only of these says nothing
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing down during each few for from further had has have
    having he her here hers herself him himself his how i if in into is it its itself just me more most
    my myself no nor not now of off on once only or other our ours ourselves out over own same she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself yourselves
    """.split()
)


def eliminated(text: str, markers: tuple[str, ...]) -> bool:
    """WizardLM's elimination rules: is ``text`` a failed evolution?

    Examples:
        >>> eliminated("Sorry, I cannot do that.", PROMPT_MARKERS)
        True
        >>> eliminated("List three causes of inflation in 2008.", PROMPT_MARKERS)
        False
    """
    lowered = text.lower()
    words = lowered.split()
    if not words:
        return True
    if re.search(r"\bsorry\b", lowered) and len(words) < 80:
        return True
    content = [w.strip(string.punctuation + "“”‘’") for w in words]
    if all(not w or w in STOPWORDS for w in content):
        return True
    squashed = " ".join(re.sub(r"[#_*]", " ", lowered).split())
    return any(m in squashed for m in markers)


@attrs.frozen
class EvolParser:
    """``parse`` of the evol tasks: the evolution under ``key``, or None when eliminated."""

    key: str
    markers: tuple[str, ...]

    def __call__(self, raw: str) -> dict[str, Any]:
        text = strip_quotes(strip_label(normalize(raw), LEADING_LABELS))
        return {self.key: None if eliminated(text, self.markers) else text}


@attrs.frozen
class EvolPrompt:
    """``build_prompt`` of the evol tasks: one method per row (the row's ``evolution_method``, the
    task's, or one chosen from ``seed`` and the row)."""

    methods: tuple[str, ...]
    evolution_method: str | None = attrs.field(default=None)
    seed: int = 0
    system_prompt: str = ""
    #: one template for every method (``{input}``, ``{method}``, and ``{generation}`` for evol-quality)
    template: str | None = None

    @evolution_method.validator
    def _check(self, _attr: attrs.Attribute, value: Any) -> None:
        if value is not None:  # None: a method chosen per row
            check_one_of(value, "evolution_method", tuple(self.methods))

    def method_for(self, row: Mapping[str, Any]) -> str:
        """The evolution method used for ``row``: its ``evolution_method`` key when set (as in
        distilabel 0.x, which passed the whole row to ``generate_prompt``), else the task's."""
        value = row.get("evolution_method")
        if value is not None:
            if value not in self.methods:
                raise InputError(f"key 'evolution_method' must be one of: {', '.join(self.methods)}; got {value!r:.80}")
            return value
        return inputs.choose(self.methods, self.evolution_method, self.seed, row)

    def __call__(self, row: Mapping[str, Any]) -> Prompt:
        method = self.method_for(row)
        values = {"input": inputs.text(row, "input").strip(), "method": METHOD_TEXT.get(method, "")}
        if method in QUALITY_METHODS:
            values["generation"] = inputs.text(row, "generation").strip()
            template = QUALITY_TEMPLATE
        else:
            template = BREADTH_TEMPLATE if method == "breadth" else DEPTH_TEMPLATE
        return Prompt(self.system_prompt, fill(self.template or template, values))


def _template(path: str | None, task: str, quality: bool = False) -> str | None:
    """A user's template for an evol task: ``{input}`` and ``{method}`` (and ``{generation}``)."""
    if path is None:
        return None
    names = ("input", "method", "generation") if quality else ("input", "method")
    return read_template(path, task=task, placeholders=names, required=names[::2])


def evol_instruct(
    evolution_method: EvolInstructMethod | None = None,
    seed: int = 0,
    system_prompt: str = "",
    template: str | None = None,
) -> Task:
    """Evolve each ``input`` instruction into a harder one (in depth) or a new one (in breadth).

    Args:
        evolution_method: ``breadth``, ``constraints``, ``deepen``, ``concretizing`` or
            ``reasoning``; None picks one per row from ``seed`` and the row (reproducible).
            A row's own ``evolution_method`` key, when set, wins (as in distilabel 0.x).
        seed: makes the per-row choice of method reproducible.
        system_prompt: the system prompt of every request (none by default).
        template: a file whose text replaces the built-in templates of every method (see
            :mod:`fnlabel.tasks.templates`), with the placeholders ``{input}`` and ``{method}``
            (the method's instruction, empty for ``breadth``; evol-quality adds ``{generation}``).

    Examples:
        >>> task = evol_instruct(evolution_method="constraints")
        >>> task.parse("#Rewritten Prompt#: Name three primes below 20, in descending order.")
        {'instructions': 'Name three primes below 20, in descending order.'}
        >>> task.parse("Sorry, I cannot rewrite this.")
        {'instructions': None}
    """
    return Task(
        name="evol-instruct",
        build_prompt=EvolPrompt(
            INSTRUCT_METHODS, evolution_method, seed, system_prompt, _template(template, "evol-instruct")
        ),
        parse=EvolParser("instructions", PROMPT_MARKERS),
        input_keys=("input",),
        output_keys=("instructions",),
    )


def evol_complexity(
    evolution_method: EvolComplexityMethod | None = None,
    seed: int = 0,
    system_prompt: str = "",
    template: str | None = None,
) -> Task:
    """Deita's Evol-Complexity: :func:`evol_instruct` with the in-depth methods only
    (``constraints``, ``deepen``, ``concretizing``, ``reasoning``).

    Examples:
        >>> evol_complexity(evolution_method="reasoning").parse("Explain, step by step, why ice floats.")
        {'instructions': 'Explain, step by step, why ice floats.'}
    """
    return Task(
        name="evol-complexity",
        build_prompt=EvolPrompt(
            COMPLEXITY_METHODS, evolution_method, seed, system_prompt, _template(template, "evol-complexity")
        ),
        parse=EvolParser("instructions", PROMPT_MARKERS),
        input_keys=("input",),
        output_keys=("instructions",),
    )


def evol_quality(
    evolution_method: EvolQualityMethod | None = None,
    seed: int = 0,
    system_prompt: str = "",
    template: str | None = None,
) -> Task:
    """Deita's Evol-Quality: rewrite the ``generation`` answering ``input`` into a better one.

    Args:
        evolution_method: ``helpfulness``, ``relevance``, ``depth``, ``creativity`` or
            ``details``; None picks one per row from ``seed`` and the row.
        seed: makes the per-row choice of method reproducible.
        system_prompt: the system prompt of every request (none by default).
        template: a file whose text replaces the built-in templates of every method (see
            :mod:`fnlabel.tasks.templates`), with the placeholders ``{input}`` and ``{method}``
            (the method's instruction, empty for ``breadth``; evol-quality adds ``{generation}``).

    Examples:
        >>> task = evol_quality(evolution_method="details")
        >>> task.parse("Water boils at 100 °C at sea level, and at lower temperatures higher up.")
        {'generations': 'Water boils at 100 °C at sea level, and at lower temperatures higher up.'}
    """
    return Task(
        name="evol-quality",
        build_prompt=EvolPrompt(
            QUALITY_METHODS, evolution_method, seed, system_prompt, _template(template, "evol-quality", True)
        ),
        parse=EvolParser("generations", PROMPT_MARKERS + RESPONSE_MARKERS),
        input_keys=("input", "generation"),
        output_keys=("generations",),
    )
