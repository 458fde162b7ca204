"""A task can send a published prompt verbatim: ``template = "path"`` in [task], the same in Python."""

from __future__ import annotations

from pathlib import Path

import pytest

import fnlabel
from fnlabel import ConfigError, RecipeError, backends, tasks
from fnlabel.recipes import loads_recipe

JUDGELM_PAPER = """You are a helpful and precise assistant for checking the quality of the answer.
[Question]
{input}

{answers}

[System]
We would like to request your feedback on the performance of {num_responses} AI assistants.
"""


def test_a_template_file_replaces_the_built_in_wording_and_keeps_the_parser(tmp_path: Path) -> None:
    (tmp_path / "judgelm.txt").write_text(JUDGELM_PAPER, encoding="utf-8")
    task = tasks.judgelm(template=str(tmp_path / "judgelm.txt"))
    prompt = task.build_prompt({"input": "2+2? {answers}", "generations": ["4", "5"]}).formatted_prompt
    assert prompt.startswith("You are a helpful and precise assistant for checking the quality of the answer.")
    assert "2+2? {answers}" in prompt  # a row's own braces are never filled
    assert "[The Start of Assistant 2's Answer]\n5\n[The End of Assistant 2's Answer]" in prompt
    assert "performance of 2 AI assistants" in prompt
    assert task.parse("8 6\nThe first is right.") == tasks.judgelm().parse("8 6\nThe first is right.")


def test_a_recipe_names_the_template_file_and_runs_with_it(tmp_path: Path) -> None:
    (tmp_path / "uc.txt").write_text("Critique this.\nQ: {input}\nA: {answer}\nOverall Score: ?\n", encoding="utf-8")
    recipe = loads_recipe(
        f'[task]\nkind = "ultracm"\ntemplate = "{(tmp_path / "uc.txt").as_posix()}"\n[backend]\nkind = "echo"\n'
        "[params]\nmax_new_tokens = 64\n"
    )
    out = recipe.build()([{"input": "Why?", "generations": ["Because."]}])
    assert out[0][0]["prompt_used"].endswith("Critique this.\nQ: Why?\nA: Because.\nOverall Score: ?\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("No placeholder at all.", r"does not use \{input\}, \{answer\}: the row's text would never reach the model"),
        ("{input} {answer} {anwser}", r"uses \{anwser\}, which this task does not fill; its placeholders are"),
    ],
)
def test_a_template_that_cannot_work_is_refused_when_the_recipe_loads(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        tasks.ultracm(template=str(tmp_path / "t.txt"))
    with pytest.raises(RecipeError, match=message):
        loads_recipe(
            f'[task]\nkind = "ultracm"\ntemplate = "{(tmp_path / "t.txt").as_posix()}"\n[backend]\nkind = "echo"\n'
        )
    with pytest.raises(RecipeError, match=r"template .*nope.txt: no such file"):
        loads_recipe(
            f'[task]\nkind = "ultracm"\ntemplate = "{(tmp_path / "nope.txt").as_posix()}"\n[backend]\nkind = "echo"\n'
        )


@pytest.mark.parametrize(
    ("factory", "text", "row"),
    [
        (tasks.self_instruct, "Context: {input} ({num_instructions})", {"input": "c"}),
        (tasks.evol_instruct, "Evolve: {input} / {method}", {"input": "q"}),
        (tasks.evol_quality, "Rewrite: {input} -> {generation} via {method}", {"input": "q", "generation": "g"}),
        (tasks.ultrafeedback, "Rate: {input}\n{texts}", {"input": "q", "generations": ["a", "b"]}),
        (tasks.ultrajudge, "Judge: {input}\n{answers}", {"input": "q", "generations": ["a", "b"]}),
        (
            tasks.prometheus,
            "Grade: {input}|{answer}|{reference}",
            {"input": "q", "generations": ["a"], "ref_completion": "r"},
        ),
        (tasks.complexity_scorer, "Rank: {items}", {"generations": ["a", "b"]}),
        (tasks.quality_scorer, "Q: {input}\n{items}", {"input": "q", "generations": ["a", "b"]}),
    ],
)
def test_every_templated_task_takes_a_template(tmp_path: Path, factory, text: str, row: dict) -> None:
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    prompt = factory(template=str(tmp_path / "t.txt")).build_prompt(row).formatted_prompt
    assert "{" not in prompt and prompt.split()[0] == text.split()[0]
    gen = fnlabel.llm(factory(template=str(tmp_path / "t.txt")), backends.echo())
    assert gen([row])[0][0]["prompt_used"].endswith(prompt)
