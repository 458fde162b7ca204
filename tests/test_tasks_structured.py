"""The judge and scorer tasks with ``structured=True``: a JSON schema, a prompt asking for that JSON
object, and a parse that returns what the text variant returns (same keys, same types, same values)."""

from __future__ import annotations

import json
import pathlib
import pickle
import tomllib

import jsonschema
import pytest

import fnlabel
from fnlabel import GenerationParams, backends, tasks
from fnlabel.backends.echo import schema_instance
from fnlabel.errors import ConfigError, ParseError, RecipeError
from fnlabel.frozen import thaw
from fnlabel.recipes.load import build, loads_recipe
from fnlabel.tasks import critique, deita, feedback, judges

ROOT = pathlib.Path(__file__).resolve().parent.parent

FACTORIES = {
    "ultrafeedback": tasks.ultrafeedback,
    "judgelm": tasks.judgelm,
    "ultrajudge": tasks.ultrajudge,
    "ultracm": tasks.ultracm,
    "prometheus": tasks.prometheus,
    "complexity-scorer": tasks.complexity_scorer,
    "quality-scorer": tasks.quality_scorer,
}
KINDS = sorted(FACTORIES)

#: kind -> the function that writes an output as the text template asks (the text parser's inverse)
TEXT_FORMATS = {
    "ultrafeedback": feedback.format_ratings,
    "judgelm": judges.format_judgelm,
    "ultrajudge": judges.format_ultrajudge,
    "ultracm": critique.format_ultracm,
    "prometheus": critique.format_prometheus,
    "complexity-scorer": deita.format_complexity_scores,
    "quality-scorer": deita.format_quality_scores,
}

AREAS = list(judges.DEFAULT_AREAS)


