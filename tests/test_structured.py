"""Structured output: the constraint record, recipes, the cache key, composition and parsing (echo and fakes)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

import fnlabel
from fnlabel import ConfigError, GenerationParams, RecipeError, llm, tasks
from fnlabel.backends import echo
from fnlabel.combinators.cache import params_key
from fnlabel.recipes.load import loads_recipe
from fnlabel.structured import StructuredOutput
from fnlabel.types import Generation

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 1, "maximum": 120},
        "mood": {"enum": ["happy", "sad"]},
    },
    "required": ["name", "age", "mood"],
    "additionalProperties": False,
}
TG = tasks.text_generation(system_prompt="")


def test_exactly_one_constraint_and_clear_errors(tmp_path: Path) -> None:
    assert StructuredOutput(json_schema=PERSON).kind == "json_schema"
    assert StructuredOutput(choice=["a", "b"]).choice == ("a", "b")
    with pytest.raises(ConfigError, match="exactly one of json_schema, json_schema_file, choice, regex .got none"):
        StructuredOutput()
    with pytest.raises(ConfigError, match="choice must be a non-empty list"):
        StructuredOutput(choice=[])
    with pytest.raises(ConfigError, match="unknown key.*choise"):
        GenerationParams(structured_output={"choise": ["a"]})
    (tmp_path / "person.json").write_text(json.dumps(PERSON))
    from_file = StructuredOutput(json_schema_file=str(tmp_path / "person.json"))
    assert from_file.schema() == PERSON and from_file.kind == "json_schema"
    assert pickle.loads(pickle.dumps(from_file)) == from_file
    with pytest.raises(ConfigError, match="no such file"):
        StructuredOutput(json_schema_file=str(tmp_path / "nope.json"))


def test_a_pydantic_model_class_is_its_json_schema() -> None:
    import pydantic

    class Person(pydantic.BaseModel):
        name: str
        age: int

    params = GenerationParams(structured_output=Person)
    assert params.structured_output.schema() == Person.model_json_schema()


def test_recipes_read_and_write_every_kind(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(PERSON))
    base = '[task]\nkind = "text-generation"\n[backend]\nkind = "echo"\n[params.structured_output]\n'
    for body in (
        f"json_schema_file = {json.dumps(str(tmp_path / 's.json'))}\n",
        'json_schema = { type = "object", properties = { n = { type = "integer", minimum = 0 } } }\n',
        'choice = ["yes", "no"]\n',
        'regex = "[0-9]+"\n',
    ):
        recipe = loads_recipe(base + body)
        assert loads_recipe(fnlabel.dump_recipe(recipe)) == recipe
    dumped = fnlabel.dump_recipe(loads_recipe(base + f"json_schema_file = {json.dumps(str(tmp_path / 's.json'))}\n"))
    assert "json_schema_file" in dumped and '"properties"' not in dumped, "a schema from a file is written as its file"
    with pytest.raises(RecipeError, match="params.structured_output: structured_output: give exactly one"):
        loads_recipe(base + 'choice = ["a"]\nregex = "a"\n')


def test_the_constraint_is_part_of_the_cache_key_and_old_keys_do_not_change() -> None:
    plain = GenerationParams(max_new_tokens=8)
    assert "structured_output" not in params_key(plain) and "logprobs" not in params_key(plain)
    a = params_key(plain.replace(structured_output={"json_schema": PERSON}))
    b = params_key(plain.replace(structured_output={"choice": ["x"]}))
    assert len({params_key(plain), a, b}) == 3


def test_a_task_schema_is_applied_and_a_conflicting_one_refused() -> None:
    task = tasks.structured(PERSON, "Who is it?", input_key="text")
    seen = []

    def fake(prompts, params):
        seen.append(params.structured_output)
        return [['{"name": "Ada", "age": 36, "mood": "happy"}'] * params.num_generations for _ in prompts]

    fake.structured_outputs = ("json_schema",)
    out = llm(task, fake)([{"text": "Ada, 36, cheerful"}], num_generations=2)
    assert seen == [StructuredOutput(json_schema=PERSON)]
    assert [o["parsed_output"] for o in out[0]] == [{"name": "Ada", "age": 36, "mood": "happy"}] * 2
    with pytest.raises(ConfigError, match="supplies its own JSON schema"):
        llm(task, fake, GenerationParams(structured_output={"choice": ["x"]}))


def test_a_backend_that_cannot_constrain_is_refused_at_composition() -> None:
    def plain(prompts, params):
        return [["{}"] for _ in prompts]

    with pytest.raises(ConfigError, match="cannot constrain its output to a json_schema .it supports: no structured"):
        llm(TG, plain, GenerationParams(structured_output={"json_schema": PERSON}))
    with pytest.raises(ConfigError, match="cannot constrain its output to a regex .it supports: json_schema, choice"):
        llm(TG, echo(), GenerationParams(structured_output={"regex": "a+"}))
    with pytest.raises(ConfigError, match="not a valid JSON schema at properties/age/type"):
        bad = {"type": "object", "properties": {"age": {"type": "int"}}}
        llm(TG, echo(), GenerationParams(structured_output={"json_schema": bad}))


def test_json_output_is_decoded_validated_and_a_cut_generation_is_a_parse_failure() -> None:
    answers = [
        Generation('{"name": "Ada", "age": 36, "mood": "happy"}', "stop", 5, 12),
        Generation('{"name": "Ada", "age": 360, "mood": "happy"}', "stop", 5, 12),  # out of range
        Generation('{"name": "Ada", "age": 36, "mo', "length", 5, 9),  # cut at max_new_tokens
        Generation('```json\n{"name": "Bo", "age": 2, "mood": "sad"}\n```', "stop", 5, 14),
    ]

    def fake(prompts, params):
        return [list(answers) for _ in prompts]

    fake.structured_outputs = ("json_schema",)
    res = llm(TG, fake, GenerationParams(structured_output={"json_schema": PERSON})).run([{"input": "who"}], 4)
    parsed = [o["parsed_output"] for o in res.outputs[0]]
    assert parsed == [{"name": "Ada", "age": 36, "mood": "happy"}, None, None, {"name": "Bo", "age": 2, "mood": "sad"}]
    assert [o["raw_output"] for o in res.outputs[0]] == [a.text for a in answers], "the raw text is always kept"
    errors = {f.generation: f.error for f in res.failures}
    assert set(errors) == {1, 2}
    assert "does not match the schema at age: 360 is greater than the maximum of 120" in errors[1]
    assert "cut at max_new_tokens (finish_reason 'length')" in errors[2] and "raise max_new_tokens" in errors[2]


def test_a_non_object_schema_parses_under_value_and_choices_keep_the_task_parse() -> None:
    def fake(prompts, params):
        return [["[1, 2]"] for _ in prompts]

    fake.structured_outputs = ("json_schema",)
    array = {"type": "array", "items": {"type": "integer"}}
    out = llm(TG, fake, GenerationParams(structured_output={"json_schema": array}))([{"input": "x"}])
    assert out[0][0]["parsed_output"] == {"value": [1, 2]}
    picked = llm(TG, echo(), GenerationParams(structured_output={"choice": ["yes", "no"]}))([{"input": "x"}], 4)
    assert {o["raw_output"] for o in picked[0]} <= {"yes", "no"}
    assert all(o["parsed_output"] == {"generations": o["raw_output"]} for o in picked[0])


def test_the_structured_task_end_to_end_on_echo_and_in_a_recipe(tmp_path: Path) -> None:
    out = llm(tasks.structured(PERSON, "Who?", input_key="text"), echo())([{"text": "someone"}], 2)
    assert [o["parsed_output"] for o in out[0]] == [{"name": "x", "age": 1, "mood": "happy"}] * 2
    (tmp_path / "person.json").write_text(json.dumps(PERSON))
    recipe = loads_recipe(
        f'[task]\nkind = "structured"\nschema_file = {json.dumps(str(tmp_path / "person.json"))}\n'
        'instruction = "Who is it?"\ninput_key = "bio"\n[backend]\nkind = "echo"\n'
    )
    gen = recipe.build()
    assert gen.params.structured_output.schema() == PERSON
    assert gen([{"bio": "Ada"}])[0][0]["parsed_output"]["mood"] == "happy"
    with pytest.raises(ConfigError, match="root must be an object with properties"):
        tasks.structured({"type": "string"})
