"""pooled: each input's generations spread over several LLMs."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fnlabel
from fnlabel import BackendError, ConfigError, RowFailure, in_process, pooled, tasks, threaded
from fnlabel.backends import echo
from fnlabel.combinators import with_prompt_format, with_prompt_formatting_fn
from fnlabel.combinators.pool import Pooled, split_generations
from fnlabel.types import Prompt
from tests import procpool_helpers as helpers

TASK = helpers.TASK
INPUTS = [{"input": "one two"}, {"input": "three"}]


def member(name: str, **options) -> fnlabel.LLM:
    return fnlabel.llm(TASK, echo(model_name=name, **options))


def raw(rows):
    return [[o["raw_output"] for o in row] for row in rows]


def names(rows):
    return [[o["model_name"] for o in row] for row in rows]


@pytest.mark.parametrize(
    ("n", "k", "shares"),
    [(1, 3, [1, 0, 0]), (2, 3, [1, 1, 0]), (3, 3, [1, 1, 1]), (5, 3, [2, 2, 1]), (7, 2, [4, 3]), (6, 2, [3, 3])],
    ids=["n<k", "n<k-2", "n=k", "n>k", "n>k-odd", "n>k-even"],
)
def test_split_arithmetic(n, k, shares):
    assert split_generations(n, k) == shares


@given(st.integers(1, 200), st.integers(1, 20))
def test_split_sums_to_n_fairly_in_fixed_order(n, k):
    shares = split_generations(n, k)
    assert len(shares) == k and sum(shares) == n
    assert shares == sorted(shares, reverse=True) and shares[0] - shares[-1] <= 1


@pytest.mark.parametrize("n", [1, 3, 5], ids=["n<k", "n=k", "n>k"])
def test_outputs_are_each_members_share_in_member_order(n, tmp_path):
    logs = [tmp_path / f"{name}.log" for name in "abc"]
    members = [member(name, call_log=str(log)) for name, log in zip("abc", logs)]
    pool = pooled(members)
    got = pool(INPUTS, n)
    shares = split_generations(n, 3)
    by_hand = [[] for _ in INPUTS]
    for m, share in zip([member(x) for x in "abc"], shares):
        if share:
            for i, row in enumerate(m(INPUTS, share)):
                by_hand[i].extend(row)
    assert raw(got) == raw(by_hand) and names(got) == names(by_hand)
    expected_names = [name for name, share in zip("abc", shares) for _ in range(share)]
    assert names(got) == [expected_names] * len(INPUTS)
    # members with no share were not called at all
    for log, share in zip(logs, shares):
        assert (log.read_text().count("g") if log.exists() else 0) == share * len(INPUTS)


def test_reruns_give_the_same_outputs():
    pool = pooled([member("a"), member("b")])
    assert pool(INPUTS, 5) == pool(INPUTS, 5)


def test_members_run_concurrently():
    # each backend returns only when both are inside generate() at once: a sequential pool would fail
    barrier = threading.Barrier(2)
    members = [fnlabel.llm(TASK, helpers.make_barrier_backend(barrier, name)) for name in ("x", "y")]
    assert names(pooled(members)([{"input": "hi"}], 2)) == [["x", "y"]]


def test_pooled_of_one_is_that_member():
    only = member("solo")
    assert pooled([only]) is only
    assert pooled(iter([only]))(INPUTS, 3) == only(INPUTS, 3)


def test_incompatible_tasks_are_refused_with_the_mismatch():
    other = tasks.Task(
        name="judge",
        build_prompt=TASK.build_prompt,
        parse=TASK.parse,
        input_keys=("instruction",),
        output_keys=("generations",),
    )
    with pytest.raises(
        ConfigError,
        match=r"member 1 \(b, task 'judge'\) has input_keys=\('instruction',\).*"
        r"member 0 \(a, task 'text-generation'\) has input_keys=\('input',\)",
    ):
        pooled([member("a"), fnlabel.llm(other, echo(model_name="b"))])
    renamed = tasks.Task(
        name="tg2", build_prompt=TASK.build_prompt, parse=TASK.parse, input_keys=("input",), output_keys=("text",)
    )
    with pytest.raises(ConfigError, match=r"output_keys=\('text',\)"):
        pooled([member("a"), member("b"), fnlabel.llm(renamed, echo())])


def test_non_llms_and_empty_lists_are_refused():
    with pytest.raises(ConfigError, match="at least one"):
        pooled([])
    with pytest.raises(ConfigError, match="member 1 is a Echo, not an LLM"):
        pooled([member("a"), echo()])
    with pytest.raises(ConfigError, match="list of LLMs"):
        pooled(member("a"))


def test_a_failing_member_loses_only_its_share():
    pool = pooled([member("a"), member("b", raise_on="two"), member("c")])
    res = pool.run(INPUTS, 5)  # shares 2, 2, 1: b makes pooled generations 2 and 3
    assert names(res.outputs) == [["a", "a", "b", "b", "c"]] * 2
    for row in res.outputs:
        assert [o["raw_output"] is None for o in row] == [False, False, True, True, False]
        assert row[2]["parsed_output"] is None
    assert [(f.row, f.generation, f.stage) for f in res.failures] == [
        (0, 2, "backend"),
        (0, 3, "backend"),
        (1, 2, "backend"),
        (1, 3, "backend"),
    ]
    assert all("pooled member 1 (b) failed" in f.error and "raise_on" in f.error for f in res.failures)
    assert pool(INPUTS, 1) == member("a")(INPUTS, 1)  # b has no share: nothing fails


def test_the_call_raises_only_when_every_called_member_fails():
    broken = pooled([member("a", raise_on="one"), member("b", raise_on="one")])
    with pytest.raises(BackendError, match=r"every member failed: member 0 \(a\).*member 1 \(b\)"):
        broken(INPUTS, 2)
    with pytest.raises(BackendError, match="raise_on"):  # one member called: its own error, unchanged
        broken(INPUTS, 1)


def test_member_failures_are_renumbered_and_bad_rows_reported_once():
    pool = pooled([member("a"), member("b", fail_on="three")])
    res = pool.run([{"input": "one"}, {"input": "three"}, {"nope": 1}], 4)
    assert [(f.row, f.generation, f.stage) for f in res.failures] == [
        (1, 2, "backend"),
        (1, 3, "backend"),
        (2, None, "input"),
    ]
    assert [o["raw_output"] is None for o in res.outputs[1]] == [False, False, True, True]
    assert len(res.outputs[2]) == 4


def test_prompt_format_reaches_every_member():
    pool = with_prompt_format(pooled([member("a"), threaded(member("b"), 2)]), "chatml")
    assert isinstance(pool, Pooled)
    assert all(o["prompt_used"].startswith("<|im_start|>") for o in pool([{"input": "hi"}], 2)[0])
    fn = with_prompt_formatting_fn(pool, lambda p: f"Q: {p.formatted_prompt}")
    assert [o["prompt_used"] for o in fn([{"input": "hi"}], 2)[0]] == ["Q: hi", "Q: hi"]


def test_pooled_can_be_threaded_and_nested():
    pool = pooled([member("a"), pooled([member("b"), member("c")])])
    assert names(pool([{"input": "x"}], 4)) == [["a", "a", "b", "c"]]
    assert names(threaded(pool, 2)(INPUTS, 2).result(timeout=30)) == [["a", "b"]] * 2


def test_plain_threaded_and_in_process_members_mix(tmp_path):
    with in_process(helpers.echo_llm) as child:
        pool = pooled([member("plain"), threaded(member("threads"), 2), child])
        got = pool(INPUTS, 4)
        child_name = f"echo-pid-{child.pid}"
        assert names(got) == [["plain", "plain", "threads", child_name]] * 2
        by_hand = [
            p + t + c
            for p, t, c in zip(member("plain")(INPUTS, 2), member("threads")(INPUTS, 1), helpers.echo_llm()(INPUTS, 1))
        ]
        assert raw(got) == raw(by_hand)
        # what cannot reach into the child says what it is and how to do it instead
        with pytest.raises(ConfigError, match="cannot cache InProcess: apply cached"):
            fnlabel.cached(pool, tmp_path / "c.sqlite")
        with pytest.raises(ConfigError, match="cannot change the prompt format of InProcess"):
            with_prompt_format(pool, "chatml")


def test_a_killed_in_process_member_loses_only_its_share():
    child = in_process(helpers.slow_echo_llm)
    try:
        pool = pooled([member("a"), child])
        fut = pool.submit(INPUTS, 2)
        time.sleep(0.3)
        os.kill(child.pid, signal.SIGKILL)
        res = fut.result(timeout=10)
        assert names(res.outputs) == [["a", "slow"]] * 2
        assert [(f.row, f.generation) for f in res.failures] == [(0, 1), (1, 1)]
        assert all("SIGKILL" in f.error for f in res.failures)
    finally:
        child.close()


def test_an_in_process_member_must_load_before_pooling():
    broken = in_process(helpers.broken_factory)
    try:
        with pytest.raises(BackendError, match="factory exploded"):
            pooled([member("a"), broken])
    finally:
        broken.close()


@pytest.mark.slow
def test_real_llama_cpp_members_in_and_out_of_process():
    inputs = [{"input": "Name a fruit."}]
    with in_process(helpers.llama_llm) as child:
        pool = pooled([helpers.llama_llm(), child])
        got = pool(inputs, 2)
    assert names(got) == [["smollm2-llama-cpp"] * 2]
    texts = raw(got)[0]
    assert all(isinstance(t, str) and t.strip() for t in texts)
    # greedy decoding: the parent's share and the child's share both match generation 0 made by hand
    by_hand = helpers.llama_llm()(inputs, 1)[0][0]["raw_output"]
    assert texts == [by_hand, by_hand]


def test_pooled_is_exported():
    assert fnlabel.pooled is pooled and "pooled" in fnlabel.__all__
    assert isinstance(RowFailure(0, 0, "backend", "x"), RowFailure) and Prompt("", "x")


def test_a_single_row_is_refused_not_split_into_its_keys():
    pool = pooled([member("a"), member("b")])
    with pytest.raises(fnlabel.InputError, match="list of dicts"):
        pool({"input": "x"}, 2)
    with pytest.raises(fnlabel.InputError, match="list of dicts"):
        pool.submit("a question", 2)
    assert len(pool(iter(INPUTS), 2)) == 2  # any other iterable of rows is fine


# ---- members that share a model: each makes its own generation indices ----


def _texts(rows):
    return [[o["raw_output"] for o in row] for row in rows]


def test_seeded_members_sharing_a_model_do_not_repeat_each_other():
    # two replicas of one model with the recipe's seed: each used to sample with the same seeds
    params = fnlabel.GenerationParams(seed=7)
    pool = pooled([fnlabel.llm(TASK, helpers.SeedSampler(), params) for _ in range(2)])
    got = _texts(pool(INPUTS, 5))
    assert all(len(set(row)) == 5 for row in got), got
    assert _texts(pool(INPUTS, 5)) == got  # and a rerun reproduces them
    single = _texts(fnlabel.llm(TASK, helpers.SeedSampler(), params)(INPUTS, 5))
    assert [row[:3] for row in got] == [row[:3] for row in single]  # member 0 makes generations 0..2
    assert [row[3] for row in got] == [row[3] for row in single]  # member 1's first is generation 3


def test_cached_members_sharing_a_model_do_not_share_entries(tmp_path):
    calls = []

    class Counting(helpers.SeedSampler):
        def __call__(self, prompts, params):
            calls.append(len(prompts) * params.num_generations)
            return super().__call__(prompts, params)

    pool = fnlabel.cached(pooled([fnlabel.llm(TASK, Counting()) for _ in range(2)]), tmp_path / "c.sqlite")
    got = _texts(pool(INPUTS, 4))
    assert all(len(set(row)) == 4 for row in got), got  # unseeded samples: member 1 read member 0's entries
    assert sum(calls) == 8
    assert _texts(pool(INPUTS, 4)) == got and sum(calls) == 8  # a rerun is served from the cache
    single = fnlabel.cached(fnlabel.llm(TASK, Counting()), tmp_path / "c.sqlite")
    assert _texts(single(INPUTS, 4)) == got and sum(calls) == 8  # the pool's generations are generations 0..3


@pytest.mark.timeout(120)
def test_in_process_replicas_with_a_seed_make_distinct_generations():
    with pooled([in_process(helpers.seeded_sampler_llm) for _ in range(2)]) as pool:
        got = _texts(pool(INPUTS, 4))
    assert all(len(set(row)) == 4 for row in got), got
    assert [row[:3] for row in got] == [row[:3] for row in _texts(helpers.seeded_sampler_llm()(INPUTS, 3))]


def test_close_closes_every_member_even_when_one_fails():
    closed = []

    class Closing:
        model_name = "closing"

        def __init__(self, fail):
            self.fail = fail

        def __call__(self, prompts, params):
            return echo()(prompts, params)

        def close(self):
            closed.append(self.fail)
            if self.fail:
                raise RuntimeError("client already gone")

    pool = pooled([fnlabel.llm(TASK, Closing(True)), fnlabel.llm(TASK, Closing(False))])
    with pytest.raises(RuntimeError, match="already gone"):
        pool.close()
    assert closed == [True, False]  # the second member (an in_process child, say) is still released


@pytest.mark.timeout(60)
def test_threaded_in_process_close_keeps_the_child_close_timeout():
    # threaded's close waits for its chunks; an in_process inside drains within its own close_timeout
    child = in_process(helpers.slow_echo_llm, close_timeout=1.0)
    gen = threaded(child, 2)
    fut = gen(INPUTS)
    started = time.monotonic()
    gen.close()
    assert time.monotonic() - started < 20  # not the 60 s the child's call takes
    with pytest.raises(BackendError, match="closed"):
        fut.result(timeout=10)
    assert not child._state.process.is_alive()
