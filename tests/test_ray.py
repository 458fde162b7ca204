"""Recipes on Ray: a real multi-node cluster (a head and two worker nodes, each started with
``ray start``, see tests/ray_cluster.py), compared with local runs: node loss, poison rows, one
cache for the cluster, and a new local instance when no address is given."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import fnlabel
from fnlabel.cli import main
from fnlabel.errors import BackendError, ConfigError
from fnlabel.run import resolve_options, run_recipe
from tests.ray_cluster import Cluster
from tests.recipe_helpers import ROOT, echo_recipe, popen, questions, read_jsonl, write_jsonl
from tests.recipe_helpers import fnlabel as fnlabel_cli

pytestmark = pytest.mark.timeout(600)


#: worker nodes have one ``replica`` each: ``resources = {replica = 1}`` puts one replica on each
PINNED = "replicas = 2\nresources = { replica = 1 }"


@pytest.fixture(scope="module")
def cluster():
    """A head (1 CPU) and two worker nodes (2 CPUs and one ``replica`` each), this process connected.

    Module-scoped: every test that needs Ray is in this file, so this is one cluster per test
    session, and all its processes are gone before the rest of the suite runs.
    """
    import ray

    old = {k: os.environ.get(k) for k in ("PYTHONPATH", "RAY_AUTH_MODE", "RAY_ADDRESS")}
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_AUTH_MODE"] = "disabled"  # (a loopback-only test cluster; CLI drivers inherit it)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), old["PYTHONPATH"]]))
    with Cluster(head_cpus=1) as c:
        for n in (1, 2):
            c.add_worker(n, cpus=2, resources={"replica": 1})
        ray.init(address=c.address, logging_level=logging.WARNING)
        try:
            yield c
        finally:
            ray.shutdown()
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture
def ray_address(cluster):
    return cluster.address


def local_and_ray(recipe, tmp: Path, **ray_kw):
    """Run ``recipe`` locally and on Ray into tmp/local.jsonl and tmp/ray.jsonl; both summaries."""
    local = run_recipe(recipe, resolve_options(recipe, output=tmp / "local.jsonl"))
    on_ray = fnlabel.on_ray(recipe, tmp / "ray.jsonl", **ray_kw)
    return local, on_ray


def _text(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def same_files(tmp: Path) -> None:
    assert _text(tmp / "ray.jsonl") == _text(tmp / "local.jsonl") is not None
    assert _text(tmp / "ray.jsonl.failures.jsonl") == _text(tmp / "local.jsonl.failures.jsonl")


@pytest.mark.slow
def test_echo_on_two_replicas_writes_what_a_local_run_writes_and_resumes(ray_address, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", questions(37))
    calls = tmp_path / "calls.log"
    recipe = fnlabel.load_recipe(
        echo_recipe(
            tmp_path,
            backend=f'fail_on = ["number 5"]\ncall_log = "{calls.as_posix()}"',
            run="batch_size = 4\nnum_generations = 2",
        )
    )
    local, ray_run = local_and_ray(recipe, tmp_path, replicas=2)
    same_files(tmp_path)
    assert ray_run.rows_done == 37 and ray_run.generations == local.generations == 72
    assert ray_run.failed_rows == 1 and read_jsonl(tmp_path / "ray.jsonl.failures.jsonl")[0]["row"] == 5
    assert read_jsonl(tmp_path / "ray.jsonl")[5]["outputs"][0]["raw_output"] is None

    # an interrupted Ray run: only the missing rows are computed (by the actors), the result is the same
    lines = (tmp_path / "ray.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "ray.jsonl").write_text("".join(lines[:10]) + lines[10][:7])  # 10 rows + a torn line
    calls.write_text("")
    again = fnlabel.on_ray(recipe, tmp_path / "ray.jsonl", replicas=2)
    assert again.rows_run == 27
    assert calls.read_text().count("g") == 2 * 27
    same_files(tmp_path)
    # a finished output: nothing to do, Ray is not even asked
    assert fnlabel.on_ray(recipe, tmp_path / "ray.jsonl").rows_run == 0


@contextmanager
def meanwhile(act: Callable[[], bool]) -> Iterator[None]:
    """Call ``act`` every 50 ms in a thread (for at most 120 s) until it returns True: it does its
    damage once the run has got far enough; the thread is joined when the block ends."""

    def poll() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not act():
            time.sleep(0.05)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def _replica_pids() -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if "Replica" in " ".join(proc.info["cmdline"] or []):
            pids.append(proc.info["pid"])
    return pids


@pytest.mark.slow
def test_a_killed_replica_is_replaced_and_the_output_is_complete(ray_address, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", questions(40))
    recipe = fnlabel.load_recipe(
        echo_recipe(
            tmp_path,
            backend="latency = 0.4",
            run="batch_size = 2\nnum_generations = 2\nreplicas = 2",
        )
    )
    out = tmp_path / "ray.jsonl"
    killed: dict[str, int] = {}
    before = set(_replica_pids())  # actors of earlier runs that Ray has not reaped yet are not this run's

    def kill_one_replica_mid_run() -> bool:
        pids, rows = [p for p in _replica_pids() if p not in before], _rows(out)
        if pids and rows >= 4:
            os.kill(pids[0], signal.SIGKILL)
            killed.update(pid=pids[0], rows=rows)
        return bool(killed)

    with meanwhile(kill_one_replica_mid_run):
        ray_run = fnlabel.on_ray(recipe, out)
    assert killed, "no replica was found to kill"
    assert killed["rows"] < 40, "the replica was killed after the run had finished"
    assert ray_run.rows_done == 40 and ray_run.failed_rows == 0
    run_recipe(recipe, resolve_options(recipe, output=tmp_path / "local.jsonl"))
    same_files(tmp_path)
    assert killed["pid"] not in _replica_pids()


@pytest.mark.slow
def test_llama_cpp_on_ray_writes_what_a_local_run_writes(ray_address, tmp_path, monkeypatch, embedded_gguf):
    write_jsonl(tmp_path / "in.jsonl", [{"input": q} for q in ("Name a colour.", "What is 2+2?", "Say hi.")])
    recipe = fnlabel.recipes.loads_recipe(f"""