def rows_for(kind: str) -> list[dict]:
    """The bundled input rows of the task's recipe (recipes/task-<kind>.toml)."""
    with (ROOT / "recipes" / f"task-{kind}.toml").open("rb") as fh:
        path = ROOT / tomllib.load(fh)["run"]["input"]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def shape(value):
    """The types of a parsed output, recursively (``4.0 == 4``, but a float is not an int)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value)


def property_names(schema) -> set[str]:
    names = set(schema.get("properties", {}))
    for sub in schema.get("properties", {}).values():
        names |= property_names(sub)
    if "items" in schema:
        names |= property_names(schema["items"])
    return names


# ---------------------------------------------------------------- the task record


@pytest.mark.parametrize("kind", KINDS)
def test_structured_task_has_a_valid_schema_and_the_text_variants_keys(kind):
    text, structured = FACTORIES[kind](), FACTORIES[kind](structured=True)
    assert text.schema is None
    schema = thaw(structured.schema)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert schema["type"] == "object" and schema["required"] and schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])
    assert structured.name == text.name
    assert structured.output_keys == text.output_keys
    assert structured.input_keys == text.input_keys


@pytest.mark.parametrize("kind", KINDS)
def test_structured_task_pickles_and_compares_equal(kind):
    task = FACTORIES[kind](structured=True)
    clone = pickle.loads(pickle.dumps(task))
    assert clone == task == FACTORIES[kind](structured=True)
    raw = json.dumps(schema_instance(task.schema))
    assert clone.parse(raw) == task.parse(raw)
    assert hash(task.schema) == hash(clone.schema)
    assert task != FACTORIES[kind]()


@pytest.mark.parametrize("kind", KINDS)
def test_structured_false_is_the_text_variant(kind):
    assert FACTORIES[kind](structured=False) == FACTORIES[kind]()


@pytest.mark.parametrize("kind", KINDS)
def test_structured_must_be_a_bool(kind):
    with pytest.raises(ConfigError, match="structured must be true or false, got 'yes'"):
        FACTORIES[kind](structured="yes")


def test_scales_follow_the_tasks_options():
    ratings = tasks.ultrafeedback(ratings=("bad", "fine", "good"), structured=True).schema
    assert ratings["properties"]["ratings"]["items"]["properties"]["rating"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 3,
    }
    rubric = tasks.prometheus(score_descriptions=("wrong", "partly right", "right"), structured=True).schema
    assert rubric["properties"]["score"]["maximum"] == 3
    areas = tasks.ultrajudge(areas=("Accuracy", "Tone"), structured=True).schema
    assistant = areas["properties"]["assistants"]["items"]
    assert list(assistant["properties"]["areas"]["properties"]) == ["Accuracy", "Tone"]
    assert assistant["properties"]["areas"]["required"] == ("Accuracy", "Tone")
    # several texts: a list of at least one item, never a fixed length (rows differ)
    for kind in ("ultrafeedback", "judgelm", "ultrajudge", "complexity-scorer", "quality-scorer"):
        (prop,) = (p for p in FACTORIES[kind](structured=True).schema["properties"].values() if p["type"] == "array")
        assert prop["minItems"] == 1 and "maxItems" not in prop


# ---------------------------------------------------------------- parsing: the text variant's output

# kind, factory options, a JSON answer, the output both variants must return
EQUIVALENT = [
    (
        "ultrafeedback",
        {},
        {
            "ratings": [
                {"rating": 4, "rationale": "Correct and concise."},
                {"rating": 1, "rationale": "Wrong: Lyon is not the capital.\nIt also misspells France."},
            ]
        },
        {
            "rating": [4.0, 1.0],
            "rationale": ["Correct and concise.", "Wrong: Lyon is not the capital.\nIt also misspells France."],
        },
    ),
    (
        "ultrafeedback",
        {"aspect": "honesty", "ratings": ("bad", "ok", "good")},
        {"ratings": [{"rating": 3, "rationale": "  Confident and right.  "}]},
        {"rating": [3.0], "rationale": ["Confident and right."]},
    ),
    (
        "judgelm",
        {},
        {"ratings": [9, 2], "rationale": "Assistant 1 is right; Assistant 2 names the wrong city."},
        {"rating": [9.0, 2.0], "rationale": "Assistant 1 is right; Assistant 2 names the wrong city."},
    ),
    (
        "judgelm",
        {},
        {"ratings": [7, 7, 10], "rationale": "Two adequate answers.\n\nThe third is excellent."},
        {"rating": [7.0, 7.0, 10.0], "rationale": "Two adequate answers.\n\nThe third is excellent."},
    ),
    (
        "ultrajudge",
        {},
        {
            "assistants": [
                {
                    "areas": {a: {"rating": 8, "rationale": f"Solid on {a}."} for a in AREAS},
                    "final_score": 8,
                },
                {
                    "areas": {a: {"rating": i, "rationale": f"Weak on {a}."} for i, a in enumerate(AREAS)},
                    "final_score": 2,
                },
            ]
        },
        {
            "rating": [8.0, 2.0],
            "areas": [
                {a: {"rating": 8.0, "rationale": f"Solid on {a}."} for a in AREAS},
                {a: {"rating": float(i), "rationale": f"Weak on {a}."} for i, a in enumerate(AREAS)},
            ],
        },
    ),
    (
        "ultrajudge",
        {"areas": ("Accuracy", "Clarity & Tone")},
        {
            "assistants": [
                {
                    "areas": {
                        "Accuracy": {"rating": 10, "rationale": "Exactly right."},
                        "Clarity & Tone": {"rating": 6, "rationale": "Terse."},
                    },
                    "final_score": 9,
                }
            ]
        },
        {
            "rating": [9.0],
            "areas": [
                {
                    "Accuracy": {"rating": 10.0, "rationale": "Exactly right."},
                    "Clarity & Tone": {"rating": 6.0, "rationale": "Terse."},
                }
            ],
        },
    ),
    (
        "ultracm",
        {},
        {"score": 3, "feedback": "The answer names Lyon; the capital is Paris. Check the facts first."},
        {"critique": "The answer names Lyon; the capital is Paris. Check the facts first.", "score": 3.0},
    ),
    (
        "prometheus",
        {},
        {"feedback": "Accurate, but it does not explain why.", "score": 4},
        {"critique": "Accurate, but it does not explain why.", "score": 4.0},
    ),
    (
        "prometheus",
        {"score_descriptions": ("wrong", "partly right", "right")},
        {"feedback": "Wrong city.", "score": 1},
        {"critique": "Wrong city.", "score": 1.0},
    ),
    ("complexity-scorer", {}, {"scores": [1, 2, 4]}, {"rating": [1.0, 2.0, 4.0]}),
    ("quality-scorer", {}, {"scores": [3, 1]}, {"rating": [3.0, 1.0]}),
]


@pytest.mark.parametrize(
    ("kind", "options", "answer", "expected"), EQUIVALENT, ids=[f"{case[0]}-{i}" for i, case in enumerate(EQUIVALENT)]
)
def test_structured_parse_equals_the_text_parse_of_the_same_answer(kind, options, answer, expected):
    structured = FACTORIES[kind](**options, structured=True).parse(json.dumps(answer))
    text = FACTORIES[kind](**options).parse(TEXT_FORMATS[kind](expected))
    assert structured == text == expected
    assert shape(structured) == shape(text)
    assert list(structured) == list(text)


def test_a_json_code_fence_and_whitespace_are_read():
    raw = '```json\n{"ratings": [9, 2],\n "rationale": "Fine."}\n```\n'
    assert tasks.judgelm(structured=True).parse(raw) == {"rating": [9.0, 2.0], "rationale": "Fine."}


def test_ultrajudge_keeps_the_configured_area_names():
    task = tasks.ultrajudge(areas=["Accuracy", "Clarity & Tone"], structured=True)
    answer = {"assistants": [{"areas": {"Clarity & Tone": {"rating": 5, "rationale": ""}, "Accuracy": {"rating": 4,
              "rationale": "Ok."}}, "final_score": 4}]}  # fmt: skip
    out = task.parse(json.dumps(answer))
    assert out["areas"] == [
        {"Clarity & Tone": {"rating": 5.0, "rationale": ""}, "Accuracy": {"rating": 4.0, "rationale": "Ok."}}
    ]


# ---------------------------------------------------------------- parsing: errors

BAD = [
    ("ultrafeedback", "Rating: 4\nRationale: Fine.", "not JSON"),
    ("ultrafeedback", '{"ratings": [{"rating": 6, "rationale": "x"}]}', "ratings/0/rating: 6 is greater than"),
    ("ultrafeedback", '{"ratings": [{"rating": 0, "rationale": "x"}]}', "ratings/0/rating: 0 is less than"),
    ("ultrafeedback", '{"ratings": [{"rating": 4.5, "rationale": "x"}]}', "4.5 is not of type 'integer'"),
    ("ultrafeedback", '{"ratings": [{"rating": "4", "rationale": "x"}]}', "'4' is not of type 'integer'"),
    ("ultrafeedback", '{"ratings": [{"rating": true, "rationale": "x"}]}', "True is not of type 'integer'"),
    ("ultrafeedback", '{"ratings": [{"rating": 4}]}', "'rationale' is a required property"),
    ("ultrafeedback", '{"ratings": []}', "should be non-empty"),
    ("ultrafeedback", '{"rating": [4], "rationale": ["x"]}', "at the root"),
    ("ultrafeedback", '{"ratings": [{"rating": 4, "rationale": "x"}', "not JSON"),
    ("judgelm", '{"ratings": [11, 2], "rationale": "x"}', "ratings/0: 11 is greater than the maximum of 10"),
    ("judgelm", '{"ratings": [0], "rationale": "x"}', "ratings/0: 0 is less than the minimum of 1"),
    ("judgelm", '{"ratings": [8, 9]}', "'rationale' is a required property"),
    ("judgelm", '{"ratings": [8], "rationale": "x", "winner": 1}', "Additional properties"),
    ("judgelm", "8 9\nBoth fine.", "not JSON"),
    ("ultrajudge", '{"assistants": [{"areas": {}, "final_score": 5}]}', "'Practical Accuracy' is a required"),
    ("ultrajudge", '{"assistants": [{"areas": {"Practical Accuracy": {"rating": 11, "rationale": ""}, '
     '"Clarity & Transparency": {"rating": 1, "rationale": ""}, "Authenticity & Reliability": {"rating": 1, '
     '"rationale": ""}, "Compliance with Intent": {"rating": 1, "rationale": ""}}, "final_score": 5}]}',
     "Practical Accuracy/rating: 11 is greater than the maximum of 10"),
    ("ultrajudge", '{"assistants": [{"areas": {"Practical Accuracy": {"rating": 1, "rationale": ""}, '
     '"Clarity & Transparency": {"rating": 1, "rationale": ""}, "Authenticity & Reliability": {"rating": 1, '
     '"rationale": ""}, "Compliance with Intent": {"rating": 1, "rationale": ""}}, "final_score": -1}]}',
     "final_score: -1 is less than the minimum of 0"),
    ("ultrajudge", "Final scores: 7 8", "not JSON"),
    ("ultracm", '{"score": 0, "feedback": "x"}', "score: 0 is less than the minimum of 1"),
    ("ultracm", '{"score": 11, "feedback": "x"}', "score: 11 is greater than the maximum of 10"),
    ("ultracm", '{"feedback": "x"}', "'score' is a required property"),
    ("ultracm", "Overall Score: 7\nGood.", "not JSON"),
    ("prometheus", '{"feedback": "x", "score": 6}', "score: 6 is greater than the maximum of 5"),
    ("prometheus", '{"score": 3}', "'feedback' is a required property"),
    ("prometheus", "Feedback: fine. [RESULT] 4", "not JSON"),
    ("complexity-scorer", '{"scores": [0, 2]}', "scores/0: 0 is less than the minimum of 1"),
    ("complexity-scorer", '{"scores": []}', "should be non-empty"),
    ("quality-scorer", '{"scores": ["high"]}', "'high' is not of type 'integer'"),
    ("quality-scorer", '["scores", 1]', "is not of type 'object'"),
    ("quality-scorer", "[Response 1] Score: 3", "not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "raw", "message"), BAD)
def test_invalid_answers_are_parse_errors_saying_what_is_wrong(kind, raw, message):
    with pytest.raises(ParseError, match=message.replace("(", r"\(").replace("[", r"\[")):
        FACTORIES[kind](structured=True).parse(raw)


def test_prometheus_scale_bounds_the_score():
    task = tasks.prometheus(score_descriptions=("wrong", "partly right", "right"), structured=True)
    with pytest.raises(ParseError, match="4 is greater than the maximum of 3"):
        task.parse('{"feedback": "x", "score": 4}')


# ---------------------------------------------------------------- prompts


@pytest.mark.parametrize("kind", KINDS)
def test_structured_prompt_asks_for_the_json_object(kind):
    row = rows_for(kind)[0]
    task = FACTORIES[kind](structured=True)
    prompt = task.build_prompt(row)
    assert "JSON" in prompt.formatted_prompt
    for name in property_names(task.schema):
        assert f'"{name}"' in prompt.formatted_prompt, name
    text_prompt = FACTORIES[kind]().build_prompt(row)
    assert prompt.system_prompt == text_prompt.system_prompt
    assert prompt.formatted_prompt != text_prompt.formatted_prompt
    # the row still reaches the model, and no text-format instruction is left
    assert row.get("input", "") in prompt.formatted_prompt
    for gen in [row["generations"]] if isinstance(row["generations"], str) else row["generations"]:
        assert gen in prompt.formatted_prompt
    for text_format in ("Rating: [", "Final scores:", "[RESULT]", "Overall Score:", "Score: [", "separated by spaces"):
        assert text_format not in prompt.formatted_prompt


@pytest.mark.parametrize("kind", KINDS)
def test_text_prompt_is_unchanged_by_structured_false(kind):
    row = rows_for(kind)[0]
    assert FACTORIES[kind](structured=False).build_prompt(row) == FACTORIES[kind]().build_prompt(row)


def test_structured_prompts_show_one_entry_per_text():
    row = {"input": "2 + 2?", "generations": ["4", "5", "22"]}
    uf = tasks.ultrafeedback(structured=True).build_prompt(row).formatted_prompt
    assert "[rating for text 3, from 1 to 5]" in uf and "text 4" not in uf
    uj = tasks.ultrajudge(structured=True).build_prompt(row).formatted_prompt
    assert "[overall score of Assistant 3, from 0 to 10]" in uj
    qs = tasks.quality_scorer(structured=True).build_prompt(row).formatted_prompt
    assert '{"scores": [[score of response 1], [score of response 2], [score of response 3]]}' in qs
    jl = tasks.judgelm(structured=True).build_prompt(row).formatted_prompt
    assert '"ratings" holds the 3 scores' in jl


def template(tmp_path, text: str) -> str:
    path = tmp_path / "template.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_custom_templates_get_the_json_format_in_their_format_placeholders(tmp_path):
    row = {"input": "2 + 2?", "generations": ["4", "5"]}
    uf = template(tmp_path, "Q: {input}\n{texts}\nAnswer as:\n{output_format}\n")
    text = tasks.ultrafeedback(template=uf).build_prompt(row).formatted_prompt
    assert "Rating: [Rating for text 2]" in text
    structured = tasks.ultrafeedback(template=uf, structured=True).build_prompt(row).formatted_prompt
    assert structured.startswith("Q: 2 + 2?\n<text 1> 4\n<text 2> 5\nAnswer as:\nOne JSON object")
    assert '"rating": [rating for text 2, from 1 to 5]' in structured

    uj = template(tmp_path, "{input}\n{answers}\n{output_format}\nFinal scores: {final_scores_format}\n")
    structured = tasks.ultrajudge(template=uj, structured=True).build_prompt(row).formatted_prompt
    assert '"assistants": [' in structured and 'Final scores: the "final_score" of each assistant' in structured

    cs = template(tmp_path, "Score these {n}:\n{items}\n{format_lines}")
    row = {"generations": ["Add 2 and 2.", "Prove it."]}
    structured = tasks.complexity_scorer(template=cs, structured=True).build_prompt(row).formatted_prompt
    assert (
        structured
        == 'Score these 2:\n[1] Add 2 and 2.\n[2] Prove it.\n{"scores": [[score of question 1], [score of question 2]]}'
    )


def test_custom_text_is_sent_as_written(tmp_path):
    row = {"input": "2 + 2?", "generations": ["4", "5"]}
    jl = tasks.judgelm(task_description="Score the {num_responses} answers.", structured=True)
    assert jl.build_prompt(row).formatted_prompt.endswith("[System]\nScore the 2 answers.\n")
    row = {"input": "2 + 2?", "generations": "4"}
    cm = template(tmp_path, "{input} -> {answer}")
    assert tasks.ultracm(template=cm, structured=True).build_prompt(row).formatted_prompt == "2 + 2? -> 4"
    assert tasks.ultracm(template=cm, structured=True).schema == tasks.ultracm(structured=True).schema


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("kind", KINDS)
def test_structured_task_runs_end_to_end_on_echo(kind):
    """Echo answers a json_schema constraint with the schema's smallest instance: it must parse."""
    task, rows = FACTORIES[kind](structured=True), rows_for(kind)
    gen = fnlabel.llm(task, backends.echo(), GenerationParams(max_new_tokens=8))
    result = gen.run(rows, num_generations=2)
    assert result.failures == ()
    for row_outputs in result.outputs:
        assert len(row_outputs) == 2
        for out in row_outputs:
            assert set(out["parsed_output"]) == set(task.output_keys)
            jsonschema.validate(json.loads(out["raw_output"]), thaw(task.schema))  # the backend was constrained
            assert out["parsed_output"] == task.parse(out["raw_output"])


