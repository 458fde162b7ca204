"""Recipes: TOML -> records -> LLM, error messages, dump round trips."""

from __future__ import annotations

import pickle
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest

import fnlabel
from fnlabel import LLMSpec
from fnlabel.backends import BACKENDS, EchoConfig
from fnlabel.errors import BackendError, RecipeError
from fnlabel.recipes import Recipe, dump_recipe, load_recipe, loads_recipe
from fnlabel.run import resolve_options, run_recipe
from fnlabel.types import GenerationParams
from tests.recipe_helpers import ROOT, read_jsonl, write_jsonl

BASE = '[task]\nkind = "text-generation"\nsystem_prompt = ""\n[backend]\nkind = "echo"\n'


def _kinds(data: dict) -> tuple[list[str], list[str]]:
    """(task kinds, backend kinds) a recipe's TOML names, stages and pool members included."""
    tasks, backends = [], []
    for stage in (data, data.get("label") or {}):
        if "task" in stage:
            tasks.append(stage["task"].get("kind"))
        for table in [stage.get("backend") or {}, *[m.get("backend") or {} for m in stage.get("pool", [])]]:
            if "kind" in table:
                backends.append(table["kind"])
    return tasks, backends


RECIPE_FILES = sorted((ROOT / "recipes").glob("*.toml"))


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.name)
def test_every_recipe_file_loads_and_round_trips(path: Path) -> None:
    recipe = load_recipe(path)
    text = dump_recipe(recipe)
    again = loads_recipe(text, "dump")
    assert again == recipe
    assert dump_recipe(again) == text


def test_recipe_files_cover_every_backend_and_combinator() -> None:
    seen_backends, in_process, pool, label = set(), False, False, False
    for path in RECIPE_FILES:
        data = tomllib.loads(path.read_text())
        seen_backends.update(_kinds(data)[1])
        in_process |= bool(data.get("in_process"))
        pool |= bool(data.get("pool"))
        label |= "label" in data
        assert path.read_text().startswith("#"), f"{path.name} must start with a comment saying when to use it"
    assert seen_backends == set(BACKENDS)
    assert in_process and pool and label


def test_echo_recipe_builds_and_runs() -> None:
    recipe = fnlabel.load_recipe(ROOT / "recipes" / "echo.toml")
    assert isinstance(recipe, Recipe)
    assert recipe.backend == EchoConfig(model_name="echo")
    assert recipe.params == GenerationParams(max_new_tokens=32, temperature=0.7)
    assert recipe.run.num_generations == 2
    gen = fnlabel.build(recipe)
    out = gen([{"input": "hello there"}], num_generations=2)
    assert [o["parsed_output"]["generations"].split("] ", 1)[1] for o in out[0]] == [
        "You are a helpful assistant. hello there"
    ] * 2
    assert recipe.build().task.name == "text-generation"


def test_record_is_frozen_hashable_and_picklable() -> None:
    recipe = loads_recipe(BASE)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        recipe.in_process = True  # type: ignore[misc]
    assert hash(recipe) == hash(loads_recipe(BASE))
    assert pickle.loads(pickle.dumps(recipe)) == recipe


def test_task_options_reach_the_factory() -> None:
    recipe = loads_recipe(
        '[task]\nkind = "text-generation"\nsystem_prompt = "Be brief."\nprinciples = ["honesty"]\nseed = 3\n'
        '[backend]\nkind = "echo"\n'
    )
    assert recipe.task.options == {"system_prompt": "Be brief.", "principles": ("honesty",), "seed": 3}
    prompt = recipe.task.build().build_prompt({"input": "hi"})
    assert prompt.system_prompt.startswith("Be brief.\n") and prompt.formatted_prompt == "hi"


def test_prompt_format_and_formatting_fn() -> None:
    chatml = loads_recipe('prompt_format = "chatml"\n' + BASE).build()
    assert chatml([{"input": "hi"}])[0][0]["prompt_used"] == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    fn = loads_recipe('prompt_formatting_fn = "fnlabel.formats:as_llama2"\n' + BASE).build()
    assert fn([{"input": "hi"}])[0][0]["prompt_used"] == "<s>[INST] hi [/INST]"