prompt_format = "chatml"
[task]
kind = "text-generation"
system_prompt = "You are a helpful assistant."
[backend]
kind = "llama-cpp"
model = "smollm2"
n_ctx = 512
n_threads = 1
[params]
max_new_tokens = 12
temperature = 0.8
seed = 7
[run]
input = "{(tmp_path / "in.jsonl").as_posix()}"
num_generations = 2
batch_size = 2
""")
    _local, _ray_run = local_and_ray(recipe, tmp_path, replicas=2)
    same_files(tmp_path)
    rows = read_jsonl(tmp_path / "ray.jsonl")
    assert len(rows) == 3 and all(len(r["outputs"]) == 2 for r in rows)
    assert all(o["raw_output"] and o["model_name"] == Path(embedded_gguf).stem for r in rows for o in r["outputs"])
    assert rows[0]["outputs"][0]["raw_output"] != rows[0]["outputs"][1]["raw_output"]  # distinct per-generation seeds


@pytest.mark.slow
def test_a_model_that_cannot_load_on_the_replicas_stops_the_run_with_its_error(
    ray_address, tmp_path, monkeypatch, plugin
):
    plugin("fnlabel.backends", "broken", "tests.ray_helpers:BrokenConfig")
    write_jsonl(tmp_path / "in.jsonl", questions(3))
    recipe = fnlabel.recipes.loads_recipe(f"""
