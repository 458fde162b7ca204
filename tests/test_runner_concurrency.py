"""How many batches `fnlabel run` keeps going: one for a local model, enough to fill an HTTP backend."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import fnlabel
from fnlabel import GenerationParams, LLMSpec, in_process, llm, max_concurrency, pooled, tasks
from fnlabel.backends import echo
from fnlabel.backends.openai import OpenAIConfig
from fnlabel.combinators import threaded
from fnlabel.combinators.cache import cached
from fnlabel.combinators.chain import Chain
from fnlabel.errors import BackendError
from fnlabel.llm import LLMBase
from fnlabel.run import resolve_options, run_recipe
from tests.recipe_helpers import echo_recipe, questions, read_jsonl, write_jsonl, write_recipe
from tests.recipe_helpers import fnlabel as fnlabel_cli
from tests.servers.base import Fault
from tests.servers.openai_fault import FaultServer

LOCAL = "http://127.0.0.1:9/v1"  # never contacted: building a backend opens no connection


def _remote(concurrency: int) -> Any:
    return llm(tasks.text_generation(), OpenAIConfig(model="m", base_url=LOCAL, max_concurrency=concurrency).build())


def test_max_concurrency_passes_through_every_combinator(tmp_path: Path) -> None:
    a, b, local = _remote(8), _remote(3), llm(tasks.text_generation(), echo())
    assert max_concurrency(a) == 8 and max_concurrency(a.backend) == 8
    assert max_concurrency(local) == 1 and max_concurrency(object()) == 1
    assert max_concurrency(cached(a, tmp_path / "c.sqlite")) == 8
    assert max_concurrency(threaded(a, 2)) == 8
    assert max_concurrency(pooled([a, b])) == 3
    assert max_concurrency(Chain(a, b, ())) == 3
    assert max_concurrency(Chain(a, local, ())) == 1
    spec = LLMSpec(tasks.text_generation(), OpenAIConfig(model="m", base_url=LOCAL, max_concurrency=8))
    with in_process(spec, workers=4) as child:
        assert max_concurrency(child) == 4  # the child runs at most `workers` calls at once
    with in_process(
        LLMSpec(tasks.text_generation(), OpenAIConfig(model="m", base_url=LOCAL, max_concurrency=2)), workers=4
    ) as child:
        assert max_concurrency(child) == 2


class Tracked(LLMBase):
    """Wraps the built LLM: counts overlapping calls and finishes them in a random order."""

    def __init__(self, inner: Any, concurrency: int | None) -> None:
        self.inner, self.lock, self.running, self.most = inner, threading.Lock(), 0, 0
        self.concurrency = concurrency or 1
        self.task, self.model_name = inner.task, inner.model_name

    @property
    def max_concurrency(self) -> int:
        return self.concurrency

    def run(self, inputs: list[dict], k: int = 1, *, first_generation: int = 0) -> Any:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(random.uniform(0.01, 0.06))  # later batches often finish first
            return self.inner.run(inputs, k)
        finally:
            with self.lock:
                self.running -= 1


def _run_tracked(tmp_path: Path, concurrency: int | None, rows: int = 30) -> tuple[Tracked, list[dict]]:
    write_jsonl(tmp_path / "in.jsonl", questions(rows))
    recipe = fnlabel.load_recipe(echo_recipe(tmp_path, run="batch_size = 2"))
    seen: list[Tracked] = []

    def wrap(built: Any) -> Tracked:
        seen.append(Tracked(built, concurrency))
        return seen[-1]

    summary = run_recipe(recipe, resolve_options(recipe), wrap_llm=wrap)
    assert summary.rows_done == rows and summary.failed_rows == 0
    return seen[0], read_jsonl(tmp_path / "out.jsonl")


def test_a_local_llm_runs_one_batch_at_a_time(tmp_path: Path) -> None:
    tracked, out = _run_tracked(tmp_path, None)
    assert tracked.most == 1
    assert [r["input"] for r in out] == [q["input"] for q in questions(30)]


def test_a_concurrent_llm_overlaps_batches_and_output_stays_in_order(tmp_path: Path) -> None:
    tracked, out = _run_tracked(tmp_path, 5)  # ceil(5 / 2) + 1 = 4 batches at once
    assert tracked.most == 4
    assert [r["input"] for r in out] == [q["input"] for q in questions(30)]
    assert all(r["outputs"][0]["raw_output"].endswith(r["input"]) for r in out)


def _openai_recipe(tmp_path: Path, url: str, concurrency: int, run: str) -> Path:
    """An OpenAI recipe against ``url`` reading ``tmp_path/in.jsonl``, writing ``tmp_path/out.jsonl``."""
    return write_recipe(
        tmp_path / "r.toml",
        f"""
