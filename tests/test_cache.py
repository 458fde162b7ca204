"""The per-sample cache: backend work counted with the echo backend, real SQLite files,
real threads and real processes."""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

import fnlabel
from fnlabel import Generation, GenerationFailure, GenerationParams, cached, llm, tasks, threaded
from fnlabel import seeds as shared_seeds
from fnlabel.backends import EchoConfig, echo
from fnlabel.combinators.cache import (
    NEXT_TO_OUTPUT,
    CachedBackend,
    SQLiteStore,
    cache_for_run,
    cache_identity,
    default_cache_path,
    entry_key,
)
from fnlabel.errors import BackendError, ConfigError
from fnlabel.llm import LLMBase

REPO = Path(__file__).resolve().parents[1]
ROWS = [{"input": f"question number {i}"} for i in range(5)]


@attrs.frozen
class Counting:
    """Wraps a backend and records (number of prompts, num_generations, seed) of each call."""

    inner: Any
    calls: list = attrs.field(factory=list, eq=False)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def prompt_format(self) -> str:
        return self.inner.prompt_format

    @property
    def cache_identity(self) -> str:
        return cache_identity(self.inner)

    @property
    def supports_logprobs(self) -> bool:
        return self.inner.supports_logprobs

    def __call__(self, prompts, params):
        self.calls.append((len(prompts), params.num_generations, params.seed))
        return self.inner(prompts, params)

    def generations(self) -> int:
        return sum(n * k for n, k, _ in self.calls)


def make(tmp_path: Path, params: GenerationParams | None = None, **echo_kw: Any) -> tuple[Any, Counting]:
    backend = Counting(echo(**echo_kw))
    gen = llm(tasks.text_generation(), backend, params or GenerationParams(max_new_tokens=64))
    return cached(gen, tmp_path / "cache.sqlite"), backend


def raws(outputs) -> list[list[str | None]]:
    return [[o["raw_output"] for o in row] for row in outputs]


def test_rerun_makes_no_backend_call_and_gives_identical_outputs(tmp_path):
    gen, backend = make(tmp_path)
    first = gen.run(ROWS, 3)
    assert backend.generations() == 15 and len(backend.calls) == 1
    again, backend2 = make(tmp_path)  # a fresh process-like LLM on the same file
    second = again.run(ROWS, 3)
    assert backend2.calls == []
    assert second == first
    assert raws(second.outputs) == raws(
        llm(tasks.text_generation(), echo(), GenerationParams(max_new_tokens=64))(ROWS, 3)
    )


def test_raising_num_generations_computes_only_the_new_ones(tmp_path):
    gen, backend = make(tmp_path)
    four = raws(gen(ROWS, 4))
    backend.calls.clear()
    eight = raws(gen(ROWS, 8))
    # one call: every row misses the same 4 generations
    assert backend.calls == [(5, 4, None)]
    assert [row[:4] for row in eight] == four
    assert all(len(row) == 8 for row in eight)


def test_lowering_num_generations_reuses_the_first_ones(tmp_path):
    gen, backend = make(tmp_path)
    eight = raws(gen(ROWS, 8))
    backend.calls.clear()
    assert raws(gen(ROWS, 2)) == [row[:2] for row in eight]
    assert backend.calls == []


def test_rows_missing_different_counts_are_grouped(tmp_path):
    gen, backend = make(tmp_path)
    gen(ROWS[:2], 2)
    gen(ROWS[2:3], 4)
    backend.calls.clear()
    gen(ROWS, 4)
    assert sorted(backend.calls) == [(2, 2, None), (2, 4, None)]  # rows 0-1 miss 2, rows 3-4 miss 4


