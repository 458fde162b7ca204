"""The JSON answers of the judge and scorer tasks (their ``structured = true`` variant).

With ``structured=True``, a judge's prompt asks for one JSON object instead of its text
format, the task carries that object's JSON schema (so the backend constrains decoding to
it), and its parse decodes the object with :func:`~fnlabel.tasks.structured.decode_json`
and returns the same ``parsed_output`` keys and value types as the text parser. This module
holds, per task, the schema, the prompt text that shows the object, and the function that
maps a decoded object to the task's output keys:

========================  ===============================================================
task                      JSON object (``[...]``: one item per text, in order)
========================  ===============================================================
ultrafeedback             ``{"ratings": [{"rating": 1..N, "rationale": str}]}``
judgelm                   ``{"ratings": [1..10], "rationale": str}``
ultrajudge                ``{"assistants": [{"areas": {area: {"rating": 0..10, "rationale": str}},
                          "final_score": 0..10}]}``
ultracm                   ``{"score": 1..10, "feedback": str}``
prometheus                ``{"feedback": str, "score": 1..N}``
complexity/quality scorer ``{"scores": [1..]}``
========================  ===============================================================

Scores are integers; lists hold at least one item (their length is the row's, unknown here).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from fnlabel.errors import ConfigError
from fnlabel.frozen import FrozenMap, frozen_table, thaw
from fnlabel.tasks import inputs
from fnlabel.tasks.structured import decode_json

__all__ = [
    "JsonAnswerParser",
    "check_structured",
    "swap",
    "OnePerText",
    "ultrafeedback_schema",
    "ultrafeedback_output",
    "ultrafeedback_format",
    "judgelm_schema",
    "judgelm_output",
    "ultrajudge_schema",
    "ultrajudge_output",
    "ultrajudge_format",
    "ultracm_schema",
    "prometheus_schema",
    "critique_output",
    "scores_schema",
    "scores_output",
    "scores_format",
]

#: a rationale or a critique: bounded, so that a constrained answer always closes its JSON
_TEXT: dict[str, Any] = {"type": "string", "maxLength": 500}


def _score(low: int, high: int | None = None) -> dict[str, Any]:
    bounds = {"minimum": low} if high is None else {"minimum": low, "maximum": high}
    return {"type": "integer", **bounds}


def _object(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties),
        "additionalProperties": False,
    }


def _items(item: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"type": "array", "items": dict(item), "minItems": 1, "description": description}


@attrs.frozen
class JsonAnswerParser:
    """``parse`` of a structured judge: the answer decoded against ``schema``, mapped by ``to_output``.

    ``to_output`` is a module-level function (so the parser pickles) that receives the
    validated object and returns the task's ``parsed_output``.
    """

    schema: FrozenMap = attrs.field(converter=frozen_table)
    to_output: Callable[[Any], dict[str, Any]]

    def __call__(self, raw: str) -> dict[str, Any]:
        return self.to_output(decode_json(raw, self.schema))


@attrs.frozen
class OnePerText:
    """``row_schema`` of a judge that rates each text of ``row[key]``: its schema, with exactly one
    item per text in ``array`` (and, with ``top``, each score at most the number of texts + 1)."""

    schema: FrozenMap = attrs.field(converter=frozen_table)
    array: str
    key: str = "generations"
    top: bool = False

    def __call__(self, row: Mapping[str, Any]) -> dict[str, Any]:
        n = len(inputs.texts(row, self.key))
        schema: dict[str, Any] = thaw(self.schema)
        items = schema["properties"][self.array]
        items["minItems"] = items["maxItems"] = n
        if self.top:
            items["items"]["maximum"] = n + 1
        return schema


def check_structured(value: Any, task: str) -> bool:
    """``value`` when it is a bool; ConfigError otherwise (``structured = "yes"`` is a typo, not True)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{task} structured must be true or false, got {value!r}")
    return value


def swap(text: str, old: str, new: str) -> str:
    """``text`` with the one ``old`` passage replaced by ``new`` (a built-in prompt's format part)."""
    if text.count(old) != 1:
        raise AssertionError(f"the passage to replace is not in the prompt exactly once: {old!r:.60}")
    return text.replace(old, new)


# ---------------------------------------------------------------- ultrafeedback


def ultrafeedback_schema(high: int) -> dict[str, Any]:
    """``{"ratings": [{"rating": 1..high, "rationale": str}, ...]}``, one item per text."""
    item = _object({"rating": _score(1, high), "rationale": _TEXT})
    return _object({"ratings": _items(item, "one item per text, in the order of the texts")})


