"""Recipes on Ray: a real local Ray instance (one per test session), compared with local runs."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

import fnlabel
from fnlabel.cli import main
from fnlabel.errors import BackendError, ConfigError
from fnlabel.run import resolve_options, run_recipe
from tests.recipe_helpers import ROOT, echo_recipe, questions, read_jsonl, write_jsonl
from tests.recipe_helpers import fnlabel as fnlabel_cli

# Ray Data copies its context with a few deprecated attributes; not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance (2 CPUs, no dashboard, 127.0.0.1) for all the Ray tests; its address.

    Module-scoped: every test that needs Ray is in this file, so this is one start per test session,
    and Ray's processes are gone before the rest of the suite runs.
    """
    import ray

    from fnlabel.run.ray import start_local

    old = os.environ.get("PYTHONPATH")
    # workers (also those of a second driver, the CLI subprocess) import fnlabel and tests.* from here
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), old]))
    start_local(num_cpus=2, object_store_memory=256 * 2**20)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


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


def _replica_pids() -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if "_Replica" in " ".join(proc.info["cmdline"] or []):
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

    def kill_one_replica_mid_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pids = [p for p in _replica_pids() if p not in before]
            rows = len(out.read_text().splitlines()) if out.exists() else 0
            if pids and rows >= 4:
                os.kill(pids[0], signal.SIGKILL)
                killed.update(pid=pids[0], rows=rows)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_replica_mid_run)
    killer.start()
    try:
        ray_run = fnlabel.on_ray(recipe, out)
    finally:
        killer.join()
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
def test_cli_ray_address_runs_on_that_cluster(ray_address, tmp_path):
    write_jsonl(tmp_path / "in.jsonl", questions(9))
    path = echo_recipe(tmp_path, run="batch_size = 3\nnum_generations = 3")
    proc = fnlabel_cli("run", str(path), "--output", str(tmp_path / "ray.jsonl"), "--ray", ray_address, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "9 rows run; 27 generations" in proc.stderr
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
    path = echo_recipe(tmp_path, run='engine = "ray"\naddress = "auto"\nreplicas = 4\nnum_gpus = 1\nnum_cpus = 0.5')
    recipe = fnlabel.load_recipe(path)
    assert (recipe.run.engine, recipe.run.address, recipe.run.replicas) == ("ray", "auto", 4)
    assert (recipe.run.num_gpus, recipe.run.num_cpus) == (1.0, 0.5)
    assert fnlabel.recipes.loads_recipe(fnlabel.dump_recipe(recipe)) == recipe
    with pytest.raises(fnlabel.RecipeError, match="num_gpus must be a number >= 0"):
        fnlabel.load_recipe(echo_recipe(tmp_path, run="num_gpus = -1"))
    with pytest.raises(fnlabel.RecipeError, match="run.engine: expected one of 'local', 'ray'"):
        fnlabel.load_recipe(echo_recipe(tmp_path, run='engine = "spark"'))