def test_dump_never_writes_secrets(plugin: Any) -> None:
    plugin("fnlabel.backends", "secretive", "tests.recipe_helpers:SecretConfig")
    recipe = loads_recipe('[task]\nkind = "text-generation"\n[backend]\nkind = "secretive"\napi_key = "sk-123"\n')
    assert recipe.backend.api_key == "sk-123"
    text = dump_recipe(recipe)
    assert "sk-123" not in text and "api_key =" not in text
    assert 'token_env = "TOKEN"' in text


ERRORS = [
    # (recipe text, expected fragments of the message)
    (BASE + "latency = 'ten'\n", ["x.toml: backend.latency: expected float, got 'ten'"]),
    (BASE + "[params]\nmax_new_tokens = 'ten'\n", ["x.toml: params.max_new_tokens: expected int, got 'ten'"]),
    (BASE + "[params]\nmax_new_tokens = 1.5\n", ["params.max_new_tokens: expected int, got 1.5"]),
    (BASE + "[params]\ntop_p = 3\n", ["x.toml: params:", "top_p must be a number in (0, 1], got 3.0"]),
    (
        BASE + "modle_name = 'x'\n",
        [
            "x.toml: backend: unknown key 'modle_name' for backend kind 'echo'",
            "did you mean 'model_name'",
            "allowed keys: model_name, latency",
        ],
    ),
    (
        '[task]\nkind = "text-generation"\n[backend]\nkind = "nope"\n',
        ["backend.kind: unknown backend kind 'nope'; known kinds: echo, llama-cpp"],
    ),
    (
        '[task]\nkind = "textgen"\n[backend]\nkind = "echo"\n',
        ["task.kind: unknown task kind 'textgen'; known kinds: text-generation"],
    ),
    ('[task]\n[backend]\nkind = "echo"\n', ["task.kind: missing; known task kinds: text-generation"]),
    (
        '[task]\nkind = "text-generation"\nsytem_prompt = "x"\n[backend]\nkind = "echo"\n',
        ["task: unknown key 'sytem_prompt' for task kind 'text-generation' (did you mean 'system_prompt'?)"],
    ),
    (
        '[task]\nkind = "text-generation"\nseed = "one"\n[backend]\nkind = "echo"\n',
        ["task.seed: expected int, got 'one'"],
    ),
    (
        '[task]\nkind = "text-generation"\nprinciples = ["kindness"]\n[backend]\nkind = "echo"\n',
        ["task: unknown principle(s) ['kindness']"],
    ),
    ('[task]\nkind = "text-generation"\n', ["x.toml: no backend: add a [backend] table"]),
    ('[backend]\nkind = "echo"\n', ["x.toml: task: missing required key"]),
    ("tsk = 1\n" + BASE, ["x.toml: unknown key 'tsk' (did you mean 'task'?)"]),
    (
        'prompt_format = "alpaca"\n' + BASE,
        ["prompt_format: unknown prompt format 'alpaca'; known formats: default, openai"],
    ),
    (
        'prompt_formatting_fn = "nowhere.at.all:fn"\n' + BASE,
        ["prompt_formatting_fn: cannot import module 'nowhere.at.all'"],
    ),
    ('prompt_formatting_fn = "no_colon"\n' + BASE, ["prompt_formatting_fn: expected 'package.module:function'"]),
    ("in_process = 1\n" + BASE, ["in_process: expected bool (true or false), got 1"]),
    (BASE + "[params]\nnum_generations = 2\n", ["params.num_generations: set num_generations in [run]"]),
    (BASE + "[run]\nbatch_size = 0\n", ["run.batch_size: expected int >= 1, got 0"]),
    (BASE + "[run]\nnum_generation = 2\n", ["run: unknown key 'num_generation' (did you mean 'num_generations'?)"]),
    (
        BASE + "[[pool]]\n[pool.params]\ntemperature = 'hot'\n",
        ["pool[0].params.temperature: expected float, got 'hot'"],
    ),
    (
        BASE + "[[pool]]\n[[pool]]\n[pool.backend]\nkind = 'echo'\nlatency = [1]\n",
        ["pool[1].backend.latency: expected float, got [1]"],
    ),
    ('[task]\nkind = "text-generation"\n[[pool]]\nin_process = false\n', ["pool[0] has no backend"]),
    (
        BASE + "[label]\n[label.task]\nkind = 'text-generation'\n[label.backend]\nkind = 'echo'\nlatency = 'x'\n",
        ["label.backend.latency: expected float, got 'x'"],
    ),
    (
        BASE + "[label]\nnum_generations = 0\n[label.task]\nkind = 'text-generation'\n[label.backend]\nkind = 'echo'\n",
        ["label.num_generations: expected int >= 1, got 0"],
    ),
    ("[task\n", ["x.toml: invalid TOML:", "line 1"]),
]


