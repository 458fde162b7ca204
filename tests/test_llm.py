"""The composed LLM: shape and order of outputs, bad rows, parse and backend failures."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fnlabel import (
    LLM,
    BackendError,
    ConfigError,
    GenerationFailure,
    GenerationParams,
    InputError,
    ParseError,
    Prompt,
    RowFailure,
    RunResult,
    Task,
    backends,
    llm,
    tasks,
)
from fnlabel.backends.echo import generation


class Recorder:
    """A plain-callable backend that records its calls and answers ``p|g``."""

    def __init__(self) -> None:
        self.calls: list[tuple[list, GenerationParams]] = []

    def __call__(self, prompts, params):
        self.calls.append((list(prompts), params))
        return [[f"{p}|{g}" for g in range(params.num_generations)] for p in prompts]


def rows(n: int) -> list[dict]:
    return [{"input": f"q{i}"} for i in range(n)]


TG = tasks.text_generation(system_prompt="")


@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [1, 2, 7])
def test_shape_and_order_of_outputs(n, k):
    rec = Recorder()
    out = llm(TG, rec, model_name="m")(rows(n), num_generations=k)
    assert len(out) == n and all(len(row) == k for row in out)
    for i, row in enumerate(out):
        for g, o in enumerate(row):
            assert o == {
                "model_name": "m",
                "prompt_used": f"q{i}",
                "raw_output": f"q{i}|{g}",
                "parsed_output": {"generations": f"q{i}|{g}"},
            }
    assert len(rec.calls) == 1 and rec.calls[0][1].num_generations == k


def test_generate_is_the_call_and_run_adds_failures():
    gen = llm(TG, Recorder())
    assert gen.generate(rows(3), num_generations=2) == gen(rows(3), 2)
    res = gen.run(rows(3), 2)
    assert isinstance(res, RunResult) and res.outputs == gen(rows(3), 2) and res.failures == ()
    assert gen.submit(rows(3), 2).result(timeout=10) == res


def test_echo_outputs_follow_inputs_and_generations():
    out = llm(TG, backends.echo())([{"input": "a b"}, {"input": "c"}], num_generations=2)
    p = GenerationParams(num_generations=2)
    assert [[o["raw_output"] for o in row] for row in out] == [
        [generation("a b", p, 0), generation("a b", p, 1)],
        [generation("c", p, 0), generation("c", p, 1)],
    ]


def test_empty_inputs_give_empty_list_without_calling_the_backend():
    rec = Recorder()
    gen = llm(TG, rec)
    assert gen([]) == [] and gen([], num_generations=3) == []
    assert gen.run([]) == RunResult([], ())
    assert rec.calls == []


def test_all_rows_bad_calls_no_backend():
    rec = Recorder()
    out = llm(TG, rec)([{"x": 1}, {"y": 2}], num_generations=2)
    assert rec.calls == []
    assert [[o["raw_output"] for o in row] for row in out] == [[None, None], [None, None]]


def test_row_missing_input_keys_gets_empty_outputs_and_a_warning(caplog):
    rec = Recorder()
    inputs = [{"input": "q0"}, {"text": "oops"}, {"input": "q2"}, "not a dict"]
    with caplog.at_level(logging.WARNING, logger="fnlabel"):
        res = llm(TG, rec, model_name="m").run(inputs, num_generations=3)
    out = res.outputs
    assert len(out) == 4 and all(len(row) == 3 for row in out)
    for i in (1, 3):
        assert out[i] == [{"model_name": "m", "prompt_used": None, "raw_output": None, "parsed_output": None}] * 3
        assert out[i][0] is not out[i][1]  # distinct dicts, not one shared
    assert [o["raw_output"] for o in out[0]] == ["q0|0", "q0|1", "q0|2"]
    assert [o["raw_output"] for o in out[2]] == ["q2|0", "q2|1", "q2|2"]
    assert rec.calls[0][0] == ["q0", "q2"]  # only good rows reach the backend
    assert [(f.row, f.generation, f.stage) for f in res.failures] == [(1, None, "input"), (3, None, "input")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("row 1 " in w and "missing key(s) ['input']" in w for w in warnings), warnings
    assert any(
        "row 3 " in w and "each input must be a dict of the task's keys (input): row 3 is a str" in w for w in warnings
    ), warnings


def test_build_prompt_error_is_a_row_failure_too(caplog):
    with caplog.at_level(logging.WARNING, logger="fnlabel"):
        res = llm(TG, Recorder()).run([{"input": 5}, {"input": "ok"}])
    assert res.outputs[0][0]["raw_output"] is None and res.outputs[1][0]["raw_output"] == "ok|0"
    assert res.failures[0].row == 0 and "must be a string" in res.failures[0].error
    assert "row 0" in caplog.text


def _picky_parse(raw: str) -> dict:
    if raw.endswith("|1"):
        raise ParseError("expected a rating, got generation 1")
    if raw.startswith("q3"):
        raise ValueError(f"bad row text {raw}")
    return {"ok": raw}


PICKY = Task("picky", lambda r: Prompt("", r["input"]), _picky_parse, "input", "ok")


def test_parse_failure_keeps_raw_output_and_is_logged_once_per_distinct_error(caplog):
    with caplog.at_level(logging.WARNING, logger="fnlabel"):
        res = llm(PICKY, Recorder()).run(rows(3), num_generations=3)
    for i, row in enumerate(res.outputs):
        assert [o["raw_output"] for o in row] == [f"q{i}|0", f"q{i}|1", f"q{i}|2"]
        assert row[1]["parsed_output"] is None and row[1]["prompt_used"] == f"q{i}"
        assert row[0]["parsed_output"] == {"ok": f"q{i}|0"}
    assert [(f.row, f.generation, f.stage) for f in res.failures] == [(0, 1, "parse"), (1, 1, "parse"), (2, 1, "parse")]
    logged = [r for r in caplog.records if "expected a rating" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in caplog.records]


def test_distinct_parse_errors_are_each_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="fnlabel"):
        llm(PICKY, Recorder())([{"input": "q3"}, {"input": "q3x"}], num_generations=1)
    assert "bad row text q3|0" in caplog.text and "bad row text q3x|0" in caplog.text


def test_generation_failure_loses_only_that_generation():
    def flaky(prompts, params):
        def one(p, g):
            return GenerationFailure(f"retries exhausted for {p}") if g == 1 else f"{p}|{g}"

        return [[one(p, g) for g in range(params.num_generations)] for p in prompts]

    res = llm(TG, flaky).run(rows(2), num_generations=3)
    for i, row in enumerate(res.outputs):
        assert [o["raw_output"] for o in row] == [f"q{i}|0", None, f"q{i}|2"]
        assert row[1]["parsed_output"] is None and row[1]["prompt_used"] == f"q{i}"
        assert row[2]["parsed_output"] == {"generations": f"q{i}|2"}
    assert res.failures == (
        RowFailure(0, 1, "backend", "retries exhausted for q0"),
        RowFailure(1, 1, "backend", "retries exhausted for q1"),
    )


def test_echo_fail_on_reports_backend_failures():
    res = llm(TG, backends.echo(fail_on="BAD")).run([{"input": "ok"}, {"input": "BAD one"}], num_generations=2)
    assert [o["raw_output"] is None for o in res.outputs[1]] == [True, True]
    assert [o["raw_output"] is None for o in res.outputs[0]] == [False, False]
    assert {(f.row, f.stage) for f in res.failures} == {(1, "backend")}


def short_by_one_prompt(prompts, params):
    return [["x"] * params.num_generations for _ in prompts[1:]]


def one_generation_too_many(prompts, params):
    return [["x"] * (params.num_generations + (j == 1)) for j, _ in enumerate(prompts)]


def not_a_list(prompts, params):
    return tuple([["x"]] * len(prompts))


@pytest.mark.parametrize(
    ("backend", "pattern"),
    [
        (short_by_one_prompt, "short_by_one_prompt returned 2 results for 3 prompts"),
        (one_generation_too_many, "one_generation_too_many returned 3 generations for prompt 1, expected 2"),
        (not_a_list, "not_a_list returned tuple results for 3 prompts"),
    ],
)
def test_backend_breaking_the_contract_raises_naming_it(backend, pattern):
    with pytest.raises(BackendError, match=pattern):
        llm(TG, backend)(rows(3), num_generations=2)


def test_contract_error_names_a_callable_backend_and_its_model():
    class Short:
        model_name = "tiny-model"

        def __call__(self, prompts, params):
            return []

    with pytest.raises(BackendError, match=r"Short \(tiny-model\)"):
        llm(TG, Short())(rows(1))


def test_backend_exception_propagates():
    with pytest.raises(BackendError, match="raise_on"):
        llm(TG, backends.echo(raise_on="boom"))([{"input": "boom"}])


def test_num_generations_reaches_the_backend_in_params():
    rec = Recorder()
    base = GenerationParams(max_new_tokens=9, seed=4)
    gen = llm(TG, rec, params=base)
    gen(rows(1), num_generations=4)
    gen(rows(1))
    assert [p for _, p in rec.calls] == [base.replace(num_generations=4), base]
    assert gen.params == base  # the composed LLM is unchanged


@pytest.mark.parametrize("k", [0, -1, 1.0, True, "2"])
def test_bad_num_generations(k):
    with pytest.raises(ConfigError, match="num_generations"):
        llm(TG, Recorder())(rows(1), num_generations=k)


def test_plain_function_backend_and_model_name_defaults():
    def my_model(prompts, params):
        return [["x"] * params.num_generations for _ in prompts]

    assert llm(TG, my_model).model_name == "my_model"
    assert llm(TG, my_model, model_name="custom").model_name == "custom"
    assert llm(TG, backends.echo(model_name="echo-7b")).model_name == "echo-7b"
    assert llm(TG, Recorder()).model_name == "Recorder"
    assert llm(TG, my_model)(rows(1))[0][0]["model_name"] == "my_model"


def test_backend_natural_format_is_used_unless_the_llm_sets_one():
    rec = Recorder()
    rec.prompt_format = "openai"  # type: ignore[attr-defined]
    task = tasks.text_generation(system_prompt="S")
    llm(task, rec)([{"input": "hi"}])
    llm(task, rec, prompt_format="chatml")([{"input": "hi"}])
    assert rec.calls[0][0] == [[{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]]
    assert rec.calls[1][0][0].startswith("<|im_start|>system\nS<|im_end|>")


def test_composition_checks():
    rec = Recorder()
    with pytest.raises(ConfigError, match="Task"):
        llm("text-generation", rec)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="callable"):
        llm(TG, "echo")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="known formats"):
        llm(TG, rec, prompt_format="nope")
    rec.prompt_format = "nope"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="known formats"):
        llm(TG, rec)  # the backend's natural format is checked when composing, not at the first row


def test_check_params_is_called_when_composing():
    class NoSeed(Recorder):
        def check_params(self, params):
            if params.seed is not None:
                raise ConfigError("NoSeed cannot honour seed")

    llm(TG, NoSeed())
    with pytest.raises(ConfigError, match="cannot honour seed"):
        llm(TG, NoSeed(), params=GenerationParams(seed=1))


def test_llm_is_frozen_and_comparable():
    gen = llm(TG, backends.echo())
    assert isinstance(gen, LLM)
    with pytest.raises(AttributeError):
        gen.model_name = "x"  # type: ignore[misc]
    assert gen == llm(TG, backends.echo())


# ---- the same results whatever mix of good and bad rows (fast and careful paths agree) ----


def _parse_unless_marked(raw: str) -> dict:
    if "PARSE" in raw:
        raise ParseError("marked unparsable")
    return {"text": raw}


MARKED = Task("marked", lambda r: Prompt("", r["input"]), _parse_unless_marked, "input", "text")


def expected_by_hand(inputs, k):
    """What the LLM must return, computed row by row from the echo backend's pure generation()."""
    params = GenerationParams(num_generations=k)
    empty = {"model_name": "echo", "prompt_used": None, "raw_output": None, "parsed_output": None}
    out, failures = [], []
    for i, row in enumerate(inputs):
        if "input" not in row:
            out.append([dict(empty) for _ in range(k)])
            failures.append((i, None, "input"))
            continue
        row_out = []
        for g in range(k):
            if "FAIL" in row["input"]:
                row_out.append({**empty, "prompt_used": row["input"]})
                failures.append((i, g, "backend"))
                continue
            raw = generation(row["input"], params, g)
            parsed = None if "PARSE" in raw else {"text": raw}
            if parsed is None:
                failures.append((i, g, "parse"))
            row_out.append(
                {"model_name": "echo", "prompt_used": row["input"], "raw_output": raw, "parsed_output": parsed}
            )
        out.append(row_out)
    return out, sorted(failures, key=lambda f: (f[2] != "input", f[0], f[1] or 0))


