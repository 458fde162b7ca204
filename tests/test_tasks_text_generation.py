"""text_generation: build_prompt / parse as pure functions; principles from the seed alone."""

from __future__ import annotations

import pickle
import random

import pytest

from fnlabel import ConfigError, InputError, Prompt, Task, tasks
from fnlabel.tasks import TASKS, text_generation
from fnlabel.tasks.principles import PRINCIPLES
from fnlabel.tasks.text_generation import DEFAULT_SYSTEM_PROMPT

ROWS = [{"input": f"question number {i}?"} for i in range(40)]
ALL_PRINCIPLES = {p for texts in PRINCIPLES.values() for p in texts}


def principle_of(task: Task, row: dict) -> str:
    system = task.build_prompt(row).system_prompt
    base = task.build_prompt.system_prompt
    assert system.startswith(base)
    return system[len(base) :].lstrip("\n")


def test_record_shape():
    task = text_generation()
    assert isinstance(task, Task) and task.name == "text-generation"
    assert task.input_keys == ("input",) and task.output_keys == ("generations",)
    assert TASKS["text-generation"] is text_generation and tasks.text_generation is text_generation


def test_build_prompt_uses_the_system_prompt_and_the_input():
    assert text_generation(system_prompt="Be brief.").build_prompt({"input": "Hi?", "extra": 1}) == Prompt(
        "Be brief.", "Hi?"
    )
    assert text_generation().build_prompt({"input": "x"}) == Prompt(DEFAULT_SYSTEM_PROMPT, "x")
    assert text_generation(system_prompt="").build_prompt({"input": "x"}) == Prompt("", "x")


def test_build_prompt_rejects_a_non_string_input():
    with pytest.raises(InputError, match="'input' must be a string, got int"):
        text_generation().build_prompt({"input": 3})


def test_parse_returns_the_output_keys():
    task = text_generation()
    assert task.parse("some text") == {"generations": "some text"}
    assert set(task.parse("")) == set(task.output_keys)


def test_missing_keys():
    task = text_generation()
    assert task.missing_keys({"input": "x"}) == []
    assert task.missing_keys({"prompt": "x"}) == ["input"]
    assert task.missing_keys("not a dict") == ["input"]  # type: ignore[arg-type]


def test_without_principles_the_system_prompt_is_unchanged():
    task = text_generation(system_prompt="S")
    assert {task.build_prompt(r).system_prompt for r in ROWS} == {"S"}


def test_principles_are_appended_from_the_chosen_families():
    task = text_generation(system_prompt="S", principles=["honesty", "truthfulness"])
    chosen = {principle_of(task, r) for r in ROWS}
    allowed = set(PRINCIPLES["honesty"]) | set(PRINCIPLES["truthfulness"])
    assert chosen <= allowed
    assert len(chosen) > 2  # rows get different principles, not one for all
    one = text_generation(system_prompt="S", principles="harmlessness")
    assert {principle_of(one, r) for r in ROWS} <= set(PRINCIPLES["harmlessness"])


def test_principles_with_an_empty_system_prompt_are_the_whole_system_prompt():
    task = text_generation(system_prompt="", principles="honesty")
    assert task.build_prompt(ROWS[0]).system_prompt in PRINCIPLES["honesty"]


def test_all_principles():
    task = text_generation(system_prompt="S", principles="all")
    assert task.build_prompt.principles == tuple(PRINCIPLES)
    assert {principle_of(task, r) for r in ROWS} <= ALL_PRINCIPLES


def test_principles_are_reproducible_from_the_seed_and_ignore_global_random_state():
    def run(seed: int, rows: list[dict]) -> list[str]:
        random.seed(12345 + seed)
        task = text_generation(principles="all", seed=seed)
        state = random.getstate()
        out = [task.build_prompt(r).system_prompt for r in rows]
        assert random.getstate() == state  # global random state not touched
        return out

    first = run(7, ROWS)
    random.seed(999)
    random.random()
    assert run(7, ROWS) == first  # same seed, other global state
    assert run(8, ROWS) != first  # another seed, another choice


def test_principles_do_not_depend_on_row_order_or_on_other_rows():
    task = text_generation(principles="all", seed=3)
    by_input = {r["input"]: task.build_prompt(r).system_prompt for r in ROWS}
    shuffled = ROWS[:]
    random.Random(1).shuffle(shuffled)
    assert {r["input"]: task.build_prompt(r).system_prompt for r in shuffled} == by_input
    assert text_generation(principles="all", seed=3).build_prompt(ROWS[5]).system_prompt == by_input[ROWS[5]["input"]]


def test_unknown_principle_names_it_and_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        text_generation(principles=["honesty", "politeness"])
    msg = str(err.value)
    assert "politeness" in msg
    for name in PRINCIPLES:
        assert name in msg


def test_task_pickles_and_compares():
    task = text_generation(system_prompt="S", principles=["honesty"], seed=2)
    again = pickle.loads(pickle.dumps(task))
    assert again == task
    assert again.build_prompt(ROWS[3]) == task.build_prompt(ROWS[3])
    assert text_generation(seed=1) != text_generation(seed=2)


@pytest.mark.parametrize("seed", ["1", 1.5, None])
def test_seed_must_be_an_integer(seed):
    with pytest.raises(ConfigError, match="seed must be an integer"):
        text_generation(principles="all", seed=seed)
