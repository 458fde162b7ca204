"""in_process: an LLM built and run in a spawned child process."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import fnlabel
from fnlabel import BackendError, ConfigError, InputError, LLMSpec, in_process, tasks
from fnlabel.backends import EchoConfig
from tests import procpool_helpers as helpers

ROOT = Path(__file__).resolve().parents[1]
INPUTS = [{"input": "alpha beta"}, {"input": "gamma"}, {"input": "delta epsilon zeta"}]


def process_exists(pid: int) -> bool:
    """True while ``pid`` exists at all (a zombie counts: it has not been reaped)."""
    try:
        import psutil
    except ImportError:
        return os.path.exists(f"/proc/{pid}")
    return psutil.pid_exists(pid)


def wait_gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not process_exists(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def echo_child():
    with in_process(helpers.echo_llm, workers=4) as gen:
        yield gen


def test_outputs_equal_running_the_llm_by_hand(echo_child):
    by_hand = helpers.echo_llm()
    got = echo_child(INPUTS, 3).result(timeout=30)
    assert [[o["raw_output"] for o in row] for row in got] == [
        [o["raw_output"] for o in row] for row in by_hand(INPUTS, 3)
    ]
    assert all(len(row) == 3 for row in got)


def test_llm_is_built_only_in_the_child(echo_child):
    assert echo_child.model_name == f"echo-pid-{echo_child.pid}"
    assert echo_child.pid != os.getpid()
    assert echo_child.task.input_keys == ("input",)
    assert echo_child.task.output_keys == ("generations",)


def test_run_and_submit_report_failures(echo_child):
    res = echo_child.submit([{"input": "ok"}, {"wrong": 1}], 2).result(timeout=30)
    assert [f.row for f in res.failures] == [1]
    assert res.failures[0].stage == "input"
    assert echo_child.run([{"input": "x"}], 1).outputs[0][0]["raw_output"].endswith("x")


def test_many_requests_in_flight_are_never_mixed_up(echo_child):
    futures: dict[int, object] = {}

    def client(start: int) -> None:
        for i in range(start, start + 25):
            futures[i] = echo_child([{"input": f"request {i}"}] * (1 + i % 3), 1 + i % 4)

    threads = [threading.Thread(target=client, args=(s,)) for s in (0, 25, 50, 75)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(futures) == 100
    for i, fut in futures.items():
        rows = fut.result(timeout=60)
        assert len(rows) == 1 + i % 3
        for row in rows:
            assert len(row) == 1 + i % 4
            assert all(o["raw_output"].endswith(f"request {i}") for o in row)
            assert [o["raw_output"].split(":")[0] for o in row] == [f"[{g}" for g in range(1 + i % 4)]


def test_exception_in_run_fails_only_that_future_with_the_child_traceback():
    with in_process(helpers.raising_echo_llm) as gen:
        bad = gen([{"input": "boom"}])
        with pytest.raises(BackendError, match="contains 'boom'") as info:
            bad.result(timeout=30)
        assert any("raised in the" in note and "Traceback" in note for note in info.value.__notes__)
        # the child is still alive and answers the next request
        assert gen([{"input": "fine"}]).result(timeout=30)[0][0]["model_name"] == "raiser"


def test_child_killed_mid_request_fails_pending_and_later_calls_promptly():
    gen = in_process(helpers.slow_echo_llm)
    try:
        gen.wait_ready(60)
        pending = [gen([{"input": f"slow {i}"}]) for i in range(3)]
        time.sleep(0.3)  # the child is now sleeping inside the backend
        os.kill(gen.pid, signal.SIGKILL)
        for fut in pending:
            exc = fut.exception(timeout=10)  # the backend would sleep 60 s: an error within seconds
            assert isinstance(exc, BackendError)
            assert "SIGKILL" in str(exc) and "exit code -9" in str(exc)
        later = gen([{"input": "after"}])
        assert later.done() and isinstance(later.exception(), BackendError)
        assert wait_gone(gen.pid)
    finally:
        gen.close()


@pytest.mark.parametrize(
    ("text", "expected"), [("please exit", "exit code 3"), ("segv now", "SIGSEGV")], ids=["os._exit", "segfault"]
)
def test_child_crash_names_the_exit_code_or_signal(text, expected):
    with in_process(helpers.crashing_llm) as gen:
        assert gen([{"input": "fine"}]).result(timeout=30)[0][0]["model_name"] == "crasher"
        with pytest.raises(BackendError, match=expected):
            gen([{"input": text}]).result(timeout=30)


def test_factory_raising_gives_a_clear_error_everywhere():
    gen = in_process(helpers.broken_factory)
    try:
        early = gen([{"input": "x"}])
        with pytest.raises(BackendError, match="building the LLM failed.*factory exploded: no GPU here"):
            early.result(timeout=30)
        with pytest.raises(BackendError, match="factory exploded"):
            _ = gen.model_name
        with pytest.raises(BackendError, match="factory exploded"):
            gen([{"input": "y"}]).result(timeout=5)
        assert wait_gone(gen.pid)
    finally:
        gen.close()


def test_a_backend_config_alone_is_refused_with_the_fix():
    with in_process(EchoConfig()) as gen:
        with pytest.raises(BackendError, match=r"not an LLM.*LLMSpec\(task, config\)"):
            gen.wait_ready(30)


def test_llm_spec_record_builds_in_the_child():
    spec = LLMSpec(tasks.text_generation(system_prompt=""), EchoConfig(model_name="from-spec"))
    with in_process(spec) as gen:
        out = gen([{"input": "hello"}], 2).result(timeout=30)
    assert [o["model_name"] for o in out[0]] == ["from-spec", "from-spec"]
    assert out == spec.build()([{"input": "hello"}], 2)


def test_bad_specs_and_inputs_are_refused_in_the_parent(echo_child):
    with pytest.raises(ConfigError, match="picklable"):
        in_process(lambda: helpers.echo_llm())
    with pytest.raises(ConfigError, match="build()"):
        in_process(42)
    with pytest.raises(ConfigError, match="workers"):
        in_process(helpers.echo_llm, workers=0)
    with pytest.raises(InputError, match="picklable"):
        echo_child([{"input": threading.Lock()}])
    with pytest.raises(ConfigError, match="num_generations"):
        echo_child([{"input": "x"}], 0)
    # one row instead of a list of rows: its keys (or a string's characters) must not become rows
    with pytest.raises(InputError, match="list of dicts"):
        echo_child.submit({"input": "x"})
    with pytest.raises(InputError, match="list of dicts"):
        echo_child("a question")


def test_close_reaps_the_child_and_later_calls_fail():
    before = set(multiprocessing.active_children())
    with in_process(helpers.slow_echo_llm, close_timeout=2) as gen:
        gen.wait_ready(60)
        pid = gen.pid
        pending = gen([{"input": "never answered"}])
    assert not process_exists(pid)  # reaped: not even a zombie
    assert set(multiprocessing.active_children()) <= before
    with pytest.raises(BackendError, match="closed"):
        pending.result(timeout=5)
    with pytest.raises(BackendError, match="closed"):
        gen([{"input": "x"}]).result(timeout=5)
    gen.close()  # idempotent


def test_close_first_answers_the_calls_already_made():
    gen = in_process(helpers.half_second_echo_llm)
    pending = [gen([{"input": f"r{i}"}]) for i in range(2)]
    gen.close()
    assert [f.result(timeout=5)[0][0]["raw_output"].split()[-1] for f in pending] == ["r0", "r1"]
    assert not process_exists(gen.pid)


def test_garbage_collected_in_process_stops_its_child():
    import gc

    gen = in_process(helpers.echo_llm)
    pid = gen.wait_ready(60).pid
    del gen
    gc.collect()
    assert wait_gone(pid, within=10)


def test_prompt_format_cannot_reach_into_the_child(echo_child):
    with pytest.raises(ConfigError, match="in_process, set it in the spec"):
        fnlabel.with_prompt_format(echo_child, "chatml")


def test_forgotten_children_are_stopped_at_interpreter_exit(tmp_path):
    script = textwrap.dedent(
        """
        import fnlabel
        from tests import procpool_helpers as helpers
        if __name__ == "__main__":
            gen = fnlabel.in_process(helpers.slow_echo_llm)
            gen.wait_ready(60)
            pending = gen([{"input": "busy"}])
            print(gen.pid, flush=True)
            # no close(): exit must still stop and reap the child
        """
    )
    path = tmp_path / "forget.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    child = int(proc.stdout.split()[0])
    assert wait_gone(child, within=5)


@pytest.mark.slow
def test_real_llama_cpp_model_in_a_child_matches_the_parent():
    inputs = [{"input": "Name a colour."}]
    with in_process(helpers.llama_llm) as gen:
        assert gen.model_name == "smollm2-llama-cpp"
        got = gen(inputs, 2).result(timeout=300)
    by_hand = helpers.llama_llm()(inputs, 2)
    texts = [[o["raw_output"] for o in row] for row in got]
    assert all(isinstance(t, str) and t.strip() for row in texts for t in row)
    assert texts == [[o["raw_output"] for o in row] for row in by_hand]  # greedy: same text in both processes
    assert got[0][0]["prompt_used"].startswith("<|im_start|>")


def test_in_process_is_exported():
    assert fnlabel.in_process is in_process and "in_process" in fnlabel.__all__


@pytest.mark.timeout(60)
def test_an_answer_the_parent_cannot_unpickle_fails_only_its_call():
    # it used to kill the reader thread: that Future and every later one never completed
    with in_process(helpers.unloadable_result_llm) as gen:
        bad = gen([{"input": "poison"}])
        with pytest.raises(BackendError, match="could not be unpickled in the parent.*rebuilt"):
            bad.result(timeout=20)
        good = gen([{"input": "fine"}]).result(timeout=20)
        assert good[0][0]["parsed_output"] == {"generations": good[0][0]["raw_output"]}
        pid = gen.pid
    assert wait_gone(pid)
