"""Each task's build_prompt against expected prompts, its factory's checks, and the registry."""

from __future__ import annotations

import inspect
import pickle
import types
import typing

import pytest

from fnlabel import tasks
from fnlabel.errors import ConfigError, InputError
from fnlabel.tasks import TASKS, Task
from fnlabel.types import Prompt

QA = {"input": "What is 2 + 2?", "generations": ["4", "5"]}


def test_self_instruct_prompt():
    task = tasks.self_instruct(
        system_prompt="SYS",
        application_description="A math tutor",
        num_instructions=3,
        criteria_for_query_generation=["Be short.", "Be varied."],
    )
    assert task.build_prompt({"input": "Fractions"}) == Prompt(
        "SYS",
        "# Task\n"
        "Write 3 different queries that a user could send to the AI application below, about the given context.\n\n"
        "# Criteria\n- Be short.\n- Be varied.\n\n"
        "# AI application\nA math tutor\n\n"
        "# Context\nFractions\n\n"
        "# Output format\n"
        'Write exactly 3 queries as a numbered list, one query per line ("1. ...", "2. ...").\n'
        "Write nothing else: no title, no introduction, no answers.",
    )


def test_self_instruct_criteria_string_is_one_per_line():
    task = tasks.self_instruct(criteria_for_query_generation="Be short.\nBe varied.\n")
    assert "# Criteria\n- Be short.\n- Be varied.\n\n" in task.build_prompt({"input": "x"}).formatted_prompt


def test_evol_instruct_prompts():
    breadth = tasks.evol_instruct(evolution_method="breadth").build_prompt({"input": "Name a bird."})
    assert breadth == Prompt(
        "",
        "I want you to act as a Prompt Creator.\n"
        "Take inspiration from the #Given Prompt# to write a brand-new prompt.\n"
        "The new prompt belongs to the same domain as the #Given Prompt# but is about something rarer.\n"
        "Keep its length and difficulty close to those of the #Given Prompt#.\n"
        "The new prompt must be sensible: a person must be able to understand and answer it.\n"
        "Do not write the phrases '#Given Prompt#', '#Created Prompt#', 'given prompt' or 'created prompt' in your answer.\n"
        "Answer with the new prompt only.\n\n"
        "#Given Prompt#:\nName a bird.\n\n#Created Prompt#:\n",
    )
    deepen = tasks.evol_instruct(evolution_method="constraints").build_prompt({"input": " Name a bird. "})
    text = deepen.formatted_prompt
    assert text.startswith("I want you to act as a Prompt Rewriter.\n")
    assert (
        "Make it more complex with this method:\nAdd one more constraint or requirement to the #Given Prompt#.\n"
        in text
    )
    assert text.endswith("#Given Prompt#:\nName a bird.\n\n#Rewritten Prompt#:\n")


@pytest.mark.parametrize(
    ("factory", "methods"),
    [
        (tasks.evol_instruct, tasks.evol.INSTRUCT_METHODS),
        (tasks.evol_complexity, tasks.evol.COMPLEXITY_METHODS),
        (tasks.evol_quality, tasks.evol.QUALITY_METHODS),
    ],
)
def test_evol_method_choice_is_reproducible_and_covers_all_methods(factory, methods):
    prompt = factory(seed=3).build_prompt
    rows = [{"input": f"Question {i}?", "generation": f"Answer {i}."} for i in range(60)]
    chosen = [prompt.method_for(r) for r in rows]
    assert set(chosen) == set(methods)
    assert chosen == [factory(seed=3).build_prompt.method_for(r) for r in rows]
    assert chosen != [factory(seed=4).build_prompt.method_for(r) for r in rows]
    assert [prompt(r) for r in rows[:5]] == [prompt(r) for r in rows[:5]]


def test_evol_method_from_the_row_as_in_distilabel():
    # distilabel 0.x passed the whole row to generate_prompt: an `evolution_method` column picked the method
    row = {"input": "Name a bird.", "evolution_method": "reasoning"}
    for task in (tasks.evol_instruct(), tasks.evol_instruct(evolution_method="breadth"), tasks.evol_complexity(seed=5)):
        assert task.build_prompt.method_for(row) == "reasoning"
        assert "explicitly for reasoning in several steps" in task.build_prompt(row).formatted_prompt
    assert (
        tasks.evol_instruct(seed=1).build_prompt.method_for({**row, "evolution_method": None})
        in tasks.evol.INSTRUCT_METHODS
    )
    assert (
        tasks.evol_quality().build_prompt.method_for({"input": "q", "generation": "a", "evolution_method": "depth"})
        == "depth"
    )
    with pytest.raises(InputError, match="'evolution_method'.*constraints, deepen"):
        tasks.evol_complexity().build_prompt({"input": "q", "evolution_method": "breadth"})


