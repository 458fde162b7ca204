"""What the structured-output tests of every backend share: a schema, 20 prompts, a validity count."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from fnlabel import GenerationParams
from fnlabel.types import text_of

#: a few fields, with an integer range and an enum (what constrained decoding must honour)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 18, "maximum": 65},
        "mood": {"enum": ["happy", "sad", "calm"]},
    },
    "required": ["name", "age", "mood"],
    "additionalProperties": False,
}

#: 20 chat prompts asking for such an object (sampled at temperature 0.8, seeded, 2 generations)
PROMPTS = [
    [{"role": "user", "content": f"Invent person number {i}. Reply with JSON: name, age (18-65) and mood."}]
    for i in range(20)
]
PARAMS = GenerationParams(max_new_tokens=48, temperature=0.8, seed=5, num_generations=2)


def valid(out: list[list[Any]]) -> tuple[int, int]:
    """(schema-valid generations, generations) of a backend's output."""
    ok = total = 0
    for row in out:
        for g in row:
            total += 1
            try:
                jsonschema.validate(json.loads(text_of(g) or ""), SCHEMA)
            except (ValueError, jsonschema.ValidationError):
                continue
            ok += 1
    return ok, total


def check_all_valid(backend: Any, name: str) -> None:
    """Every constrained generation is schema-valid; the unconstrained rate is printed beside it."""
    free = valid(backend(PROMPTS, PARAMS))
    constrained = valid(backend(PROMPTS, PARAMS.replace(structured_output={"json_schema": SCHEMA})))
    print(f"\n{name}: schema-valid {constrained[0]}/{constrained[1]} constrained, {free[0]}/{free[1]} without")
    assert constrained == (40, 40), f"{name}: {constrained[0]}/40 constrained generations are schema-valid"