def test_seeded_new_generations_get_derived_seeds(tmp_path):
    gen, backend = make(tmp_path, GenerationParams(max_new_tokens=64, seed=7))
    cold = raws(gen(ROWS, 4))
    assert backend.calls == [(5, 4, 7)]  # a cold cached call sends the user's seed unchanged
    backend.calls.clear()
    eight = raws(gen(ROWS, 8))
    assert backend.calls == [(5, 4, shared_seeds.generation_seed(7, 4))]
    assert [row[:4] for row in eight] == cold
    # echo's output depends on the seed: the new generations differ from the first ones
    assert all(set(row[4:]).isdisjoint(row[:4]) for row in eight)


def test_a_param_change_misses_and_switching_back_hits(tmp_path):
    gen, backend = make(tmp_path)
    base = raws(gen(ROWS, 2))
    hot = cached(
        llm(tasks.text_generation(), backend, GenerationParams(max_new_tokens=64, temperature=1.3)),
        tmp_path / "cache.sqlite",
    )
    backend.calls.clear()
    hot(ROWS, 2)
    assert backend.generations() == 10
    backend.calls.clear()
    assert raws(gen(ROWS, 2)) == base and backend.calls == []


def test_a_prompt_change_invalidates_only_that_row(tmp_path):
    gen, backend = make(tmp_path)
    gen(ROWS, 3)
    backend.calls.clear()
    changed = [dict(r) for r in ROWS]
    changed[2]["input"] = "something else"
    out = raws(gen(changed, 3))
    assert backend.calls == [(1, 3, None)]
    assert out[2][0].endswith("something else")
    # a different system prompt is a different formatted prompt
    other = cached(
        llm(tasks.text_generation(system_prompt="Be terse."), backend, GenerationParams(max_new_tokens=64)),
        tmp_path / "cache.sqlite",
    )
    backend.calls.clear()
    other(ROWS, 1)
    assert backend.calls == [(5, 1, None)]


def test_a_model_change_misses_but_a_latency_change_does_not(tmp_path):
    gen, _backend = make(tmp_path)
    gen(ROWS, 2)
    other, other_backend = make(tmp_path, model_name="another-model")
    other(ROWS, 2)
    assert other_backend.generations() == 10
    slow, slow_backend = make(tmp_path, latency=0.001, call_log=str(tmp_path / "log"))
    slow(ROWS, 2)
    assert slow_backend.calls == []


def test_a_parse_change_needs_no_backend_call(tmp_path):
    gen, backend = make(tmp_path)
    gen(ROWS, 2)
    backend.calls.clear()
    shouting = attrs.evolve(gen, task=attrs.evolve(gen.task, parse=lambda raw: {"generations": raw.upper()}))
    out = shouting(ROWS, 2)
    assert backend.calls == []
    assert out[0][0]["parsed_output"]["generations"] == out[0][0]["raw_output"].upper()


def test_chat_message_prompts_are_keyed_by_their_content(tmp_path):
    gen, backend = make(tmp_path, prompt_format="openai")
    first = gen(ROWS, 2)
    assert isinstance(first[0][0]["prompt_used"], list)
    backend.calls.clear()
    assert gen(ROWS, 2) == first and backend.calls == []
    chatml = fnlabel.with_prompt_format(gen, "chatml")
    chatml(ROWS, 2)
    assert backend.generations() == 10


def test_failures_are_not_cached_and_are_retried(tmp_path):
    gen, backend = make(tmp_path, fail_on="number 3")
    res = gen.run(ROWS, 2)
    assert {(f.row, f.stage) for f in res.failures} == {(3, "backend")}
    backend.calls.clear()
    res = gen.run(ROWS, 2)
    assert backend.calls == [(1, 2, None)]  # only the failed row goes back to the backend
    assert {f.row for f in res.failures} == {3}
    fixed, fixed_backend = make(tmp_path)  # fail_on is not part of the identity
    res = fixed.run(ROWS, 2)
    assert fixed_backend.calls == [(1, 2, None)] and res.failures == ()