ROW = st.one_of(
    st.builds(lambda w: {"input": w}, st.sampled_from(["a b", "c", "FAIL d", "PARSE e", "f PARSE", ""])),
    st.just({"not_input": "x"}),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(ROW, max_size=8), st.integers(min_value=1, max_value=3))
def test_any_mix_of_rows_gives_the_by_hand_result(inputs, k):
    res = llm(MARKED, backends.echo(fail_on="FAIL")).run(inputs, num_generations=k)
    out, failures = expected_by_hand(inputs, k)
    assert res.outputs == out
    got = [(f.row, f.generation, f.stage) for f in res.failures]
    assert sorted(got, key=lambda f: (f[2] != "input", f[0], f[1] or 0)) == failures


def test_inputs_may_be_any_sequence_or_iterable_and_rows_any_mapping():
    from types import MappingProxyType

    gen = llm(TG, Recorder())
    expected = gen([{"input": "a"}, {"input": "b"}])
    assert gen(({"input": "a"}, {"input": "b"})) == expected
    assert gen(iter([{"input": "a"}, {"input": "b"}])) == expected
    assert gen([MappingProxyType({"input": "a"}), {"input": "b"}]) == expected


@pytest.mark.parametrize("inputs", [{"input": "one row"}, "a string", b"bytes"])
def test_a_single_row_or_a_string_is_not_taken_for_a_list_of_rows(inputs):
    rec = Recorder()
    with pytest.raises(InputError, match=r"list of dicts.*pass \[row\]"):
        llm(TG, rec)(inputs)
    assert rec.calls == []


