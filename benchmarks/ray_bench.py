"""Recipes on Ray: throughput with 2 replicas vs 1, and Ray's overhead relative to a local run.

Side by side in one process, on a local Ray instance (2 CPUs, started once; its start time is
reported apart), with the echo backend:
  latency: echo with ``latency`` seconds per call (a stand-in for a model or an API):
           local run, Ray with 1 replica, Ray with 2 replicas;
  no-work: echo without latency (so the machinery is all there is): local run vs Ray, 1 replica.
Each run is timed two ways: ``wall`` (the whole call, including the actor pool's start-up)
and ``steady`` (from the first written batch to the last, rows per second), since a real run is
long enough for the start-up to vanish. Writes benchmarks/results/ray.json.

Run: python benchmarks/ray_bench.py   (needs pip install 'fnlabel[ray]')
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from fnlabel.recipes import loads_recipe
from fnlabel.run import resolve_options, run_recipe
from fnlabel.run.ray import on_ray, start_local

RECIPE = """
[task]
kind = "text-generation"
system_prompt = ""
[backend]
kind = "echo"
latency = {latency}
[params]
max_new_tokens = 32
[run]
num_generations = 2
batch_size = {batch}
"""


class Clock:
    """A progress callback that notes when the first and the last batch were written."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] = (self.start, 0)

    def __call__(self, done: int, _total: int, _gens: int) -> None:
        if done:
            now = time.perf_counter()
            self.first = self.first or (now, done)
            self.last = (now, done)

    def result(self) -> dict[str, float]:
        end, done = self.last
        first_t, first_n = self.first or (end, done)
        steady = (done - first_n) / (end - first_t) if end > first_t else float("nan")
        return {"wall_s": end - self.start, "steady_rows_per_s": steady}


def timed(recipe, src: Path, out: Path, engine: str, replicas: int = 1) -> dict[str, float]:
    clock = Clock()
    if engine == "local":
        run_recipe(recipe, resolve_options(recipe, input=str(src), output=str(out)), progress=clock)
    else:
        on_ray(recipe, out, input=str(src), replicas=replicas, progress=clock)
    return clock.result()


def ratios(results: dict) -> dict:
    """The common ``"ratios"`` block read by benchmarks/plot.py, from the figures above."""
    lat, nowork = results["latency"], results["no_work"]
    return {
        f"2 replicas / 1 replica, steady rows/s, {lat['latency_s_per_call']:g} s latency per call": {
            "value": round(lat["steady_ratio_2_over_1_replicas"], 3),
            "better": "higher",
        },
        "Ray / local, steady us per row, no-work backend": {
            "value": round(nowork["steady_ratio_ray_over_local"], 3),
            "better": "lower",
        },
    }


def main() -> None:
    warnings.simplefilter("ignore", DeprecationWarning)
    tmp = Path(tempfile.mkdtemp())
    src = tmp / "in.jsonl"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    start_local(num_cpus=2, object_store_memory=256 * 2**20)
    logging.getLogger("ray").setLevel(logging.ERROR)
    ray_start = time.perf_counter() - t0

    results: dict[str, object] = {"ray_start_s": ray_start, "cpus": 2}
    # latency: 0.1 s per call of 8 rows; 2 replicas should come close to twice the rows per second
    rows, batch, latency = 320, 8, 0.1
    src.write_text("".join(json.dumps({"id": i, "input": f"question {i} " + "word " * 20}) + "\n" for i in range(rows)))
    recipe = loads_recipe(RECIPE.format(latency=latency, batch=batch))
    lat = {
        "local": timed(recipe, src, tmp / "l.jsonl", "local"),
        "ray_1": timed(recipe, src, tmp / "r1.jsonl", "ray", 1),
        "ray_2": timed(recipe, src, tmp / "r2.jsonl", "ray", 2),
    }
    assert (tmp / "l.jsonl").read_text() == (tmp / "r1.jsonl").read_text() == (tmp / "r2.jsonl").read_text()
    results["latency"] = {
        "rows": rows,
        "batch_size": batch,
        "latency_s_per_call": latency,
        **lat,
        "steady_ratio_2_over_1_replicas": lat["ray_2"]["steady_rows_per_s"] / lat["ray_1"]["steady_rows_per_s"],
        "wall_ratio_1_over_2_replicas": lat["ray_1"]["wall_s"] / lat["ray_2"]["wall_s"],
    }

    # no work: what Ray adds per row to the runner's own cost
    rows, batch = 4000, 16
    src.write_text("".join(json.dumps({"id": i, "input": f"question {i} " + "word " * 20}) + "\n" for i in range(rows)))
    recipe = loads_recipe(RECIPE.format(latency=0.0, batch=batch))
    nowork = {
        "local": timed(recipe, src, tmp / "nl.jsonl", "local"),
        "ray_1": timed(recipe, src, tmp / "nr.jsonl", "ray", 1),
    }
    assert (tmp / "nl.jsonl").read_text() == (tmp / "nr.jsonl").read_text()
    local_us = 1e6 / nowork["local"]["steady_rows_per_s"]
    ray_us = 1e6 / nowork["ray_1"]["steady_rows_per_s"]
    results["no_work"] = {
        "rows": rows,
        "batch_size": batch,
        **nowork,
        "steady_us_per_row_local": local_us,
        "steady_us_per_row_ray": ray_us,
        "steady_ratio_ray_over_local": ray_us / local_us,
        "wall_ratio_ray_over_local": nowork["ray_1"]["wall_s"] / nowork["local"]["wall_s"],
        "ray_fixed_cost_s": nowork["ray_1"]["wall_s"] - rows / nowork["ray_1"]["steady_rows_per_s"],
    }

    print(json.dumps(results, indent=2))
    lat_r, now_r = results["latency"], results["no_work"]
    print(f"Ray start (once): {ray_start:.1f} s")
    print(
        f"latency {latency}s/call: 2 replicas vs 1, steady rows/s: x{lat_r['steady_ratio_2_over_1_replicas']:.2f}; "
        f"wall: x{lat_r['wall_ratio_1_over_2_replicas']:.2f}"
    )
    print(
        f"no work: Ray vs local, steady per row: x{now_r['steady_ratio_ray_over_local']:.2f} "
        f"({now_r['steady_us_per_row_ray']:.0f} vs {now_r['steady_us_per_row_local']:.0f} us/row); "
        f"wall: x{now_r['wall_ratio_ray_over_local']:.2f} "
        f"(start-up of the actor pool ~{now_r['ray_fixed_cost_s']:.1f} s)"
    )
    results["ratios"] = ratios(results)  # the common shape read by benchmarks/plot.py
    dest = Path(__file__).resolve().parent / "results" / "ray.json"
    dest.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