[task]
kind = "text-generation"
[backend]
kind = "broken"
[run]
input = "{(tmp_path / "in.jsonl").as_posix()}"
""")
    with pytest.raises(BackendError, match="cannot load model 'missing.gguf'.*on a Ray replica"):
        fnlabel.on_ray(recipe, tmp_path / "ray.jsonl")
    assert not (tmp_path / "ray.jsonl").exists()  # nothing written, as in a local run


@pytest.mark.slow
def test_cli_ray_address_runs_on_the_worker_nodes_of_that_cluster(cluster, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", questions(9))
    calls = tmp_path / "calls.log"
    path = echo_recipe(
        tmp_path, backend=f'call_log = "{calls.as_posix()}"', run=f"batch_size = 3\nnum_generations = 3\n{PINNED}"
    )
    proc = fnlabel_cli("run", str(path), "--output", str(tmp_path / "ray.jsonl"), "--ray", cluster.address, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "9 rows run; 27 generations" in proc.stderr
    recipe = fnlabel.load_recipe(path)
    run_recipe(recipe, resolve_options(recipe, output=tmp_path / "local.jsonl"))
    same_files(tmp_path)
    assert calls.read_text().count("g") == 27 * 2  # (the local run made the second 27)


@pytest.mark.slow
def test_batches_are_read_only_as_far_as_the_replicas_need_them(cluster, tmp_path):
    from fnlabel.run.batch import Batch
    from fnlabel.run.engines import Plan
    from fnlabel.run.ray import RayEngine
    from fnlabel.run.ray_pool import DEPTH
    from fnlabel.run.state import batch_runner

    write_jsonl(tmp_path / "in.jsonl", questions(1))
    recipe = fnlabel.load_recipe(echo_recipe(tmp_path, backend="latency = 0.01", run=f"batch_size = 1\n{PINNED}"))
    pulled: list[int] = []

    def batches():  # a long input, read lazily
        for i in range(120):
            pulled.append(i)
            yield Batch([i], [{"id": i, "input": f"question number {i}"}], [f"line {i + 1}"])

    engine = RayEngine(Plan(recipe, batch_runner(recipe, resolve_options(recipe))))
    ahead = []
    try:
        for done, (batch, result) in enumerate(engine.results(batches()), start=1):
            assert batch.indices == [done - 1] and not result.failures
            ahead.append(len(pulled) - done)
    finally:
        engine.close()
    assert len(ahead) == 120
    assert max(ahead) <= DEPTH * 2 * 2 + 2  # a window of batches per replica, never the whole input


def _rows(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_a_worker_node_lost_mid_run_loses_and_duplicates_nothing(cluster, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", questions(40))
    recipe = fnlabel.load_recipe(
        echo_recipe(tmp_path, backend="latency = 0.3", run=f"batch_size = 2\nnum_generations = 2\n{PINNED}")
    )
    out = tmp_path / "ray.jsonl"
    killed: dict[str, int] = {}

    def kill_a_node_mid_run() -> bool:
        if _rows(out) >= 6:
            killed["rows"] = _rows(out)
            cluster.kill_worker(2)  # kill -9 its raylet: its replica and its objects go with it
        return bool(killed)

    try:
        with meanwhile(kill_a_node_mid_run):
            ray_run = fnlabel.on_ray(recipe, out)
    finally:
        if 2 not in cluster.workers:  # the next tests get both nodes again
            cluster.add_worker(2, cpus=2, resources={"replica": 1})
    assert killed and killed["rows"] < 30, killed
    assert ray_run.rows_done == 40 and ray_run.failed_rows == 0
    run_recipe(recipe, resolve_options(recipe, output=tmp_path / "local.jsonl"))
    same_files(tmp_path)  # every row once, in order, as a local run writes them
    assert [r["id"] for r in read_jsonl(out)] == list(range(40))


@pytest.mark.slow
def test_a_poison_row_is_isolated_recorded_and_fails_the_run(cluster, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", questions(16))
    run = f"batch_size = 4\nnum_generations = 2\nmax_batch_attempts = 2\n{PINNED}"
    path = echo_recipe(tmp_path, backend='crash_on = ["number 7"]', run=run)
    proc = fnlabel_cli(
        "run", str(path), "--output", str(tmp_path / "ray.jsonl"), "--ray", cluster.address, "--no-cache", timeout=400
    )
    assert proc.returncode == 6, proc.stderr
    fails = (tmp_path / "ray.jsonl.failures.jsonl").read_text()
    assert "1 rows killed the replica running them every time" in proc.stderr, fails
    (record,) = read_jsonl(tmp_path / "ray.jsonl.failures.jsonl")
    assert (record["row"], record["stage"], record["generation"]) == (7, "replica", None)
    # the batch was tried twice, then split: [6, 7] died once, then [7] alone
    assert "died all 4 times it ran it (last: Actor" in record["error"], (record, proc.stderr[-3000:])
    rows = read_jsonl(tmp_path / "ray.jsonl")
    assert [r["id"] for r in rows] == list(range(16))
    assert [o["raw_output"] for o in rows[7]["outputs"]] == [None, None]
    # every other row is what a run without the poison writes (crash_on does not change outputs)
    clean = fnlabel.load_recipe(echo_recipe(tmp_path, run=run, name="clean.toml"))
    run_recipe(clean, resolve_options(clean, output=tmp_path / "local.jsonl"))
    local = (tmp_path / "local.jsonl").read_text().splitlines()
    ray_lines = (tmp_path / "ray.jsonl").read_text().splitlines()
    assert [line for i, line in enumerate(ray_lines) if i != 7] == [line for i, line in enumerate(local) if i != 7]


def _holders(cluster: Cluster, path: Path) -> set[str]:
    """The command lines (Ray actors: ``ray::Class.method``) of the cluster's processes that have ``path`` open."""
    names = set()
    for proc in cluster.processes():
        try:
            if any(f.path == str(path) for f in proc.open_files()):
                names.add(" ".join(proc.cmdline()))
        except Exception:  # (a process that ended meanwhile)
            continue
    return names