def test_text_task_on_echo_is_not_constrained():
    rows = rows_for("judgelm")
    out = fnlabel.llm(tasks.judgelm(), backends.echo())(rows)[0][0]
    assert not out["raw_output"].startswith("{")


RECIPE = """
[task]
kind = "ultrafeedback"
aspect = "honesty"
structured = true

[backend]
kind = "echo"

[params]
max_new_tokens = 64
"""


def test_recipe_with_structured_true_loads_and_builds():
    recipe = loads_recipe(RECIPE)
    assert recipe.task.options["structured"] is True
    task = recipe.task.build()
    assert task == tasks.ultrafeedback(aspect="honesty", structured=True)
    gen = build(recipe)
    rows = rows_for("ultrafeedback")
    outputs = gen(rows)
    # the schema asks for exactly one rating and rationale per text of the row
    expected = [{"rating": [1.0] * len(r["generations"]), "rationale": ["x"] * len(r["generations"])} for r in rows]
    assert [o[0]["parsed_output"] for o in outputs] == expected


def test_recipe_with_a_non_bool_structured_is_refused():
    with pytest.raises(RecipeError, match="structured"):
        loads_recipe(RECIPE.replace("structured = true", 'structured = "yes"'))


@pytest.mark.parametrize("kind", KINDS)
def test_every_judge_recipe_takes_structured_true(kind):
    recipe = loads_recipe(f'[task]\nkind = "{kind}"\nstructured = true\n\n[backend]\nkind = "echo"\n')
    assert recipe.task.build() == FACTORIES[kind](structured=True)
    outputs = build(recipe)(rows_for(kind)[:1])
    assert set(outputs[0][0]["parsed_output"]) == set(FACTORIES[kind]().output_keys)