def ultrafeedback_output(value: Mapping[str, Any]) -> dict[str, Any]:
    """``rating`` (floats) and ``rationale`` (strings), one per text, as the text parser returns them."""
    items = value["ratings"]
    return {
        "rating": [float(item["rating"]) for item in items],
        "rationale": [item["rationale"].strip() for item in items],
    }


def ultrafeedback_format(n: int, high: int) -> str:
    """The JSON object the prompt shows for ``n`` texts rated 1..``high``."""
    items = ",\n".join(
        f'  {{"rating": [rating for text {i}, from 1 to {high}], '
        f'"rationale": "[rationale for the rating, in short sentences]"}}'
        for i in range(1, n + 1)
    )
    return f'One JSON object, with one item in "ratings" for each text, in order:\n{{"ratings": [\n{items}\n]}}'


# ---------------------------------------------------------------- judgelm


def judgelm_schema() -> dict[str, Any]:
    """``{"ratings": [1..10, ...], "rationale": str}``, one score per answer."""
    return _object(
        {"ratings": _items(_score(1, 10), "one score per assistant, in the order of the answers"), "rationale": _TEXT}
    )


def judgelm_output(value: Mapping[str, Any]) -> dict[str, Any]:
    """``rating`` (floats, one per answer) and ``rationale`` (one string)."""
    return {"rating": [float(s) for s in value["ratings"]], "rationale": value["rationale"].strip()}


# ---------------------------------------------------------------- ultrajudge


def ultrajudge_schema(areas: Sequence[str]) -> dict[str, Any]:
    """Per assistant, ``{"areas": {area: {"rating": 0..10, "rationale": str}}, "final_score": 0..10}``."""
    area = _object({"rating": _score(0, 10), "rationale": _TEXT})
    assistant = _object({"areas": _object(dict.fromkeys(areas, area)), "final_score": _score(0, 10)})
    return _object({"assistants": _items(assistant, "one item per assistant, in the order of the answers")})


def ultrajudge_output(value: Mapping[str, Any]) -> dict[str, Any]:
    """``rating`` (the final scores, floats) and ``areas`` (per answer, ``{area: {"rating", "rationale"}}``)."""
    assistants = value["assistants"]
    return {
        "rating": [float(a["final_score"]) for a in assistants],
        "areas": [
            {
                name: {"rating": float(area["rating"]), "rationale": area["rationale"].strip()}
                for name, area in a["areas"].items()
            }
            for a in assistants
        ],
    }


def ultrajudge_format(n: int, areas: Sequence[str]) -> str:
    """The JSON object the prompt shows for ``n`` answers judged in ``areas``."""

    def assistant(i: int) -> str:
        judged = ",\n".join(
            f'    {json.dumps(a, ensure_ascii=False)}: {{"rating": [score from 0 to 10], "rationale": "[feedback on {a}]"}}'
            for a in areas
        )
        return f'  {{"areas": {{\n{judged}\n  }}, "final_score": [overall score of Assistant {i}, from 0 to 10]}}'

    body = ",\n".join(assistant(i) for i in range(1, n + 1))
    return (
        f'One JSON object, with one item in "assistants" for each assistant, in order:\n{{"assistants": [\n{body}\n]}}'
    )


# ---------------------------------------------------------------- ultracm and prometheus


def ultracm_schema() -> dict[str, Any]:
    """``{"score": 1..10, "feedback": str}`` (the score first, as UltraCM writes it)."""
    return _object({"score": _score(1, 10), "feedback": _TEXT})


def prometheus_schema(high: int) -> dict[str, Any]:
    """``{"feedback": str, "score": 1..high}`` (the feedback first, as Prometheus writes it)."""
    return _object({"feedback": _TEXT, "score": _score(1, high)})


def critique_output(value: Mapping[str, Any]) -> dict[str, Any]:
    """``critique`` (the feedback) and ``score`` (a float)."""
    return {"critique": value["feedback"].strip(), "score": float(value["score"])}


# ---------------------------------------------------------------- deita scorers


def scores_schema(item: str) -> dict[str, Any]:
    """``{"scores": [1.., ...]}``, one per ``item``; the top (N + 1) depends on the row, so it is not bounded."""
    return _object({"scores": _items(_score(1), f"one score per {item}, in the order of the {item}s")})


def scores_output(value: Mapping[str, Any]) -> dict[str, Any]:
    """``rating`` (floats, one per item)."""
    return {"rating": [float(s) for s in value["scores"]]}


def scores_format(n: int, item: str) -> str:
    """The JSON object the prompt shows for ``n`` items (``question`` / ``response``)."""
    scores = ", ".join(f"[score of {item} {i}]" for i in range(1, n + 1))
    return f'{{"scores": [{scores}]}}'