def test_evol_complexity_never_uses_breadth():
    with pytest.raises(ConfigError, match="breadth"):
        tasks.evol_complexity(evolution_method="breadth")


def test_evol_quality_prompt():
    prompt = tasks.evol_quality(evolution_method="details").build_prompt(
        {"input": "Why is the sky blue?", "generation": "Scattering."}
    )
    assert prompt.system_prompt == ""
    assert prompt.formatted_prompt == (
        "I want you to act as a Response Rewriter.\n"
        "Rewrite the #Given Response# to the #Given Prompt# so that the response is of higher quality.\n"
        "The rewritten response must stay sensible and easy to understand.\n"
        "Keep the non-text parts of the #Given Prompt# and the #Given Response#, such as tables or code, "
        "and keep the input of the #Given Prompt#.\n"
        "Improve the response with this method:\nMake the response more detailed.\n"
        "Do not make it verbose: the #Rewritten Response# adds only 10 to 20 words to the #Given Response#.\n"
        "Do not write the phrases '#Given Response#', '#Rewritten Response#', 'given response' or "
        "'rewritten response' in your answer.\n"
        "Answer with the rewritten response only.\n\n"
        "#Given Prompt#:\nWhy is the sky blue?\n\n#Given Response#:\nScattering.\n\n#Rewritten Response#:\n"
    )


def test_ultrafeedback_prompt():
    task = tasks.ultrafeedback(
        task_description="# Rate it\nRate each text:", ratings=["bad", "good"], system_prompt="S"
    )
    assert task.build_prompt(QA) == Prompt(
        "S",
        "# Rate it\nRate each text:\n1. bad\n2. good\n\n---\n\n## Format\n\n### Input\n"
        "Instruction: [Specify task goal and restrictions]\n\nTexts:\n<text 1> [Text 1]\n<text 2> [Text 2]\n\n"
        "### Output\n#### Output for Text 1\nRating: [Rating for text 1]\n"
        "Rationale: [Rationale for the rating, in short sentences]\n\n"
        "#### Output for Text 2\nRating: [Rating for text 2]\n"
        "Rationale: [Rationale for the rating, in short sentences]\n\n"
        "---\n\n## Annotation\n\n### Input\nInstruction: What is 2 + 2?\n\n"
        "Texts:\n<text 1> 4\n<text 2> 5\n\n### Output\n",
    )


@pytest.mark.parametrize(
    ("aspect", "heading"),
    [
        ("overall-quality", "# General Text Quality Assessment"),
        ("overall_quality", "# General Text Quality Assessment"),
        ("text-quality", "# General Text Quality Assessment"),
        ("helpfulness", "# Helpfulness and Informativeness Assessment"),
        ("truthfulness", "# Truthfulness and Hallucination Assessment"),
        ("Honesty", "# Honesty and Uncertainty Assessment"),
        ("instruction following", "# Instruction Following Assessment"),
    ],
)
def test_ultrafeedback_aspects(aspect, heading):
    text = tasks.ultrafeedback(aspect).build_prompt(QA).formatted_prompt
    assert text.startswith(heading + "\n")
    assert "from 1 to 5" in text and "\n5. **" in text and "\n6. " not in text


def test_ultrafeedback_unknown_aspect_lists_the_known_ones():
    with pytest.raises(ConfigError, match="instruction-following"):
        tasks.ultrafeedback("harmlessness")


def test_judgelm_prompt():
    task = tasks.judgelm(task_description="Score the {num_responses} answers {braces} stay.")
    assert task.build_prompt(QA) == Prompt(
        tasks.judges.JUDGELM_SYSTEM_PROMPT,
        "[Question]\nWhat is 2 + 2?\n\n"
        "[The Start of Assistant 1's Answer]\n4\n[The End of Assistant 1's Answer]\n\n"
        "[The Start of Assistant 2's Answer]\n5\n[The End of Assistant 2's Answer]\n\n"
        "[System]\nScore the 2 answers {braces} stay.\n",
    )
    default = tasks.judgelm().build_prompt(QA).formatted_prompt
    assert "only the 2 scores, for Assistants 1 to 2" in default


