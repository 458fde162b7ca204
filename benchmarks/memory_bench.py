"""Peak memory of ``fnlabel run`` against the number of input rows: it must not grow with the run.

Runs ``fnlabel run recipes/echo.toml`` (the no-work echo backend, 2 generations per row) over
inputs of 10,000 / 100,000 / 1,000,000 rows of 200-character questions, each in its own process,
and reads each process's peak resident memory (``ru_maxrss`` from ``wait4``). The ratio that
matters is the peak at the largest size over the peak at the smallest (target <= 1.2). It also
times a ``--retry-failed`` of an output where every third row failed against a clean run of the
same rows (target <= 2: a retry costs time linear in the output).

Run: ``python benchmarks/memory_bench.py [--sizes 10000 100000 1000000] [--retry-rows 50000]``;
writes benchmarks/results/memory.json and draws rows vs peak RSS in benchmarks/memory.png (and
docs/assets/memory.png); ``--plot-only`` redraws them from the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "echo.toml"


def write_input(path: Path, rows: int, fail_every: int = 0) -> None:
    body = "x" * 180
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            tag = " boom" if fail_every and i % fail_every == 0 else ""
            fh.write(json.dumps({"id": i, "input": f"question {i:08d} {body}{tag}"}) + "\n")


def run(*args: str, recipe: Path = RECIPE) -> tuple[float, float]:
    """``fnlabel run RECIPE ARGS`` in its own process: (peak RSS in MB, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fnlabel", "run", str(recipe), "--no-cache", *args],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"fnlabel run {' '.join(args)} failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024, took


def memory(sizes: list[int], tmp: Path) -> dict[str, dict[str, float]]:
    out = {}
    for n in sizes:
        write_input(tmp / "in.jsonl", n)
        rss, took = run("--input", str(tmp / "in.jsonl"), "--output", str(tmp / f"out-{n}.jsonl"))
        print(f"{n:>9} rows: peak RSS {rss:7.1f} MB, {took:7.1f} s ({took / n * 1e6:6.1f} us/row)")
        out[str(n)] = {"peak_rss_mb": round(rss, 1), "seconds": round(took, 2)}
        (tmp / f"out-{n}.jsonl").unlink()
    return out


def retry(rows: int, tmp: Path) -> dict[str, float]:
    """A retry of every third row (which failed) vs a clean run of the same rows, in seconds."""
    write_input(tmp / "in.jsonl", rows, fail_every=3)
    failing = tmp / "failing.toml"
    failing.write_text(RECIPE.read_text().replace('model_name = "echo"', 'model_name = "echo"\nfail_on = ["boom"]'))
    io = ("--input", str(tmp / "in.jsonl"), "--output", str(tmp / "out.jsonl"))
    _, clean = run(*io, recipe=failing)
    _, again = run(*io, "--retry-failed")  # the plain recipe: the retried rows now succeed
    fixed = sum('"raw_output": null' in line for line in (tmp / "out.jsonl").open(encoding="utf-8"))
    assert fixed == 0 and (tmp / "out.jsonl.failures.jsonl").read_text() == "", "the retry did not fix every row"
    print(f"retry of {rows // 3} failed rows in a {rows}-row output: {again:.1f} s; clean run {clean:.1f} s")
    return {
        "rows": rows,
        "failed_rows": -(-rows // 3),
        "retry_seconds": round(again, 2),
        "clean_seconds": round(clean, 2),
    }


def plot(result: dict) -> None:
    """Rows vs peak RSS, log scale on rows (needs matplotlib: pip install '.[docs]')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(int(n) for n in result["sizes"])
    rss = [result["sizes"][str(n)]["peak_rss_mb"] for n in rows]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(rows, rss, marker="o", label="fnlabel run (echo, 2 generations per row)")
    ax.set_xscale("log")
    ax.set_ylim(0, max(rss) * 1.5)
    ax.set_xlabel("input rows")
    ax.set_ylabel("peak RSS (MB)")
    ax.set_title("Memory does not grow with the run")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    for path in (ROOT / "benchmarks" / "memory.png", ROOT / "docs" / "assets" / "memory.png"):
        fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--retry-rows", type=int, default=50_000)
    p.add_argument("--plot-only", action="store_true", help="redraw the plot from results/memory.json")
    args = p.parse_args(argv)
    path = ROOT / "benchmarks" / "results" / "memory.json"
    if args.plot_only:
        plot(json.loads(path.read_text(encoding="utf-8")))
        return
    with tempfile.TemporaryDirectory() as folder:
        sizes = memory(args.sizes, Path(folder))
        retried = retry(args.retry_rows, Path(folder))
    small, large = str(min(args.sizes)), str(max(args.sizes))
    rss_ratio = sizes[large]["peak_rss_mb"] / sizes[small]["peak_rss_mb"]
    retry_ratio = retried["retry_seconds"] / retried["clean_seconds"]
    print(f"peak RSS {large} rows / {small} rows: {rss_ratio:.2f}x (target <= 1.2)")
    print(f"retry / clean run: {retry_ratio:.2f}x (target <= 2)")
    result = {
        "benchmark": "memory",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "sizes": sizes,
        "retry": retried,
        "ratios": {
            f"peak RSS, {int(large):,} rows / {int(small):,} rows (echo, 2 generations)": {
                "value": round(rss_ratio, 2), "target": 1.2, "better": "lower",
            },
            f"--retry-failed of {retried['failed_rows']:,} rows / clean run, seconds": {
                "value": round(retry_ratio, 2), "target": 2.0, "better": "lower",
            },
        },
    }  # fmt: skip
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(result)
    print(f"wrote {path}, benchmarks/memory.png, docs/assets/memory.png")


if __name__ == "__main__":
    main()
