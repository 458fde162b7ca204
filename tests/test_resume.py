"""Resume, retry and locking do exactly what they promise, at any size (issue: runs at any scale).

Each test here failed before its fix: a shorter input was accepted for a longer output, a Parquet
output and its own journal locked different files, a retry rewrote both files after every batch
and could leave stale failure records after a kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fnlabel
from fnlabel.errors import InputError
from fnlabel.run import resolve_options, run_recipe
from tests.recipe_helpers import ROOT, echo_recipe, popen, questions, read_jsonl, write_jsonl
from tests.recipe_helpers import fnlabel as fnlabel_cli


def _run(tmp_path: Path, backend: str = "", run: str = "", **overrides) -> fnlabel.run.Summary:
    recipe = fnlabel.load_recipe(echo_recipe(tmp_path, backend=backend, run=run))
    return run_recipe(recipe, resolve_options(recipe, **overrides))


def test_an_output_longer_than_the_input_is_refused_even_when_its_first_row_matches(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(100))
    assert _run(tmp_path).rows_done == 100
    write_jsonl(tmp_path / "in.jsonl", questions(50))  # the same first 50 rows
    with pytest.raises(InputError, match=r"out.jsonl has 100 lines but the input .*in.jsonl has only 50 rows"):
        _run(tmp_path)
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 100  # nothing lost


def test_every_line_of_a_resumed_output_is_checked_against_its_input_row(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(30))
    _run(tmp_path, limit=20)
    rows = questions(30)
    rows[7]["input"] = "another question"  # neither the first nor the last line written
    write_jsonl(tmp_path / "in.jsonl", rows)
    with pytest.raises(InputError, match=r"out.jsonl line 8 is not input row .*in.jsonl line 8"):
        _run(tmp_path)


def test_a_resumed_output_whose_keys_were_written_in_another_order_is_still_recognised(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"input": "a", "id": 1}, {"input": "b", "id": 2}])
    _run(tmp_path, limit=1)
    line = json.loads((tmp_path / "out.jsonl").read_text())
    (tmp_path / "out.jsonl").write_text(json.dumps(dict(reversed(line.items()))) + "\n")  # (an older writer, a tool)
    assert _run(tmp_path).rows_run == 1


def test_two_runs_cannot_write_one_journal_under_two_names(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(400))
    recipe = echo_recipe(tmp_path, backend="latency_per_prompt = 0.005", run="batch_size = 4")
    first = popen("run", str(recipe), "--output", str(tmp_path / "x.parquet"))
    journal = tmp_path / "x.parquet.jsonl"
    deadline = time.monotonic() + 60
    while not journal.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = fnlabel_cli("run", str(recipe), "--output", str(journal))  # the first run's own journal
    first.wait(timeout=120)
    assert second.returncode == 2 and "another fnlabel run is writing this output" in second.stderr
    assert first.returncode == 0, first.stderr.read()
    assert [r["id"] for r in read_jsonl(journal)] == list(range(400))  # one writer, no interleaving


def test_retry_failed_rewrites_each_file_once_and_keeps_them_in_row_order(tmp_path: Path) -> None:
    rows = questions(40)
    for i in (3, 4, 17, 30):
        rows[i]["input"] += " boom"
    write_jsonl(tmp_path / "in.jsonl", rows)
    first = _run(tmp_path, backend='fail_on = ["boom"]', run="batch_size = 4")
    assert first.failed_rows == first.rows_with_failures == 4
    writes: list[str] = []
    real_replace = os.replace

    def counting(src, dst, *a, **k):
        writes.append(Path(dst).name)
        return real_replace(src, dst, *a, **k)

    os.replace = counting
    try:
        retried = _run(tmp_path, backend='fail_on = ["17"]', run="batch_size = 1", retry_failed=True)
    finally:
        os.replace = real_replace
    assert retried.rows_run == 4 and writes.count("out.jsonl") == 1 and writes.count("out.jsonl.failures.jsonl") == 1
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == list(range(40))
    assert [i for i, r in enumerate(out) if r["outputs"][0]["raw_output"] is None] == [17]  # fail_on matches only it...
    failures = read_jsonl(tmp_path / "out.jsonl.failures.jsonl")
    assert [f["row"] for f in failures] == [17]  # ...the fixed rows lost their records, in row order
    assert not (tmp_path / "out.jsonl.retry").exists()


@pytest.mark.parametrize("moment", [0.3, 0.9, 1.6])
def test_a_kill_9_during_a_retry_leaves_output_and_failures_consistent(tmp_path: Path, moment: float) -> None:
    rows = questions(60)
    for i in range(0, 60, 2):
        rows[i]["input"] += " boom"
    write_jsonl(tmp_path / "in.jsonl", rows)
    _run(tmp_path, backend='fail_on = ["boom"]', run="batch_size = 2")
    recipe = echo_recipe(tmp_path, backend="latency = 0.1", run="batch_size = 2")
    proc = popen("run", str(recipe), "--retry-failed")
    time.sleep(moment)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    def consistent() -> None:  # every row with a failure record has a failed output line, and only those
        out = read_jsonl(tmp_path / "out.jsonl")
        failed = {f["row"] for f in read_jsonl(tmp_path / "out.jsonl.failures.jsonl")}
        assert len(out) == 60
        assert failed == {i for i, r in enumerate(out) if r["outputs"][0]["raw_output"] is None}

    consistent()
    again = fnlabel_cli("run", str(recipe), "--retry-failed")  # merges what the killed retry left, then goes on
    assert again.returncode == 0, again.stderr
    consistent()
    assert read_jsonl(tmp_path / "out.jsonl.failures.jsonl") == [] and not (tmp_path / "out.jsonl.retry").exists()


def test_a_finished_output_with_recorded_failures_says_so_on_rerun(tmp_path: Path) -> None:
    rows = questions(6)
    rows[2]["input"] += " boom"
    write_jsonl(tmp_path / "in.jsonl", rows)
    recipe = echo_recipe(tmp_path, backend='fail_on = ["boom"]')
    fnlabel_cli("run", str(recipe))
    rerun = fnlabel_cli("run", str(recipe))
    assert rerun.returncode == 0
    assert "nothing to do" in rerun.stderr and "1 row with failures" in rerun.stderr
    assert "rerun with --retry-failed to retry them" in rerun.stderr


def test_a_full_disk_does_not_talk_about_ctrl_c(tmp_path: Path) -> None:
    import resource

    write_jsonl(tmp_path / "in.jsonl", questions(40))
    recipe = echo_recipe(tmp_path, backend="latency = 0.05", run="batch_size = 2")

    def small_disk() -> None:  # files may not grow past 2 KB: a write beyond fails as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))

    res = subprocess.run(
        [sys.executable, "-m", "fnlabel", "run", str(recipe), "--no-cache"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
        preexec_fn=small_disk,
    )  # fmt: skip
    assert res.returncode == 2 and "out.jsonl: cannot write the output there (File too large)" in res.stderr
    assert "Ctrl-C" not in res.stderr  # nobody pressed it
    assert 0 < len(read_jsonl(tmp_path / "out.jsonl")) < 40  # the whole batches written before are kept


def test_output_key_must_not_be_empty(tmp_path: Path) -> None:
    with pytest.raises(fnlabel.RecipeError, match=r"run.output_key|output_key must be a non-empty string"):
        fnlabel.load_recipe(echo_recipe(tmp_path, run='output_key = ""'))


def test_absurd_generation_counts_and_lengths_are_refused_naming_the_limit() -> None:
    with pytest.raises(fnlabel.ConfigError, match=r"max_new_tokens must be an integer in \[1, 1048576\]"):
        fnlabel.GenerationParams(max_new_tokens=9223372036854775807)
    gen = fnlabel.llm(fnlabel.tasks.text_generation(), fnlabel.backends.echo())
    with pytest.raises(fnlabel.ConfigError, match=r"num_generations must be an integer in \[1, 1000\], got 100000000"):
        gen([{"input": "x"}], num_generations=100_000_000)
    with pytest.raises(fnlabel.RecipeError, match=r"num_generations must be an integer in \[1, 1000\]"):
        fnlabel.recipes.loads_recipe(
            '[task]\nkind = "text-generation"\n[backend]\nkind = "echo"\n[run]\nnum_generations = 100000000000000000\n'
        )


def test_a_server_that_refuses_connections_stops_the_run_with_exit_4_and_writes_nothing(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_jsonl(tmp_path / "in.jsonl", questions(40))
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[task]\nkind = "text-generation"\n[backend]\nkind = "openai"\nmodel = "m"\n'
        f'base_url = "http://127.0.0.1:{port}/v1"\nmax_retries = 2\nbackoff = 0.01\n'
        f'[run]\ninput = "{(tmp_path / "in.jsonl").as_posix()}"\noutput = "{(tmp_path / "out.jsonl").as_posix()}"\n'
    )
    res = fnlabel_cli("run", str(recipe))
    assert res.returncode == 4, res.stderr
    assert "cannot connect (connection refused; gave up after 3 attempts)" in res.stderr
    assert f"127.0.0.1:{port}/v1" in res.stderr
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""


def test_a_kill_9_loses_only_the_requests_in_flight_not_the_answers_already_paid_for(tmp_path: Path) -> None:
    import sqlite3

    from tests.servers import Fault, FaultServer

    rows = 12  # one batch: the old cache committed a backend call only when all of it returned
    write_jsonl(tmp_path / "in.jsonl", questions(rows))
    cache = tmp_path / "cache.sqlite"
    with FaultServer(script={"number 5": Fault.slow(120)}) as server:
        recipe = tmp_path / "r.toml"
        recipe.write_text(
            '[task]\nkind = "text-generation"\n[backend]\nkind = "openai"\nmodel = "m"\n'
            f'base_url = "{server.url}"\n[run]\nbatch_size = 100\nnum_generations = 2\n'
            f'input = "{(tmp_path / "in.jsonl").as_posix()}"\noutput = "{(tmp_path / "out.jsonl").as_posix()}"\n'
        )
        proc = popen("run", str(recipe), "--cache", str(cache))

        def stored() -> int:
            try:
                with sqlite3.connect(cache) as db:
                    return db.execute("SELECT count(*) FROM generations").fetchone()[0]
            except sqlite3.Error:
                return 0

        deadline = time.monotonic() + 60
        while stored() < (rows - 1) * 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # the slow request is still in flight
        proc.wait(timeout=30)
    assert stored() == (rows - 1) * 2  # every answer that arrived is kept
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""