[task]
kind = "text-generation"
[backend]
kind = "openai"
model = "fault-model"
base_url = "{url}"
max_concurrency = {concurrency}
[run]
input = "{tmp_path / "in.jsonl"}"
output = "{tmp_path / "out.jsonl"}"
{run}
""",
    )


def test_fnlabel_run_keeps_max_concurrency_requests_in_flight_across_batches(tmp_path: Path) -> None:
    rows = questions(40)
    write_jsonl(tmp_path / "in.jsonl", rows)
    with FaultServer(latency=0.2) as srv:
        recipe = fnlabel.load_recipe(_openai_recipe(tmp_path, srv.url, 12, "batch_size = 4"))
        summary = run_recipe(recipe, resolve_options(recipe))
    assert summary.rows_done == 40 and summary.failed_rows == 0
    # 4 batches of 4 rows at once (16 requests) against a limit of 12: the server sees 12 at a time,
    # where one batch at a time would give it 4
    assert srv.max_in_flight == 12
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["input"] for r in out] == [r["input"] for r in rows]
    assert all(r["input"] in r["outputs"][0]["raw_output"] for r in out)


def test_params_do_not_change_the_hint() -> None:
    gen = llm(
        tasks.text_generation(),
        OpenAIConfig(model="m", base_url=LOCAL, max_concurrency=7).build(),
        GenerationParams(max_new_tokens=3),
    )
    assert gen.max_concurrency == 7


def _slow_except_first_batch(body: dict, _path: str) -> Fault:
    text = json.dumps(body)
    return Fault.error(400, "bad row") if ("number 0" in text or 'number 1"' in text) else Fault.slow(20)


def test_a_run_stopped_with_batches_in_flight_exits_at_once(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(20))
    with FaultServer(script=_slow_except_first_batch) as srv:
        recipe = _openai_recipe(tmp_path, srv.url, 8, "batch_size = 2\nmax_failures = 0")
        started = time.monotonic()
        res = fnlabel_cli("run", str(recipe), timeout=15)  # the slow answers would take 20 s
    assert res.returncode == 3, res.stderr
    assert "more than --max-failures 0" in res.stderr and time.monotonic() - started < 15
    assert [r["input"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["question number 0", "question number 1"]


def test_closing_a_backend_fails_calls_still_running_in_other_threads() -> None:
    outcome: list[BaseException] = []

    def call(backend: Any) -> None:
        try:
            backend(["a prompt"], GenerationParams())
        except BaseException as exc:
            outcome.append(exc)

    with FaultServer(script=lambda body, path: Fault.slow(20)) as srv:
        backend = OpenAIConfig(model="fault-model", base_url=srv.url).build()
        caller = threading.Thread(target=call, args=(backend,), daemon=True)  # daemon: a bug must not hang pytest
        caller.start()
        while not srv.requests:
            time.sleep(0.01)
        backend.close()
        caller.join(10)
    assert not caller.is_alive(), "the call still waits on a closed backend"
    assert len(outcome) == 1 and isinstance(outcome[0], BackendError)
    assert "closed while this call was running" in str(outcome[0])


def test_max_failures_resume_and_retry_failed_with_batches_in_flight(tmp_path: Path) -> None:
    rows = questions(40)
    for i in (5, 17, 18, 33):
        rows[i]["input"] += " boom"
    write_jsonl(tmp_path / "in.jsonl", rows)
    out, fails = tmp_path / "out.jsonl", tmp_path / "out.jsonl.failures.jsonl"
    seen: list[Tracked] = []

    def wrap(built: Any) -> Tracked:
        seen.append(Tracked(built, 8))  # ceil(8 / 2) + 1 = 5 batches at once, finishing in any order
        return seen[-1]

    def run(fail_on: str, **overrides: Any) -> Any:
        recipe = fnlabel.load_recipe(echo_recipe(tmp_path, backend=f'fail_on = ["{fail_on}"]', run="batch_size = 2"))
        return run_recipe(recipe, resolve_options(recipe, **overrides), wrap_llm=wrap)

    stopped = run("boom", max_failures=1)  # the batch of row 17 makes it 2: later batches in flight are dropped
    assert stopped.stopped and seen[-1].most > 1
    assert [r["id"] for r in read_jsonl(out)] == list(range(18))
    assert [f["row"] for f in read_jsonl(fails)] == [5, 17]

    resumed = run("boom")
    assert resumed.rows_run == 22 and resumed.stopped is None
    done = read_jsonl(out)
    assert [r["id"] for r in done] == list(range(40))
    assert [f["row"] for f in read_jsonl(fails)] == [5, 17, 18, 33]

    retried = run("number 17 ", retry_failed=True)
    assert retried.rows_run == 4 and retried.failed_rows == 1
    after = read_jsonl(out)
    assert [r["id"] for r in after] == list(range(40))
    assert [f["row"] for f in read_jsonl(fails)] == [17]
    assert [i for i, r in enumerate(after) if r["outputs"][0]["raw_output"] is None] == [17]
    assert [r for i, r in enumerate(after) if i not in (5, 17, 18, 33)] == [
        r for i, r in enumerate(done) if i not in (5, 17, 18, 33)
    ]


class Closing(Tracked):
    """A local model (no max_concurrency): records a close() that lands while a call is still inside it."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, None)
        self.closed_mid_call: bool | None = None

    def run(self, inputs: list[dict], k: int = 1, *, first_generation: int = 0) -> Any:
        with self.lock:
            self.running += 1
        try:
            if any("slow" in r["input"] for r in inputs):
                time.sleep(0.5)
            return self.inner.run(inputs, k)
        finally:
            with self.lock:
                self.running -= 1

    def close(self) -> None:
        with self.lock:
            self.closed_mid_call = self.running > 0