@pytest.mark.slow
def test_one_cache_for_the_cluster_a_rerun_after_the_driver_dies_redoes_only_what_never_came_back(cluster, tmp_path):
    from fnlabel.combinators.store import SQLiteStore

    write_jsonl(tmp_path / "in.jsonl", questions(30))
    calls, cache, out = tmp_path / "calls.log", tmp_path / "cache.sqlite", tmp_path / "ray.jsonl"
    path = echo_recipe(
        tmp_path,
        backend=f'latency = 0.3\ncall_log = "{calls.as_posix()}"',
        run=f"batch_size = 2\nnum_generations = 2\n{PINNED}",
    )
    args = ("run", str(path), "--output", str(out), "--ray", cluster.address, "--cache", str(cache))
    driver = popen(*args)
    holders: set[str] = set()
    deadline = time.monotonic() + 180
    while _rows(out) < 6 and driver.poll() is None and time.monotonic() < deadline:
        holders |= _holders(cluster, cache)
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)  # the driver dies: nothing is written or committed after this
    driver.communicate(timeout=30)
    assert driver.returncode == -signal.SIGKILL
    # the file is opened on the driver's node by the cache's keeper only, never by a replica
    assert holders and all(h.startswith("ray::CacheKeeper") for h in holders), holders
    written, stored = _rows(out), SQLiteStore(cache).count()
    assert 6 <= written < 30 and stored >= 2 * written
    made = calls.read_text().count("g")

    again = fnlabel_cli(*args, timeout=240)
    assert again.returncode == 0, again.stderr
    remade = calls.read_text().count("g") - made
    assert remade == 2 * 30 - stored  # every generation that reached the cache is reused, wherever it was made
    recipe = fnlabel.load_recipe(path)
    run_recipe(recipe, resolve_options(recipe, output=tmp_path / "local.jsonl"), cache=tmp_path / "other.sqlite")
    same_files(tmp_path)


