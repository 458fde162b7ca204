"""``[run] processes``: an HTTP backend's requests spread over child processes, one ordered output.

Built on the combinators: ``pooled(by="rows")`` spreads each call's rows over identical members,
``in_processes`` makes those members ``in_process`` children with a share of ``max_concurrency``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fnlabel import ConfigError, llm, load_recipe, tasks
from fnlabel.backends import echo
from fnlabel.combinators import pooled
from fnlabel.run import resolve_options, run_recipe
from tests.servers import Fault, FaultServer


def test_pooled_by_rows_spreads_rows_and_keeps_their_order() -> None:
    task = tasks.text_generation()
    pool = pooled([llm(task, echo(model_name="a")), llm(task, echo(model_name="b"))], by="rows")
    out = pool.run([{"input": str(i)} for i in range(5)], 2)
    assert [o[0]["raw_output"][-1] for o in out.outputs] == ["0", "1", "2", "3", "4"]
    assert [o[0]["model_name"] for o in out.outputs] == ["a", "a", "a", "b", "b"]
    assert all(len(o) == 2 for o in out.outputs)
    bad = pool.run([{"input": "x"}, {"nope": 1}, {"input": "y"}, {"nope": 2}])
    assert [f.row for f in bad.failures] == [1, 3]  # failure rows are the call's, not the member's
    with pytest.raises(ConfigError, match="by must be one of"):
        pooled([llm(task, echo()), llm(task, echo())], by="columns")


def _recipe(tmp: Path, url: str, processes: int, rows: int = 300) -> tuple:
    data = tmp / "in.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"input": f"q {i}."}) + "\n" for i in range(rows)))
    recipe = load_recipe(
        _write(
            tmp / f"r{processes}.toml",
            f'[task]\nkind = "text-generation"\n[backend]\nkind = "openai"\nmodel = "m"\nbase_url = "{url}"\n'
            f"max_concurrency = 32\n[params]\nmax_new_tokens = 8\nseed = 1\n"
            f'[run]\nnum_generations = 2\nbatch_size = 8\nprocesses = {processes}\ninput = "{data}"\n'
            f'output = "{tmp / f"out{processes}.jsonl"}"\n',
        )
    )
    return recipe, resolve_options(recipe)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_two_processes_write_the_same_output_as_one(tmp_path: Path) -> None:
    with FaultServer({"q 17.": Fault.error(400, "bad row")}, latency=0.01) as srv:
        one = run_recipe(*_recipe(tmp_path, srv.url, 1))
        two = run_recipe(*_recipe(tmp_path, srv.url, 2))
        assert srv.max_in_flight <= 32
    assert (tmp_path / "out1.jsonl").read_text() == (tmp_path / "out2.jsonl").read_text()
    assert one.rows_done == two.rows_done == 300 and two.failed_rows == one.failed_rows == 1
    assert (tmp_path / "out1.jsonl.failures.jsonl").read_text() == (tmp_path / "out2.jsonl.failures.jsonl").read_text()


def test_two_processes_keep_the_whole_max_concurrency_in_flight(tmp_path: Path) -> None:
    # the runner sizes its window of batches from max_concurrency (in prompts): the children's
    # shares must add up to the backend's, whatever the rows each call gives a child
    with FaultServer({}, latency=0.01) as srv:
        recipe, _opts = _recipe(tmp_path, srv.url, 2)
        built = recipe.build()
        try:
            assert built.max_concurrency == 32
        finally:
            built.close()


def test_processes_need_a_backend_with_requests_to_share(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"input": "a"}\n')
    recipe = load_recipe(
        _write(
            tmp_path / "r.toml",
            '[task]\nkind = "text-generation"\n[backend]\nkind = "echo"\n'
            f'[run]\nprocesses = 2\ninput = "{tmp_path / "in.jsonl"}"\noutput = "{tmp_path / "o.jsonl"}"\n',
        )
    )
    with pytest.raises(ConfigError, match="no max_concurrency to share"):
        recipe.build()
