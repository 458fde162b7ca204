"""Batch mode (``fnlabel run --batch``) against a local Batch API server: submit, rerun, collect, kill -9, failures.

The server (:class:`tests.servers.BatchServer`) answers each request line with what the
OpenAI-compatible test server would answer the same body, and counts what it was sent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from fnlabel.cli import main
from tests.servers import BatchServer, FaultServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server():
    with BatchServer() as srv:
        yield srv


def write_input(path: Path, n: int, fail_every: int = 0) -> None:
    with open(path, "w") as f:
        for i in range(n):
            marker = " FAIL-LINE" if fail_every and i % fail_every == 1 else ""
            f.write(json.dumps({"input": f"question {i}{marker}", "id": i}) + "\n")


def recipe(tmp: Path, url: str, rows: int = 20, *, extra: str = "", pricing: str = "", fail_every: int = 0) -> Path:
    write_input(tmp / "in.jsonl", rows, fail_every)
    path = tmp / "r.toml"
    path.write_text(
        f"""
[task]
kind = "text-generation"

[backend]
kind = "openai"
model = "m"
base_url = "{url}"

[params]
max_new_tokens = 16
temperature = 0.7
seed = 3
{pricing}
[run]
input = "{tmp / "in.jsonl"}"
output = "{tmp / "out.jsonl"}"
num_generations = 2
batch_poll_interval = 0.01
{extra}
"""
    )
    return path


def run(path: Path, *args: str) -> int:
    return main(["run", str(path), "--cache", str(path.parent / "cache.sqlite"), *args])


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def shape(record: dict) -> tuple:
    return (
        sorted(record),
        record["id"],
        [(sorted(o), o["model_name"], o["prompt_used"], o["raw_output"] is not None) for o in record["outputs"]],
    )


def test_1000_rows_x_2_submit_rerun_collect_with_2000_requests_and_no_direct_call(server, tmp_path) -> None:
    path = recipe(tmp_path, server.url, rows=1000, extra="batch_max_requests = 800")
    server.outcome = "in_progress"
    assert run(path, "--batch") == 5  # submitted: 3 files of at most 800 requests
    assert server.batch_requests() == 2000 and len(server.batches) == 3
    assert len(set(server.custom_ids())) == 2000
    assert not lines(tmp_path / "out.jsonl")
    assert run(path, "--batch") == 5  # still running: nothing submitted again, nothing written
    assert server.batch_requests() == 2000 and not lines(tmp_path / "out.jsonl")
    server.outcome = "complete"
    assert run(path, "--batch") == 0
    assert server.batch_requests() == 2000 and server.chat_calls() == 0
    batched = lines(tmp_path / "out.jsonl")
    assert run(path, "--batch") == 0 and server.batch_requests() == 2000  # complete: nothing to do
    # the same recipe without --batch, against the live endpoint, into another output
    with FaultServer() as live:
        direct = recipe(tmp_path / "direct", live.url, rows=1000) if (tmp_path / "direct").mkdir() is None else None
        assert run(direct) == 0
        normal = lines(tmp_path / "direct" / "out.jsonl")
    assert len(batched) == len(normal) == 1000
    assert [shape(r) for r in batched] == [shape(r) for r in normal]
    assert all(o["metadata"]["output_tokens"] for r in batched for o in r["outputs"])


def test_cost_is_reported_at_batch_prices(server, tmp_path, capsys) -> None:
    prices = "[pricing]\ninput = 2.0\noutput = 8.0\n"
    path = recipe(tmp_path, server.url, rows=10, pricing=prices)
    assert run(path, "--batch", "--wait") == 0
    outs = [o["metadata"] for r in lines(tmp_path / "out.jsonl") for o in r["outputs"]]
    tokens_in, tokens_out = sum(m["input_tokens"] for m in outs), sum(m["output_tokens"] for m in outs)
    half = (tokens_in * 1.0 + tokens_out * 4.0) / 1e6
    assert f"${half:.6f}" in capsys.readouterr().err or f"${half:.4f}" in capsys.readouterr().err


def test_wait_polls_until_done_and_writes_the_output(server, tmp_path) -> None:
    server.polls_until_done = 3
    path = recipe(tmp_path, server.url, rows=30, extra="batch_max_requests = 25")
    assert run(path, "--batch", "--wait") == 0
    assert len(lines(tmp_path / "out.jsonl")) == 30
    assert server.batch_requests() == 60 and server.retrieves >= 3 * 3


def test_a_run_without_batch_is_refused_while_batches_are_open(server, tmp_path, capsys) -> None:
    path = recipe(tmp_path, server.url, rows=5)
    server.outcome = "in_progress"
    assert run(path, "--batch") == 5
    assert run(path) == 2
    assert "not yet collected" in capsys.readouterr().err
    assert server.chat_calls() == 0


def test_line_errors_and_an_expired_batch_become_row_failures_and_retry_resubmits_exactly_those(
    server, tmp_path
) -> None:
    # 20 rows x 2 = 40 requests in 2 batches of 20; rows 1, 6, 11, 16 fail on every line;
    # the second batch expires after 10 of its lines ran
    path = recipe(tmp_path, server.url, rows=20, fail_every=5, extra="batch_max_requests = 20")
    server.outcome = lambda index: "expired" if index == 1 else "complete"
    server.partial = 10
    assert run(path, "--batch") == 5
    submitted = server.custom_ids()
    assert run(path, "--batch") == 0  # collected: every row written, the failed ones with failure records
    out = lines(tmp_path / "out.jsonl")
    assert len(out) == 20
    fails = lines(tmp_path / "out.jsonl.failures.jsonl")
    assert {1, 6, 11, 16} <= {f["row"] for f in fails}
    assert any("expired" in f["error"] for f in fails) and any("injected line error" in f["error"] for f in fails)
    expected = {(f["row"], f["generation"]) for f in fails}
    # one failure per failed line (the fail-marked ones, and the 10 the expired batch never ran)
    assert len(expected) == len(fails) == sum(b.data["request_counts"]["failed"] for b in server.batches.values())
    assert sum("expired" in f["error"] for f in fails) == 10
    # the failed lines, and only those, are submitted again
    server.fail_marker = None
    server.outcome = "complete"
    assert run(path, "--batch", "--retry-failed") == 5
    again = server.custom_ids()[len(submitted) :]
    assert len(again) == len(expected) and set(again) <= set(submitted)
    assert run(path, "--batch", "--retry-failed") == 0
    assert not lines(tmp_path / "out.jsonl.failures.jsonl")
    assert all(o["raw_output"] for r in lines(tmp_path / "out.jsonl") for o in r["outputs"])
    assert server.chat_calls() == 0


def _killed_at(server: BatchServer, path: Path, hold: str) -> None:
    """Start ``fnlabel run --batch`` in a process, SIGKILL it while the server holds its ``hold`` request."""
    server.hold = {hold}
    cmd = [sys.executable, "-m", "fnlabel", "run", str(path), "--batch", "--cache", str(path.parent / "cache.sqlite")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert server.wait_held(timeout=120), proc.stderr.read().decode() if proc.poll() is not None else "no request"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    server.release()


@pytest.mark.parametrize("hold", ["upload", "create_request", "create"])
def test_kill_9_at_any_step_never_submits_twice(server, tmp_path, hold: str) -> None:
    path = recipe(tmp_path, server.url, rows=10)
    _killed_at(server, path, hold)
    made = len(server.batches)
    assert made == (1 if hold == "create" else 0)
    if made:  # the batch the killed run made finishes before the rerun: the rerun must collect it
        openai.OpenAI(base_url=server.url, api_key="x").batches.retrieve(next(iter(server.batches)))
        assert run(path, "--batch") == 0
    else:  # the rerun makes what the killed run did not (and, done at once here, collects it)
        assert run(path, "--batch") in (0, 5)
        assert run(path, "--batch") == 0
    assert len(server.batches) == 1 and server.batch_requests() == 20 and server.uploads == 1
    out = lines(tmp_path / "out.jsonl")
    assert len(out) == 10 and all(o["raw_output"] for r in out for o in r["outputs"])
    assert not lines(tmp_path / "out.jsonl.failures.jsonl")


def test_greedy_generations_take_one_request_per_row(server, tmp_path) -> None:
    path = recipe(tmp_path, server.url, rows=5)
    path.write_text(path.read_text().replace("temperature = 0.7", "temperature = 0.0"))
    assert run(path, "--batch", "--wait") == 0
    assert server.batch_requests() == 5
    out = lines(tmp_path / "out.jsonl")
    assert all(len(r["outputs"]) == 2 and r["outputs"][0]["raw_output"] == r["outputs"][1]["raw_output"] for r in out)


def test_a_request_too_large_for_a_batch_file_fails_its_row_only(server, tmp_path) -> None:
    path = recipe(tmp_path, server.url, rows=4, extra="batch_max_bytes = 1000")
    rows = [json.loads(line) for line in (tmp_path / "in.jsonl").read_text().splitlines()]
    rows[2]["input"] = "long " * 300
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(path, "--batch", "--wait") == 0
    assert server.batch_requests() == 6
    fails = lines(tmp_path / "out.jsonl.failures.jsonl")
    assert {f["row"] for f in fails} == {2} and "batch_max_bytes" in fails[0]["error"]


def test_batch_mode_refuses_what_it_cannot_honour(server, tmp_path, capsys) -> None:
    path = recipe(tmp_path, server.url, rows=3, pricing="[pricing]\ninput = 1.0\n")
    assert run(path, "--batch", "--max-cost", "1") == 2
    assert "--max-cost cannot bound a batch-mode run" in capsys.readouterr().err
    assert run(path, "--wait") == 2  # --wait without --batch
    # [run] batch = true outside fnlabel run --batch would make live calls: refused
    from fnlabel import load_recipe
    from fnlabel.errors import ConfigError
    from fnlabel.run import resolve_options, run_recipe

    batched = load_recipe(path.write_text(path.read_text() + "batch = true\n") and path)
    with pytest.raises(ConfigError, match="fnlabel run --batch"):
        run_recipe(batched, resolve_options(batched))
    assert server.chat_calls() == 0 and server.batch_requests() == 0


def test_batch_mode_needs_the_openai_backend(tmp_path, capsys) -> None:
    path = tmp_path / "r.toml"
    write_input(tmp_path / "in.jsonl", 2)
    path.write_text(
        f'[task]\nkind = "text-generation"\n[backend]\nkind = "echo"\n'
        f'[run]\ninput = "{tmp_path / "in.jsonl"}"\noutput = "{tmp_path / "o.jsonl"}"\nbatch = true\n'
    )
    assert run(path) == 2
    assert "batch mode needs the openai backend" in capsys.readouterr().err


def test_export_then_import_of_an_openai_format_results_file(server, tmp_path) -> None:
    path = recipe(tmp_path, server.url, rows=6)
    cache = ["--cache", str(tmp_path / "cache.sqlite")]
    assert main(["batch", "export", str(path), "--to", str(tmp_path / "req.jsonl"), *cache]) == 0
    requests = lines(tmp_path / "req.jsonl")
    assert len(requests) == 12 and not (tmp_path / "out.jsonl").exists()
    # answer them as a server would (the first row's lines left out: those rows wait)
    with FaultServer() as live:
        results = [
            {
                "id": f"r{i}",
                "custom_id": r["custom_id"],
                "response": {"status_code": 200, "body": live.chat_payload(r["body"])},
                "error": None,
            }
            for i, r in enumerate(requests)
            if "question 0" not in json.dumps(r["body"])
        ]
    (tmp_path / "res.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    assert main(["batch", "import", str(path), str(tmp_path / "res.jsonl"), *cache]) == 5  # row 0 is missing
    assert not lines(tmp_path / "out.jsonl")  # rows are written in order
    assert main(["batch", "export", str(path), "--to", str(tmp_path / "req2.jsonl"), *cache]) == 0
    assert [r["custom_id"] for r in lines(tmp_path / "req2.jsonl")] == [r["custom_id"] for r in requests[:2]]


@pytest.mark.slow
def test_export_run_with_vllms_own_batch_runner_and_import(tmp_path) -> None:
    """The request file is what vLLM's ``run_batch`` reads; its output file is what ``batch import`` reads."""
    from fnlabel.backends.models import embedded_hf_folder

    path = recipe(tmp_path, "http://127.0.0.1:9/v1", rows=4)  # (no server: nothing is sent)
    path.write_text(path.read_text().replace('model = "m"', 'model = "smollm2"'))
    cache = ["--cache", str(tmp_path / "cache.sqlite")]
    assert main(["batch", "export", str(path), "--to", str(tmp_path / "req.jsonl"), *cache]) == 0
    assert len(lines(tmp_path / "req.jsonl")) == 8
    runner = [sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(tmp_path / "req.jsonl")]
    runner += ["-o", str(tmp_path / "res.jsonl"), "--model", str(embedded_hf_folder()), "--served-model-name"]
    runner += ["smollm2", "--dtype", "float32", "--max-model-len", "512", "--enforce-eager"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}
    proc = subprocess.run(runner, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = lines(tmp_path / "res.jsonl")
    assert len(results) == 8 and all(r["response"]["status_code"] == 200 for r in results)
    assert main(["batch", "import", str(path), str(tmp_path / "res.jsonl"), *cache]) == 0
    out = lines(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [0, 1, 2, 3]
    assert all(o["raw_output"] and o["metadata"]["output_tokens"] for r in out for o in r["outputs"])
    assert not (tmp_path / "out.jsonl.failures.jsonl").exists() or not lines(tmp_path / "out.jsonl.failures.jsonl")


def test_a_two_stage_recipe_takes_two_rounds_and_labels_only_whole_rows(server, tmp_path) -> None:
    path = recipe(tmp_path, server.url, rows=12)
    path.write_text(
        path.read_text()
        + f'\n[label]\n[label.task]\nkind = "ultrafeedback"\n[label.backend]\nkind = "openai"\nmodel = "judge"\n'
        f'base_url = "{server.url}"\n[label.params]\nmax_new_tokens = 32\n'
    )
    server.outcome = "in_progress"
    assert run(path, "--batch") == 5
    assert server.batch_requests() == 24  # the generator's only: nothing is labelled before its generations exist
    server.outcome = "complete"
    assert run(path, "--batch") == 5  # collected the generations, submitted the labeller's requests
    assert server.batch_requests() == 24 + 12
    labels = [b for b in server.batches.values() if b.lines[0]["body"]["model"] == "judge"]
    assert sum(len(b.lines) for b in labels) == 12
    assert run(path, "--batch") == 0
    out = lines(tmp_path / "out.jsonl")
    assert len(out) == 12 and all(len(r["generator_outputs"]) == 2 and len(r["outputs"]) == 1 for r in out)
    assert all(r["outputs"][0]["raw_output"] for r in out) and server.chat_calls() == 0