@pytest.mark.parametrize(("text", "fragments"), ERRORS, ids=[f"e{i}" for i in range(len(ERRORS))])
def test_errors_name_the_file_and_key_path(text: str, fragments: list[str]) -> None:
    with pytest.raises(RecipeError) as info:
        loads_recipe(text, "x.toml")
    for fragment in fragments:
        assert fragment in str(info.value)


def test_all_errors_of_a_recipe_are_reported_at_once() -> None:
    with pytest.raises(RecipeError) as info:
        loads_recipe(BASE + "latency = 'a'\n[params]\ntemperature = 'b'\n[run]\nlimit = 'c'\n", "x.toml")
    lines = str(info.value).splitlines()
    assert lines == [
        "x.toml: backend.latency: expected float, got 'a'",
        "x.toml: params.temperature: expected float, got 'b'",
        "x.toml: run.limit: expected int >= 1, got 'c'",
    ]


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="nope.toml: no such recipe file"):
        load_recipe(tmp_path / "nope.toml")


def test_unavailable_backend_kind_says_so(plugin: Any) -> None:
    plugin("fnlabel.backends", "ghost", "fnlabel.backends.ghost:GhostConfig")
    with pytest.raises(RecipeError, match="backend.kind: backend kind 'ghost' is not available"):
        loads_recipe('[task]\nkind = "text-generation"\n[backend]\nkind = "ghost"\n')


POOL = (
    BASE
    + """
[params]
max_new_tokens = 8
temperature = 0.5

[[pool]]
model_name = "cool"
[pool.params]
temperature = 0.1

[[pool]]
in_process = true
prompt_format = "chatml"
[pool.backend]
kind = "echo"
model_name = "other"
latency = 0.5
"""
)


def test_pool_members_inherit_and_override() -> None:
    recipe = loads_recipe(POOL)
    (a, a_child), (b, b_child) = recipe.specs()
    assert a.backend == EchoConfig() and a.model_name == "cool" and not a_child
    assert a.params == GenerationParams(max_new_tokens=8, temperature=0.1)
    assert b.backend == EchoConfig(model_name="other", latency=0.5) and b_child
    assert b.params == GenerationParams(max_new_tokens=8, temperature=0.5)
    assert b.prompt_format == "chatml"
    assert loads_recipe(dump_recipe(recipe)) == recipe


def test_in_process_spec_is_what_a_child_builds() -> None:
    recipe = loads_recipe("in_process = true\n" + BASE)
    [(spec, child)] = recipe.specs()
    assert child
    assert isinstance(spec, LLMSpec)
    clone = pickle.loads(pickle.dumps(spec))  # what crosses to the child process
    assert clone == spec
    out = clone.build()([{"input": "a b"}], 1)
    assert out[0][0]["raw_output"].endswith("] a b")
    assert loads_recipe(dump_recipe(recipe)) == recipe


LABEL = (
    BASE
    + """
[run]
num_generations = 3

[label]
num_generations = 1
[label.task]
kind = "rate-lengths"
[label.backend]
kind = "echo"
model_name = "judge"
"""
)


