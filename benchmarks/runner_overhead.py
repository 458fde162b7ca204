"""Overhead of `fnlabel run`'s machinery (batches, JSONL lines, fsync per batch, resume bookkeeping).

Side by side in one process, on the no-work echo backend (so the overhead is all there is):
  direct: the composed LLM's .run over the same batches, outputs kept in memory;
  runner: fnlabel.run.run_recipe, writing the crash-safe JSONL output.
Prints microseconds per row and the ratio runner/direct, for two batch sizes, and a
resume of a finished output (no model built).

Then the same against a remote backend, where what matters is keeping requests in flight:
the OpenAI backend (max_concurrency 64) against a local server with 100 ms latency, batch 16,
rows/s of one direct ``.run`` over every row (the ideal), of ``fnlabel run``, and of
``fnlabel run`` held to one batch at a time (the LLM's ``max_concurrency`` hidden, as a local
model's). Writes benchmarks/results/runner_overhead.json.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.openai_bench import start_server
from fnlabel.recipes import loads_recipe
from fnlabel.run import resolve_options, run_recipe

ROWS = 4000
K = 2
RECIPE = """
[task]
kind = "text-generation"
system_prompt = ""
[backend]
kind = "echo"
[params]
max_new_tokens = 32
"""


def ratios(results: dict) -> dict:
    """The common ``"ratios"`` block read by benchmarks/plot.py, from the ``batch_<n>`` figures."""
    return {
        f"runner / direct LLM, us per row, batch {key.removeprefix('batch_')}": {
            "value": round(r["ratio_runner_over_direct"], 3),
            "better": "lower",
        }
        for key, r in results.items()
        if key.startswith("batch_")
    }


class OneAtATime:
    """The built LLM without its ``max_concurrency``: the runner then runs one batch at a time."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.task, self.model_name = inner, inner.task, inner.model_name

    def run(self, inputs: list, k: int = 1) -> Any:
        return self.inner.run(inputs, k)

    def close(self) -> None:
        self.inner.close()


def remote(tmp: Path, rows: int = 1280, batch: int = 16) -> dict:
    """Rows/s against a 100 ms OpenAI-compatible server: direct .run, fnlabel run, one batch at a time."""
    src = tmp / "remote.jsonl"
    data = [{"id": i, "input": f"question {i}"} for i in range(rows)]
    src.write_text("".join(json.dumps(r) + "\n" for r in data))
    proc, url = start_server(0.1)
    try:
        recipe = loads_recipe(f"""
[task]
kind = "text-generation"
[backend]
kind = "openai"
model = "fault-model"
base_url = "{url}"
max_concurrency = 64
[params]
max_new_tokens = 16
""")
        llm = recipe.build()
        llm.run(data[:64])  # warm the connection pool
        t0 = time.perf_counter()
        assert not llm.run(data).failures
        direct = rows / (time.perf_counter() - t0)
        llm.close()
        rates = {}
        for name, wrap in (("runner", None), ("runner_one_batch_at_a_time", OneAtATime)):
            opts = resolve_options(recipe, input=str(src), output=str(tmp / f"{name}.jsonl"), batch_size=batch)
            t0 = time.perf_counter()
            summary = run_recipe(recipe, opts, wrap_llm=wrap)
            rates[name] = rows / (time.perf_counter() - t0)
            assert summary.rows_done == rows and summary.failed_rows == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    result = {
        "rows": rows,
        "batch_size": batch,
        "max_concurrency": 64,
        "server_latency_s": 0.1,
        "direct_rows_per_s": direct,
        "runner_rows_per_s": rates["runner"],
        "runner_one_batch_at_a_time_rows_per_s": rates["runner_one_batch_at_a_time"],
    }
    print(
        f"remote, batch {batch}: direct {direct:.0f} rows/s, fnlabel run {rates['runner']:.0f} rows/s, "
        f"one batch at a time {rates['runner_one_batch_at_a_time']:.0f} rows/s"
    )
    return result


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    src = tmp / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "input": f"question {i} " + "word " * 20}) + "\n" for i in range(ROWS)))
    recipe = loads_recipe(RECIPE)
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    results = {}
    for batch in (16, 128):
        llm = recipe.build()
        t0 = time.perf_counter()
        for start in range(0, ROWS, batch):
            llm.run(rows[start : start + batch], K)
        direct = time.perf_counter() - t0

        out = tmp / f"out{batch}.jsonl"
        opts = resolve_options(recipe, input=str(src), output=str(out), num_generations=K, batch_size=batch)
        t0 = time.perf_counter()
        run_recipe(recipe, opts)
        runner = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_recipe(recipe, opts)  # resume of a finished output: reads input, counts lines, checks 2 rows
        resume = time.perf_counter() - t0
        results[f"batch_{batch}"] = {
            "direct_us_per_row": direct / ROWS * 1e6,
            "runner_us_per_row": runner / ROWS * 1e6,
            "ratio_runner_over_direct": runner / direct,
            "resume_finished_s": resume,
        }
        r = results[f"batch_{batch}"]
        print(
            f"batch {batch:4}: direct {r['direct_us_per_row']:.0f} us/row, runner {r['runner_us_per_row']:.0f} us/row "
            f"(x{r['ratio_runner_over_direct']:.2f}); resume of a finished {ROWS}-row output {resume * 1e3:.0f} ms"
        )
    dest = Path(__file__).parent / "results" / "runner_overhead.json"
    report = {"rows": ROWS, "num_generations": K, **results, "remote": remote(tmp)}
    report["ratios"] = ratios(report)  # the common shape read by benchmarks/plot.py
    r = report["remote"]
    report["ratios"]["openai 100 ms, batch 16: fnlabel run / direct .run, rows/s"] = {
        "value": round(r["runner_rows_per_s"] / r["direct_rows_per_s"], 3),
        "better": "higher",
    }
    report["ratios"]["openai 100 ms, batch 16: fnlabel run / one batch at a time, rows/s"] = {
        "value": round(r["runner_rows_per_s"] / r["runner_one_batch_at_a_time_rows_per_s"], 3),
        "better": "higher",
    }
    dest.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
