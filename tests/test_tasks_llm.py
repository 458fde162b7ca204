"""Tasks through fnlabel.llm: the echo backend (shape), a scripted model (parsing end to end),
the bundled recipes/task-*.toml (valid, with usable input rows), and the real embedded model."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

import fnlabel
import fnlabel.backends.models
from fnlabel import GenerationParams, backends, llm
from fnlabel.tasks import TASKS, critique, deita, feedback, instruct, judges

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("task-*.toml"))
TASK_KINDS = sorted(set(TASKS) - {"text-generation"})


def load(path: Path) -> dict:
    with path.open("rb") as fh:
        return tomllib.load(fh)


def rows_of(recipe: dict) -> list[dict]:
    lines = (ROOT / recipe["run"]["input"]).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def task_of(recipe: dict):
    options = dict(recipe["task"])
    return TASKS[options.pop("kind")](**options)


def test_there_is_a_recipe_for_every_task_kind():
    kinds = {load(p)["task"]["kind"] for p in RECIPES}
    assert kinds == set(TASK_KINDS)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_valid_and_its_rows_build_prompts(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# ") and "Use it" in text.split("\n\n")[0], "a comment on when to use it comes first"
    recipe = load(path)
    assert set(recipe) == {"task", "backend", "params", "run"}
    assert recipe["backend"] == {"kind": "llama-cpp", "model": "smollm2", "n_ctx": 2048}
    GenerationParams(**recipe["params"])
    assert set(recipe["run"]) == {"input", "output", "num_generations"}
    task = task_of(recipe)
    rows = rows_of(recipe)
    assert 2 <= len(rows) <= 6
    for row in rows:
        assert task.missing_keys(row) == []
        prompt = task.build_prompt(row)
        assert prompt.formatted_prompt.strip()


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_through_echo_backend_has_the_llm_output_shape(path):
    recipe = load(path)
    task, rows, k = task_of(recipe), rows_of(recipe), recipe["run"]["num_generations"]
    gen = llm(task, backends.echo(prompt_format="openai"), GenerationParams(**recipe["params"]))
    result = gen.run(rows, k)
    assert len(result.outputs) == len(rows)
    for row_outputs in result.outputs:
        assert len(row_outputs) == k
        for out in row_outputs:
            assert set(out) == {"model_name", "prompt_used", "raw_output", "parsed_output"}
            assert out["model_name"] == "echo"
            assert isinstance(out["prompt_used"], list) and out["prompt_used"][-1]["role"] == "user"
            assert isinstance(out["raw_output"], str)
            parsed = out["parsed_output"]
            assert parsed is None or set(parsed) == set(task.output_keys)
    # the echo of a prompt is not an answer: whatever fails, fails at parsing, as a ParseError
    assert all(f.stage == "parse" and f.error.startswith("ParseError") for f in result.failures)


# A scripted "model": for each prompt, the answer in exactly the format the template asks for.
SCRIPTED = {
    "self-instruct": ({"instructions": ["What is a leaf?", "Explain chlorophyll."]}, instruct.format_instructions),
    "evol-instruct": ({"instructions": "Give three tips for staying healthy in winter."}, lambda o: o["instructions"]),
    "evol-complexity": ({"instructions": "Explain, with an example, what a prime is."}, lambda o: o["instructions"]),
    "evol-quality": ({"generations": "Paris, on the Seine, is the capital."}, lambda o: o["generations"]),
    "ultrafeedback": ({"rating": [5.0, 1.0], "rationale": ["Correct.", "Wrong city."]}, feedback.format_ratings),
    "judgelm": ({"rating": [9.0, 2.0], "rationale": "The second is wrong."}, judges.format_judgelm),
    "ultrajudge": (
        {
            "rating": [9.0, 3.0],
            "areas": [
                {"Accuracy": {"rating": 9.0, "rationale": "Right."}},
                {"Accuracy": {"rating": 2.0, "rationale": "Wrong."}},
            ],
        },
        judges.format_ultrajudge,
    ),
    "ultracm": ({"critique": "Name the source.", "score": 6.0}, critique.format_ultracm),
    "prometheus": ({"critique": "Matches the reference.", "score": 5.0}, critique.format_prometheus),
    "complexity-scorer": ({"rating": [1.0, 2.0, 3.0]}, deita.format_complexity_scores),
    "structured": ({"summary": "Plants make sugar from light.", "topics": ["biology"]}, json.dumps),
    "quality-scorer": ({"rating": [3.0, 1.0]}, deita.format_quality_scores),
}


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_task_parses_a_compliant_model_end_to_end(kind):
    expected, fmt = SCRIPTED[kind]
    seen = []

    def scripted(prompts, params):
        seen.extend(prompts)
        return [[fmt(expected)] * params.num_generations for _ in prompts]

    scripted.structured_outputs = ("json_schema",)  # (a task with a schema asks for it)
    recipe = load(ROOT / "recipes" / f"task-{kind}.toml")
    task = task_of(recipe)
    rows = rows_of(recipe)[:2]
    outputs = llm(task, scripted, model_name="scripted")(rows, num_generations=2)
    assert [[o["parsed_output"] for o in row] for row in outputs] == [[expected, expected]] * len(rows)
    assert seen == [
        task.build_prompt(r).system_prompt + "\n" + task.build_prompt(r).formatted_prompt
        if task.build_prompt(r).system_prompt
        else task.build_prompt(r).formatted_prompt
        for r in rows
    ]


def test_bad_rows_are_reported_and_the_others_run():
    task = TASKS["ultrafeedback"]()
    rows = [{"input": "q", "generations": ["a", "b"]}, {"input": "q"}, {"input": "q", "generations": [None]}]
    result = llm(task, backends.echo()).run(rows)
    assert [(f.row, f.stage) for f in result.failures if f.stage == "input"] == [(1, "input"), (2, "input")]
    assert "generations[0] must be a string" in result.failures[1].error
    assert result.outputs[0][0]["raw_output"] is not None


# ---------------------------------------------------------------- the real embedded model


@pytest.fixture(scope="session")
def smollm2():
    import llama_cpp

    model = llama_cpp.Llama(
        model_path=str(fnlabel.backends.models.embedded_gguf()), n_ctx=2048, n_threads=2, verbose=False
    )
    yield model
    model.close()


def chat_backend(model):
    """A plain backend function over llama-cpp-python's chat completion (the model's own chat template)."""

    def generate(prompts, params):
        results = []
        for messages in prompts:
            gens = []
            for g in range(params.num_generations):
                reply = model.create_chat_completion(
                    messages=messages,
                    max_tokens=params.max_new_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=(params.seed or 0) + g,
                )
                gens.append(reply["choices"][0]["message"]["content"] or "")
            results.append(gens)
        return results

    generate.prompt_format = "openai"
    generate.model_name = "smollm2"
    return generate


FAMILIES = {
    "self-instruct": ["self-instruct"],
    "evol": ["evol-instruct", "evol-quality"],
    "ultrafeedback": ["ultrafeedback"],
    "judges": ["judgelm", "ultrajudge"],
    "critique": ["ultracm", "prometheus"],
    "deita-scorers": ["complexity-scorer", "quality-scorer"],
}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_on_the_embedded_model_never_crashes_parsing(family, smollm2):
    backend = chat_backend(smollm2)
    for kind in FAMILIES[family]:
        recipe = load(ROOT / "recipes" / f"task-{kind}.toml")
        task = task_of(recipe)
        rows = rows_of(recipe)[:1]  # one row each: CI time is shared; the table tests cover the rest
        params = GenerationParams(**recipe["params"])
        params = params.replace(max_new_tokens=min(params.max_new_tokens, 96))
        result = llm(task, backend, params).run(rows, 1)
        for out in result.outputs[0]:
            print(f"--- {kind}: parsed={out['parsed_output']!r}\n{out['raw_output']}")
        assert len(result.outputs) == len(rows)
        for row_outputs in result.outputs:
            (out,) = row_outputs
            assert isinstance(out["raw_output"], str) and out["model_name"] == "smollm2"
            assert out["parsed_output"] is None or set(out["parsed_output"]) == set(task.output_keys)
        # a poor answer may not parse, but only ever as a ParseError (never a crash of the parser)
        assert all(f.stage == "parse" and f.error.startswith("ParseError") for f in result.failures), result.failures


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize(("kind", "high"), [("ultrafeedback", 5), ("judgelm", 10)])
def test_structured_judges_always_parse_on_the_embedded_model(kind, high):
    from fnlabel.backends.llama_cpp import llama_cpp

    backend = llama_cpp(model="smollm2", n_ctx=2048)
    rows = rows_of(load(ROOT / "recipes" / f"task-{kind}.toml"))
    # sampled, so the two generations of each row differ; long enough for any answer the schema allows
    params = GenerationParams(max_new_tokens=512, temperature=0.7, seed=0)
    text = llm(TASKS[kind](), backend, params.replace(max_new_tokens=256)).run(rows, 2)  # (reported)
    structured = llm(TASKS[kind](structured=True), backend, params).run(rows, 2)
    n = 2 * len(rows)
    print(
        f"\n{kind}: structured parses {n - len(structured.failures)}/{n}, the text variant {n - len(text.failures)}/{n}"
    )
    assert structured.failures == ()
    for row, outs in zip(rows, structured.outputs):
        for out in outs:
            ratings = out["parsed_output"]["rating"]
            assert len(ratings) == len(row["generations"]), "one rating per text of the row"
            assert all(1 <= r <= high for r in ratings)