def test_two_stage_recipe_labels_the_generations(tmp_path: Path, plugin: Any) -> None:
    plugin("fnlabel.tasks", "rate-lengths", "tests.recipe_helpers:rate_lengths")
    recipe = loads_recipe(LABEL)
    assert recipe.label_inputs() == (("generations", "generations"),)  # inferred from the tasks' keys
    assert loads_recipe(dump_recipe(recipe)) == recipe
    explicit = loads_recipe(LABEL + "[label.inputs]\ngenerations = 'generations'\n")
    assert explicit.label_inputs() == recipe.label_inputs()

    write_jsonl(tmp_path / "in.jsonl", [{"input": "one two"}, {"text": "no input key"}, {"input": "three"}])
    opts = resolve_options(recipe, input=str(tmp_path / "in.jsonl"), output=str(tmp_path / "out.jsonl"))
    summary = run_recipe(recipe, opts)
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r.get("input") for r in rows] == ["one two", None, "three"]
    first = rows[0]
    assert len(first["generator_outputs"]) == 3 and len(first["generations"]) == 3
    assert first["generations"] == [o["parsed_output"]["generations"] for o in first["generator_outputs"]]
    [label] = first["outputs"]
    assert label["model_name"] == "judge" and label["parsed_output"] == {"rating": 3}
    assert label["prompt_used"].startswith("rate 3: [0:")
    assert rows[1]["outputs"] == [] and rows[1]["generations"] == []
    stages = {(f["row"], f["stage"]) for f in read_jsonl(tmp_path / "out.jsonl.failures.jsonl")}
    assert stages == {(1, "generate.input"), (1, "label.input")}
    assert summary.failed_rows == 1 and summary.rows_done == 3


def test_dump_round_trips_any_text_and_numbers() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from fnlabel.recipes.dump import toml_value

    @settings(max_examples=100, deadline=None)
    @given(
        st.text(),
        st.lists(st.text(min_size=1), max_size=3),
        st.floats(min_value=0, max_value=1e6, allow_nan=False),
        st.integers(min_value=0, max_value=2**63 - 1),
    )
    def check(prompt: str, stop: list[str], temperature: float, seed: int) -> None:
        text = (
            f'[task]\nkind = "text-generation"\nsystem_prompt = {toml_value(prompt)}\n'
            f'[backend]\nkind = "echo"\nfail_on = {toml_value(stop)}\n'
            f"[params]\ntemperature = {toml_value(temperature)}\nseed = {seed}\nstop = {toml_value(stop)}\n"
        )
        recipe = loads_recipe(text)
        assert recipe.task.options["system_prompt"] == prompt
        assert recipe.params.temperature == temperature and recipe.params.stop == tuple(stop)
        assert loads_recipe(dump_recipe(recipe)) == recipe

    check()


def test_parse_failures_are_recorded_per_generation_and_retried(tmp_path: Path, plugin: Any) -> None:
    plugin("fnlabel.tasks", "picky", "tests.recipe_helpers:picky")
    write_jsonl(tmp_path / "in.jsonl", [{"input": "even"}, {"input": "odd"}, {"input": "even too"}])
    recipe = loads_recipe(
        '[task]\nkind = "picky"\n[backend]\nkind = "echo"\n[run]\nnum_generations = 2\nbatch_size = 2\n'
    )
    opts = resolve_options(recipe, input=str(tmp_path / "in.jsonl"), output=str(tmp_path / "out.jsonl"))
    summary = run_recipe(recipe, opts)
    assert summary.failed_rows == 1 and summary.generations == 6
    failures = read_jsonl(tmp_path / "out.jsonl.failures.jsonl")
    assert [(f["row"], f["generation"], f["stage"]) for f in failures] == [(1, 0, "parse"), (1, 1, "parse")]
    assert "ParseError: expected an even answer" in failures[0]["error"]
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert rows[1]["outputs"][0]["raw_output"].endswith("odd") and rows[1]["outputs"][0]["parsed_output"] is None

    retry = run_recipe(recipe, attrs.evolve(opts, retry_failed=True))
    assert retry.rows_run == 1 and retry.failed_rows == 1  # still odd: still failing, recorded once
    assert len(read_jsonl(tmp_path / "out.jsonl.failures.jsonl")) == 2
    assert read_jsonl(tmp_path / "out.jsonl") == rows


