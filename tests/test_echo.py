"""The echo fake backend: deterministic, sensitive to prompt/params/index, scripted latency and failures."""

from __future__ import annotations

import pickle
import time

import pytest

from fnlabel import BackendError, ConfigError, GenerationFailure, GenerationParams
from fnlabel.backends import BACKENDS, Echo, EchoConfig, config_class, echo
from fnlabel.backends.echo import generation, prompt_text
from fnlabel.types import Generation

P = GenerationParams()


def test_returns_num_generations_records_per_prompt_in_order():
    out = echo()(["a b", "c", "d e f"], P.replace(num_generations=3))
    assert [len(g) for g in out] == [3, 3, 3]
    assert all(isinstance(s, Generation) for g in out for s in g)
    assert [[s.text.split("] ", 1)[1] for s in g] for g in out] == [["a b"] * 3, ["c"] * 3, ["d e f"] * 3]
    assert [[s.text[:3] for s in g] for g in out] == [["[0:", "[1:", "[2:"]] * 3


def test_words_are_its_tokens_and_a_cut_text_says_length():
    [[full]] = echo()(["one two three"], P)
    assert (full.finish_reason, full.input_tokens, full.output_tokens) == ("stop", 3, 3)
    [[cut]] = echo()(["one two three"], P.replace(max_new_tokens=2))
    assert (cut.finish_reason, cut.output_tokens) == ("length", 2) and cut.text.endswith("] one two")
    [[scored]] = echo()(["a b"], P.replace(logprobs=1))
    assert scored.logprobs == (
        {"token": "a", "logprob": 0.0, "top_logprobs": [{"token": "a", "logprob": 0.0}]},
        {"token": "b", "logprob": 0.0, "top_logprobs": [{"token": "b", "logprob": 0.0}]},
    )


def test_is_deterministic_and_pure():
    gen = echo()
    assert gen(["x y"], P.replace(num_generations=2)) == gen(["x y"], P.replace(num_generations=2))
    assert echo()(["x y"], P) == gen(["x y"], P)


def test_output_depends_on_the_prompt_the_params_and_the_index():
    base = generation("hello world", P, 0)
    assert generation("hello there", P, 0) != base
    assert generation("hello world", P, 1) != base
    for change in [
        {"temperature": 0.0},
        {"top_p": 0.9},
        {"top_k": 5},
        {"seed": 1},
        {"frequency_penalty": 0.5},
        {"presence_penalty": -0.5},
        {"max_new_tokens": 64},
    ]:
        assert generation("hello world", P.replace(**change), 0) != base, change


def test_more_generations_do_not_change_earlier_ones():
    one = echo()(["q"], P)[0]
    three = echo()(["q"], P.replace(num_generations=3))[0]
    assert three[0] == one[0]


def test_max_new_tokens_bounds_words_and_stop_cuts():
    words = " ".join(f"w{i}" for i in range(20))
    assert generation(words, P.replace(max_new_tokens=3), 0).split("] ", 1)[1] == "w0 w1 w2"
    cut = generation("alpha beta STOP gamma", P.replace(stop=["STOP", "zzz"]), 0)
    assert cut.endswith("alpha beta ") and "gamma" not in cut


def test_chat_messages_become_role_lines():
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    assert prompt_text(msgs) == "system: S\nuser: hi"
    assert echo()([msgs], P)[0][0].text.endswith("system: S user: hi")


def test_latency_is_slept_per_call_and_per_prompt():
    start = time.monotonic()
    echo(latency=0.15)(["a", "b"], P)
    assert time.monotonic() - start >= 0.15
    start = time.monotonic()
    echo(latency_per_prompt=0.05)(["a", "b", "c", "d"], P)
    assert time.monotonic() - start >= 0.2


def test_fail_on_returns_generation_failures_for_matching_prompts_only():
    out = echo(fail_on=["BAD", "WORSE"])(["fine", "a BAD one", "WORSE"], P.replace(num_generations=2))
    assert all(isinstance(s, Generation) for s in out[0])
    for row in out[1:]:
        assert len(row) == 2 and all(isinstance(g, GenerationFailure) and "fail_on" in g.error for g in row)


def test_raise_on_fails_the_whole_call_naming_the_prompt():
    with pytest.raises(BackendError, match=r"prompt 1 contains 'boom'"):
        echo(raise_on="boom")(["ok", "kaboom"], P)
    assert echo(raise_on="boom")(["ok"], P)


def test_call_log_counts_produced_generations(tmp_path):
    log = tmp_path / "calls.log"
    gen = echo(call_log=str(log), fail_on="BAD")
    gen(["a", "b"], P.replace(num_generations=3))
    gen(["c", "BAD"], P.replace(num_generations=2))  # failures are not produced generations
    assert log.read_text().count("g\n") == 6 + 2
    echo(call_log=log)(["d"], P)  # a Path works too
    assert log.read_text().count("g\n") == 9


def test_natural_format_and_model_name():
    gen = echo(model_name="fake-7b", prompt_format="chatml")
    assert (gen.model_name, gen.prompt_format) == ("fake-7b", "chatml")
    assert (echo().model_name, echo().prompt_format) == ("echo", "default")


@pytest.mark.parametrize(
    "options",
    [{"latency": -0.1}, {"latency_per_prompt": "1"}, {"prompt_format": "nope"}, {"model_name": ""}, {"call_log": 3}],
)
def test_config_is_validated(options):
    with pytest.raises(ConfigError):
        echo(**options)


def test_config_record_is_hashable_picklable_and_registered():
    cfg = EchoConfig(model_name="m", fail_on=["x", "y"], latency=0.01)
    assert cfg.fail_on == ("x", "y") and hash(cfg) == hash(EchoConfig(model_name="m", fail_on=("x", "y"), latency=0.01))
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    gen = cfg.build()
    assert isinstance(gen, Echo) and pickle.loads(pickle.dumps(gen))(["q"], P) == gen(["q"], P)
    assert cfg.kind == "echo" and config_class("echo") is EchoConfig and "echo" in BACKENDS


def test_unknown_backend_kind_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        config_class("gpt5")
    for kind in BACKENDS:
        assert kind in str(err.value)