def test_ultrajudge_prompt():
    task = tasks.ultrajudge(
        areas=["Accuracy", "Tone"], task_description="Judge {num_responses} on {areas}.", system_prompt="S"
    )
    assert task.build_prompt(QA) == Prompt(
        "S",
        "Judge 2 on Accuracy and Tone.\n\n---\n\n## Format\n\n### Input\nInstruction: [the instruction]\n\n"
        "Assistant 1: [answer]\nAssistant 2: [answer]\n\n### Output\n"
        "Assistant 1:\nAccuracy - [score from 0 to 10]\n[feedback on Accuracy]\nTone - [score from 0 to 10]\n[feedback on Tone]\n\n"
        "Assistant 2:\nAccuracy - [score from 0 to 10]\n[feedback on Accuracy]\nTone - [score from 0 to 10]\n[feedback on Tone]\n\n"
        "Final scores: [score of Assistant 1] [score of Assistant 2]\n\n---\n\n"
        "### Input\nInstruction: What is 2 + 2?\n\nAssistant 1: 4\n\nAssistant 2: 5\n\n### Output\n",
    )
    default = tasks.ultrajudge().build_prompt(QA).formatted_prompt
    assert (
        "Practical Accuracy, Clarity & Transparency, Authenticity & Reliability and Compliance with Intent" in default
    )


def test_ultracm_prompt():
    prompt = tasks.ultracm().build_prompt({"input": "What is 2 + 2?", "generations": ["4"]})
    assert prompt.system_prompt == tasks.critique.ULTRACM_SYSTEM_PROMPT
    text = prompt.formatted_prompt
    assert text.startswith("Here is my answer to an instruction.")
    assert "---\n\n### Instruction\nWhat is 2 + 2?\n\n### Answer\n4\n---\n" in text
    assert text.endswith("*Format*\n### Feedback\nOverall Score: [score from 1 to 10]\n[your feedback]\n")
    assert tasks.ultracm().build_prompt({"input": "What is 2 + 2?", "generations": "4"}) == prompt


def test_prometheus_prompt():
    task = tasks.prometheus(
        scoring_criteria="Is it right?", score_descriptions=["Wrong.", "Partly.", "Right."], system_prompt="S"
    )
    prompt = task.build_prompt({"input": "What is 2 + 2?", "generations": "4", "ref_completion": "4."})
    assert prompt == Prompt(
        "S",
        "###Task Description:\n"
        "You are given an instruction (which may contain an input), a response to evaluate, a reference answer "
        "that would get a score of 3, and a score rubric that states the evaluation criteria.\n"
        "1. Write detailed feedback that assesses the quality of the response strictly by the score rubric, "
        "not by general impressions.\n"
        "2. After the feedback, write a score: an integer from 1 to 3, following the score rubric.\n"
        '3. Use exactly this output format: "Feedback: (your feedback) [RESULT] (an integer from 1 to 3)"\n'
        "4. Write no other opening, closing or explanation.\n\n"
        "###The instruction to evaluate:\nWhat is 2 + 2?\n\n"
        "###Response to evaluate:\n4\n\n"
        "###Reference Answer (Score 3):\n4.\n\n"
        "###Score Rubrics:\n[Is it right?]\nScore 1: Wrong.\nScore 2: Partly.\nScore 3: Right.\n\n"
        "###Feedback:\n",
    )


def test_prometheus_accepts_distilabel_style_score_mapping():
    task = tasks.prometheus(score_descriptions={"2": "b", "1": "a"})
    text = task.build_prompt({"input": "q", "generations": "x", "ref_completion": "y"}).formatted_prompt
    assert "Score 1: a\nScore 2: b\n" in text


def test_complexity_scorer_prompt():
    prompt = tasks.complexity_scorer().build_prompt({"generations": ["Add 2 and 2.", "Prove it.\n"]})
    assert prompt == Prompt(
        "",
        "Rank the following questions by how difficult and complex they are. Give each question a score from "
        "1 to 2, where a higher score means a more complex question. You may give a score of 3 to a question "
        "that is too complex for you to answer.\n"
        "Answer in this format, one line per question, and write nothing else:\n"
        "[1] Score: [score of question 1]\n[2] Score: [score of question 2]\n\n"
        "Questions:\n[1] Add 2 and 2.\n[2] Prove it.",
    )