TYPED = '[task]\nkind = "text-generation"\n[backend]\nkind = "typed"\n'


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('dtype = "bf16"', "backend.dtype: expected one of 'auto', 'float32', got 'bf16'"),
        ("device = 1.5", "backend.device: expected int | str, got 1.5"),
        ('timeout = "slow"', "backend.timeout: expected float, got 'slow'"),
        ("extra_body = 3", "backend.extra_body: expected a table, got 3"),
        ('sizes = [1, "two"]', "backend.sizes[1]: expected int, got 'two'"),
        ("sizes = 3", "backend.sizes: expected a list of int, got 3"),
    ],
)
def test_backend_field_types_are_strict(lines: str, message: str, plugin: Any) -> None:
    plugin("fnlabel.backends", "typed", "tests.recipe_helpers:TypedConfig")
    with pytest.raises(RecipeError) as info:
        loads_recipe(TYPED + lines + "\n", "x.toml")
    assert str(info.value) == f"x.toml: {message}"


def test_backend_field_types_accept_what_they_should(plugin: Any) -> None:
    plugin("fnlabel.backends", "typed", "tests.recipe_helpers:TypedConfig")
    recipe = loads_recipe(
        TYPED + 'dtype = "float32"\ndevice = 0\ntimeout = 5\nextra_body = { a = [1, { b = "c" }] }\nsizes = [1, 2]\n'
    )
    b = recipe.backend
    assert (b.dtype, b.device, b.timeout, b.extra_body, b.sizes) == ("float32", 0, 5.0, {"a": [1, {"b": "c"}]}, (1, 2))
    assert isinstance(b.timeout, float)
    assert loads_recipe(dump_recipe(recipe)) == recipe


def _poisoned_two_stage(tmp_path: Path, plugin: Any, stage: str) -> tuple[Any, Any]:
    """The LABEL recipe, batch 1, with ``raise_on = ["poison"]`` after the line ``stage`` (which
    stage's backend raises), over rows "one two", "poison", "three"; the recipe and its run options."""
    plugin("fnlabel.tasks", "rate-lengths", "tests.recipe_helpers:rate_lengths")
    assert stage in LABEL
    recipe = loads_recipe(
        LABEL.replace(stage, stage + 'raise_on = ["poison"]\n').replace(
            "num_generations = 3", "num_generations = 3\nbatch_size = 1"
        )
    )
    write_jsonl(tmp_path / "in.jsonl", [{"input": "one two"}, {"input": "poison"}, {"input": "three"}])
    return recipe, resolve_options(recipe, input=str(tmp_path / "in.jsonl"), output=str(tmp_path / "out.jsonl"))


def test_a_two_stage_batch_that_raises_writes_rows_of_the_same_shape(tmp_path: Path, plugin: Any) -> None:
    recipe, opts = _poisoned_two_stage(tmp_path, plugin, '[backend]\nkind = "echo"\n')
    summary = run_recipe(recipe, opts)
    assert summary.failed_rows == 1 and summary.rows_done == 3
    good, failed, _ = read_jsonl(tmp_path / "out.jsonl")
    assert list(failed) == list(good)  # same keys, same order: input, generations, outputs, generator_outputs
    assert failed["generations"] == [] and failed["outputs"] == []  # not labelled, like a row the generator failed
    assert [o["raw_output"] for o in failed["generator_outputs"]] == [None] * 3  # one per generation asked for
    rerun = run_recipe(recipe, opts)  # the failed row is recognised as its input row on resume
    assert rerun.rows_run == 0 and rerun.rows_done == 3