def test_close_and_with_release_the_backend():
    class Closable:
        closed = 0

        def __call__(self, prompts, params):
            return [[f"{p}!"] * params.num_generations for p in prompts]

        def close(self):
            self.closed += 1

    backend = Closable()
    with llm(tasks.text_generation(system_prompt=""), backend) as gen:
        assert gen([{"input": "hi"}])[0][0]["raw_output"].endswith("hi!")
        assert backend.closed == 0
    assert backend.closed == 1
    llm(tasks.text_generation(), backends.echo()).close()  # a backend without close() is fine


def test_first_generation_seeds_the_call_as_those_generations():
    from fnlabel import GenerationParams
    from fnlabel.errors import ConfigError
    from fnlabel.seeds import generation_seed
    from tests.procpool_helpers import SeedSampler

    gen = llm(tasks.text_generation(), SeedSampler(), GenerationParams(seed=11))
    rows = [{"input": "a"}, {"input": "b"}]
    head = gen.run(rows, 3).outputs
    tail = gen.run(rows, 2, first_generation=3).outputs
    assert [len(r) for r in tail] == [2, 2]
    assert tail[0][0]["raw_output"] == f"sample {generation_seed(11, 3)}"  # generation 3 of the row
    assert not {o["raw_output"] for o in head[0]} & {o["raw_output"] for o in tail[0]}
    assert gen.run(rows, 2, first_generation=0).outputs == [r[:2] for r in head]
    with pytest.raises(ConfigError, match="first_generation"):
        gen.run(rows, 2, first_generation=-1)