def test_a_failed_generation_in_the_middle_is_the_only_one_recomputed(tmp_path):
    seen: list[tuple[int, int]] = []
    failed = set()

    def flaky(prompts, params):
        seen.append((len(prompts), params.num_generations))
        out = echo()(prompts, params)
        if not failed:  # the first call loses generation 1 of the first prompt
            failed.add(1)
            out[0][1] = GenerationFailure("quota")
        return out

    flaky.cache_identity = "flaky-echo"
    gen = cached(llm(tasks.text_generation(), flaky), tmp_path / "c.sqlite")
    assert [f.generation for f in gen.run(ROWS[:2], 3).failures] == [1]
    res = gen.run(ROWS[:2], 3)
    assert seen == [(2, 3), (1, 1)] and res.failures == ()


def test_a_broken_backend_result_is_an_error_and_nothing_is_cached(tmp_path):
    def short(prompts, params):
        return [["only one"] for _ in prompts]

    short.cache_identity = "short"
    store = SQLiteStore(tmp_path / "c.sqlite")
    gen = cached(llm(tasks.text_generation(), short), store)
    with pytest.raises(BackendError, match="broke its contract"):
        gen(ROWS, 2)
    assert store.count() == 0


def test_repeated_prompts_in_one_call_are_computed_once(tmp_path):
    gen, backend = make(tmp_path)
    out = raws(gen([ROWS[0], ROWS[1], ROWS[0]], 2))
    assert backend.calls == [(2, 2, None)]
    assert out[0] == out[2]


def test_batch_size_commits_in_smaller_backend_calls(tmp_path):
    backend = Counting(echo())
    gen = cached(llm(tasks.text_generation(), backend), tmp_path / "c.sqlite", batch_size=2)
    gen(ROWS, 1)
    assert backend.calls == [(2, 1, None), (2, 1, None), (1, 1, None)]
    with pytest.raises(ConfigError, match="batch_size"):
        cached(gen, tmp_path / "c.sqlite", batch_size=0)


def test_recaching_replaces_the_store_instead_of_nesting(tmp_path):
    gen, _ = make(tmp_path)
    again = cached(gen, tmp_path / "other.sqlite")
    assert isinstance(again.backend, CachedBackend) and not isinstance(again.backend.backend, CachedBackend)
    assert again.backend.store.path == (tmp_path / "other.sqlite").absolute()


def test_cache_through_threaded(tmp_path):
    backend = Counting(echo())
    plain = llm(tasks.text_generation(), backend)
    gen = cached(threaded(plain, 3), tmp_path / "c.sqlite")
    assert isinstance(gen, fnlabel.combinators.threads.Threaded)
    first = gen(ROWS, 2).result()
    assert backend.generations() == 10
    backend.calls.clear()
    assert gen(ROWS, 2).result() == first and backend.calls == []
    assert first == plain(ROWS, 2)
    gen.close()


@attrs.define
class RoundRobin(LLMBase):
    """A pooled-like LLM of the user's (LLMBase gives it the rest of the LLM contract): rows are
    split over several member LLMs, each with its own backend."""

    members: list
    task: Any = attrs.field(default=attrs.Factory(lambda s: s.members[0].task, takes_self=True))
    model_name: str = "pool"

    def map_inner(self, change):
        return RoundRobin([m.map_inner(change) for m in self.members])

    def run(self, inputs, num_generations=1, *, first_generation=0):
        parts = [self.members[i % len(self.members)].run([row], num_generations) for i, row in enumerate(inputs)]
        return fnlabel.RunResult([o for p in parts for o in p.outputs])


def test_cache_through_a_pooled_like_composition_shares_one_store(tmp_path):
    backends = [Counting(echo()), Counting(echo())]
    pool = cached(RoundRobin([llm(tasks.text_generation(), b) for b in backends]), tmp_path / "c.sqlite")
    first = pool.run(ROWS, 2).outputs
    assert sum(b.generations() for b in backends) == 10
    for b in backends:
        b.calls.clear()
    swapped = RoundRobin(list(reversed(pool.members)))  # rows now reach the other member: same identity
    assert swapped.run(ROWS, 2).outputs == first
    assert all(b.calls == [] for b in backends)