def test_a_labeller_that_raises_keeps_the_batch_generations(tmp_path: Path, plugin: Any) -> None:
    recipe, opts = _poisoned_two_stage(tmp_path, plugin, 'model_name = "judge"\n')
    summary = run_recipe(recipe, opts)
    assert summary.failed_rows == 1 and summary.rows_done == 3
    good, failed, _ = read_jsonl(tmp_path / "out.jsonl")
    assert list(failed) == list(good)
    assert failed["outputs"] == []  # not labelled...
    raws = [o["raw_output"] for o in failed["generator_outputs"]]
    assert len(raws) == 3 and all(r.endswith("poison") for r in raws)  # ...but its generations are kept
    assert failed["generations"] == raws
    [record] = read_jsonl(tmp_path / "out.jsonl.failures.jsonl")
    assert (record["row"], record["stage"]) == (1, "label.backend") and "poison" in record["error"]

    # the first batch's labeller failing as a whole still stops the run before writing anything
    write_jsonl(tmp_path / "first.jsonl", [{"input": "poison"}, {"input": "three"}])
    first = resolve_options(recipe, input=str(tmp_path / "first.jsonl"), output=str(tmp_path / "first-out.jsonl"))
    with pytest.raises(BackendError, match="failed as a whole.*labeller: BackendError"):
        run_recipe(recipe, first)
    # and the Python API raises as a single LLM would
    with pytest.raises(BackendError, match="poison"):
        recipe.build().run([{"input": "poison"}], 3)


def test_resuming_a_two_stage_output_with_other_generation_counts_is_refused(tmp_path: Path, plugin: Any) -> None:
    from fnlabel.errors import InputError

    plugin("fnlabel.tasks", "rate-lengths", "tests.recipe_helpers:rate_lengths")
    write_jsonl(tmp_path / "in.jsonl", [{"input": "one two"}, {"input": "three"}])
    paths = {"input": str(tmp_path / "in.jsonl"), "output": str(tmp_path / "out.jsonl")}
    recipe = loads_recipe(LABEL)
    run_recipe(recipe, resolve_options(recipe, limit=1, **paths))
    with pytest.raises(
        InputError,
        match="line 1 holds 3 generations in 'generator_outputs', but this run asks "
        "for 2: rerun with --num-generations 3",
    ):
        run_recipe(recipe, resolve_options(recipe, num_generations=2, **paths))
    relabel = loads_recipe(LABEL.replace("[label]\nnum_generations = 1", "[label]\nnum_generations = 2"))
    with pytest.raises(
        InputError,
        match=r"holds 1 generation in 'outputs', but this run asks for 2: rerun with "
        r"\[label\] num_generations = 1",
    ):
        run_recipe(relabel, resolve_options(relabel, **paths))
    assert run_recipe(recipe, resolve_options(recipe, **paths)).rows_done == 2


def test_an_input_column_the_labeller_is_fed_names_the_right_fix(tmp_path: Path, plugin: Any) -> None:
    from fnlabel.errors import InputError

    plugin("fnlabel.tasks", "rate-lengths", "tests.recipe_helpers:rate_lengths")
    recipe = loads_recipe(LABEL)
    for column in ("generations", "generator_outputs"):
        write_jsonl(tmp_path / "in.jsonl", [{"input": "a"}, {"input": "b", column: ["x"]}])
        opts = resolve_options(recipe, input=str(tmp_path / "in.jsonl"), output=str(tmp_path / "out.jsonl"))
        with pytest.raises(InputError) as info:
            run_recipe(recipe, opts)
        msg = str(info.value)
        assert f"in.jsonl line 2: the row already has a key {column!r}" in msg
        assert "rename the column" in msg and "output_key" not in msg  # output_key would not help
    write_jsonl(tmp_path / "in.jsonl", [{"input": "a", "outputs": 1}])
    with pytest.raises(InputError, match="set output_key in \\[run\\] to another name"):
        run_recipe(recipe, resolve_options(recipe, input=str(tmp_path / "in.jsonl"), output=str(tmp_path / "o.jsonl")))