def test_a_local_model_is_not_closed_under_the_batch_computed_ahead(tmp_path: Path) -> None:
    # closing llama.cpp under the batch computed one ahead crashed the process (SIGSEGV on Ctrl-C)
    rows = questions(6)
    rows[0]["input"] += " boom"
    rows[2]["input"] += " slow"
    write_jsonl(tmp_path / "in.jsonl", rows)
    recipe = fnlabel.load_recipe(echo_recipe(tmp_path, backend='fail_on = ["boom"]', run="batch_size = 2"))
    seen: list[Closing] = []

    def wrap(built: Any) -> Closing:
        seen.append(Closing(built))
        return seen[-1]

    summary = run_recipe(recipe, resolve_options(recipe, max_failures=0), wrap_llm=wrap)
    assert summary.stopped and summary.rows_done == 2  # stopped after batch 0, batch 1 was running
    assert seen[0].closed_mid_call is False


def test_ctrl_c_while_a_local_model_computes_waits_for_it_before_closing(tmp_path: Path) -> None:
    import os
    import signal

    rows = questions(8)
    rows[2]["input"] += " slow"  # batch 1 interrupts the run, then computes 0.5 s more
    write_jsonl(tmp_path / "in.jsonl", rows)
    recipe = fnlabel.load_recipe(echo_recipe(tmp_path, run="batch_size = 2"))
    seen: list[Closing] = []

    class Interrupting(Closing):
        def run(self, inputs: list[dict], k: int = 1, *, first_generation: int = 0) -> Any:
            if not any("slow" in r["input"] for r in inputs):
                return self.inner.run(inputs, k)
            with self.lock:
                self.running += 1
            try:
                time.sleep(0.2)  # batch 0 is written; the main thread waits for this one
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C
                time.sleep(0.5)
                return self.inner.run(inputs, k)
            finally:
                with self.lock:
                    self.running -= 1

    def wrap(built: Any) -> Closing:
        seen.append(Interrupting(built))
        return seen[-1]

    logged: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, resolve_options(recipe), wrap_llm=wrap, log=logged.append)
    assert seen[0].closed_mid_call is False  # closed, once the batch was done
    assert logged == ["stopping: the batch in flight finishes first (Ctrl-C again to quit at once)"]
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [0, 1]