def test_cached_rejects_what_it_cannot_reach(tmp_path):
    with pytest.raises(ConfigError, match="apply cached"):
        cached(object(), tmp_path / "c.sqlite")


def test_concurrent_threads_lose_nothing(tmp_path):
    store = SQLiteStore(tmp_path / "c.sqlite")
    rows = [{"input": f"row {i}"} for i in range(40)]
    backend = Counting(echo())
    gen = cached(llm(tasks.text_generation(), backend), store)

    def work(start: int) -> list:
        return gen(rows[start : start + 20], 3)  # overlapping slices

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, [0, 5, 10, 15, 20, 0, 10, 20]))
    assert store.count() == 40 * 3
    backend.calls.clear()
    out = gen(rows, 3)
    assert backend.calls == [] and raws(out) == raws(llm(tasks.text_generation(), echo())(rows, 3))


WORKER = """
import sys
import threading
from fnlabel import cached, llm, tasks, GenerationParams
from fnlabel.backends import echo
path, log, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
gen = cached(llm(tasks.text_generation(), echo(latency=0.002, call_log=log)), path, batch_size=3)
rows = [{"input": f"row {i}"} for i in range(start, stop)]
for k in (2, 4):
    out = gen(rows, k)
    assert all(len(r) == k for r in out)
print("done", flush=True)
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def test_concurrent_processes_write_one_file_and_lose_nothing(tmp_path):
    path = tmp_path / "shared.sqlite"
    ranges = [(0, 30), (10, 40), (20, 50), (0, 50)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(tmp_path / f"log{i}"), str(a), str(b)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i, (a, b) in enumerate(ranges)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "done" in out
    store = SQLiteStore(path)
    assert store.count() == 50 * 4
    backend = Counting(echo())
    gen = cached(llm(tasks.text_generation(), backend), store)
    rows = [{"input": f"row {i}"} for i in range(50)]
    two = raws(llm(tasks.text_generation(), echo())(rows, 2))
    # unseeded: the 2 new generations were asked as a fresh n=2 call (echo numbers them 0, 1 again)
    assert raws(gen(rows, 4)) == [row + row for row in two]
    assert backend.calls == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


KILLED = """
import sys
import threading
from fnlabel import cached, llm, tasks
from fnlabel.backends import echo
path, log = sys.argv[1], sys.argv[2]
gen = cached(llm(tasks.text_generation(), echo(latency=0.05, call_log=log)), path, batch_size=1)
gen([{"input": f"row {i}"} for i in range(200)], 2)
"""


def test_kill_9_loses_at_most_the_call_in_flight(tmp_path):
    path, log = tmp_path / "c.sqlite", tmp_path / "log"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path), str(log)], cwd=REPO, env=_env())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count("g") < 20):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    produced = log.read_text().count("g")
    assert 20 <= produced < 400, "the run should have been killed mid-way"
    store = SQLiteStore(path)
    kept = store.count()
    # each backend call (1 prompt x 2 generations) is committed before the next starts
    assert produced - 2 <= kept <= produced
    backend = Counting(echo())
    gen = cached(llm(tasks.text_generation(), backend), store)
    rows = [{"input": f"row {i}"} for i in range(200)]
    out = gen(rows, 2)
    assert backend.generations() == 400 - kept
    assert raws(out) == raws(llm(tasks.text_generation(), echo())(rows, 2))


def test_a_cached_llm_pickles_and_shares_the_file(tmp_path):
    gen, _backend = make(tmp_path)
    first = gen(ROWS, 2)
    clone = pickle.loads(pickle.dumps(attrs.evolve(gen, backend=attrs.evolve(gen.backend, backend=echo()))))
    assert clone.backend.store == gen.backend.store
    assert clone(ROWS, 2) == first
    assert clone.backend.store.hits == 10 and clone.backend.store.misses == 0


def test_store_open_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        SQLiteStore(tmp_path)  # a folder, not a file
    bad = tmp_path / "old.sqlite"
    with sqlite3.connect(bad) as conn:
        conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema', '0')")
    with pytest.raises(ConfigError, match="delete the file"):
        SQLiteStore(bad)


def test_connections_of_ended_threads_are_closed(tmp_path):
    store = SQLiteStore(tmp_path / "c.sqlite")
    for i in range(20):
        t = threading.Thread(target=store.put, args=([(b"k%d" % i, 0, "x")], b"b"))
        t.start()
        t.join()
    assert len(store._conns) <= 2 and store.count() == 20


def test_a_forked_child_opens_its_own_connection(tmp_path):
    gen, backend = make(tmp_path)
    gen(ROWS[:2], 1)  # the parent holds an open connection
    pid = os.fork()
    if pid == 0:  # child: use the inherited store, then exit without pytest's cleanup
        try:
            gen(ROWS, 1)
            os._exit(0 if backend.calls[-1] == (3, 1, None) else 1)
        except BaseException:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0
    backend.calls.clear()
    gen(ROWS, 1)  # the parent's connection still works and sees the child's writes
    assert backend.calls == [] and gen.backend.store.count() == 5


def test_store_clear(tmp_path):
    gen, _ = make(tmp_path)
    gen(ROWS, 2)
    other, _ = make(tmp_path, model_name="m2")
    other(ROWS, 1)
    store = gen.backend.store
    assert store.count() == 15
    assert store.clear(backend=other.backend.identity) == 5 and store.count() == 10
    assert store.clear(backend=cache_identity(echo(model_name="m2"))) == 0
    assert store.clear(older_than=3600) == 0
    assert store.clear() == 10 and store.count() == 0


def test_cache_identity_rules():
    @attrs.frozen
    class SecretConfig:
        model: str
        api_key: str = "sk-hidden"
        api_key_env: str = "X_KEY"
        timeout: float = 3.0
        kind: ClassVar[str] = "remote"
        cache_ignore: ClassVar[tuple[str, ...]] = ("timeout",)

    @attrs.frozen
    class Built:
        config: SecretConfig

    ident = cache_identity(Built(SecretConfig("gpt-x")))
    assert ident == 'remote:{"model":"gpt-x"}' and "sk-hidden" not in ident
    assert cache_identity(Built(SecretConfig("gpt-x", timeout=9))) == ident

    def plain(prompts, params):
        return [[""] * params.num_generations for _ in prompts]

    assert cache_identity(plain).endswith("test_cache_identity_rules.<locals>.plain")
    plain.model_name = "m"
    assert cache_identity(plain).endswith(".plain:m")
    plain.cache_identity = "mine-v2"
    assert cache_identity(plain) == "mine-v2"
    assert cache_identity(echo(model_name="a")) != cache_identity(echo(model_name="b"))
    assert cache_identity(echo(latency=1.0)) == cache_identity(EchoConfig().build())


def test_cache_for_run_locations(tmp_path, monkeypatch):
    out = tmp_path / "out" / "data.jsonl"
    assert cache_for_run(out, enabled=False) is None
    monkeypatch.setenv("FNLABEL_CACHE_DIR", str(tmp_path / "cachedir"))
    assert default_cache_path() == tmp_path / "cachedir" / "cache.sqlite"
    assert cache_for_run(out).path == tmp_path / "cachedir" / "cache.sqlite"
    monkeypatch.delenv("FNLABEL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_for_run(out).path == tmp_path / "xdg" / "fnlabel" / "cache.sqlite"
    assert cache_for_run(out, path=NEXT_TO_OUTPUT).path == out.with_name("data.jsonl.cache.sqlite")
    assert cache_for_run(out, path=str(tmp_path / "x.sqlite")).path == tmp_path / "x.sqlite"
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("FNLABEL_CACHE_DIR", str(blocker / "sub"))  # cannot be created
    assert cache_for_run(out).path == out.with_name("data.jsonl.cache.sqlite")
    with pytest.raises(ConfigError, match="needs an output file"):
        cache_for_run("-", path=NEXT_TO_OUTPUT)


def test_a_prompt_with_a_lone_surrogate_is_cached(tmp_path: Path) -> None:
    # scraped text often holds half an emoji: JSON "\ud83d" alone decodes to a lone surrogate
    key = entry_key("echo", "cut \ud83d emoji", "{}")
    assert key != entry_key("echo", "cut \ud83e emoji", "{}") and len(key) == 16
    assert entry_key("echo", "plain", "{}") == entry_key("echo", "plain", "{}")
    store = SQLiteStore(tmp_path / "c.sqlite")
    gen = cached(llm(tasks.text_generation(), echo()), store)
    first = gen([{"input": "cut \ud83d emoji"}, {"input": "whole"}], 2)
    assert first[0][0]["raw_output"].endswith("cut \ud83d emoji")  # returned, though SQLite cannot hold it
    assert store.count() == 2  # the other row's generations are cached
    assert gen([{"input": "cut \ud83d emoji"}, {"input": "whole"}], 2) == first


def _open_files(path: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


def test_close_closes_the_cache_files_of_every_thread(tmp_path):
    path = tmp_path / "c.sqlite"
    with cached(threaded(llm(tasks.text_generation(), echo()), 3), path) as gen:
        assert len(gen(ROWS * 2, 2).result(timeout=30)) == 10
        assert _open_files(path)
    assert _open_files(path) == []  # close() left no SQLite connection (nor its -wal/-shm) open
    plain = cached(llm(tasks.text_generation(), echo()), path)
    first = plain(ROWS, 2)
    plain.close()
    assert _open_files(path) == []
    assert plain(ROWS, 2) == first  # a closed store reopens on next use
    plain.close()


def test_a_rerun_reports_the_same_usage_without_calling_the_model(tmp_path):
    backend = Counting(echo())
    params = GenerationParams(max_new_tokens=3, logprobs=2)
    gen = cached(llm(tasks.text_generation(), backend, params, metadata=True), tmp_path / "cache.sqlite")
    first = gen(ROWS, 2)
    calls = len(backend.calls)
    again = gen(ROWS, 2)
    assert len(backend.calls) == calls, "every generation came from the cache"
    assert again == first
    meta = [o["metadata"] for row in again for o in row]
    assert all(m["finish_reason"] == "length" and m["output_tokens"] == 3 and m["input_tokens"] > 0 for m in meta)
    assert all(len(m["logprobs"]) == 3 for m in meta)
    # the same cache, read without metadata: the seed's four keys, the same texts
    plain = cached(llm(tasks.text_generation(), backend, params), tmp_path / "cache.sqlite")(ROWS, 2)
    assert len(backend.calls) == calls and raws(plain) == raws(first)
    assert all(set(o) == {"model_name", "prompt_used", "raw_output", "parsed_output"} for row in plain for o in row)


def test_a_schema_1_cache_is_migrated_in_place_and_its_entries_still_read(tmp_path):
    path = tmp_path / "v1.sqlite"
    with sqlite3.connect(path) as conn:  # the layout fnlabel wrote before generations had metadata
        conn.executescript(
            "CREATE TABLE generations (key BLOB NOT NULL, idx INTEGER NOT NULL, output TEXT NOT NULL, "
            "backend BLOB NOT NULL, created REAL NOT NULL, PRIMARY KEY (key, idx)) WITHOUT ROWID;"
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema', '1');"
            "INSERT INTO generations VALUES (x'01', 0, 'old text', x'00', 0);"
        )
    store = SQLiteStore(path)
    assert store.get([b"\x01"], 1) == {b"\x01": {0: "old text"}}
    store.put([(b"\x02", 0, Generation("new", "stop", 4, 1))], b"\x00")
    assert store.get([b"\x02"], 1) == {b"\x02": {0: Generation("new", "stop", 4, 1)}}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone() == ("2",)
    assert SQLiteStore(path).get([b"\x01", b"\x02"], 1)[b"\x01"] == {0: "old text"}, "opening it again is a no-op"