@pytest.mark.parametrize("key", ["generations", "generator_outputs"])
def test_a_two_stage_output_key_that_would_overwrite_the_generations_is_refused(
    tmp_path: Path, plugin: Any, key: str
) -> None:
    from fnlabel.errors import ConfigError

    plugin("fnlabel.tasks", "rate-lengths", "tests.recipe_helpers:rate_lengths")
    recipe = loads_recipe(LABEL.replace("[run]\n", f"[run]\noutput_key = {key!r}\n"))
    write_jsonl(tmp_path / "in.jsonl", [{"input": "a"}])
    opts = resolve_options(recipe, input=str(tmp_path / "in.jsonl"), output=str(tmp_path / "out.jsonl"))
    with pytest.raises(ConfigError, match=f"output_key = '{key}' is also where a two-stage run writes"):
        run_recipe(recipe, opts)
    assert not (tmp_path / "out.jsonl").exists()


def test_dump_writes_toml_dates_and_times_back() -> None:
    recipe = loads_recipe(
        '[task]\nkind = "text-generation"\n[backend]\nkind = "openai"\nmodel = "m"\n'
        "extra_body = {day = 1979-05-27, at = 07:32:00.5, local = 1979-05-27T07:32:00, utc = 1979-05-27T07:32:00Z,"
        " offset = 1979-05-27T00:32:00-07:00}\n"
    )
    assert loads_recipe(dump_recipe(recipe)) == recipe


def test_dump_never_writes_a_literal_secret_inside_a_table() -> None:
    recipe = loads_recipe(
        '[task]\nkind = "text-generation"\n[backend]\nkind = "vllm"\n'
        'engine_kwargs = {hf_token = "hf_LITERAL", max_num_seqs = 4}\n'
        '[label]\n[label.task]\nkind = "text-generation"\n[label.backend]\nkind = "openai"\nmodel = "m"\n'
        'extra_body = {api_key = "sk-LITERAL", nested = {token = "tok-LITERAL", keep = 1}}\n'
    )
    text = dump_recipe(recipe)
    assert "LITERAL" not in text
    assert "max_num_seqs = 4" in text and "keep = 1" in text
    assert loads_recipe(text).label.backend.extra_body == {"nested": {"keep": 1}}


def test_a_recipe_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode("utf-8"))  # as some Windows editors save UTF-8
    assert load_recipe(path) == loads_recipe(BASE)


@pytest.mark.parametrize(
    ("head", "tail", "message"),
    [
        ("run = 5\n", "", "run: expected a table, got 5"),
        ("params = [1]\n", "", "params: expected a table, got [1]"),
        ('label = "x"\n', "", "label: expected a table, got 'x'"),
        ("", "[[pool]]\nparams = 3\n", "pool[0].params: expected a table, got 3"),
        ("pool = [1]\n", "", "pool[0]: expected a table, got 1"),
        (
            "",
            '[label]\nparams = "hot"\n[label.task]\nkind = "text-generation"\n[label.backend]\nkind = "echo"\n',
            "label.params: expected a table, got 'hot'",
        ),
    ],
)
def test_a_value_where_a_table_belongs_says_so(head: str, tail: str, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        loads_recipe(head + BASE + tail, "r.toml")
    assert f"r.toml: {message}" in str(info.value)
    assert "AttributeError" not in str(info.value) and "RunSpec" not in str(info.value)


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ('output = "out.csv"', "run: output 'out.csv' must end in .jsonl (or .parquet)"),
        ('input = "data.txt"', "run: input 'data.txt' has an unknown format '.txt'; supported: .jsonl, .ndjson"),
    ],
)
def test_run_paths_fnlabel_cannot_read_or_write_fail_at_load(run: str, message: str) -> None:
    with pytest.raises(RecipeError, match=re.escape(f"r.toml: {message}")):
        loads_recipe(BASE + f"[run]\n{run}\n", "r.toml")
    for fine in ('input = "hf:org/name:train"', 'input = "x.CSV"', 'output = "o.parquet"'):
        loads_recipe(BASE + f"[run]\n{fine}\n")