def test_quality_scorer_prompt():
    prompt = tasks.quality_scorer(task_description="Be fair.").build_prompt(QA)
    assert prompt == Prompt(
        "",
        "Rank the following responses of different AI assistants to the user's question by the quality of each "
        "response. Give each response a score from 1 to 2, where a higher score means a better response; give 3 "
        "to a response that is already very well written and cannot be improved further.\n"
        "Be fair.\n"
        "Answer in this format, one line per response, and write nothing else:\n"
        "[Response 1] Score: [score of response 1]\n[Response 2] Score: [score of response 2]\n\n"
        "#Question#: What is 2 + 2?\n#Response List#:\n[Response 1] 4\n[Response 2] 5",
    )


# ---------------------------------------------------------------- bad rows and configs


@pytest.mark.parametrize(
    ("task", "row", "message"),
    [
        (tasks.self_instruct(), {"input": 3}, "'input' must be a string"),
        (tasks.ultrafeedback(), {"input": "q", "generations": []}, "non-empty list"),
        (tasks.ultrafeedback(), {"input": "q", "generations": ["a", None]}, r"generations\[1\] must be a string"),
        (tasks.judgelm(), {"input": "q", "generations": 5}, "non-empty list"),
        (tasks.ultracm(), {"input": "q", "generations": ["a", "b"]}, "one answer per row"),
        (
            tasks.prometheus(),
            {"input": "q", "generations": "a", "ref_completion": None},
            "'ref_completion' must be a string",
        ),
        (tasks.evol_quality(), {"input": "q", "generation": ["a"]}, "'generation' must be a string"),
    ],
)
def test_bad_rows_raise_input_errors_naming_the_key(task, row, message):
    with pytest.raises(InputError, match=message):
        task.build_prompt(row)


@pytest.mark.parametrize(
    ("factory", "kwargs", "message"),
    [
        (tasks.self_instruct, {"num_instructions": 0}, "num_instructions"),
        (tasks.self_instruct, {"criteria_for_query_generation": []}, "criteria_for_query_generation"),
        (tasks.evol_instruct, {"evolution_method": "sideways"}, "breadth, constraints"),
        (tasks.evol_quality, {"evolution_method": "deepen"}, "helpfulness"),
        (tasks.ultrafeedback, {"ratings": ["only one"]}, "ratings"),
        (tasks.ultrajudge, {"areas": []}, "areas"),
        (tasks.prometheus, {"score_descriptions": ["", "x"]}, "score_descriptions"),
        (tasks.prometheus, {"score_descriptions": {"low": "a", "high": "b"}}, "score_descriptions.*'low'"),
    ],
)
def test_bad_factory_arguments_raise_config_errors(factory, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        factory(**kwargs)


# ---------------------------------------------------------------- registry

SIMPLE = (str, int, float, bool, type(None))


def _simple(annotation) -> bool:
    origin = typing.get_origin(annotation)
    if annotation in SIMPLE:
        return True
    if origin is typing.Literal:
        return all(isinstance(a, SIMPLE) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return all(_simple(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        return all(a is Ellipsis or a is str for a in typing.get_args(annotation))
    if origin is dict:  # a TOML table (the structured task's JSON schema)
        return typing.get_args(annotation)[0] is str
    return False


@pytest.mark.parametrize("kind", sorted(set(TASKS) - {"text-generation"}))  # the foundation's own task
def test_every_kind_is_a_factory_of_keyword_args_with_simple_types(kind):
    factory = TASKS[kind]
    assert getattr(tasks, factory.__name__) is factory
    assert factory.__name__.replace("_", "-") == kind
    hints = typing.get_type_hints(factory)
    for name, param in inspect.signature(factory).parameters.items():
        assert param.default is not inspect.Parameter.empty, f"{kind}.{name} has no default"
        assert _simple(hints[name]), f"{kind}.{name}: {hints[name]} is not a simple type"
    task = factory()
    assert isinstance(task, Task) and task.name == kind
    assert task.input_keys and task.output_keys


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_every_task_pickles_and_compares_equal(kind):
    task = TASKS[kind]()
    clone = pickle.loads(pickle.dumps(task))
    assert clone == task
    assert clone == TASKS[kind]()
