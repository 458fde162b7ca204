"""The `fnlabel` command through a real subprocess, on real recipe files, with the echo backend."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from pathlib import Path

import pytest

from fnlabel.cli.display import RunDisplay, status_line
from fnlabel.run.batch import Usage
from fnlabel.run.runner import Progress
from tests.recipe_helpers import ROOT, echo_recipe, fnlabel, make_dist, popen, questions, read_jsonl, write_jsonl


def _check_rows(rows: list[dict], inputs: list[dict], k: int) -> None:
    assert [{k_: v for k_, v in r.items() if k_ != "outputs"} for r in rows] == inputs
    for row in rows:
        assert len(row["outputs"]) == k
        for g, out in enumerate(row["outputs"]):
            assert set(out) == {"model_name", "prompt_used", "raw_output", "parsed_output", "metadata"}
            meta = out["metadata"]  # fnlabel run writes it by default
            assert set(meta) == {"finish_reason", "input_tokens", "output_tokens"}
            assert meta["finish_reason"] in ("stop", "length") and meta["output_tokens"] > 0
            assert out["raw_output"].startswith(f"[{g}:") and out["raw_output"].endswith(str(row["input"]))
            assert out["parsed_output"] == {"generations": out["raw_output"]}


def test_quickstart_shaped_echo_recipe_runs_from_the_repo_root(tmp_path: Path) -> None:
    out = tmp_path / "echo.jsonl"
    res = fnlabel("run", "recipes/echo.toml", "--output", str(out))
    assert res.returncode == 0, res.stderr
    inputs = read_jsonl(ROOT / "recipes" / "data" / "questions.jsonl")
    rows = read_jsonl(out)
    assert len(rows) == len(inputs) == 8
    assert [r["input"] for r in rows] == [i["input"] for i in inputs]
    assert all(len(r["outputs"]) == 2 for r in rows)
    assert "8 rows run; 16 generations; 0 rows with failures" in res.stderr
    assert "\r" not in res.stderr  # no progress bar in a pipe
    assert not (tmp_path / "echo.jsonl.failures.jsonl").exists()  # made only when something fails
    again = fnlabel("run", "recipes/echo.toml", "--output", str(out))
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert read_jsonl(out) == rows


def _write_input(tmp: Path, fmt: str, rows: list[dict]) -> Path | str:
    path = tmp / f"input.{fmt}"
    if fmt == "hf":  # a Hugging Face dataset folder (the same loader as a hub dataset)
        path.mkdir()
        write_jsonl(path / "train.jsonl", rows)
        return f"hf:{path}:train"
    if fmt == "jsonl":
        write_jsonl(path, rows)
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "csv":
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet", "hf"])
def test_every_input_format(tmp_path: Path, fmt: str) -> None:
    rows = questions(5)
    src = _write_input(tmp_path, fmt, rows)
    recipe = echo_recipe(tmp_path, run="num_generations = 3\nbatch_size = 2")
    res = fnlabel("run", str(recipe), "--input", str(src), "--limit", "4")
    assert res.returncode == 0, res.stderr
    expected = [{k: (str(v) if fmt == "csv" else v) for k, v in r.items()} for r in rows[:4]]
    _check_rows(read_jsonl(tmp_path / "out.jsonl"), expected, 3)


def test_parquet_output(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "in.jsonl", questions(3))
    res = fnlabel("run", str(echo_recipe(tmp_path)), "--output", str(tmp_path / "out.parquet"))
    assert res.returncode == 0, res.stderr
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["id"] for r in table] == [0, 1, 2]
    assert table[0]["outputs"][0]["raw_output"].endswith("question number 0")


def test_rows_missing_keys_are_reported_by_line_and_the_others_run(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"input": "a"}\n\n{"text": "b"}\n{"input": "c"}\n')
    res = fnlabel("run", str(echo_recipe(tmp_path)))
    assert res.returncode == 0, res.stderr
    assert "1 row with failures" in res.stderr
    assert "in.jsonl line 3: input: missing key(s) ['input']" in res.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r.get("input") for r in rows] == ["a", None, "c"]
    assert rows[1]["outputs"][0]["raw_output"] is None and rows[2]["outputs"][0]["raw_output"].endswith("c")
    [failure] = read_jsonl(tmp_path / "out.jsonl.failures.jsonl")
    assert failure == {
        "row": 1,
        "where": "line 3",
        "generation": None,
        "stage": "input",
        "error": "missing key(s) ['input']",
    }


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (
            '[task]\nkind = "text-generation"\n[backend]\nkind = "echo"\nlatency = "ten"\n',
            ["bad.toml: backend.latency: expected float, got 'ten'"],
        ),
        (
            '[task]\nkind = "text-generation"\n[backend]\nkind = "ech"\n',
            ["bad.toml: backend.kind: unknown backend kind 'ech'; known kinds: echo,"],
        ),
        (
            '[task]\nkind = "text-generation"\n[backend]\nkind = "echo"\nmodel = "x"\n',
            ["bad.toml: backend: unknown key 'model' for backend kind 'echo'", "allowed keys: model_name"],
        ),
        (
            '[task]\nkind = "text-generation"\n[backend]\nkind = "echo"\n[run]\nbatch_size = "8"\n',
            ["bad.toml: run.batch_size: expected int >= 1, got '8'"],
        ),
        ('[task]\nkind = "text-generation"\nbackend = 3\n', ["bad.toml: task: unknown key 'backend'"]),
        ("[task]]\n", ["bad.toml: invalid TOML"]),
    ],
)
def test_bad_recipes_exit_2_with_the_file_and_key_path(tmp_path: Path, body: str, fragments: list[str]) -> None:
    (tmp_path / "bad.toml").write_text(body)
    for command in ("run", "validate"):
        res = fnlabel(command, str(tmp_path / "bad.toml"))
        assert res.returncode == 2
        assert res.stderr.startswith("fnlabel: error: ")
        for fragment in fragments:
            assert fragment in res.stderr
        assert "Traceback" not in res.stderr
        assert not (tmp_path / "out.jsonl").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    res = fnlabel("run", str(tmp_path / "missing.toml"), "--debug")
    assert res.returncode == 2
    assert "Traceback" in res.stderr and "missing.toml: no such recipe file" in res.stderr


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ('{"input": "a"}\n{"input": "b"\n', ["in.jsonl line 2: invalid JSON", "each line must be one JSON object"]),
        (None, ["in.jsonl: no such input file", "pass --input or set [run] input"]),
        (
            '{"input": "a", "outputs": 1}\n',
            ["in.jsonl line 1: the row already has a key 'outputs'", "set output_key in [run]"],
        ),
    ],
)
def test_bad_inputs_exit_2_with_the_line(tmp_path: Path, content: str | None, fragments: list[str]) -> None:
    if content is not None:
        (tmp_path / "in.jsonl").write_text(content)
    res = fnlabel("run", str(echo_recipe(tmp_path)))
    assert res.returncode == 2, res.stderr
    for fragment in fragments:
        assert fragment in res.stderr
    assert "Traceback" not in res.stderr


def test_output_from_another_input_is_refused(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(3))
    recipe = echo_recipe(tmp_path)
    assert fnlabel("run", str(recipe)).returncode == 0
    write_jsonl(tmp_path / "in.jsonl", questions(3, start=10))
    res = fnlabel("run", str(recipe))
    assert res.returncode == 2
    assert "out.jsonl line 1 is not input row" in res.stderr and "pass another --output" in res.stderr


def test_validate_and_list() -> None:
    res = fnlabel("validate", "recipes/echo.toml")
    assert (
        res.returncode == 0 and "recipes/echo.toml: ok: task text-generation (needs input), backend echo" in res.stdout
    )
    dump = fnlabel("validate", "recipes/echo.toml", "--dump")
    assert dump.returncode == 0 and '[backend]\nkind = "echo"' in dump.stdout
    listed = fnlabel("list")
    assert listed.returncode == 0
    for fragment in (
        "tasks:",
        "text-generation",
        "backends:",
        "echo",
        "vllm",
        "prompt formats:",
        "chatml",
        "recipes/quickstart.toml",
    ):
        assert fragment in listed.stdout


def test_kill_9_mid_run_then_rerun_completes_without_duplicates(tmp_path: Path) -> None:
    inputs = questions(40)
    write_jsonl(tmp_path / "in.jsonl", inputs)
    recipe = echo_recipe(tmp_path, backend="latency = 0.1", run="num_generations = 2\nbatch_size = 2")
    out = tmp_path / "out.jsonl"
    proc = popen("run", str(recipe))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 6):
        time.sleep(0.05)
    time.sleep(0.13)  # land anywhere in a batch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    partial = read_jsonl(out)  # whole lines only
    assert 6 <= len(partial) < 40
    assert [r["id"] for r in partial] == list(range(len(partial)))

    res = fnlabel("run", str(recipe))
    assert res.returncode == 0, res.stderr
    assert f"{40 - len(partial)} rows run" in res.stderr
    rows = read_jsonl(out)
    _check_rows(rows, inputs, 2)
    assert rows[: len(partial)] == partial

    reference = fnlabel("run", str(recipe), "--output", str(tmp_path / "ref.jsonl"))
    assert reference.returncode == 0
    assert out.read_text() == (tmp_path / "ref.jsonl").read_text()


def test_a_half_written_line_is_dropped_and_redone(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(4))
    recipe = echo_recipe(tmp_path)
    assert fnlabel("run", str(recipe), "--output", str(tmp_path / "ref.jsonl")).returncode == 0
    ref = (tmp_path / "ref.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "out.jsonl").write_text(ref[0] + ref[1][:25])  # as if killed inside a write
    res = fnlabel("run", str(recipe))
    assert res.returncode == 0 and "3 rows run" in res.stderr
    assert (tmp_path / "out.jsonl").read_text() == "".join(ref)


def test_retry_failed_reruns_only_the_failed_rows(tmp_path: Path) -> None:
    inputs = questions(6)
    inputs[1]["input"] = "boom one"
    inputs[4]["input"] = "boom four"
    write_jsonl(tmp_path / "in.jsonl", inputs)
    log = tmp_path / "calls.log"
    failing = echo_recipe(
        tmp_path,
        backend=f'fail_on = ["boom"]\ncall_log = "{log.as_posix()}"',
        run="batch_size = 2",
        name="failing.toml",
    )
    res = fnlabel("run", str(failing))
    assert res.returncode == 0, res.stderr
    assert "2 rows with failures" in res.stderr and "--retry-failed" in res.stderr
    assert "in.jsonl line 2 generation 0: backend: echo: prompt contains 'boom' (fail_on)" in res.stderr
    failures = read_jsonl(tmp_path / "out.jsonl.failures.jsonl")
    assert sorted({f["row"] for f in failures}) == [1, 4]
    before = read_jsonl(tmp_path / "out.jsonl")
    assert before[1]["outputs"][0]["raw_output"] is None
    assert log.read_text().count("g") == 4  # rows 0, 2, 3, 5

    fixed = echo_recipe(tmp_path, backend=f'call_log = "{log.as_posix()}"', name="fixed.toml")
    res = fnlabel("run", str(fixed), "--retry-failed")
    assert res.returncode == 0, res.stderr
    assert "retried 2 failed rows" in res.stderr
    assert log.read_text().count("g") == 6  # only the two failed rows ran again
    after = read_jsonl(tmp_path / "out.jsonl")
    _check_rows(after, inputs, 1)
    assert [after[i] for i in (0, 2, 3, 5)] == [before[i] for i in (0, 2, 3, 5)]
    assert read_jsonl(tmp_path / "out.jsonl.failures.jsonl") == []
    again = fnlabel("run", str(fixed), "--retry-failed")
    assert again.returncode == 0 and "retried 0 failed rows" in again.stderr


def test_max_failures_stops_a_run_failing_wholesale(tmp_path: Path) -> None:
    inputs = questions(2) + [{"id": i, "input": f"broken {i}"} for i in range(2, 20)]
    write_jsonl(tmp_path / "in.jsonl", inputs)
    recipe = echo_recipe(tmp_path, backend='raise_on = ["broken"]', run="batch_size = 2")
    res = fnlabel("run", str(recipe), "--max-failures", "3")
    assert res.returncode == 3, res.stderr
    assert "stopped: 4 rows failed, more than --max-failures 3" in res.stderr
    assert "BackendError: echo: prompt 0 contains 'broken' (raise_on)" in res.stderr
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 6  # one good batch, two failed ones, then it stopped
    assert len(read_jsonl(tmp_path / "out.jsonl.failures.jsonl")) == 4
    rerun = fnlabel("run", str(recipe), "--max-failures", "3")  # its first batch fails: stop, write nothing
    assert rerun.returncode == 4 and len(read_jsonl(tmp_path / "out.jsonl")) == 6


def test_max_failures_counts_failed_generations_too(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(10))
    recipe = echo_recipe(tmp_path, backend='fail_on = ["number"]', run="batch_size = 3\nmax_failures = 0")
    res = fnlabel("run", str(recipe))
    assert res.returncode == 3 and "more than --max-failures 0" in res.stderr
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 3


def test_a_first_batch_that_raises_stops_the_run_before_writing(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(6))
    recipe = echo_recipe(tmp_path, backend='raise_on = ["question"]', run="batch_size = 2")
    res = fnlabel("run", str(recipe))
    assert res.returncode == 4, res.stderr
    assert "the first batch" in res.stderr and "failed as a whole" in res.stderr
    assert "BackendError: echo: prompt 0 contains 'question' (raise_on)" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out.jsonl").exists() or read_jsonl(tmp_path / "out.jsonl") == []


def test_a_batch_that_raises_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    inputs = questions(6)
    inputs[2]["input"] = "poison"
    write_jsonl(tmp_path / "in.jsonl", inputs)
    recipe = echo_recipe(tmp_path, backend='raise_on = ["poison"]', run="batch_size = 2")
    res = fnlabel("run", str(recipe))
    assert res.returncode == 0, res.stderr
    assert "2 rows with failures" in res.stderr  # the poisoned batch: rows 2 and 3
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["outputs"][0]["raw_output"] is None for r in rows] == [False, False, True, True, False, False]


def test_command_line_overrides(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "other.jsonl", questions(5))
    recipe = echo_recipe(tmp_path, run="num_generations = 1")
    res = fnlabel(
        "run",
        str(recipe),
        "--input",
        str(tmp_path / "other.jsonl"),
        "--output",
        str(tmp_path / "o.jsonl"),
        "--num-generations",
        "3",
        "--limit",
        "2",
        "--no-cache",
    )
    assert res.returncode == 0, res.stderr
    _check_rows(read_jsonl(tmp_path / "o.jsonl"), questions(2), 3)
    bad = fnlabel("run", str(recipe), "--num-generations", "0")
    assert bad.returncode == 2 and "num_generations must be an integer in [1, 1000], got 0" in bad.stderr
    absurd = fnlabel("run", str(recipe), "--num-generations", "100000000")  # refused before any work
    assert absurd.returncode == 2 and "num_generations must be an integer in [1, 1000], got 100000000" in absurd.stderr


def test_default_output_is_named_after_the_recipe(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(2))
    (tmp_path / "named.toml").write_text(
        f'[task]\nkind = "text-generation"\n[backend]\nkind = "echo"\n[run]\ninput = "{tmp_path / "in.jsonl"}"\n'
    )
    res = fnlabel("run", str(tmp_path / "named.toml"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(read_jsonl(tmp_path / "out" / "named.jsonl")) == 2


def test_progress_line() -> None:
    line = status_line(Progress(12, 24, 30, 2, Usage(100, 4000, 3, 1.5), 10.0))
    assert line == "12/24 rows (50%)  3.0 gen/s  400 tok/s  2 failed  3 truncated  $1.50  ETA 0:00:10"


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal() -> None:
    import io

    piped = io.StringIO()
    display = RunDisplay(piped, interval=0)
    display(Progress(0, 10, 0, 0, Usage(), 0.0))  # the start: nothing to say yet
    display(Progress(5, 10, 5, 0, Usage(50, 60, 1), 1.0))
    display(Progress(10, 10, 10, 0, Usage(100, 120, 1), 2.0))  # the end: the summary says it
    assert piped.getvalue() == "fnlabel: 5/10 rows (50%)  5.0 gen/s  60 tok/s  0 failed  1 truncated  ETA 0:00:01\n"
    quiet = io.StringIO()
    RunDisplay(quiet, interval=3600)(Progress(5, 10, 5, 0, Usage(), 1.0))
    assert quiet.getvalue() == "", "a line every interval, not one per batch"


def test_progress_bar_on_a_real_tty(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_jsonl(tmp_path / "in.jsonl", questions(4))
    recipe = echo_recipe(tmp_path, run="batch_size = 1")
    leader, follower = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FNLABEL_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "fnlabel", "run", str(recipe)],
        cwd=ROOT,
        env=env,
        stderr=follower,
        stdout=subprocess.DEVNULL,
        timeout=60,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    text = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert "4/4 rows" in text and "gen/s" in text and "tok/s" in text and "truncated" in text and "ETA" in text


def test_in_process_and_pool_recipes_run(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(4))
    child = echo_recipe(tmp_path, extra="in_process = true", run="num_generations = 2", name="child.toml")
    res = fnlabel("run", str(child), "--output", str(tmp_path / "child.jsonl"), timeout=120)
    assert res.returncode == 0, res.stderr
    _check_rows(read_jsonl(tmp_path / "child.jsonl"), questions(4), 2)

    pool = echo_recipe(
        tmp_path,
        run="num_generations = 3",
        name="pool.toml",
        backend='[[pool]]\nmodel_name = "a"\n[[pool]]\nin_process = true\n[pool.backend]\nkind = "echo"\nmodel_name = "b"\n',
    )
    res = fnlabel("run", str(pool), "--output", str(tmp_path / "pool.jsonl"), timeout=120)
    assert res.returncode == 0, res.stderr
    for row in read_jsonl(tmp_path / "pool.jsonl"):
        assert [o["model_name"] for o in row["outputs"]] == ["a", "a", "b"]


@pytest.mark.slow
def test_quickstart_on_the_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "quickstart.jsonl"
    res = fnlabel("run", "recipes/quickstart.toml", "--output", str(out), "--limit", "3", timeout=300)
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(out)
    assert len(rows) == 3
    for row in rows:
        assert len(row["outputs"]) == 2
        assert all(isinstance(o["parsed_output"]["generations"], str) and o["raw_output"] for o in row["outputs"])


def test_failure_records_of_a_batch_that_never_landed_are_dropped(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"text": "no input"}\n{"input": "b"}\n')
    recipe = echo_recipe(tmp_path)
    # as if killed after the first batch's failure records were written, before its output lines
    (tmp_path / "out.jsonl.failures.jsonl").write_text(
        '{"row": 0, "where": "line 1", "generation": null, "stage": "input", "error": "x"}\n{"row": 1, "wh'
    )
    res = fnlabel("run", str(recipe))
    assert res.returncode == 0, res.stderr
    [failure] = read_jsonl(tmp_path / "out.jsonl.failures.jsonl")
    assert failure["row"] == 0 and failure["error"] == "missing key(s) ['input']"
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 2


def test_resuming_with_another_num_generations_is_refused_not_mixed(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(4))
    recipe = echo_recipe(tmp_path, run="batch_size = 2")
    assert fnlabel("run", str(recipe), "--limit", "2").returncode == 0
    before = (tmp_path / "out.jsonl").read_text()
    for extra in ([], ["--retry-failed"]):
        res = fnlabel("run", str(recipe), "--num-generations", "3", *extra)
        assert res.returncode == 2, res.stderr
        assert "out.jsonl line 1 holds 1 generation in 'outputs', but this run asks for 3" in res.stderr
        assert "rerun with --num-generations 1" in res.stderr and "Traceback" not in res.stderr
        assert (tmp_path / "out.jsonl").read_text() == before
    res = fnlabel("run", str(recipe), "--num-generations", "1")
    assert res.returncode == 0, res.stderr
    _check_rows(read_jsonl(tmp_path / "out.jsonl"), questions(4), 1)


@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_an_output_that_cannot_be_written_exits_2_naming_it(tmp_path: Path, where: str) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(2))
    out = tmp_path / "in.jsonl" / "out.jsonl" if where == "under a file" else tmp_path / "folder.jsonl"
    if where == "a folder":
        out.mkdir()
    res = fnlabel("run", str(echo_recipe(tmp_path)), "--output", str(out))
    assert res.returncode == 2, res.stderr
    assert f"{out}: cannot write the output there" in res.stderr and "pass another --output" in res.stderr
    assert "Traceback" not in res.stderr


def test_an_empty_input_writes_an_empty_output(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("\n\n")  # blank lines only: no rows
    res = fnlabel("run", str(echo_recipe(tmp_path)))
    assert res.returncode == 0, res.stderr
    assert "nothing to do: the input has no rows" in res.stderr
    assert (tmp_path / "out.jsonl").read_text() == ""  # a next step finds the (empty) output


def test_a_parse_failure_hint_says_the_cache_returns_the_same_output(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_jsonl(tmp_path / "in.jsonl", [{"input": "fine"}, {"input": "odd one"}])
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[task]\nkind = "picky"\n[backend]\nkind = "echo"\n'
        f'[run]\ninput = "{(tmp_path / "in.jsonl").as_posix()}"\noutput = "{(tmp_path / "out.jsonl").as_posix()}"\n'
    )
    # the test-only task kind "picky", installed as a plugin would be
    dist = make_dist(tmp_path / "site", "fnlabel-picky", {"fnlabel.tasks": {"picky": "tests.recipe_helpers:picky"}})
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(dist)]),
        "FNLABEL_CACHE_DIR": str(tmp_path / "cache"),
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fnlabel", "run", str(recipe), *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    for args in ([], ["--retry-failed"]):
        res = run(*args)
        assert res.returncode == 0, res.stderr
        assert "parse: ParseError: expected an even answer" in res.stderr
        assert "a parse failure comes back from the cache: add --no-cache to sample it again" in res.stderr
    res = run("--retry-failed", "--no-cache")
    assert res.returncode == 0 and "comes back from the cache" not in res.stderr


def test_an_unfinished_parquet_run_names_the_file_that_holds_its_rows(tmp_path: Path) -> None:
    inputs = questions(6)
    inputs[3]["input"] = "boom"
    write_jsonl(tmp_path / "in.jsonl", inputs)
    recipe = echo_recipe(tmp_path, backend='fail_on = ["boom"]', run="batch_size = 2")
    out = tmp_path / "out.parquet"
    res = fnlabel("run", str(recipe), "--output", str(out), "--max-failures", "0")
    assert res.returncode == 3, res.stderr
    assert not out.exists()
    assert f"4/6 rows in {out}.jsonl" in res.stderr and f"{out} is written when every row is done" in res.stderr
    (tmp_path / "folder.parquet").mkdir()
    res = fnlabel("run", str(recipe), "--output", str(tmp_path / "folder.parquet"))
    assert res.returncode == 2, res.stderr
    assert "folder.parquet: cannot write the output there" in res.stderr and "Traceback" not in res.stderr


def test_a_row_with_half_an_emoji_runs_with_the_cache_on_and_resumes(tmp_path: Path) -> None:
    # JSON "\ud83d" alone (an emoji cut in two, common in scraped text) decodes to a lone surrogate
    (tmp_path / "in.jsonl").write_text('{"input": "cut \\ud83d emoji"}\n{"input": "whole"}\n')
    recipe = echo_recipe(tmp_path)
    res = fnlabel("run", str(recipe))
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert rows[0]["input"] == "cut \ud83d emoji" and rows[0]["outputs"][0]["raw_output"].endswith("cut \ud83d emoji")
    again = fnlabel("run", str(recipe))
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_an_output_that_is_the_input_file_is_refused(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(2))
    before = (tmp_path / "in.jsonl").read_text()
    res = fnlabel("run", str(echo_recipe(tmp_path)), "--output", str(tmp_path / "." / "in.jsonl"))
    assert res.returncode == 2, res.stderr
    assert "the output is the input file (" in res.stderr and "pass another --output" in res.stderr
    assert (tmp_path / "in.jsonl").read_text() == before


def test_a_second_run_on_the_same_output_is_refused_while_the_first_writes(tmp_path: Path) -> None:
    inputs = questions(30)
    write_jsonl(tmp_path / "in.jsonl", inputs)
    recipe = echo_recipe(tmp_path, backend="latency = 0.1", run="batch_size = 2")
    out = tmp_path / "out.jsonl"
    first = popen("run", str(recipe), "--no-cache")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 2):
        time.sleep(0.05)
    second = fnlabel("run", str(recipe), "--no-cache")
    assert second.returncode == 2, second.stderr
    assert f"{out}: another fnlabel run is writing this output" in second.stderr
    assert first.wait(timeout=60) == 0
    _check_rows(read_jsonl(out), inputs, 1)  # not interleaved with a second writer's rows
    assert not (tmp_path / "out.jsonl.lock").exists()


@pytest.mark.slow
def test_ctrl_c_during_a_llama_cpp_run_exits_130_without_crashing(tmp_path: Path) -> None:
    # the batch computed ahead was freed under llama.cpp: Ctrl-C ended in SIGSEGV
    write_jsonl(tmp_path / "in.jsonl", questions(12))
    recipe = echo_recipe(tmp_path, run="batch_size = 1\nnum_generations = 2").read_text()
    recipe = recipe.replace('kind = "echo"', 'kind = "llama-cpp"\nmodel = "smollm2"').replace("= 16", "= 48")
    (tmp_path / "r.toml").write_text(recipe)
    out = tmp_path / "out.jsonl"
    for presses in (1, 2):  # once: the batch in flight ends first; twice: exit at once
        before = out.read_text().count("\n") if out.exists() else 0
        proc = popen("run", str(tmp_path / "r.toml"), "--no-cache")
        deadline = time.monotonic() + 120
        # wait for a line this process wrote: it is then inside the run, past imports and model load
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") <= before):
            time.sleep(0.05)
        time.sleep(0.3)  # inside the next batch
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.2)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "interrupted; the output holds every finished batch" in err
        assert [r["id"] for r in read_jsonl(out)] == list(range(len(read_jsonl(out))))
        assert not (tmp_path / "out.jsonl.lock").exists()


def test_validate_reports_what_run_would_refuse_without_loading_a_model(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", questions(3))
    missing = echo_recipe(tmp_path, name="a.toml")
    missing.write_text(missing.read_text().replace("in.jsonl", "nope.jsonl"))
    same = echo_recipe(tmp_path, name="b.toml")
    same.write_text(same.read_text().replace("out.jsonl", "in.jsonl"))
    key = tmp_path / "c.toml"
    key.write_text(
        '[task]\nkind = "text-generation"\n[backend]\nkind = "openai"\nmodel = "m"\napi_key_env = "NO_SUCH_KEY_X"\n'
        f'[params]\ntop_k = 5\n[run]\ninput = "{(tmp_path / "in.jsonl").as_posix()}"\n'
    )
    clash = echo_recipe(tmp_path, name="d.toml")
    write_jsonl(tmp_path / "in.jsonl", [*questions(2), {"input": "x", "outputs": 1}])
    expected = {
        missing: "nope.jsonl: no such input file",
        same: "the output is the input file",
        key: "environment variable NO_SUCH_KEY_X is not set",
        clash: "in.jsonl line 3: the row already has a key 'outputs'",
    }
    for recipe, fragment in expected.items():
        res = fnlabel("validate", str(recipe))
        assert res.returncode == 2 and fragment in res.stderr, (recipe.name, res.stderr)
    both = fnlabel("validate", str(key))  # every problem, not only the first
    assert "top_k=5 is not an OpenAI parameter" in both.stderr and "NO_SUCH_KEY_X" in both.stderr
