"""Overhead of `fnlabel run`'s machinery (batches, JSONL lines, fsync per batch, resume bookkeeping).

Side by side in one process, on the no-work echo backend (so the overhead is all there is):
  direct: the composed LLM's .run over the same batches, outputs kept in memory;
  runner: fnlabel.runner.run_recipe, writing the crash-safe JSONL output.
Prints microseconds per row and the ratio runner/direct, for two batch sizes, and a
resume of a finished output (no model built). Writes benchmarks/results/runner_overhead.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from fnlabel.recipes import loads_recipe
from fnlabel.runner import resolve_options, run_recipe

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
            "value": round(r["ratio_runner_over_direct"], 3), "better": "lower",
        }
        for key, r in results.items()
        if key.startswith("batch_")
    }


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
        print(f"batch {batch:4}: direct {r['direct_us_per_row']:.0f} us/row, runner {r['runner_us_per_row']:.0f} us/row "
              f"(x{r['ratio_runner_over_direct']:.2f}); resume of a finished {ROWS}-row output {resume * 1e3:.0f} ms")
    dest = Path(__file__).parent / "results" / "runner_overhead.json"
    report = {"rows": ROWS, "num_generations": K, **results}
    report["ratios"] = ratios(report)  # the common shape read by benchmarks/plot.py
    dest.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