@pytest.mark.slow
def test_a_lost_cache_keeper_stops_the_run_rather_than_blaming_rows(cluster, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", questions(40))
    recipe = fnlabel.load_recipe(
        echo_recipe(tmp_path, backend="latency = 0.2", run=f"batch_size = 2\nnum_generations = 2\n{PINNED}")
    )
    out = tmp_path / "ray.jsonl"

    def kill_the_keeper() -> bool:
        keepers = [p for p in cluster.processes() if "CacheKeeper" in " ".join(p.cmdline())]
        if keepers and _rows(out) >= 4:
            keepers[0].kill()
            return True
        return False

    with meanwhile(kill_the_keeper), pytest.raises(BackendError, match="failed outside its batch's rows"):
        fnlabel.on_ray(recipe, out, cache=tmp_path / "cache.sqlite")
    assert 4 <= _rows(out) < 40
    failures = tmp_path / "ray.jsonl.failures.jsonl"
    assert not failures.exists() or not failures.read_text()  # no row was blamed


def test_a_cache_keeper_that_cannot_be_reached_fails_the_batch_not_its_rows(cluster, tmp_path):
    import ray

    from fnlabel.combinators.store import SQLiteStore
    from fnlabel.run.ray_actors import CacheKeeper, RemoteStore

    keeper = ray.remote(CacheKeeper).options(num_cpus=0).remote(SQLiteStore(tmp_path / "c.sqlite"))
    store = RemoteStore(keeper)
    store.put([(b"k", 0, "text")], backend=b"echo")
    store.sync()
    assert store.get([b"k"], 1) == {b"k": {0: "text"}}
    ray.kill(keeper)
    with pytest.raises(ray.exceptions.RayActorError):  # (once the kill has landed)
        for _ in range(100):
            ray.get(keeper.tally.remote(0, 0))
            time.sleep(0.1)
    with pytest.raises(ray.exceptions.RayActorError):
        store.get([b"k"], 1)  # (a batch's LLM records this as its rows' failure...)
    with pytest.raises(ray.exceptions.RayActorError):
        store.sync()  # (...but the replica's sync raises it, so the pool stops the run instead)


def test_in_process_children_cannot_reach_a_ray_runs_cache(cluster, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", questions(2))
    recipe = fnlabel.load_recipe(echo_recipe(tmp_path, extra="in_process = true"))
    with pytest.raises(ConfigError, match="in_process = true on Ray with a cache"):
        fnlabel.on_ray(recipe, tmp_path / "ray.jsonl", cache=tmp_path / "c.sqlite")


@pytest.mark.slow
def test_cli_ray_without_an_address_starts_a_local_instance(cluster, tmp_path):
    # (a cluster runs on this machine: a new local instance is started anyway, not joined to it)
    write_jsonl(tmp_path / "in.jsonl", questions(5))
    path = echo_recipe(tmp_path, run="batch_size = 2")
    proc = fnlabel_cli("run", str(path), "--output", str(tmp_path / "ray.jsonl"), "--ray", timeout=240)
    assert proc.returncode == 0, proc.stderr
    recipe = fnlabel.load_recipe(path)
    run_recipe(recipe, resolve_options(recipe, output=tmp_path / "local.jsonl"))
    same_files(tmp_path)


# --- without Ray ---------------------------------------------------------------------------------


def test_without_ray_installed_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    write_jsonl(tmp_path / "in.jsonl", questions(2))
    path = echo_recipe(tmp_path, run='engine = "ray"')
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 'fnlabel\[ray\]'"):
        fnlabel.on_ray(fnlabel.load_recipe(path), tmp_path / "out.jsonl")
    assert main(["run", str(path)]) == 2
    assert "pip install 'fnlabel[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_ray_settings_are_recipe_keys_and_round_trip(tmp_path):
    path = echo_recipe(
        tmp_path,
        run='engine = "ray"\naddress = "auto"\nreplicas = 4\nnum_gpus = 1\nnum_cpus = 0.5\n'
        "resources = { replica = 1, big_disk = 0.5 }\nmax_batch_attempts = 5",
    )
    recipe = fnlabel.load_recipe(path)
    assert (recipe.run.engine, recipe.run.address, recipe.run.replicas) == ("ray", "auto", 4)
    assert (recipe.run.num_gpus, recipe.run.num_cpus) == (1.0, 0.5)
    assert (dict(recipe.run.resources), recipe.run.max_batch_attempts) == ({"replica": 1, "big_disk": 0.5}, 5)
    assert fnlabel.load_recipe(echo_recipe(tmp_path)).run.max_batch_attempts == 3
    assert fnlabel.recipes.loads_recipe(fnlabel.dump_recipe(recipe)) == recipe
    with pytest.raises(fnlabel.RecipeError, match="num_gpus must be a number >= 0"):
        fnlabel.load_recipe(echo_recipe(tmp_path, run="num_gpus = -1"))
    with pytest.raises(fnlabel.RecipeError, match="run.engine: expected one of 'local', 'ray'"):
        fnlabel.load_recipe(echo_recipe(tmp_path, run='engine = "spark"'))
    with pytest.raises(fnlabel.RecipeError, match=r"run.resources.gpu_kind must be a number >= 0.*got 'a100'"):
        fnlabel.load_recipe(echo_recipe(tmp_path, run='resources = { gpu_kind = "a100" }'))
    with pytest.raises(fnlabel.RecipeError, match="run.resources.GPU: set it with .run. num_cpus / num_gpus"):
        fnlabel.load_recipe(echo_recipe(tmp_path, run="resources = { GPU = 1 }"))
    with pytest.raises(fnlabel.RecipeError, match="max_batch_attempts"):
        fnlabel.load_recipe(echo_recipe(tmp_path, run="max_batch_attempts = 0"))


def test_the_parts_of_a_split_batch_join_into_the_result_one_call_gives():
    from fnlabel.run.batch import BatchResult, Usage

    def part(rows, gens):  # rows: input indices; one failure record per row, two for row 11
        fails = [{"row": r, "error": f"e{r}"} for r in rows] + ([{"row": 11, "error": "e11b"}] if 11 in rows else [])
        return BatchResult(
            [f"line {r}" for r in rows],
            fails,
            sum(gens),
            None,
            Usage(1, len(rows)),
            (Usage(1, 1),) * len(rows),
            tuple(gens),
        )

    whole = BatchResult.join([([2, 3], part([12, 13], [2, 0])), ([0], part([10], [2])), ([1], part([11], [1]))], 4)
    assert whole.lines == ["line 10", "line 11", "line 12", "line 13"]
    assert [f["error"] for f in whole.failures] == ["e10", "e11", "e11b", "e12", "e13"]
    assert (whole.generations, whole.row_generations) == (5, (2, 1, 2, 0))
    assert whole.usage == Usage(3, 4) and whole.error is None
