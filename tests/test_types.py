"""GenerationParams, Prompt, GenerationFailure and LLMOutput as plain values."""

from __future__ import annotations

import math
import pickle

import pytest

import fnlabel
from fnlabel import ConfigError, GenerationFailure, GenerationParams, LLMOutput, Prompt

# field -> (values that must be rejected, allowed range text in the message, values that must be accepted)
BOUNDS = {
    "max_new_tokens": ([0, -1, 1.5, "8", True, None, 2**20 + 1], ("[1, 1048576]",), [1, 4096, 2**20]),
    "temperature": ([-0.01, -1, math.inf, math.nan, "0.5", None, True], (">= 0",), [0, 0.0, 1, 2.5]),
    "top_k": ([0, -1, 2.5, "4", False], (">= 1", "[1, inf]"), [None, 1, 50]),
    "top_p": ([0, 0.0, -0.1, 1.5, 1.0001, None, math.nan], ("(0, 1]",), [1e-6, 0.5, 1, 1.0]),
    "frequency_penalty": ([-2.01, 2.01, 3, None, math.inf], ("[-2, 2]",), [-2, 0, 2.0]),
    "presence_penalty": ([-2.01, 2.01, -3, None, "1"], ("[-2, 2]",), [-2.0, 0.5, 2]),
    "seed": ([-1, 1.0, "1", True], (">= 0", "[0, inf]"), [None, 0, 2**40]),
    "num_generations": ([0, -3, 1.0, None, True, 1001], ("[1, 1000]",), [1, 16, 1000]),
}


def test_defaults():
    p = GenerationParams()
    assert (p.max_new_tokens, p.temperature, p.top_k, p.top_p) == (128, 0.7, None, 1.0)
    assert (p.frequency_penalty, p.presence_penalty, p.seed, p.stop, p.num_generations) == (0.0, 0.0, None, (), 1)


@pytest.mark.parametrize("field", sorted(BOUNDS))
def test_every_field_rejects_out_of_range_values_naming_field_and_range(field):
    bad, allowed, _good = BOUNDS[field]
    for value in bad:
        with pytest.raises(ConfigError) as err:
            GenerationParams(**{field: value})
        msg = str(err.value)
        assert f"GenerationParams.{field}" in msg, msg
        assert any(a in msg for a in allowed), msg
        assert repr(value) in msg, msg


@pytest.mark.parametrize("field", sorted(BOUNDS))
def test_every_field_accepts_values_at_its_bounds(field):
    for value in BOUNDS[field][2]:
        got = getattr(GenerationParams(**{field: value}), field)
        assert got == value


def test_int_values_of_float_fields_become_floats():
    p = GenerationParams(temperature=1, top_p=1, frequency_penalty=-2, presence_penalty=2)
    assert all(type(v) is float for v in (p.temperature, p.top_p, p.frequency_penalty, p.presence_penalty))


def test_error_is_a_value_error_and_an_fnlabel_error():
    with pytest.raises(ValueError):
        GenerationParams(top_p=1.5)
    with pytest.raises(fnlabel.FnlabelError, match=r"top_p must be a number in \(0, 1\], got 1.5"):
        GenerationParams(top_p=1.5)


@pytest.mark.parametrize(
    ("stop", "expected"),
    [(None, ()), ("###", ("###",)), (["a", "b"], ("a", "b")), (("x",), ("x",)), ([], ())],
)
def test_stop_is_converted_to_a_tuple_of_strings(stop, expected):
    assert GenerationParams(stop=stop).stop == expected


@pytest.mark.parametrize("stop", ["", ["a", ""], [1], 123, ["a", None]])
def test_stop_rejects_empty_and_non_strings(stop):
    with pytest.raises(ConfigError, match="GenerationParams.stop"):
        GenerationParams(stop=stop)


def test_params_are_frozen_hashable_and_picklable():
    p = GenerationParams(max_new_tokens=8, temperature=0.0, top_k=5, seed=3, stop=["\n"], num_generations=2)
    with pytest.raises(AttributeError):
        p.temperature = 1.0  # type: ignore[misc]
    same = GenerationParams(max_new_tokens=8, temperature=0, top_k=5, seed=3, stop="\n", num_generations=2)
    assert hash(p) == hash(same)
    assert {p: 1}[pickle.loads(pickle.dumps(p))] == 1
    assert pickle.loads(pickle.dumps(p)) == p


def test_replace_returns_a_validated_copy():
    p = GenerationParams()
    q = p.replace(num_generations=3, stop="END")
    assert (q.num_generations, q.stop) == (3, ("END",))
    assert p.num_generations == 1
    with pytest.raises(ConfigError, match="num_generations"):
        p.replace(num_generations=0)


def test_prompt_and_failure_records():
    pr = Prompt("sys", "user")
    assert (pr.system_prompt, pr.formatted_prompt) == ("sys", "user")
    assert pickle.loads(pickle.dumps(pr)) == pr and hash(pr) == hash(Prompt("sys", "user"))
    with pytest.raises(TypeError):
        Prompt(None, "x")  # type: ignore[arg-type]
    f = GenerationFailure("retries exhausted")
    assert f.error == "retries exhausted" and pickle.loads(pickle.dumps(f)) == f


def test_llm_output_has_the_distilabel_keys_and_an_optional_metadata():
    assert LLMOutput.__required_keys__ == {"model_name", "prompt_used", "raw_output", "parsed_output"}
    assert LLMOutput.__optional_keys__ == {"metadata"}