# ---- mistakes of the caller get errors that say what to do ----


def test_python_api_mistakes_raise_errors_that_say_what_to_do() -> None:
    from fnlabel import BackendError, InputError

    task = tasks.text_generation()
    with pytest.raises(ConfigError, match=r"LLM.model_name must be a non-empty string, got 5"):
        llm(task, backends.echo(), model_name=5)  # type: ignore[arg-type]
    gen = llm(task, backends.echo())
    with pytest.raises(InputError, match=r"each input must be a dict of the task's keys \(input\): row 0 is a str"):
        gen(["a", "b"])  # type: ignore[list-item]
    with pytest.raises(InputError, match="inputs must be a list of dicts, got a NoneType"):
        gen(None)  # type: ignore[arg-type]

    def ints(prompts, params):
        return [[123] * params.num_generations for _ in prompts]

    with pytest.raises(BackendError, match=r"returned a int \(123\) for prompt 0, generation 0: a generation is a str"):
        llm(task, ints)([{"input": "x"}])

    def broken(prompt):
        raise KeyError("system")

    formatted = llm(task, backends.echo(), prompt_formatting_fn=broken)
    with pytest.raises(ConfigError, match=r"prompt_formatting_fn .*broken raised on row 0: KeyError"):
        formatted([{"input": "x"}, {"input": "y"}])  # a bug of the caller, not two bad rows


