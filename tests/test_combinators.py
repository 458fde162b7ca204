"""Each combinator against doing the same thing by hand."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fnlabel import (
    BackendError,
    ConfigError,
    Prompt,
    RowFailure,
    backends,
    llm,
    tasks,
    threaded,
    with_prompt_format,
    with_prompt_formatting_fn,
)
from fnlabel.combinators.futures import chunks, gather
from fnlabel.combinators.threads import Threaded
from fnlabel.llm import LLMBase

TASK = tasks.text_generation(system_prompt="Be brief.")
ROWS = [{"input": f"question {i}"} for i in range(10)]


def qa(p: Prompt) -> str:
    return f"SYS={p.system_prompt} Q={p.formatted_prompt} A:"


def prompts_used(out) -> list:
    return [row[0]["prompt_used"] for row in out]


# ---- with_prompt_format / with_prompt_formatting_fn ----


@pytest.mark.parametrize("fmt", ["default", "openai", "llama2", "chatml", "zephyr", "notus"])
def test_with_prompt_format_equals_setting_it_by_hand(fmt):
    gen = with_prompt_format(llm(TASK, backends.echo()), fmt)
    by_hand = llm(TASK, backends.echo(), prompt_format=fmt)
    assert gen == by_hand
    assert gen(ROWS, num_generations=2) == by_hand(ROWS, num_generations=2)


def test_with_prompt_format_overrides_a_previous_format_and_rejects_unknown():
    gen = with_prompt_format(with_prompt_format(llm(TASK, backends.echo()), "llama2"), "chatml")
    assert gen == llm(TASK, backends.echo(), prompt_format="chatml")
    with pytest.raises(ConfigError, match="known formats"):
        with_prompt_format(gen, "alpaca")


@pytest.mark.parametrize("fmt", [None, "default", "chatml", "openai"])
def test_with_prompt_formatting_fn_is_applied_whether_or_not_a_format_is_set(fmt):
    # distilabel 0.x ignored prompt_formatting_fn when a format was set (its issue #322)
    base = llm(TASK, backends.echo(), prompt_format=fmt)
    gen = with_prompt_formatting_fn(base, qa)
    by_hand = llm(TASK, backends.echo(), prompt_format=fmt, prompt_formatting_fn=qa)
    assert gen == by_hand
    out = gen(ROWS[:3])
    assert out == by_hand(ROWS[:3])
    assert prompts_used(out) == [qa(TASK.build_prompt(r)) for r in ROWS[:3]]


def test_formatting_fn_wins_over_a_format_set_afterwards():
    gen = with_prompt_format(with_prompt_formatting_fn(llm(TASK, backends.echo()), qa), "llama2")
    assert prompts_used(gen(ROWS[:2])) == [qa(TASK.build_prompt(r)) for r in ROWS[:2]]


def test_formatting_fn_may_return_chat_messages():
    def chat(p: Prompt) -> list[dict]:
        return [{"role": "user", "content": p.formatted_prompt.upper()}]

    out = with_prompt_formatting_fn(llm(TASK, backends.echo()), chat)([{"input": "hi"}])
    assert out[0][0]["prompt_used"] == [{"role": "user", "content": "HI"}]


def test_with_prompt_formatting_fn_rejects_a_non_callable():
    with pytest.raises(ConfigError, match="callable"):
        with_prompt_formatting_fn(llm(TASK, backends.echo()), "{prompt}")  # type: ignore[arg-type]


def test_format_combinators_reach_through_threaded():
    gen = threaded(llm(TASK, backends.echo()), 2)
    fmt = with_prompt_formatting_fn(with_prompt_format(gen, "zephyr"), qa)
    assert isinstance(fmt, Threaded) and fmt.num_threads == 2
    assert fmt.llm == llm(TASK, backends.echo(), prompt_format="zephyr", prompt_formatting_fn=qa)


def test_format_combinators_refuse_an_opaque_wrapper():
    class Opaque(LLMBase):  # an LLM-like of the user's that does not say how to reach inside it
        task, model_name = TASK, "x"

        def run(self, inputs, k=1, *, first_generation=0):
            raise AssertionError

    with pytest.raises(ConfigError, match="Opaque"):
        with_prompt_format(Opaque(), "chatml")


# ---- threaded ----


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("n_rows", "n_threads"), [(0, 3), (1, 4), (10, 1), (10, 3), (10, 10), (7, 16)])
def test_threaded_returns_a_future_equal_to_the_plain_result(n_rows, n_threads):
    plain = llm(TASK, backends.echo())
    rows = ROWS[:n_rows] + [{"no": "input"}] * (n_rows > 5)
    with threaded(plain, n_threads) as gen:
        fut = gen(rows, num_generations=3)
        assert isinstance(fut, Future)
        assert fut.result(timeout=20) == plain(rows, num_generations=3)
        assert gen.generate(rows, 2).result(timeout=20) == plain(rows, 2)
        assert gen.run(rows, 2) == plain.run(rows, 2)  # failures shifted to the right rows
        assert gen.task == plain.task and gen.model_name == plain.model_name


@pytest.mark.timeout(30)
def test_threaded_failures_point_at_the_original_rows():
    rows = [{"input": f"r{i}"} if i % 4 else {"input": f"BAD {i}"} for i in range(12)]
    res = threaded(llm(TASK, backends.echo(fail_on="BAD")), 3).run(rows)
    assert sorted({f.row for f in res.failures}) == [0, 4, 8]
    assert all(isinstance(f, RowFailure) and f.stage == "backend" for f in res.failures)
    assert [row[0]["raw_output"] is None for row in res.outputs] == [i % 4 == 0 for i in range(12)]


@pytest.mark.timeout(30)
def test_threaded_runs_chunks_concurrently():
    barrier = threading.Barrier(3, timeout=10)  # breaks (and fails the run) unless 3 calls are in flight at once

    def together(prompts, params):
        barrier.wait()
        return [[p] * params.num_generations for p in prompts]

    out = threaded(llm(TASK, together), 3)(ROWS[:9]).result(timeout=20)
    expected = [TASK.build_prompt(r).system_prompt + "\n" + r["input"] for r in ROWS[:9]]
    assert [row[0]["raw_output"] for row in out] == expected


@pytest.mark.timeout(30)
def test_an_exception_in_a_worker_fails_the_future_and_never_hangs():
    gen = threaded(llm(TASK, backends.echo(raise_on="boom", latency=0.05)), 4)
    rows = [*ROWS[:7], {"input": "boom"}, *ROWS[7:]]
    fut = gen(rows)
    assert isinstance(fut.exception(timeout=20), BackendError)
    with pytest.raises(BackendError, match="raise_on"):
        gen.run(rows)
    # the pool is still usable afterwards
    assert gen(ROWS[:3]).result(timeout=20) == llm(TASK, backends.echo())(ROWS[:3])


@pytest.mark.timeout(30)
def test_an_unexpected_exception_in_a_worker_fails_the_future():
    def broken(prompts, params):
        raise ZeroDivisionError("model crashed")

    fut = threaded(llm(TASK, broken), 2)(ROWS)
    assert isinstance(fut.exception(timeout=20), ZeroDivisionError)


@pytest.mark.timeout(30)
def test_threaded_composes_with_itself():
    plain = llm(TASK, backends.echo())
    assert threaded(threaded(plain, 2), 3)(ROWS, 2).result(timeout=20) == plain(ROWS, 2)


@pytest.mark.parametrize("n", [0, -1, 1.5, True, None])
def test_threaded_validates_num_threads(n):
    with pytest.raises(ConfigError, match="num_threads"):
        threaded(llm(TASK, backends.echo()), n)


def test_threaded_needs_an_llm():
    with pytest.raises(ConfigError, match="needs an LLM"):
        threaded(backends.echo(), 2)


def test_threaded_checks_num_generations_at_call_time():
    with pytest.raises(ConfigError, match="num_generations"):
        threaded(llm(TASK, backends.echo()), 2)(ROWS, num_generations=0)


def test_close_closes_the_inner_llm():
    closed = []

    class Closing(LLMBase):
        task, model_name = TASK, "c"

        def run(self, inputs, k=1, *, first_generation=0):
            return llm(TASK, backends.echo()).run(inputs, k)

        def close(self):
            closed.append(True)

    with threaded(Closing(), 2) as gen:
        assert len(gen(ROWS).result(timeout=20)) == len(ROWS)
    assert closed == [True]


# ---- chunks ----


@given(st.lists(st.integers(), max_size=60), st.integers(min_value=1, max_value=20))
def test_chunks_split_contiguously_into_near_equal_parts(items, n):
    parts = chunks(items, n)
    assert len(parts) == min(n, len(items))
    assert [x for _, chunk in parts for x in chunk] == items
    offset = 0
    for start, chunk in parts:
        assert start == offset and len(chunk) >= 1
        offset += len(chunk)
    sizes = [len(c) for _, c in parts]
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the larger chunks come first


def test_chunks_examples():
    assert chunks(list(range(7)), 3) == [(0, [0, 1, 2]), (3, [3, 4]), (5, [5, 6])]
    assert chunks([1, 2], 5) == [(0, [1]), (1, [2])]
    assert chunks([], 4) == []


# ---- gather ----


@pytest.mark.timeout(10)
def test_gather_combines_in_input_order_whatever_the_completion_order():
    with ThreadPoolExecutor(3) as pool:
        futs = [pool.submit(lambda d, v: (time.sleep(d), v)[1], d, v) for d, v in [(0.2, "a"), (0.0, "b"), (0.1, "c")]]
        assert gather(futs, lambda rs: "".join(rs)).result(timeout=5) == "abc"


def test_gather_of_nothing_and_of_done_futures():
    assert gather([], lambda rs: rs).result(timeout=1) == []
    done: Future = Future()
    done.set_result(2)
    assert gather([done, done], sum).result(timeout=1) == 4


def test_gather_fails_when_combine_fails():
    done: Future = Future()
    done.set_result(1)
    assert isinstance(gather([done], lambda rs: 1 / 0).exception(timeout=1), ZeroDivisionError)


@pytest.mark.timeout(20)
def test_gather_fails_fast_and_cancels_pending_futures_without_deadlock():
    # one worker: the second future is still pending when the first fails; cancelling it
    # runs gather's callback again in the same thread (this used to deadlock the worker)
    pool = ThreadPoolExecutor(1)

    def boom():
        time.sleep(0.1)
        raise RuntimeError("worker failed")

    first, pending = pool.submit(boom), pool.submit(time.sleep, 0.01)
    fut = gather([first, pending], lambda rs: rs)
    assert isinstance(fut.exception(timeout=5), RuntimeError)
    closer = threading.Thread(target=pool.shutdown, kwargs={"wait": True}, daemon=True)
    closer.start()
    closer.join(timeout=5)
    assert not closer.is_alive(), "the pool's worker thread hung"
    assert pending.cancelled()


def test_gather_reports_a_cancelled_input():
    f: Future = Future()
    f.cancel()
    assert isinstance(gather([f], lambda rs: rs).exception(timeout=1), ConfigError)


def test_threaded_and_submit_refuse_a_single_row():
    from fnlabel import InputError

    with pytest.raises(InputError, match="list of dicts"):
        threaded(llm(TASK, backends.echo()), 2)({"input": "x"})
    with pytest.raises(InputError, match="list of dicts"):
        llm(TASK, backends.echo()).submit({"input": "x"})


@pytest.mark.timeout(20)
def test_close_waits_for_running_chunks_before_closing_the_inner_llm():
    # closing the backend under a running generation frees a local model mid-call (llama.cpp: SIGSEGV)
    events = []

    class Slow:
        model_name = "slow"

        def __call__(self, prompts, params):
            events.append("start")
            time.sleep(0.3)
            events.append("end")
            return [["out"] * params.num_generations for _ in prompts]

        def close(self):
            events.append("close")

    gen = threaded(llm(TASK, Slow()), 2)
    fut = gen(ROWS[:4])
    while events.count("start") < 2:
        time.sleep(0.01)
    gen.close()
    assert events == ["start", "start", "end", "end", "close"]
    assert len(fut.result(timeout=5)) == 4  # what was submitted before close() is answered
    gen.close()  # idempotent
    assert events.count("close") == 1
    with pytest.raises(BackendError, match="closed"):
        gen(ROWS[:1])


# ---- the LLM contract ----


def test_every_combinator_and_the_chain_implement_the_llm_contract(tmp_path) -> None:
    """Each composes with the others through the contract alone: first_generation, submit, map_inner, close."""
    import fnlabel
    from fnlabel.backends import EchoConfig
    from fnlabel.combinators.chain import Chain
    from fnlabel.types import LLMLike, is_llm_like

    params = fnlabel.GenerationParams(seed=3)
    plain = llm(TASK, backends.echo(), params)
    rows = ROWS[:3]
    direct = plain.run(rows, 2, first_generation=1).outputs  # generations 1 and 2 of each row
    # by hand: a pool gives each member its share of the indices; a chain labels with its own count
    shares = zip(plain.run(rows, 1, first_generation=1).outputs, plain.run(rows, 1, first_generation=2).outputs)
    by_hand = {"pooled": [a + b for a, b in shares], "chain": plain.run(rows, 1).outputs}
    spec = fnlabel.LLMSpec(TASK, EchoConfig(), params)
    with fnlabel.in_process(spec) as child:
        kinds = {
            "llm": plain,
            "threaded": threaded(plain, 2),
            "pooled": fnlabel.pooled([plain, llm(TASK, backends.echo(), params)]),
            "cached": fnlabel.cached(plain, tmp_path / "c.sqlite"),
            "in_process": child,
            "chain": Chain(plain, plain, ()),
        }
        for name, composed in kinds.items():
            assert is_llm_like(composed), name
            if name != "in_process":  # (its task property waits for the child: checked above without it)
                assert isinstance(composed, LLMLike), name
            expected = by_hand.get(name, direct)
            assert composed.run(rows, 2, first_generation=1).outputs == expected, name
            assert composed.submit(rows, 2, first_generation=1).result(timeout=60).outputs == expected, name
            assert composed.max_concurrency == 1, name
            with composed as entered:
                assert entered is composed
        with pytest.raises(
            ConfigError, match="cannot change the prompt format of InProcess: apply it to the LLM before"
        ):
            with_prompt_format(child, "chatml")
    chatml = with_prompt_format(kinds["chain"], "chatml")  # reaches both stages
    assert chatml.generator.prompt_format == chatml.labeller.prompt_format == "chatml"