# --- metadata ------------------------------------------------------------------------------------


def test_metadata_is_a_fifth_key_only_when_asked_for():
    plain = llm(TG, backends.echo())(rows(2), num_generations=2)
    assert all(set(o) == {"model_name", "prompt_used", "raw_output", "parsed_output"} for r in plain for o in r)
    two_words = [{"input": f"q{i} more"} for i in range(2)]
    out = llm(TG, backends.echo(), GenerationParams(max_new_tokens=1), metadata=True)(two_words, num_generations=2)
    for i, row in enumerate(out):
        for o in row:
            # echo: words are tokens, and max_new_tokens=1 keeps the first word of the prompt
            assert o["metadata"] == {"finish_reason": "length", "input_tokens": 2, "output_tokens": 1}
            assert o["raw_output"].endswith(f"] q{i}") and o["prompt_used"] == f"q{i} more"
    assert [[{k: v for k, v in o.items() if k != "metadata"} for o in r] for r in out] == llm(
        TG, backends.echo(), GenerationParams(max_new_tokens=1)
    )(two_words, num_generations=2), "the four keys are the same with or without metadata"


def test_metadata_of_plain_strings_failures_and_bad_rows_is_all_none():
    def gen(prompts, params):
        return [["x", GenerationFailure("quota")] for _ in prompts]

    res = llm(TG, gen, metadata=True).run([{"input": "a"}, {"nope": 1}], 2)
    none = {"finish_reason": None, "input_tokens": None, "output_tokens": None}
    assert [[o["metadata"] for o in row] for row in res.outputs] == [[none, none], [none, none]]
    assert [o["raw_output"] for o in res.outputs[0]] == ["x", None]


def test_logprobs_are_in_the_metadata_when_asked_for_and_refused_where_impossible():
    out = llm(TG, backends.echo(), GenerationParams(logprobs=0), metadata=True)([{"input": "a b"}])
    [[o]] = out
    assert [t["token"] for t in o["metadata"]["logprobs"]][-2:] == ["a", "b"]
    assert all(t["top_logprobs"] == [] for t in o["metadata"]["logprobs"])

    def gen(prompts, params):
        return [["x"] for _ in prompts]

    with pytest.raises(ConfigError, match="cannot return logprobs: leave GenerationParams.logprobs"):
        llm(TG, gen, GenerationParams(logprobs=1))
    with pytest.raises(ConfigError, match="logprobs"):
        GenerationParams(logprobs=21)
